#!/usr/bin/env python3
"""Scrape time of /metrics on `funnelstream demo` with N clients following
/api/v1/kpis/stream?interval=1 (issue 21). Load stays on 127.0.0.1 and is
bounded in time.

    benches/scrape_under_streams.py BIN CLIENTS [SCRAPES]

Starts `BIN demo` on a free port, waits until ready, opens CLIENTS stream
clients (threads with http.client, each reading everything it is sent),
waits 5 s, then times SCRAPES sequential GET /metrics (1 s apart, 60 s
timeout each), samples the engine's resident memory and CPU, and prints one
JSON line. Then closes the clients, sends SIGTERM and reports how long the
engine took to exit (SIGKILL after 20 s).
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from benchlib import cpu_s, follow_stream, free_port, rss_mb, wait_ready  # noqa: E402


def main():
    binary, clients = sys.argv[1], int(sys.argv[2])
    scrapes = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    port = free_port()
    engine = subprocess.Popen(
        # --firehose: the benchmark stream the figures were measured on
        # (KPIs changing all the time), not the demo company.
        [binary, "demo", "--firehose", "--listen", f"127.0.0.1:{port}", "--duration", "600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, 120)

        stop = threading.Event()
        received = [0] * clients
        conns = []

        def follow(i):
            follow_stream(port, stop, received, i, 120, conns)

        threads = [threading.Thread(target=follow, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        time.sleep(5)
        cpu0, t0 = cpu_s(engine.pid), time.time()
        times, failures, series = [], 0, None
        for _ in range(scrapes):
            start = time.time()
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("GET", "/metrics")
                body = c.getresponse().read()
                times.append(time.time() - start)
                if series is None:
                    for line in body.decode().splitlines():
                        if line.startswith("funnel_series "):
                            series = int(float(line.split()[1]))
            except (OSError, http.client.HTTPException):
                failures += 1
            time.sleep(1)
        cpu = (cpu_s(engine.pid) - cpu0) / (time.time() - t0)
        rss = rss_mb(engine.pid)
        stop.set()
        for c in conns:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
        times.sort()
        t = time.time()
        engine.send_signal(signal.SIGTERM)
        try:
            engine.wait(timeout=20)
            exit_s = round(time.time() - t, 2)
        except subprocess.TimeoutExpired:
            exit_s = None
        print(
            json.dumps(
                {
                    "clients": clients,
                    "series": series,
                    "scrapes": len(times),
                    "failed": failures,
                    "median_ms": round(1000 * times[len(times) // 2], 1) if times else None,
                    "max_ms": round(1000 * times[-1], 1) if times else None,
                    "rss_mb": round(rss, 1),
                    "cpu_cores": round(cpu, 2),
                    "stream_mb_per_client_s": round(sum(received) / max(clients, 1) / 1e6 / (time.time() - t0), 3),
                    "exit_after_sigterm_s": exit_s,
                }
            ),
            flush=True,
        )
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()


if __name__ == "__main__":
    main()
