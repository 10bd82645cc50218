#!/usr/bin/env python3
"""Long soak of the live path (issue 21.4): resident memory over time under
sustained load, scrapes and stream clients. Load stays on 127.0.0.1.

    benches/soak.py BIN [--minutes 30] [--rate 50000] [--clients 50]
                        [--scrape-every 5] [--warmup 5] [--out FILE]
                        [--max-tracked-deals N] [--dedup-capacity N]
                        [--kafka [--partitions 12] [--keys 24]]

Starts `BIN demo` (the embedded mock Kafka cluster, the synthetic stream at
`--rate` live events per second after 60,000 events of history, and the
engine through the code path of `run`) on a free port. Opens CLIENTS
threads following /api/v1/kpis/stream?interval=1 (each reading everything),
plus one client that sends the request and never reads (the engine must
drop it and count it in funnel_stream_clients_dropped_total). Scrapes
/metrics every SCRAPE_EVERY seconds (10 s timeout, Prometheus' default) and
samples the engine's resident memory and the events it has taken
(ingested + duplicates + rejected) every 10 s.

With --kafka the engine runs as `BIN run` on a real Apache Kafka broker
(scripts/kafka, in a temporary directory removed at the end), fed by
`BIN produce` in a process of its own at RATE synthetic events/s (no daily
rhythm, no history): the memory sampled is the engine's alone. Needs Java,
Maven and confluent-kafka (scripts/test installs them).

Prints one JSON line per minute (progress) and a final JSON summary:
resident memory after the warm-up (first WARMUP minutes) as min, max and
the spread (max / min - 1, the figure that must stay within 10%), scrapes
and failed scrapes, scrape time p50 / max, events taken per second, and the
stream clients' counters. Exit status 1 when a scrape failed, a reading
client ended early, the stalled client was not dropped or the spread
exceeds 10%.
"""

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from benchlib import (  # noqa: E402
    cpu_s,
    follow_stream,
    free_port,
    rss_mb,
    sample,
    scrape,
    stop_engine,
    taken,
    wait_ready,
)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "funnel-events"


class Kafka:
    """One Apache Kafka broker (scripts/kafka) and the `produce` process
    writing to it; `stop` ends both and removes the broker's data."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="soak-kafka-")
        out = subprocess.check_output(
            [os.path.join(REPO, "scripts", "kafka"), "start", self.dir, "1"], text=True
        )
        self.bootstrap = out.strip().splitlines()[-1]
        self.producer = None

    def stop(self):
        if self.producer and self.producer.poll() is None:
            stop_engine(self.producer, 10)
        subprocess.call([os.path.join(REPO, "scripts", "kafka"), "stop", self.dir])
        shutil.rmtree(self.dir, ignore_errors=True)


def start_on_kafka(a, port, seconds, limits):
    """Creates the topic (`--partitions`, retention 256 MB a partition, so
    that a half-hour at 50k events/s stays within a few GB of disk), starts
    `produce` at `--rate` for the whole run and `run` on the topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    k = Kafka()
    try:
        admin = AdminClient({"bootstrap.servers": k.bootstrap})
        fs = admin.create_topics(
            [
                NewTopic(
                    TOPIC,
                    a.partitions,
                    1,
                    config={"retention.bytes": str(256 << 20), "segment.bytes": str(32 << 20)},
                )
            ]
        )
        for f in fs.values():
            f.result(30)
        k.producer = subprocess.Popen(
            [a.binary, "produce", "--brokers", k.bootstrap, "--topic", TOPIC,
             "--rate", str(a.rate), "--count", str(a.rate * (seconds + 900)),
             "--keys", str(a.keys), "--seed", "21"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        engine = subprocess.Popen(
            [a.binary, "run", "--brokers", k.bootstrap, "--topics", TOPIC,
             "--group", "soak", "--listen", f"127.0.0.1:{port}"] + limits,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return k, engine
    except BaseException:
        k.stop()
        raise


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--rate", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--scrape-every", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=5, help="minutes")
    ap.add_argument("--out", help="also write the summary here")
    ap.add_argument(
        "--max-tracked-deals",
        type=int,
        help="demo --max-tracked-deals (default: the engine's 1,000,000 per partition)",
    )
    ap.add_argument(
        "--dedup-capacity",
        type=int,
        help="demo --dedup-capacity (default: the engine's 1,000,000 ids per partition)",
    )
    ap.add_argument(
        "--kafka",
        action="store_true",
        help="the engine as `run` on a real Apache Kafka broker (scripts/kafka), "
        "fed by `produce` in a process of its own: the resident memory measured "
        "is the engine's alone, without the demo's producer and mock broker",
    )
    ap.add_argument("--partitions", type=int, default=12, help="with --kafka (the demo's 12)")
    ap.add_argument("--keys", type=int, default=24, help="with --kafka (the demo's 24)")
    a = ap.parse_args()

    port = free_port()
    seconds = int(a.minutes * 60)
    limits = (
        ["--max-tracked-deals", str(a.max_tracked_deals)] if a.max_tracked_deals else []
    ) + (["--dedup-capacity", str(a.dedup_capacity)] if a.dedup_capacity else [])
    kafka = None
    if a.kafka:
        kafka, engine = start_on_kafka(a, port, seconds, limits)
    else:
        engine = subprocess.Popen(
            [
                a.binary,
                "demo",
                "--firehose",
                "--listen",
                f"127.0.0.1:{port}",
                "--rate",
                str(a.rate),
                "--duration",
                str(seconds + 120),
            ]
            + limits,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    stop = threading.Event()
    try:
        # Ready = caught up with the history; on a busy machine that can take
        # minutes (the producer starts at once at the full rate).
        wait_ready(port, 600)

        received = [0] * a.clients
        ended_early = []

        def follow(i):
            if follow_stream(port, stop, received, i, 60):
                ended_early.append(i)

        threads = [
            threading.Thread(target=follow, args=(i,), daemon=True)
            for i in range(a.clients)
        ]
        for t in threads:
            t.start()
        # The stalled client: a tiny receive buffer, request sent, nothing read.
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(
            b"GET /api/v1/kpis/stream?interval=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        )

        start = time.time()
        warm_at = start + a.warmup * 60
        rss = []  # (t, MB) after warm-up
        rss_all = []
        scrapes, failures, times = 0, [], []
        rates = []
        last = None  # (t, taken)
        next_sample = start
        next_report = start + 60
        text = ""
        while time.time() - start < seconds:
            t0 = time.time()
            try:
                text = scrape(port)
                times.append(time.time() - t0)
            except (OSError, http.client.HTTPException) as e:
                failures.append(f"{t0 - start:.0f}s: {e}")
            scrapes += 1
            now = time.time()
            if now >= next_sample:
                next_sample += 10
                m = rss_mb(engine.pid)
                rss_all.append((round(now - start), round(m, 1)))
                if now >= warm_at:
                    rss.append(m)
                if text:
                    n = taken(text)
                    if last and now >= warm_at:
                        rates.append((n - last[1]) / (now - last[0]))
                    last = (now, n)
            if now >= next_report:
                next_report += 60
                print(
                    json.dumps(
                        {
                            "minute": round((now - start) / 60),
                            "rss_mb": rss_all[-1][1] if rss_all else None,
                            "events_per_s": round(rates[-1]) if rates else None,
                            "scrapes": scrapes,
                            "failures": len(failures),
                            "stream_clients": sample(text, "funnel_stream_clients "),
                            "dropped": sample(text, "funnel_stream_clients_dropped_total"),
                        }
                    ),
                    flush=True,
                )
            time.sleep(max(0.0, a.scrape_every - (time.time() - t0)))

        dropped = sample(text, "funnel_stream_clients_dropped_total")
        cpu = cpu_s(engine.pid)
        spread = (max(rss) / min(rss) - 1) if rss else None
        summary = {
            "minutes": a.minutes,
            "rate_target": a.rate,
            "clients": a.clients,
            "rss_after_warmup_mb": {
                "min": round(min(rss), 1) if rss else None,
                "max": round(max(rss), 1) if rss else None,
                "first": round(rss[0], 1) if rss else None,
                "last": round(rss[-1], 1) if rss else None,
                "spread": round(spread, 4) if spread is not None else None,
            },
            "rss_samples": rss_all,
            "scrapes": scrapes,
            "failed_scrapes": failures[:10],
            "scrape_s": {
                "p50": round(statistics.median(times), 4) if times else None,
                "max": round(max(times), 4) if times else None,
            },
            "events_per_s": {
                "median": round(statistics.median(rates)) if rates else None,
                "min": round(min(rates)) if rates else None,
            },
            "events_taken": taken(text) if text else None,
            "series": sample(text, "funnel_series "),
            "stream_clients": sample(text, "funnel_stream_clients "),
            "stalled_dropped": dropped,
            "clients_ended_early": len(ended_early),
            "cpu_s": round(cpu, 1),
            "client_bytes": sum(received),
        }
        out = json.dumps(summary)
        print(out, flush=True)
        if a.out:
            with open(a.out, "w") as f:
                f.write(out + "\n")
        ok = (
            not failures
            and not ended_early
            and dropped >= 1
            and spread is not None
            and spread <= 0.10
        )
        stop.set()
        stalled.close()
        return 0 if ok else 1
    finally:
        stop.set()
        stop_engine(engine, 30)
        if kafka:
            kafka.stop()


if __name__ == "__main__":
    sys.exit(main())
