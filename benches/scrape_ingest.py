#!/usr/bin/env python3
"""Ingestion throughput while /metrics is scraped every second (issue 21),
against the same engine not scraped, alternated phase by phase. Load stays
on 127.0.0.1.

    benches/scrape_ingest.py BIN [--keys 127] [--rate 400000] [--phase 20]
                             [--rounds 4] [--scrape-every 1]

Starts `BIN demo --firehose --keys KEYS --events 40*KEYS --rate RATE
--max-series 10000000` (the embedded mock Kafka cluster and the engine
through the code path of `run`; about 790 series a key, so 127 keys make
about 100,000 series), waits until the history is consumed, then runs
ROUNDS rounds of two PHASE-second phases, "none" (no scrape) and "scrape"
(GET /metrics every SCRAPE_EVERY seconds, one at a time, from a thread),
the order swapped every round (none, scrape, scrape, none, ...) so that a
drift of the machine falls on both. Events taken are read every second
from /api/v1/health (counters only: no render) in both phases alike.
The firehose producer runs in the same process at RATE events/s (more
than the engine takes): the engine is the bottleneck, the producer's CPU
is in both phases.

Prints one JSON line per phase (events taken per second, scrapes and their
times, the load average) and a summary: the median rate of each
configuration and their ratio (scrape / none; the target is >= 0.9), and
each round's ratio of its scrape phase to its no-scrape phase (adjacent in
time) with their median, their geometric mean and its 95% bootstrap
interval, and the verdict that interval gives on the target (`met`,
`missed` or `not shown`: single rounds spread by +-20% on this 2-core
machine, so it takes about 20 rounds to tell 0.9 from 1).
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))
from benchlib import cpu_s, free_port, get, sample, stop_engine, taken  # noqa: E402


def health_taken(port):
    _, body = get(port, "/api/v1/health", 10)
    h = json.loads(body)
    return h["ingested"] + h["rejected"] + h["duplicates"]


def geomean_ci(ratios, resamples=10000):
    """The geometric mean of the round ratios and a 95% percentile
    bootstrap interval for it (fixed seed: the same phases give the same
    interval). The verdict on the target reads the interval: met when its
    low end is at least 0.9, missed when its high end is below."""
    logs = [math.log(max(r, 1e-9)) for r in ratios]
    rng = random.Random(21)
    means = sorted(
        statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(resamples)
    )
    lo, hi = means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]
    return math.exp(statistics.fmean(logs)), math.exp(lo), math.exp(hi)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--keys", type=int, default=127)
    ap.add_argument("--rate", type=int, default=400000)
    ap.add_argument("--phase", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--scrape-every", type=float, default=1.0)
    a = ap.parse_args()

    port = free_port()
    history = 40 * a.keys
    engine = subprocess.Popen(
        [
            a.binary, "demo", "--firehose", "--listen", f"127.0.0.1:{port}",
            "--keys", str(a.keys), "--events", str(history), "--rate", str(a.rate),
            "--max-series", "10000000", "--duration", "7200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # /healthz, not /readyz: with the producer faster than the engine
        # the partitions may never count as caught up.
        deadline = time.time() + 180
        while True:
            try:
                if get(port, "/healthz", 5)[0] == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("demo not serving")
            time.sleep(0.5)
        # Until the history is consumed and every key has its series (the
        # live events open the keys' v2 groups: the count is stable over
        # three readings 3 s apart, and 15 s of live events have passed).
        series, stable = 0.0, 0
        t_ready = time.time()
        deadline = t_ready + 300
        while time.time() < deadline:
            _, text = get(port, "/metrics")
            s = sample(text, "funnel_series ")
            stable = stable + 1 if s == series else 0
            series = s
            if taken(text) >= history * 0.99 and stable >= 2 and time.time() - t_ready >= 15:
                break
            time.sleep(3)
        phases = []
        order = []
        for r in range(a.rounds):
            order += ["none", "scrape"] if r % 2 == 0 else ["scrape", "none"]
        for kind in order:
            stop = threading.Event()
            times, failed = [], [0]

            def scraper():
                while not stop.is_set():
                    t0 = time.time()
                    try:
                        status, text = get(port, "/metrics", 60)
                        if status == 200:
                            times.append(time.time() - t0)
                        else:
                            failed[0] += 1
                    except OSError:
                        failed[0] += 1
                    stop.wait(max(0.0, a.scrape_every - (time.time() - t0)))

            t = None
            if kind == "scrape":
                t = threading.Thread(target=scraper, daemon=True)
                t.start()
            t_start, n_start, c_start = time.time(), health_taken(port), cpu_s(engine.pid)
            while time.time() - t_start < a.phase:
                time.sleep(1)
            t_end, n_end, c_end = time.time(), health_taken(port), cpu_s(engine.pid)
            stop.set()
            if t:
                t.join()
            rate = (n_end - n_start) / (t_end - t_start)
            p = {
                "phase": kind,
                "events_per_s": round(rate),
                "engine_cpu": round((c_end - c_start) / (t_end - t_start), 2),
                "scrapes": len(times),
                "failed": failed[0],
                "scrape_ms_median": round(statistics.median(times) * 1000) if times else None,
                "scrape_ms_max": round(max(times) * 1000) if times else None,
                "load": round(os.getloadavg()[0], 1),
            }
            phases.append(p)
            print(json.dumps(p), flush=True)
        med = {
            k: statistics.median([p["events_per_s"] for p in phases if p["phase"] == k])
            for k in ("none", "scrape")
        }
        # Each round's scrape phase against its own no-scrape phase (adjacent
        # in time, so a drift of the machine or the stream cancels out).
        pairs = [
            phases[2 * r + (1 if r % 2 == 0 else 0)]["events_per_s"]
            / max(phases[2 * r + (0 if r % 2 == 0 else 1)]["events_per_s"], 1)
            for r in range(a.rounds)
        ]
        geo, lo, hi = geomean_ci(pairs)
        print(json.dumps({
            "series": int(series),
            "round_ratios": [round(x, 3) for x in pairs],
            "round_ratio_median": round(statistics.median(pairs), 3),
            "round_ratio_geomean": round(geo, 3),
            "round_ratio_ci95": [round(lo, 3), round(hi, 3)],
            "target_0_9": "met" if lo >= 0.9 else "missed" if hi < 0.9 else "not shown",
            "none_events_per_s": round(med["none"]),
            "scrape_events_per_s": round(med["scrape"]),
            "ratio": round(med["scrape"] / med["none"], 3) if med["none"] else None,
            "load_min_max": [min(p["load"] for p in phases), max(p["load"] for p in phases)],
        }), flush=True)
        return 0
    finally:
        stop_engine(engine, 30)


if __name__ == "__main__":
    sys.exit(main())
