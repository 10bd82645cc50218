#!/usr/bin/env python3
"""Realistic event stream for funnelstream, deterministic by seed.

Usage:
    python3 tests/realistic/gen.py [--seed N] [--events N] > stream.ndjson
    python3 tests/realistic/gen.py --stats [--seed N] [--events N]   # what is in it (stderr)

Standard library only. The stream is what a real deployment sees when it is
pointed at a topic that already holds months of history (see README.md):

- about 60 campaigns across 10 channels, Zipf-distributed sizes (rank r gets a
  share proportional to 1 / r^1.2), plus `organic`, `direct` and events with
  neither `channel` nor `campaign`;
- 100 days of history ending at END. Everything older than END - 12 days is
  delivered first, SHUFFLED (a backfill / CRM re-sync); the last 12 days
  follow roughly in order, each event delayed by a random transport and
  producer delay (minutes, sometimes days), so they arrive out of order;
- exact resends (same bytes) of ~2% of the lines, each of a random earlier
  line at a log-uniform distance in arrival order, from the next line to the
  far end of the log: most resend events that are days or months older than
  engine time;
- late events (older than twice the longest window when they arrive), events of
  every EVENTS.md rejection reason except `too_large` (a third of them with
  the id of a valid event sent later, which must still count), future events (a `ts`
  in 2100..2199: ahead of any wall clock, so rejected as `future_timestamp` by
  both clocks: EVENTS.md measures future skew against the wall clock, not
  engine time), mixed timestamp forms (RFC 3339 with `Z`, offsets, fractions
  of up to nine digits that are exact milliseconds, lower-case `t`/`z`, and
  integer epoch milliseconds), unknown fields;
- leads moving new -> mql -> sql, deals opened and later won or lost (or
  still open), won deals whose `open` is before the history or never sent,
  and subscription accounts whose later events carry another campaign than
  their `new` (a last-touch attribution), so some keys' mrr_start and
  customers_start are negative.

Every valid event lies more than one bucket (W/60) plus a second away from
every window's trailing edge and its previous window's (now - W, now - 2W)
at the final engine time: such events are dropped by construction, so every
windowed series is exactly determined by the contract (`reference.py --check-margins` verifies it).
"""

import json
import math
import random
import re
import sys

DAY = 86_400_000
HOUR = 3_600_000
MINUTE = 60_000
END = 1_795_867_200_000  # 2026-11-28T12:00:00Z: in the past of any test run
HISTORY = 100 * DAY
LIVE_TAIL = 12 * DAY
WINDOWS_MS = [5 * MINUTE, HOUR, DAY, 7 * DAY, 30 * DAY, 90 * DAY]

CHANNELS = {  # channel -> (number of campaigns, type mix)
    "paid_search": (12, {"impression": 22, "click": 30, "lead": 25, "deal": 9, "spend": 4, "subscription": 10}),
    "paid_social": (10, {"impression": 30, "click": 22, "lead": 25, "deal": 8, "spend": 5, "subscription": 10}),
    "display": (6, {"impression": 45, "click": 25, "lead": 15, "deal": 5, "spend": 4, "subscription": 6}),
    "email": (8, {"click": 35, "lead": 30, "deal": 8, "spend": 7, "subscription": 20}),
    "referral": (4, {"click": 40, "lead": 35, "deal": 10, "subscription": 15}),
    "affiliates": (4, {"click": 35, "lead": 30, "deal": 10, "spend": 10, "subscription": 15}),
    "partner": (3, {"lead": 40, "deal": 30, "spend": 10, "subscription": 20}),
    "outbound": (5, {"lead": 35, "deal": 30, "spend": 15, "subscription": 20}),
    "organic": (1, {"click": 40, "lead": 35, "deal": 10, "subscription": 15}),
    "direct": (1, {"lead": 40, "deal": 25, "subscription": 35}),
}
OFFSETS = ["+02:00", "-05:00", "+05:30", "-04:00", "+01:00", "+09:00", "+00:00", "-00:00"]


class Gen:
    def __init__(self, seed, target):
        self.r = random.Random(seed)
        self.target = target
        self.seq = 0
        self.keys = []  # (channel or None, campaign or None, weight, mix)
        self.valid = []  # (ts, dict) valid, on-time events
        self.stats = {}

    def nid(self, prefix):
        self.seq += 1
        return "%s-%06d-%04x" % (prefix, self.seq, self.r.getrandbits(16))

    def count(self, what, n=1):
        self.stats[what] = self.stats.get(what, 0) + n

    # ---------------------------------------------------------- campaigns --

    def campaigns(self):
        r = self.r
        rank = 0
        names = []
        for ch, (n, mix) in CHANNELS.items():
            for i in range(n):
                if ch in ("organic", "direct"):
                    names.append((ch, None, mix))  # no campaign field: `none`
                else:
                    names.append((ch, "%s-%s-%02d" % (ch.replace("_", ""), r.choice(
                        ["brand", "q3", "q4", "abm", "retarget", "promo", "webinar", "nurture"]), i), mix))
        r.shuffle(names)  # sizes are not tied to the channel
        for ch, camp, mix in names:
            rank += 1
            self.keys.append((ch, camp, 1.0 / rank ** 1.2, mix))
        self.retention = [k for k in self.keys[30:] if k[3].get("subscription")][:6]
        # Self-serve checkouts and others with neither channel nor campaign.
        self.keys.append((None, None, 0.01, {"lead": 30, "deal": 30, "subscription": 40}))

    # ------------------------------------------------------------- events --

    def base(self, typ, key, ts):
        ch, camp = key[0], key[1]
        ev = {"id": self.nid(typ[:3]), "type": typ, "ts": ts}
        if ch is not None:
            ev["channel"] = ch
        if camp is not None:
            ev["campaign"] = camp
        return ev

    def money(self, lo, hi):
        cents = self.r.randint(int(lo * 100), int(hi * 100))
        if cents % 100 == 0 and self.r.random() < 0.5:
            return cents // 100  # a JSON integer
        return cents / 100.0

    def emit(self, ev):
        if ev["ts"] <= END:
            self.valid.append(ev)

    def activity(self, key, ts):
        r = self.r
        ch = key[0]
        mix = key[3]
        typ = r.choices(list(mix), weights=list(mix.values()))[0]
        if typ in ("impression", "click"):
            ev = self.base(typ, key, ts)
            if typ == "impression":
                n = r.randint(200, 20000)
                if r.random() > 0.05:
                    ev["count"] = n
                if ch in ("paid_social", "display") and r.random() < 0.9:
                    ev["cost"] = self.money(0.5, 300)  # CPM billing
            else:
                n = r.randint(1, 400)
                if n > 1 or r.random() < 0.5:
                    ev["count"] = n
                if ch in ("paid_search", "affiliates") or (ch == "paid_social" and r.random() < 0.2):
                    ev["cost"] = self.money(0.2, 900)  # CPC billing
            if r.random() < 0.1:
                ev["utm_source"] = r.choice(["google", "linkedin", "newsletter"])
            self.emit(ev)
        elif typ == "lead":
            lead = self.nid("L")
            ev = self.base("lead", key, ts)
            ev["lead_id"] = lead
            if r.random() < 0.6:
                ev["stage"] = "new"
            self.emit(ev)
            t = ts
            for stage, p in (("mql", 0.45), ("sql", 0.5)):
                if r.random() >= p:
                    break
                t += int(r.expovariate(1 / (3 * DAY)))
                ev = self.base("lead", key, t)
                ev["lead_id"] = lead
                ev["stage"] = stage
                self.emit(ev)
        elif typ == "deal":
            deal = self.nid("D")
            cycle = int(r.lognormvariate(math.log(20 * DAY), 0.8))
            amount = self.money(1000, 90000)
            if r.random() < 0.08:
                opened, send_open = ts - cycle, False  # open before the history or never sent
                closed = ts
            else:
                opened, send_open = ts, True
                closed = ts + cycle
            if send_open:
                ev = self.base("deal", key, opened)
                ev["deal_id"] = deal
                ev["stage"] = "open"
                if r.random() < 0.93:
                    ev["amount"] = amount
                self.emit(ev)
            if r.random() < 0.7 and closed <= END:
                won = r.random() < 0.45
                ev = self.base("deal", key, closed)
                ev["deal_id"] = deal
                ev["stage"] = "won" if won else "lost"
                if won or r.random() < 0.5:
                    ev["amount"] = amount
                ev["created_ts"] = opened
                self.emit(ev)
        elif typ == "spend":
            ev = self.base("spend", key, ts)
            cat = {"outbound": "salaries", "email": "tools", "partner": "agency"}.get(ch)
            if cat and r.random() < 0.8:
                ev["category"] = cat
                ev["amount"] = self.money(100, 9000)
            else:
                if r.random() < 0.5:
                    ev["category"] = "ads"
                ev["amount"] = self.money(10, 3000)
            self.emit(ev)
        elif typ == "subscription":
            self.account(key, ts)

    def account(self, key, ts):
        """An account's life: new, then expansions, contractions, a churn
        (of its whole MRR) and perhaps a reactivation. For a quarter of the
        accounts the later events carry another key, one of a few retention
        campaigns (the producer attributes them to the last touch): those keys
        see churns of MRR they never saw start, so their MRR and starting
        stocks go negative."""
        r = self.r
        acct = self.nid("A")
        later = key
        if r.random() < 0.25:
            later = r.choice(self.retention)
        cents = r.randint(5000, 400000)
        ev = self.base("subscription", key, ts)
        ev.update(account_id=acct, change="new", mrr_delta=cents / 100.0)
        self.emit(ev)
        t = ts
        active = True
        for _ in range(r.randint(0, 4)):
            t += int(r.expovariate(1 / (12 * DAY)))
            if active:
                change = r.choices(["expansion", "contraction", "churn"], weights=[4, 2, 2])[0]
            else:
                change = "reactivation"
            if change == "churn":
                delta = cents
            elif change == "contraction":
                delta = r.randint(1, max(1, cents // 2))
            else:
                delta = r.randint(2000, 150000)
            cents += {"churn": -delta, "contraction": -delta}.get(change, delta)
            ev = self.base("subscription", later, t)
            ev.update(account_id=acct, change=change, mrr_delta=delta / 100.0)
            self.emit(ev)
            active = change != "churn"

    # ------------------------------------------------------------ forms ----

    def render_ts(self, ms, force_rfc=False):
        """One of the contract's timestamp forms for `ms`."""
        r = self.r
        if not force_rfc and r.random() < 0.3:
            return ms  # integer epoch milliseconds
        off = 0
        suffix = "Z"
        x = r.random()
        if x < 0.4:
            o = r.choice(OFFSETS)
            sign = -1 if o[0] == "-" else 1
            off = sign * (int(o[1:3]) * 60 + int(o[4:6])) * MINUTE
            suffix = o
        elif x < 0.45:
            suffix = "z"
        local = ms + off
        secs, frac = divmod(local, 1000)
        days, sod = divmod(secs, 86400)
        y, m, d = civil_from_days(days)
        sep = "t" if r.random() < 0.03 else "T"
        s = "%04d-%02d-%02d%s%02d:%02d:%02d" % (y, m, d, sep, sod // 3600, sod // 60 % 60, sod % 60)
        y = r.random()
        if frac or y < 0.2:
            digits = "%03d" % frac
            if y < 0.5:
                digits = digits.rstrip("0") or "0"
            elif y < 0.8:
                digits += "0" * r.randint(1, 6)  # up to 9 digits, still exact ms
            s += "." + digits
        return s + suffix

    def line(self, ev):
        out = dict(ev)
        if "ts" in out:
            out["ts"] = self.render_ts(ev["ts"])
        if "created_ts" in out:
            out["created_ts"] = self.render_ts(ev["created_ts"])
        return json.dumps(out, separators=(",", ":")).encode()

    # ---------------------------------------------------------- rejected ---

    def invalid(self, now_hint):
        """(reason, line bytes) of one invalid event with exactly one defect."""
        r = self.r
        key = r.choice(self.keys[:20])
        ts = now_hint - r.randint(0, 5 * DAY)

        def ok_click():
            ev = self.base("click", key, ts)
            ev["count"] = r.randint(1, 50)
            return ev

        reason = r.choice([
            "invalid_json", "not_object", "missing_field", "wrong_type", "invalid_value",
            "invalid_number", "invalid_length", "invalid_timestamp", "future_timestamp",
            "created_after_ts"])
        ev = ok_click()
        if reason == "invalid_json":
            raw = self.line(ev)
            return reason, r.choice([raw[: len(raw) // 2], raw + b"}", b"{'id': 1}",
                                     raw.replace(b'"count"', b'count')])
        if reason == "not_object":
            return reason, r.choice([b"[1,2,3]", b'"heartbeat"', b"42", b"null", b"true"])
        if reason == "missing_field":
            which = r.choice(["id", "type", "ts", "lead_id", "deal_stage", "spend_amount",
                              "won_amount", "won_created", "sub_change"])
            if which in ("id", "type", "ts"):
                del ev[which]
            elif which == "lead_id":
                ev = self.base("lead", key, ts)
            elif which == "deal_stage":
                ev = self.base("deal", key, ts)
                ev["deal_id"] = self.nid("D")
            elif which == "spend_amount":
                ev = self.base("spend", key, ts)
            elif which == "won_amount":
                ev = self.base("deal", key, ts)
                ev.update(deal_id=self.nid("D"), stage="won", created_ts=ts - DAY)
            elif which == "won_created":
                ev = self.base("deal", key, ts)
                ev.update(deal_id=self.nid("D"), stage="won", amount=500)
            else:
                ev = self.base("subscription", key, ts)
                ev.update(account_id=self.nid("A"), mrr_delta=10)
        elif reason == "wrong_type":
            which = r.choice(["count", "channel_null", "id_num", "cost", "ts_bool"])
            if which == "count":
                ev["count"] = str(ev["count"])
            elif which == "channel_null":
                ev["channel"] = None
            elif which == "id_num":
                ev["id"] = r.randint(1, 10 ** 6)
            elif which == "cost":
                ev["cost"] = "12.50"
            else:
                ev["ts"] = True
                return reason, json.dumps(ev, separators=(",", ":")).encode()
        elif reason == "invalid_value":
            which = r.choice(["type", "stage", "change", "lead_stage"])
            if which == "type":
                ev["type"] = r.choice(["webinar", "pageview", "Click"])
            elif which == "stage":
                ev = self.base("deal", key, ts)
                ev.update(deal_id=self.nid("D"), stage="negotiation", amount=100)
            elif which == "lead_stage":
                ev = self.base("lead", key, ts)
                ev.update(lead_id=self.nid("L"), stage="opportunity")
            else:
                ev = self.base("subscription", key, ts)
                ev.update(account_id=self.nid("A"), change="downgrade", mrr_delta=10)
        elif reason == "invalid_number":
            which = r.choice(["neg_cost", "zero_count", "frac_count", "huge", "neg_mrr"])
            if which == "neg_cost":
                ev["cost"] = -1.25
            elif which == "zero_count":
                ev["count"] = 0
            elif which == "frac_count":
                ev["count"] = 2.5
            elif which == "huge":
                ev = self.base("spend", key, ts)
                ev["amount"] = 5e12
            else:
                ev = self.base("subscription", key, ts)
                ev.update(account_id=self.nid("A"), change="new", mrr_delta=-100)
        elif reason == "invalid_length":
            which = r.choice(["id_long", "id_empty", "channel_empty", "campaign_long"])
            if which == "id_long":
                ev["id"] = "x" * 129
            elif which == "id_empty":
                ev["id"] = ""
            elif which == "channel_empty":
                ev["channel"] = ""
            else:
                ev["campaign"] = "c" * 129
        elif reason == "invalid_timestamp":
            bad = r.choice(["2026-13-01T00:00:00Z", "2026-02-30T10:00:00Z",
                            "2026-11-18 23:59:00", "yesterday", "2026-11-18T25:00:00Z"])
            ev["ts"] = bad
            return reason, json.dumps(ev, separators=(",", ":")).encode()
        elif reason == "future_timestamp":
            ev["ts"] = r.randint(4_102_444_800_000, 7_258_118_399_999)  # 2100..2199
        elif reason == "created_after_ts":
            ev = self.base("deal", key, ts)
            ev.update(deal_id=self.nid("D"), stage="lost", created_ts=ts + r.randint(1, 3 * DAY))
        return reason, self.line(ev)

    # ------------------------------------------------------------ stream ---

    def build(self):
        r = self.r
        self.campaigns()
        start = END - HISTORY
        total_w = sum(k[2] for k in self.keys)
        # Activities (an account or a deal makes several events): ~0.8 event each.
        n_act = int(self.target * 0.80)
        for key in self.keys:
            n = max(3, int(round(n_act * key[2] / total_w)))
            for _ in range(n):
                self.activity(key, r.randint(start, END))
        # The final engine time is the greatest valid ts; pin it at END.
        last = self.base("click", self.keys[0], END)
        last["count"] = 1
        self.valid.append(last)
        now = END
        # Drop events near a trailing edge at `now`, and near the previous
        # window's (`now - 2W`) (by construction, see doc).
        kept = []
        for ev in self.valid:
            near = any(abs(ev["ts"] - (now - k * w)) <= w // 60 + 1000 for w in WINDOWS_MS for k in (1, 2))
            if near:
                self.count("dropped near a window edge")
            else:
                kept.append(ev)
        self.valid = kept
        # Arrival order: the backfill shuffled, then the live tail delayed.
        old = [e for e in self.valid if e["ts"] < END - LIVE_TAIL]
        new = [e for e in self.valid if e["ts"] >= END - LIVE_TAIL]
        r.shuffle(old)
        delayed = []
        for e in new:
            if e is last:
                d = 10 * DAY  # the last line
            elif r.random() < 0.03:
                d = int(r.expovariate(1 / (2 * DAY)))  # a producer catching up
            else:
                d = int(r.expovariate(1 / (10 * MINUTE)))
            delayed.append((e["ts"] + d, e["id"], e))
        delayed.sort(key=lambda x: (x[0], x[1]))
        seq = [self.line(e) for e in old] + [self.line(e) for _, _, e in delayed]
        self.count("valid on-time events", len(self.valid))
        self.count("of which backfill (shuffled)", len(old))
        self.count("of which live tail (delayed)", len(new))
        # Late events: older than twice the longest window (v2 publishes the
        # previous window) by 8..50 days when they arrive (in the live tail,
        # where engine time is at least END - LIVE_TAIL).
        n_late = max(5, self.target // 150)
        tail_start = len(old)
        for _ in range(n_late):
            ev = self.base(r.choice(["click", "lead", "spend"]), r.choice(self.keys),
                           r.randint(END - 230 * DAY, END - 200 * DAY))
            if ev["type"] == "lead":
                ev["lead_id"] = self.nid("L")
            elif ev["type"] == "spend":
                ev["amount"] = self.money(10, 500)
            pos = r.randint(tail_start + 1, len(seq) - 1)
            seq.insert(pos, self.line(ev))
        self.count("late", n_late)
        # Invalid and future events, anywhere.
        n_bad = max(11, self.target // 80)
        for _ in range(n_bad):
            reason, raw = self.invalid(END - r.randint(0, 60) * DAY)
            pos = r.randint(0, len(seq) - 1)
            # A third carry the id of a valid event sent later (a producer
            # fixing a bad record and sending it again): rejected events are
            # never remembered, so the later one counts.
            m = re.match(rb'\{"id":"([^"]*)"', raw)
            if m and reason not in ("invalid_length", "wrong_type") and r.random() < 0.33:
                later = re.match(rb'\{"id":"([^"]*)"', seq[r.randint(pos, len(seq) - 1)])
                if later:
                    raw = raw.replace(m.group(0), later.group(0), 1)
                    self.count("rejected with the id of a later valid event")
            seq.insert(pos, raw)
            self.count("rejected " + reason)
        # Blank lines are skipped by replay: a few.
        for _ in range(3):
            seq.insert(r.randint(1, len(seq) - 1), b"")
        # Exact resends: ~2%, log-uniform distance in arrival order. The last
        # line stays last.
        n = len(seq) - 1
        inserts = []
        for _ in range(int(n * 0.02)):
            i = r.randint(0, n - 1)
            if not seq[i]:
                continue
            span = n - i
            d = max(1, int(math.exp(r.uniform(0, math.log(span)))))
            inserts.append((i + d, r.random(), seq[i]))
        inserts.sort(key=lambda x: (x[0], x[1]))
        out = []
        j = 0
        for pos, line in enumerate(seq):
            while j < len(inserts) and inserts[j][0] == pos:
                out.append(inserts[j][2])
                j += 1
            out.append(line)
        self.count("resent lines", len(inserts))
        self.count("lines", len(out))
        return out


def civil_from_days(z):
    """Proleptic Gregorian (y, m, d) of days since 1970-01-01 (H. Hinnant)."""
    z += 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return y + (m <= 2), m, d


def main(argv):
    seed, target, stats = 15, 40000, False
    args = list(argv[1:])
    while args:
        a = args.pop(0)
        if a == "--seed":
            seed = int(args.pop(0))
        elif a == "--events":
            target = int(args.pop(0))
        elif a == "--stats":
            stats = True
        else:
            print(__doc__, file=sys.stderr)
            return 2
    g = Gen(seed, target)
    lines = g.build()
    if stats:
        for k, v in g.stats.items():
            print("%s: %d" % (k, v), file=sys.stderr)
        return 0
    out = sys.stdout.buffer
    for line in lines:
        out.write(line + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
