#!/usr/bin/env python3
"""Writes tests/golden/events-calendar.ndjson, the calendar-window golden input
(issue 19), hand-picked event by event:

    python3 tests/golden/gen_calendar.py > tests/golden/events-calendar.ndjson

Read with `--calendar-windows mtd,qtd,ytd,last_month,last_quarter
--calendar-timezone Europe/Berlin --fiscal-year-start-month 4` (fiscal
quarters Apr-Jun, Jul-Sep, Oct-Dec, Jan-Mar), and a second time with
`--calendar-windows mtd,last_quarter` (same zone and fiscal year) for the late
rule. Engine time at the end (`--clock event`) is the greatest ts,
2024-02-29T15:00+01:00 (14:00Z) on a leap day, so:

| window | span (Berlin local) | previous window |
|---|---|---|
| mtd | 2024-02-01 00:00 .. now | 2024-01-01 00:00 .. 2024-01-29 15:00 |
| qtd | 2024-01-01 00:00 .. now | 2023-10-01 00:00 .. 2023-11-29 15:00 |
| ytd | 2023-04-01 00:00 .. now | the whole fiscal year 2022-04-01 .. 2023-04-01 (2023-02-29 does not exist) |
| last_month | January 2024 | December 2023 |
| last_quarter | Oct-Dec 2023 (92 days and 1 hour: October's DST change) | Jul-Sep 2023 |

Late edge: the start of ytd's previous period, 2022-04-01 00:00+02:00 (with
mtd,last_quarter only: last_quarter's previous period, 2023-07-01 00:00+02:00;
twice 90d reaches back only to 2023-09-02). Timestamps carry the Berlin offset
in force (+01:00 in winter, +02:00 in summer) except where a line says
otherwise. The file is in arrival order: history in time order up to
2024-01-20; then, after 40 days without an event, one click on 02-29 that
moves engine time into a new month (January rolls from mtd to last_month
with no event of its own); then a backfill of out-of-order events into every
window and previous window, and the late ones.
Every event is clear of the margins `reference.py --check-margins` checks.
"""

import json
import sys

K1 = ("paid_search", "brand")
K2 = ("organic", "blog")
K3 = ("outbound", "abm")

EVENTS = [
    # --- previous fiscal year (Apr 2022 - Mar 2023): ytd's previous window
    ("e001", "subscription", "2022-05-01T10:00:00+02:00", K1, dict(account_id="A1", change="new", mrr_delta=1000)),
    ("e002", "lead", "2022-06-15T09:00:00+02:00", K1, dict(lead_id="L1")),
    ("e003", "lead", "2022-06-16T09:00:00+02:00", K1, dict(lead_id="L1", stage="mql")),
    ("e004", "deal", "2022-08-01T10:00:00+02:00", K1, dict(deal_id="D1", stage="open", amount=10000)),
    ("e005", "deal", "2022-09-10T16:00:00+02:00", K1, dict(deal_id="D1", stage="won", amount=10000, created_ts="2022-08-01T10:00:00+02:00")),
    ("e006", "session", "2022-10-20T12:00:00+02:00", K2, dict(count=300, pageviews=700, bounces=90)),
    ("e007", "subscription", "2022-11-01T11:00:00+01:00", K1, dict(account_id="A2", change="new", mrr_delta=500)),
    ("e008", "session", "2022-12-05T12:00:00+01:00", K2, dict(count=200)),
    ("e009", "conversion", "2023-02-10T10:00:00+01:00", K1, dict(action="demo_request", count=3)),
    # across the spring-forward of 2023-03-26 (02:00 CET -> 03:00 CEST): 00:30Z and 01:30Z
    ("e010", "session", "2023-03-26T01:30:00+01:00", K2, dict(count=40)),
    ("e011", "session", "2023-03-26T03:30:00+02:00", K2, dict(count=60)),
    # the fiscal year's edge, local midnight of April 1 (2023-03-31T22:00Z)
    ("e012", "lead", "2023-03-31T23:30:00+02:00", K1, dict(lead_id="L2")),            # previous FY
    ("e013", "lead", "2023-03-31T21:59:59.999Z", K1, dict(lead_id="L2", stage="mql")),  # 1 ms before: previous FY
    ("e014", "lead", "2023-04-01T00:00:00+02:00", K1, dict(lead_id="L3", stage="mql")),  # exactly on it: ytd
    ("e015", "lead", "2023-03-31T22:30:00Z", K1, dict(lead_id="L4")),                 # 00:30 CEST: ytd (March in UTC)
    # --- fiscal Q1 (Apr-Jun 2023)
    # arrives now, so it is late under no setting (mtd,last_quarter: in no window at the end)
    ("e016", "lead", "2023-05-10T10:00:00+02:00", K1, dict(lead_id="L5", stage="sql")),
    ("e017", "subscription", "2023-05-15T10:00:00+02:00", K1, dict(account_id="A3", change="new", mrr_delta=800)),
    ("e018", "deal", "2023-06-01T10:00:00+02:00", K3, dict(deal_id="D2", stage="open", amount=40000)),
    ("e019", "session", "2023-06-20T12:00:00+02:00", K2, dict(count=500, bounces=100)),
    # --- fiscal Q2 (Jul-Sep 2023): last_quarter's previous window
    ("e020", "subscription", "2023-08-20T10:00:00+02:00", K1, dict(account_id="A4", change="new", mrr_delta=600)),
    ("e021", "deal", "2023-09-30T23:59:59.999+02:00", K3, dict(deal_id="D2", stage="won", amount=36000, created_ts="2023-06-01T10:00:00+02:00")),
    # --- fiscal Q3 (Oct-Dec 2023): last_quarter; to 11-29 15:00 also qtd's previous window
    ("e022", "deal", "2023-10-01T00:00:00+02:00", K1, dict(deal_id="D3", stage="open", amount=15000)),  # exactly on the edge
    ("e023", "deal", "2023-09-30T22:30:00Z", K1, dict(deal_id="D4", stage="open", amount=8000)),        # 00:30 CEST: Q3
    ("e024", "subscription", "2023-10-20T10:00:00+02:00", K1, dict(account_id="A2", change="churn", mrr_delta=500)),
    # across the fall-back of 2023-10-29 (03:00 CEST -> 02:00 CET): 02:30 twice, 00:30Z and 01:30Z
    ("e025", "session", "2023-10-29T02:30:00+02:00", K2, dict(count=70)),
    ("e026", "session", "2023-10-29T02:30:00+01:00", K2, dict(count=30)),
    ("e027", "lead", "2023-11-10T10:00:00+01:00", K1, dict(lead_id="L6")),
    ("e028", "lead", "2023-11-10T11:00:00+01:00", K1, dict(lead_id="L6", stage="mql")),
    ("e029", "lead", "2023-11-12T10:00:00+01:00", K1, dict(lead_id="L6", stage="sql")),
    ("e030", "deal", "2023-11-15T10:00:00+01:00", K1, dict(deal_id="D3", stage="won", amount=15000, created_ts="2023-10-01T00:00:00+02:00")),
    ("e031", "conversion", "2023-11-20T10:00:00+01:00", K1, dict(action="demo_request", count=2)),
    ("e032", "session", "2023-11-25T12:00:00+01:00", K2, dict(count=400, bounces=120)),
    ("e033", "conversion", "2023-11-26T12:00:00+01:00", K2, dict(action="signup", count=5, value=50)),
    # December: last_month's previous window, not qtd's (after 11-29 15:00)
    ("e034", "lead", "2023-12-05T10:00:00+01:00", K1, dict(lead_id="L7")),
    ("e035", "subscription", "2023-12-10T10:00:00+01:00", K1, dict(account_id="A1", change="expansion", mrr_delta=200)),
    ("e036", "deal", "2023-12-15T10:00:00+01:00", K1, dict(deal_id="D4", stage="lost", created_ts="2023-10-01T00:30:00+02:00")),
    ("e037", "spend", "2023-12-20T10:00:00+01:00", K3, dict(amount=5000, category="salaries")),
    ("e038", "click", "2023-12-28T10:00:00+01:00", K1, dict(count=100, cost=150)),
    # --- fiscal Q4 (Jan-Mar 2024): qtd; January is last_month, to 01-29 15:00 mtd's previous window
    ("e039", "lead", "2024-01-05T10:00:00+01:00", K1, dict(lead_id="L8")),
    ("e040", "subscription", "2024-01-15T10:00:00+01:00", K1, dict(account_id="A5", change="new", mrr_delta=700)),
    ("e041", "lead", "2024-01-15T11:00:00+01:00", K1, dict(lead_id="L8", stage="mql")),
    ("e042", "deal", "2024-01-18T10:00:00+01:00", K1, dict(deal_id="D5", stage="open", amount=20000)),
    ("e043", "session", "2024-01-20T12:00:00+01:00", K2, dict(count=250)),
    ("e044", "conversion", "2024-01-20T13:00:00+01:00", K2, dict(action="signup", count=4, value=40)),
    # --- 40 days with no event, then engine time jumps to the leap day: January
    # rolls from mtd to last_month, December to last_month's previous window
    ("e045", "click", "2024-02-29T15:00:00+01:00", K1, dict(count=50, cost=60)),
    # --- backfill, out of order (engine time stays 02-29 14:00Z)
    ("e046", "impression", "2024-02-29T14:58:00+01:00", K1, dict(count=10000, cost=200)),  # 5m
    ("e047", "click", "2024-02-29T14:52:30+01:00", K1, dict(count=20, cost=30)),           # 5m's previous
    ("e048", "lead", "2024-02-29T14:30:00+01:00", K1, dict(lead_id="L9")),                 # 1h
    ("e049", "lead", "2024-02-29T13:30:00+01:00", K1, dict(lead_id="L10")),                # 1h's previous
    ("e050", "deal", "2024-02-28T21:00:00+01:00", K1, dict(deal_id="D5", stage="won", amount=20000, created_ts="2024-01-18T10:00:00+01:00")),  # 1d
    ("e051", "lead", "2024-02-28T09:00:00+01:00", K1, dict(lead_id="L9", stage="mql")),    # 1d's previous
    ("e052", "session", "2024-02-24T12:00:00+01:00", K2, dict(count=90)),                  # 7d
    ("e053", "session", "2024-02-18T12:00:00+01:00", K2, dict(count=110)),                 # 7d's previous
    ("e054", "subscription", "2024-02-10T10:00:00+01:00", K1, dict(account_id="A3", change="contraction", mrr_delta=100)),
    # the month's edge, local midnight of February 1 (2024-01-31T23:00Z)
    ("e055", "lead", "2024-02-01T00:00:00+01:00", K1, dict(lead_id="L11", stage="sql")),   # exactly on it: mtd
    ("e056", "lead", "2024-01-31T23:30:00Z", K1, dict(lead_id="L12")),                     # 00:30 CET: mtd (January in UTC)
    ("e057", "lead", "2024-01-31T23:30:00+01:00", K1, dict(lead_id="L12", stage="mql")),   # last_month (February at +02:00)
    ("e058", "lead", "2024-01-31T22:59:59.999Z", K1, dict(lead_id="L11", stage="mql")),    # 1 ms before: last_month
    ("e059", "conversion", "2024-01-27T10:00:00+01:00", K1, dict(action="demo_request", count=4)),  # mtd's previous
    ("e060", "conversion", "2024-01-31T12:00:00+01:00", K1, dict(action="demo_request")),  # last_month, after mtd's previous
    # last_quarter's previous period starts 2023-07-01 00:00+02:00: with
    # mtd,last_quarter it is the late edge
    ("e061", "lead", "2023-06-30T23:59:59.999+02:00", K2, dict(lead_id="L13")),  # late with mtd,last_quarter
    ("e062", "lead", "2023-07-01T00:00:00+02:00", K2, dict(lead_id="L14")),      # on the edge: not late
    ("e063", "lead", "2023-05-12T10:00:00+02:00", K1, dict(lead_id="L5", stage="sql")),  # late with mtd,last_quarter
    # ytd's previous period starts 2022-04-01 00:00+02:00: the late edge
    ("e064", "lead", "2022-04-01T00:00:00+02:00", K1, dict(lead_id="L15", stage="mql")),      # on it: not late
    ("e065", "lead", "2022-03-31T23:59:59.999+02:00", K1, dict(lead_id="L16", stage="mql")),  # 1 ms before: late
    ("e066", "deal", "2023-11-20T12:00:00+01:00", K1, dict(deal_id="D6", stage="won", amount=5000, created_ts="2023-11-01T10:00:00+01:00")),
    ("e067", "session", "2024-02-05T12:00:00+01:00", K2, dict(count=80, bounces=20)),
    ("e068", "deal", "2024-02-12T10:00:00+01:00", K3, dict(deal_id="D7", stage="open", amount=12000)),
]


def main():
    for eid, typ, ts, (channel, campaign), fields in EVENTS:
        ev = {"id": eid, "type": typ, "ts": ts, "channel": channel, "campaign": campaign}
        ev.update(fields)
        sys.stdout.write(json.dumps(ev, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
