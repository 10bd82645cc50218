#!/usr/bin/env python3
"""The hand-written consumer funnelstream replaces, as a baseline for
`cargo bench --bench live`: confluent-kafka reading the topic in batches,
json.loads of every event, and prometheus_client counters by event type,
channel and campaign (plus the summed `amount` or `cost`), the
way a team writes its own KPI exporter.

    python3 benches/python_consumer.py BROKERS TOPIC GROUP N

Consumes N events and prints one line: `events_per_s <rate>`, timed from
the first message to the N-th. Needs `pip install confluent-kafka
prometheus_client` (scripts/test installs them).
"""

import json
import sys
import time

from confluent_kafka import Consumer
from prometheus_client import CollectorRegistry, Counter


def main(argv):
    brokers, topic, group, n = argv[1], argv[2], argv[3], int(argv[4])
    registry = CollectorRegistry()
    events = Counter(
        "events", "events by type", ["type", "channel", "campaign"], registry=registry
    )
    amount = Counter(
        "amount", "amount by type", ["type", "channel", "campaign"], registry=registry
    )
    rejected = Counter("rejected", "unparseable events", registry=registry)
    c = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": True,
        }
    )
    c.subscribe([topic])
    seen = 0
    t0 = None
    while seen < n:
        for m in c.consume(num_messages=1000, timeout=0.1):
            if m.error():
                continue
            if t0 is None:
                t0 = time.monotonic()
            seen += 1
            try:
                e = json.loads(m.value())
                labels = (
                    str(e.get("type", "")),
                    str(e.get("channel", "")),
                    str(e.get("campaign", "")),
                )
                events.labels(*labels).inc()
                a = e.get("amount", e.get("cost"))
                if isinstance(a, (int, float)) and a >= 0:
                    amount.labels(*labels).inc(a)
            except (ValueError, TypeError, AttributeError):
                rejected.inc()
    rate = n / (time.monotonic() - t0)
    c.close()
    print(f"events_per_s {rate:.0f}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
