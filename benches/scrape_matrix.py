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
waits 3 s, times 5 GET /metrics 1 s apart (connect to last byte, 60 s
timeout), closes the clients. Prints one JSON line per configuration
(median and max ms, scrapes, failures) and the ratios to 0 clients.
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


def clients(port, n, stop):
    socks = []

    def follow(s):
        s.settimeout(1.0)
        while not stop.is_set():
            try:
                if not s.recv(65536):
                    return
            except socket.timeout:
                pass
            except OSError:
                return

    threads = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /api/v1/kpis/stream?interval=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
        t = threading.Thread(target=follow, args=(s,), daemon=True)
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
        counts = [int(x) for x in a.clients.split(",")]
        times = {n: [] for n in counts}
        failed = {n: 0 for n in counts}
        for _ in range(a.rounds):
            for n in counts:
                stop = threading.Event()
                socks, threads = clients(port, n, stop)
                time.sleep(3)
                for _ in range(5):
                    t0 = time.time()
                    try:
                        status, text = get(port, "/metrics")
                        if status == 200:
                            times[n].append(time.time() - t0)
                            series = sample(text, "funnel_series ")
                        else:
                            failed[n] += 1
                    except (OSError, http.client.HTTPException):
                        failed[n] += 1
                    time.sleep(max(0.0, 1 - (time.time() - t0)))
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
        med = {n: statistics.median(times[n]) if times[n] else None for n in counts}
        for n in counts:
            print(json.dumps({
                "series": int(series), "clients": n, "scrapes": len(times[n]),
                "failed": failed[n],
                "median_ms": round(1000 * med[n], 1) if med[n] else None,
                "max_ms": round(1000 * max(times[n]), 1) if times[n] else None,
                "ratio_to_0": round(med[n] / med[counts[0]], 2) if med[n] and med[counts[0]] else None,
            }), flush=True)
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
    a = ap.parse_args()
    scrape_bench(a)


if __name__ == "__main__":
    main()
