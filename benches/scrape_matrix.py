#!/usr/bin/env python3
"""Scrape time against series and stream clients (issue 21), on
`funnelstream demo`; figures printed, each next to its baseline measured in
the same engine, configurations alternated round by round. Load stays on
127.0.0.1.

    benches/scrape_matrix.py BIN scrape KEYS [--clients 0,50,300] [--rounds 3]

scrape: starts `BIN demo --firehose --keys KEYS --events 40*KEYS --max-series 10000000
--rate 200`, waits until the history is consumed (funnel_series stable),
then for each round and each client count: opens that many clients
following /api/v1/kpis/stream?interval=1 (threads reading everything),
waits 3 s, times SCRAPES (6) GET /metrics 1 s apart (connect to last byte, 60 s
timeout), closes the clients. Prints one JSON line per configuration
(median and max ms, scrapes, failures) and the ratios to 0 clients.

Two scrapers, alternated scrape by scrape (`--scraper both`, the default;
`inproc` or `curl` for one): `inproc` is http.client in this process,
whose 300 reader threads then compete with it for the interpreter lock;
`curl` is a process of its own (as Prometheus is), timed by curl
(`time_total`). Also per configuration: the engine's CPU by thread name
(`/proc/PID/task/*`: `funnel-scrape` is the scrape runtime with its
render thread, so its CPU per scrape is what a scrape costs the engine;
`funnel-http` the stream runtime and its feed threads), this process's CPU
(the reader threads), the megabytes a second the stream clients read
(`stream_mb_s`) and the load average. `--renice-http N` sets the nice
value of the engine's `funnel-http` threads once ready (threads they start
inherit it), as the engine itself does since it runs them below the scrape
runtime.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from benchlib import free_port, get, sample, stop_engine, taken, wait_ready  # noqa: E402


CLK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds (user + system) of process `pid`'s live threads, summed by
    thread name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / CLK
    return out


def self_cpu():
    t = os.times()
    return t.user + t.system


def curl_scrape(port):
    """(status, seconds) of one GET /metrics by curl, a process of its own."""
    r = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-m", "60", "-w", "%{http_code} %{time_total}",
         f"http://127.0.0.1:{port}/metrics"],
        capture_output=True, text=True, timeout=70,
    )
    code, took = r.stdout.split()
    return int(code), float(took)


def start_demo(binary, keys, history, rate):
    port = free_port()
    p = subprocess.Popen(
        [
            binary, "demo", "--firehose", "--listen", f"127.0.0.1:{port}",
            "--keys", str(keys), "--events", str(history), "--rate", str(rate),
            "--max-series", "10000000", "--duration", "3600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, 180)
    except SystemExit:
        p.kill()
        raise
    return p, port


def clients(port, n, stop, received):
    socks = []

    def follow(s, i):
        s.settimeout(1.0)
        while not stop.is_set():
            try:
                b = s.recv(65536)
                if not b:
                    return
                received[i] += len(b)
            except socket.timeout:
                pass
            except OSError:
                return

    threads = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/v1/kpis/stream?interval=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
        t = threading.Thread(target=follow, args=(s, i), daemon=True)
        t.start()
        threads.append(t)
    return socks, threads


def scrape_bench(a):
    history = a.history or 40 * a.keys
    p, port = start_demo(a.binary, a.keys, history, 200)
    try:
        # Until the history is consumed.
        last, series = -1.0, 0.0
        deadline = time.time() + 600
        while time.time() < deadline:
            _, text = get(port, "/metrics")
            n = taken(text)
            series = sample(text, "funnel_series ")
            if n >= history * 0.99 and n - last < 5000:
                break
            last = n
            time.sleep(3)
        if a.renice_http:
            # What the engine does itself since it runs its stream runtime
            # below the scrape runtime: for builds before that.
            for tid in os.listdir(f"/proc/{p.pid}/task"):
                with open(f"/proc/{p.pid}/task/{tid}/comm") as f:
                    if f.read().strip() == "funnel-http":
                        os.setpriority(os.PRIO_PROCESS, int(tid), a.renice_http)
        counts = [int(x) for x in a.clients.split(",")]
        kinds = ["inproc", "curl"] if a.scraper == "both" else [a.scraper]
        times = {(n, k): [] for n in counts for k in kinds}
        failed = {n: 0 for n in counts}
        cpu = {
            n: {"scrape": 0.0, "http": 0.0, "engine": 0.0, "bench": 0.0, "s": 0.0, "bytes": 0}
            for n in counts
        }
        loads = {n: [] for n in counts}
        for _ in range(a.rounds):
            for n in counts:
                stop = threading.Event()
                received = [0] * n
                socks, threads = clients(port, n, stop, received)
                time.sleep(3)
                c0, b0, w0 = thread_cpu(p.pid), self_cpu(), time.time()
                r0 = sum(received)
                for i in range(a.scrapes):
                    kind = kinds[i % len(kinds)]
                    t0 = time.time()
                    try:
                        if kind == "curl":
                            status, took = curl_scrape(port)
                        else:
                            status, text = get(port, "/metrics")
                            took = time.time() - t0
                        if status == 200:
                            times[(n, kind)].append(took)
                            if kind == "inproc":
                                series = sample(text, "funnel_series ")
                        else:
                            failed[n] += 1
                    except (OSError, http.client.HTTPException, subprocess.SubprocessError, ValueError):
                        failed[n] += 1
                    time.sleep(max(0.0, 1 - (time.time() - t0)))
                c1, b1 = thread_cpu(p.pid), self_cpu()
                cpu[n]["s"] += time.time() - w0
                cpu[n]["bytes"] += sum(received) - r0
                cpu[n]["bench"] += b1 - b0
                for name, v in c1.items():
                    d = v - c0.get(name, 0.0)
                    cpu[n]["engine"] += d
                    if name == "funnel-scrape":
                        cpu[n]["scrape"] += d
                    elif name == "funnel-http":
                        cpu[n]["http"] += d
                loads[n].append(os.getloadavg()[0])
                stop.set()
                for s in socks:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                for t in threads:
                    t.join()
                time.sleep(1)
        med = {k: statistics.median(v) if v else None for k, v in times.items()}
        for n in counts:
            scrapes = sum(len(times[(n, k)]) for k in kinds)
            row = {"series": int(series), "clients": n, "scrapes": scrapes, "failed": failed[n]}
            for k in kinds:
                v = times[(n, k)]
                row[k] = {
                    "median_ms": round(1000 * med[(n, k)], 1) if v else None,
                    "p90_ms": round(1000 * statistics.quantiles(v, n=10, method="inclusive")[-1], 1) if len(v) > 1 else None,
                    "max_ms": round(1000 * max(v), 1) if v else None,
                    "ratio_to_0": round(med[(n, k)] / med[(counts[0], k)], 2)
                    if v and med[(counts[0], k)] else None,
                }
            s = cpu[n]["s"] or 1.0
            row["engine_cores"] = round(cpu[n]["engine"] / s, 2)
            row["http_cores"] = round(cpu[n]["http"] / s, 2)
            row["scrape_cpu_ms_per_scrape"] = round(1000 * cpu[n]["scrape"] / max(scrapes, 1), 1)
            row["bench_cores"] = round(cpu[n]["bench"] / s, 2)
            row["stream_mb_s"] = round(cpu[n]["bytes"] / s / 1e6, 1)
            row["load"] = [round(x, 1) for x in loads[n]]
            print(json.dumps(row), flush=True)
    finally:
        stop_engine(p, 30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("mode", choices=["scrape"])
    ap.add_argument("keys", type=int)
    ap.add_argument("--clients", default="0,50,300")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--history", type=int, default=0)
    ap.add_argument("--scrapes", type=int, default=6, help="per configuration and round")
    ap.add_argument("--scraper", choices=["both", "inproc", "curl"], default="both")
    ap.add_argument("--renice-http", type=int, default=0,
                    help="set the nice value of the engine's funnel-http threads (new ones inherit it)")
    a = ap.parse_args()
    scrape_bench(a)


if __name__ == "__main__":
    main()
