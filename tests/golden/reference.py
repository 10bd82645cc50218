#!/usr/bin/env python3
"""Independent reference implementation of funnelstream's replay output.

Usage:
    python3 tests/golden/reference.py tests/golden/events.ndjson > tests/golden/expected.prom
    python3 tests/golden/reference.py --check-margins tests/golden/events.ndjson
    python3 tests/golden/reference.py --classify tests/golden/events.ndjson
    python3 tests/golden/reference.py --v1-rules FILE   # diagnosis only, see V1_RULES
    python3 tests/golden/reference.py --calendar-windows mtd,qtd,ytd,last_month,last_quarter \
        --calendar-timezone Europe/Berlin --fiscal-year-start-month 4 FILE

It follows the contract (docs/contract/EVENTS.md and METRICS.md, v2, for
the v1 event types and families) and, where the contract leaves a choice, the
parsing details of docs/SEMANTICS.md, literally for
`funnelstream replay --clock event` with the default configuration:
windows 5m,1h,1d,7d,30d,90d; dedup horizon 24h of engine time after
acceptance; allowed lateness 0; max future skew 5m against the real wall
clock; max event size 1 MiB; dedup capacity 1,000,000; one partition; no
calendar windows unless given the engine's own flags `--calendar-windows`,
`--calendar-timezone` and `--fiscal-year-start-month` (issue 19: see the
section "calendar and previous windows").

Windows are the contract's exact `now - W < ts <= now`. The contract lets an
engine round to buckets of W/60, so an event within one bucket of a trailing
edge may or may not be counted: `--check-margins` lists every such event, and
every other case whose outcome the contract leaves open (a resend exactly one
dedup horizon after the original's acceptance, an event exactly at the late
boundary, a dedup memory past its capacity). Inputs used by the tests must
have none, so that every series printed here is exactly determined.

It prints one exposition series per line, `name{labels} value`, for every
series the engine must publish, except `funnel_build_info` and `funnel_series`.
Counts are integers, money is an exact decimal (micro-unit fixed point),
ratios are Python float reprs computed from exact fractions.

Standard library only. Deliberately simple: every window is recomputed from
the list of applied events at render time, nothing is incremental.
"""

import json
import re
import sys
import time
from decimal import Decimal, ROUND_HALF_EVEN
from fractions import Fraction

# ---------------------------------------------------------------- config ----

WINDOWS = [  # (label, milliseconds), in configured order
    ("5m", 5 * 60 * 1000),
    ("1h", 60 * 60 * 1000),
    ("1d", 24 * 60 * 60 * 1000),
    ("7d", 7 * 24 * 60 * 60 * 1000),
    ("30d", 30 * 24 * 60 * 60 * 1000),
    ("90d", 90 * 24 * 60 * 60 * 1000),
]
DEDUP_HORIZON_MS = 24 * 60 * 60 * 1000
DEDUP_CAPACITY = 1_000_000
ALLOWED_LATENESS_MS = 0
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000
MAX_EVENT_BYTES = 1024 * 1024

MAX_COUNT = 2**53 - 1
MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_MONEY = Decimal(10) ** 12
MICRO = 10**6

TYPES = ["impression", "click", "lead", "deal", "spend", "subscription"]
LEAD_STAGES = ["new", "mql", "sql"]
DEAL_STAGES = ["open", "won", "lost"]
CHANGES = ["new", "expansion", "contraction", "churn", "reactivation"]
REASONS = [
    "too_large", "invalid_json", "not_object", "missing_field", "wrong_type",
    "invalid_value", "invalid_number", "invalid_length", "invalid_timestamp",
    "future_timestamp", "created_after_ts",
]
HEALTH_LABELS = ["channel", "campaign", "action", "key"]  # funnel_label_overflow_total{label}

# Diagnosis only (`--v1-rules`): the two rules issue 15 corrected, as v1 and
# docs/SEMANTICS.md stated them before: an id was a duplicate while the `ts`
# of its last accepted copy was within a 1h horizon of `now`, and KPIs over a
# starting stock were absent only while it was exactly 0. Comparing an engine
# with this output tells whether its remaining differences from the contract
# come from these two rules and nothing else. Never used for expectations.
V1_RULES = False


class Reject(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------- parsing ----

def _no_constants(name):
    # NaN, Infinity, -Infinity are not JSON.
    raise ValueError("non-JSON constant " + name)


def _check_json_values(v):
    """Reject what a strict JSON reader into doubles/strings would reject:
    numbers out of the double range and strings with lone surrogates."""
    if isinstance(v, dict):
        for k, x in v.items():
            _check_json_values(k)
            _check_json_values(x)
    elif isinstance(v, list):
        for x in v:
            _check_json_values(x)
    elif isinstance(v, bool) or v is None:
        pass
    elif isinstance(v, (int, Decimal)):
        try:
            f = float(v)
        except OverflowError:
            raise Reject("invalid_json")
        if f in (float("inf"), float("-inf")):
            raise Reject("invalid_json")
    elif isinstance(v, str):
        if any(0xD800 <= ord(c) <= 0xDFFF for c in v):
            raise Reject("invalid_json")


def parse_line(raw):
    """bytes -> dict, or raise Reject for too_large/invalid_json/not_object."""
    if len(raw) > MAX_EVENT_BYTES:
        raise Reject("too_large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Reject("invalid_json")
    try:
        # Duplicate keys: the last occurrence wins (dict semantics).
        value = json.loads(text, parse_float=Decimal, parse_int=int,
                           parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise Reject("invalid_json")
    _check_json_values(value)
    if not isinstance(value, dict):
        raise Reject("not_object")
    return value


def is_number(v):
    return (isinstance(v, int) and not isinstance(v, bool)) or isinstance(v, Decimal)


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def days_in_month(y, m):
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    return 30 if m in (4, 6, 9, 11) else 31


RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))\Z"
)


def parse_rfc3339(s):
    """RFC 3339 string -> epoch ms, or None. SEMANTICS.md "Time"."""
    m = RFC3339.match(s)
    if not m:
        return None
    y, mo, d, hh, mi, ss = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= days_in_month(y, mo)):
        return None
    if not (hh <= 23 and mi <= 59 and ss <= 60):
        return None
    if ss == 60:
        # Leap second: the first millisecond of the next minute.
        ss, frac_ms = 60, 0
    else:
        frac = m.group(7)
        frac_ms = int((frac[1:] + "000")[:3]) if frac else 0  # truncate
    offset_ms = 0
    if m.group(9):
        oh, om = int(m.group(10)), int(m.group(11))
        if not (oh <= 23 and om <= 59):
            return None
        offset_ms = (oh * 60 + om) * 60 * 1000
        if m.group(9) == "-":
            offset_ms = -offset_ms
    secs = days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss
    return secs * 1000 + frac_ms - offset_ms


def parse_timestamp(v):
    """ts / created_ts -> epoch ms (raises wrong_type / invalid_timestamp)."""
    if isinstance(v, str):
        ms = parse_rfc3339(v)
        if ms is None:
            raise Reject("invalid_timestamp")
        return ms
    if is_number(v):
        if isinstance(v, Decimal):
            if v != v.to_integral_value():
                raise Reject("invalid_timestamp")
            v = int(v)  # an integral JSON float is accepted as that integer
        if not 0 <= v <= MAX_TS_MS:
            raise Reject("invalid_timestamp")
        return v
    raise Reject("wrong_type")


# ------------------------------------------------------------ validation ----

def get_string(obj, key, required, default=None, max_bytes=None):
    if key not in obj:
        if required:
            raise Reject("missing_field")
        return default
    v = obj[key]
    if not isinstance(v, str):
        raise Reject("wrong_type")  # null included
    if max_bytes is not None and not 1 <= len(v.encode("utf-8")) <= max_bytes:
        raise Reject("invalid_length")
    return v


def get_enum(obj, key, required, allowed, default=None):
    v = get_string(obj, key, required, default)
    if v not in allowed:
        raise Reject("invalid_value")
    return v


def get_count(obj, key):
    if key not in obj:
        return 1
    v = obj[key]
    if not is_number(v):
        raise Reject("wrong_type")
    if isinstance(v, Decimal):
        if v != v.to_integral_value():
            raise Reject("invalid_number")
        v = int(v)
    if not 1 <= v <= MAX_COUNT:
        raise Reject("invalid_number")
    return v


def get_money(obj, key, required):
    """-> integer micro-units."""
    if key not in obj:
        if required:
            raise Reject("missing_field")
        return 0
    v = obj[key]
    if not is_number(v):
        raise Reject("wrong_type")
    d = Decimal(v)
    if d < 0 or d > MAX_MONEY:
        raise Reject("invalid_number")
    return int((d * MICRO).to_integral_value(rounding=ROUND_HALF_EVEN))


def get_ts(obj, key, required):
    if key not in obj:
        if required:
            raise Reject("missing_field")
        return None
    return parse_timestamp(obj[key])


def validate(obj, wall_ms):
    """dict -> normalized event dict, or raise Reject. Check order per
    SEMANTICS.md: type, id, ts, channel, campaign, the type's own fields in
    EVENTS.md table order, future_timestamp, created_after_ts."""
    ev = {}
    ev["type"] = t = get_enum(obj, "type", True, TYPES)
    ev["id"] = get_string(obj, "id", True, max_bytes=128)
    ev["ts"] = get_ts(obj, "ts", True)
    ev["channel"] = get_string(obj, "channel", False,
                               "email" if t == "email" else "unknown", max_bytes=64)
    ev["campaign"] = get_string(obj, "campaign", False, "none", max_bytes=128)
    created = None
    if t in ("impression", "click"):
        ev["count"] = get_count(obj, "count")
        ev["cost"] = get_money(obj, "cost", False)
    elif t == "lead":
        get_string(obj, "lead_id", True)
        ev["stage"] = get_enum(obj, "stage", False, LEAD_STAGES, "new")
    elif t == "deal":
        ev["deal_id"] = get_string(obj, "deal_id", True)
        ev["stage"] = stage = get_enum(obj, "stage", True, DEAL_STAGES)
        ev["amount"] = get_money(obj, "amount", stage == "won")
        created = get_ts(obj, "created_ts", stage in ("won", "lost"))
        ev["created_ts"] = created
        v2_deal_fields(obj, ev)
    elif t in V2_TYPES:
        v2_validate(obj, ev)
    elif t == "spend":
        ev["amount"] = get_money(obj, "amount", True)
        ev["category"] = get_string(obj, "category", False, "ads")
    elif t == "subscription":
        get_string(obj, "account_id", True)
        ev["change"] = get_enum(obj, "change", True, CHANGES)
        ev["mrr_delta"] = get_money(obj, "mrr_delta", True)
    if ev["ts"] > wall_ms + MAX_FUTURE_SKEW_MS:
        raise Reject("future_timestamp")
    if created is not None and created > ev["ts"]:
        raise Reject("created_after_ts")
    return ev


# ---------------------------------------------------------------- engine ----

class KeyState:
    def __init__(self):
        self.impressions = 0
        self.clicks = 0
        self.leads = {s: 0 for s in LEAD_STAGES}
        self.deals = {s: 0 for s in DEAL_STAGES}
        self.revenue_won = 0  # micro
        self.ad_spend = 0     # micro
        self.spend = 0        # micro
        self.mrr_movement = {c: 0 for c in CHANGES}  # micro, magnitudes
        self.mrr = 0          # micro, signed
        self.customers = 0
        self.windowed = []    # applied, non-late events (normalized dicts)
        self.v2 = V2KeyTotals()


class Replay:
    def __init__(self, wall_ms):
        self.wall_ms = wall_ms
        self.now = None
        self.dedup = {}       # id -> engine time when it was last accepted
        self.accepted = 0     # ids ever remembered (capacity check)
        self.open_cases = []  # outcomes the contract leaves open (--check-margins)
        self.keys = {}        # (channel, campaign) -> KeyState
        self.deals = {}       # deal_id -> {"closed": bool, "open": (micro, key) | None}
        self.ingested = {t: 0 for t in TYPES}
        self.rejected = {r: 0 for r in REASONS}
        self.duplicates = 0
        self.late = 0
        self.fields_ignored = {f: 0 for f in IGNORABLE_FIELDS}
        self.trace = []       # (line number, outcome) for --classify

    def feed(self, lineno, raw):
        if raw.strip(b" \t\r\n") == b"":
            self.trace.append((lineno, "skipped (blank)"))
            return
        try:
            ev = validate(parse_line(raw), self.wall_ms)
        except Reject as r:
            self.rejected[r.reason] += 1
            self.trace.append((lineno, "rejected " + r.reason
                               + (" (cross-field)" if getattr(r, "cross_field", False) else "")))
            return
        # Engine time first (event clock: greatest ts of any valid event).
        self.now = ev["ts"] if self.now is None else max(self.now, ev["ts"])
        ts_eff = min(ev["ts"], self.now)
        ev["ts_eff"] = ts_eff
        # Deduplication (EVENTS.md, Duplicates): an accepted id is remembered
        # for the dedup horizon of engine time after its acceptance, whatever
        # its `ts`; a duplicate is not an acceptance and renews nothing.
        seen = self.dedup.get(ev["id"])
        if V1_RULES:
            if seen is not None and seen >= self.now - 60 * 60 * 1000:
                self.duplicates += 1
                self.trace.append((lineno, "duplicate"))
                return
            self.dedup[ev["id"]] = ts_eff
        else:
            if seen is not None:
                age = self.now - seen
                if abs(age - DEDUP_HORIZON_MS) <= 1000:
                    self.open_cases.append(
                        "line %d: id %r resent %d ms after its acceptance, within 1 s "
                        "of the dedup horizon" % (lineno, ev["id"], age))
                if age <= DEDUP_HORIZON_MS:
                    self.duplicates += 1
                    self.trace.append((lineno, "duplicate"))
                    return
            self.dedup[ev["id"]] = self.now
        self.accepted += 1
        if self.accepted == DEDUP_CAPACITY + 1:
            self.open_cases.append("line %d: more than %d accepted ids: the dedup "
                                   "memory may evict" % (lineno, DEDUP_CAPACITY))
        # Late (EVENTS.md v2: older than the oldest span any family covers,
        # twice the longest rolling window or the start of the previous
        # period of the oldest calendar window): counted in the all-time
        # totals and current state, in no window.
        edge, exact = late_edge(self.now)
        if not exact and abs(ts_eff - edge) <= 1:
            self.open_cases.append("line %d: ts within 1 ms of the late boundary" % lineno)
        late = ts_eff < edge
        self.apply(ev, late)
        self.ingested[ev["type"]] += 1
        if late:
            self.late += 1
        self.trace.append((lineno, "accepted%s %s/%s" % (
            " LATE" if late else "", ev["channel"], ev["campaign"])))

    def apply(self, ev, late):
        key = (ev["channel"], ev["campaign"])
        k = self.keys.setdefault(key, KeyState())
        t = ev["type"]
        if t == "impression":
            k.impressions += ev["count"]
            k.ad_spend += ev["cost"]
            k.spend += ev["cost"]
        elif t == "click":
            k.clicks += ev["count"]
            k.ad_spend += ev["cost"]
            k.spend += ev["cost"]
        elif t == "lead":
            k.leads[ev["stage"]] += 1
        elif t == "deal":
            k.deals[ev["stage"]] += 1
            d = self.deals.setdefault(ev["deal_id"], {"closed": False, "open": None})
            if ev["stage"] == "won":
                k.revenue_won += ev["amount"]
            if ev["stage"] in ("won", "lost"):
                d["closed"] = True
                d["open"] = None
            elif not d["closed"]:
                d["open"] = (ev["amount"], key)
        elif t == "spend":
            if ev["category"] == "ads":
                k.ad_spend += ev["amount"]
            k.spend += ev["amount"]
        elif t == "subscription":
            c, m = ev["change"], ev["mrr_delta"]
            k.mrr_movement[c] += m
            k.mrr += -m if c in ("contraction", "churn") else m
            k.customers += {"new": 1, "reactivation": 1, "churn": -1}.get(c, 0)
        v2_apply(self, k, ev)
        if not late:
            k.windowed.append(ev)

    # ------------------------------------------------------------ render ----

    def window_events(self, k, span):
        # METRICS.md, exactly: now - W < ts <= now for a rolling window (see
        # --check-margins); a span is (lo, lo included, hi, hi included).
        return [e for e in k.windowed if in_span(e["ts_eff"], span)]

    def views(self):
        """Every published window (rolling, then calendar), computed once."""
        if getattr(self, "_views", None) is None or self._views_now != self.now:
            self._views = all_views(self.now)
            self._views_now = self.now
        return self._views

    def render(self):
        out = []  # (name, [(label, value), ...], value string)
        for key in sorted(self.keys):
            self.render_key(key, self.keys[key], out)
        lines = []
        for name, labels, value in out:
            lines.append("%s{%s} %s" % (name, ",".join(
                '%s="%s"' % (n, escape(v)) for n, v in labels), value))
        for t in TYPES:
            lines.append('funnel_events_ingested_total{type="%s"} %d' % (t, self.ingested[t]))
        for r in REASONS:
            lines.append('funnel_events_rejected_total{reason="%s"} %d' % (r, self.rejected[r]))
        lines.append("funnel_events_duplicate_total %d" % self.duplicates)
        lines.append("funnel_events_late_total %d" % self.late)
        for lab in HEALTH_LABELS:
            lines.append('funnel_label_overflow_total{label="%s"} 0' % lab)
        for f in IGNORABLE_FIELDS:
            lines.append('funnel_fields_ignored_total{field="%s"} %d' % (f, self.fields_ignored[f]))
        lines.append("funnel_dedup_evicted_total 0")
        lines.append("funnel_deals_untracked_total 0")
        return lines

    def render_key(self, key, k, out):
        ch, camp = key
        base = [("channel", ch), ("campaign", camp)]
        sums = [(v["label"], view_sums(self, k, v)) for v in self.views()]

        def windowed(name, fn, fmt):
            for wl, s in sums:
                out.append((name, base + [("window", wl)], fmt(fn(s))))

        for name, field, fmt in WINDOWED_COUNTS:
            windowed(name, lambda s, f=field: s[f], fmt)
        for name, fn in KPIS:
            for wl, s in sums:
                v = fn(s, k)
                if v is not None:
                    out.append((name, base + [("window", wl)], fmt_ratio(v)))
        # Current state.
        out.append(("funnel_mrr", base, fmt_money(k.mrr)))
        out.append(("funnel_customers", base, str(k.customers)))
        pipeline = 0
        for d in self.deals.values():
            if d["open"] is not None and d["open"][1] == key:
                pipeline += d["open"][0]
        out.append(("funnel_open_pipeline_value", base, fmt_money(pipeline)))
        # All-time counters.
        out.append(("funnel_impressions_total", base, str(k.impressions)))
        out.append(("funnel_clicks_total", base, str(k.clicks)))
        for s in LEAD_STAGES:
            out.append(("funnel_leads_total", base + [("stage", s)], str(k.leads[s])))
        for s in DEAL_STAGES:
            out.append(("funnel_deals_total", base + [("stage", s)], str(k.deals[s])))
        out.append(("funnel_revenue_won_total", base, fmt_money(k.revenue_won)))
        out.append(("funnel_ad_spend_total", base, fmt_money(k.ad_spend)))
        out.append(("funnel_spend_total", base, fmt_money(k.spend)))
        for c in CHANGES:
            out.append(("funnel_mrr_movement_total", base + [("change", c)],
                        fmt_money(k.mrr_movement[c])))
        v2_render_key(self, key, k, sums, out)
        growth_render_key(self, key, k, sums, out)


def window_sums(events):
    s = {f: 0 for f in (
        "impressions", "clicks", "leads", "mqls", "sqls", "opportunities",
        "won", "lost", "revenue_won", "ad_spend", "spend", "mrr_new",
        "mrr_expansion", "mrr_reactivation", "mrr_contraction", "mrr_churned",
        "customers_new", "customers_churned", "customers_reactivated")}
    s["cycles_ms"] = []
    for e in events:
        t = e["type"]
        if t == "impression":
            s["impressions"] += e["count"]
            s["ad_spend"] += e["cost"]
            s["spend"] += e["cost"]
        elif t == "click":
            s["clicks"] += e["count"]
            s["ad_spend"] += e["cost"]
            s["spend"] += e["cost"]
        elif t == "lead":
            s[{"new": "leads", "mql": "mqls", "sql": "sqls"}[e["stage"]]] += 1
        elif t == "deal":
            if e["stage"] == "open":
                s["opportunities"] += 1
            elif e["stage"] == "won":
                s["won"] += 1
                s["revenue_won"] += e["amount"]
                s["cycles_ms"].append(e["ts"] - e["created_ts"])  # own ts
            else:
                s["lost"] += 1
        elif t == "spend":
            if e["category"] == "ads":
                s["ad_spend"] += e["amount"]
            s["spend"] += e["amount"]
        elif t == "subscription":
            c, m = e["change"], e["mrr_delta"]
            field = {"new": "mrr_new", "expansion": "mrr_expansion",
                     "reactivation": "mrr_reactivation",
                     "contraction": "mrr_contraction", "churn": "mrr_churned"}[c]
            s[field] += m
            if c == "new":
                s["customers_new"] += 1
            elif c == "churn":
                s["customers_churned"] += 1
            elif c == "reactivation":
                s["customers_reactivated"] += 1
    return s


# ------------------------------------------------------------- formulas ----

def money(micro):
    return Fraction(micro, MICRO)


def ratio(num, den):
    """Exact num/den, or None (series absent) when den is exactly 0."""
    den = Fraction(den)
    return None if den == 0 else Fraction(num) / den


def stock_ratio(num, stock):
    """num/stock for a KPI over a starting stock (mrr_start, customers_start):
    absent while the stock is not positive (METRICS.md, v2)."""
    if V1_RULES:
        return ratio(num, stock)
    stock = Fraction(stock)
    return None if stock <= 0 else Fraction(num) / stock


def mrr_net_movement(s):
    return (s["mrr_new"] + s["mrr_expansion"] + s["mrr_reactivation"]
            - s["mrr_contraction"] - s["mrr_churned"])


def customers_net_change(s):
    return s["customers_new"] + s["customers_reactivated"] - s["customers_churned"]


def mrr_start(s, k):
    """Current MRR minus the net movement of every subscription event from
    the window's start until now (for windows ending now, the window's own)."""
    return money(k.mrr - s.get("since_mrr_net", mrr_net_movement(s)))


def customers_start(s, k):
    return k.customers - s.get("since_customers_net", customers_net_change(s))


def cycle_mean_s(s):
    c = s["cycles_ms"]
    return Fraction(sum(c), len(c) * 1000) if c else None


def nearest_rank_s(s, p):
    c = sorted(s["cycles_ms"])
    if not c:
        return None
    rank = -(-(p * len(c)) // 100)  # ceil(p/100 * n), exact integer arithmetic
    return Fraction(c[rank - 1], 1000)


def velocity(s, k):
    mean = cycle_mean_s(s)
    if s["won"] == 0 or not mean:
        return None
    avg_deal = money(s["revenue_won"]) / s["won"]
    win = Fraction(s["won"], s["won"] + s["lost"])
    return s["opportunities"] * avg_deal * win / (mean / 86400)


KPIS = [
    ("funnel_ctr_ratio", lambda s, k: ratio(s["clicks"], s["impressions"])),
    ("funnel_cpc", lambda s, k: ratio(money(s["ad_spend"]), s["clicks"])),
    ("funnel_cpm", lambda s, k: None if s["impressions"] == 0
        else money(s["ad_spend"]) / s["impressions"] * 1000),
    ("funnel_cpl", lambda s, k: ratio(money(s["spend"]), s["leads"])),
    ("funnel_cost_per_mql", lambda s, k: ratio(money(s["spend"]), s["mqls"])),
    ("funnel_click_to_lead_ratio", lambda s, k: ratio(s["leads"], s["clicks"])),
    ("funnel_lead_to_mql_ratio", lambda s, k: ratio(s["mqls"], s["leads"])),
    ("funnel_mql_to_sql_ratio", lambda s, k: ratio(s["sqls"], s["mqls"])),
    ("funnel_sql_to_opportunity_ratio", lambda s, k: ratio(s["opportunities"], s["sqls"])),
    ("funnel_win_ratio", lambda s, k: ratio(s["won"], s["won"] + s["lost"])),
    ("funnel_lead_to_customer_ratio", lambda s, k: ratio(s["won"], s["leads"])),
    ("funnel_avg_deal_size", lambda s, k: ratio(money(s["revenue_won"]), s["won"])),
    ("funnel_cac", lambda s, k: ratio(money(s["spend"]), s["won"])),
    ("funnel_roas_ratio", lambda s, k: ratio(money(s["revenue_won"]), money(s["ad_spend"]))),
    ("funnel_roi_ratio", lambda s, k: ratio(money(s["revenue_won"] - s["spend"]), money(s["spend"]))),
    ("funnel_sales_cycle_mean_seconds", lambda s, k: cycle_mean_s(s)),
    ("funnel_sales_cycle_p50_seconds", lambda s, k: nearest_rank_s(s, 50)),
    ("funnel_sales_cycle_p90_seconds", lambda s, k: nearest_rank_s(s, 90)),
    ("funnel_pipeline_velocity", velocity),
    ("funnel_nrr_ratio", lambda s, k: stock_ratio(
        mrr_start(s, k) + money(s["mrr_expansion"] + s["mrr_reactivation"]
                                - s["mrr_contraction"] - s["mrr_churned"]),
        mrr_start(s, k))),
    ("funnel_gross_mrr_churn_ratio", lambda s, k: stock_ratio(
        money(s["mrr_contraction"] + s["mrr_churned"]), mrr_start(s, k))),
    ("funnel_customer_churn_ratio", lambda s, k: stock_ratio(
        s["customers_churned"], customers_start(s, k))),
]


# ------------------------------------------------------------ formatting ----

def fmt_money(micro):
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    frac_s = ("%06d" % frac).rstrip("0")
    return sign + str(whole) + ("." + frac_s if frac_s else "")


def fmt_ratio(x):
    return repr(float(x))


def escape(v):
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


WINDOWED_COUNTS = [
    ("funnel_impressions", "impressions", str),
    ("funnel_clicks", "clicks", str),
    ("funnel_leads", "leads", str),
    ("funnel_mqls", "mqls", str),
    ("funnel_sqls", "sqls", str),
    ("funnel_opportunities", "opportunities", str),
    ("funnel_deals_won", "won", str),
    ("funnel_deals_lost", "lost", str),
    ("funnel_revenue_won", "revenue_won", fmt_money),
    ("funnel_ad_spend", "ad_spend", fmt_money),
    ("funnel_spend", "spend", fmt_money),
    ("funnel_mrr_new", "mrr_new", fmt_money),
    ("funnel_mrr_expansion", "mrr_expansion", fmt_money),
    ("funnel_mrr_reactivation", "mrr_reactivation", fmt_money),
    ("funnel_mrr_contraction", "mrr_contraction", fmt_money),
    ("funnel_mrr_churned", "mrr_churned", fmt_money),
    ("funnel_customers_new", "customers_new", str),
    ("funnel_customers_churned", "customers_churned", str),
    ("funnel_customers_reactivated", "customers_reactivated", str),
]


# ------------------------------------------------------- v2 (issue 18) ----
# EVENTS.md v2 (deal origin/influenced, session, conversion, email, survey)
# and METRICS.md v2 (their windowed counts, KPIs, current state, counters,
# and the rule that a key publishes a group's families only once it has
# received an event of that group). Written from the contract only.
# Settings are the defaults: gross_margin 1, the default channel -> origin
# mapping, max_actions 50 (this file's data stays below it).

V2_TYPES = ["session", "conversion", "email", "survey"]
TYPES = TYPES + V2_TYPES
ORIGINS = ["marketing", "sales", "partner", "other"]
EMAIL_ACTIONS = ["sent", "delivered", "bounced", "opened", "clicked",
                 "subscribed", "unsubscribed", "complained"]
SURVEY_KINDS = ["nps", "csat"]
IGNORABLE_FIELDS = ["origin", "influenced"]
GROSS_MARGIN = Fraction(1)
CHANNEL_ORIGINS = {"outbound": "sales", "partner": "partner", "unknown": "other"}
MONTH_MS = 30 * 86400 * 1000


def get_int_in(obj, key, lo, hi, required, default):
    """An integer field within lo..=hi (integral floats accepted)."""
    if key not in obj:
        if required:
            raise Reject("missing_field")
        return default
    v = obj[key]
    if not is_number(v):
        raise Reject("wrong_type")
    if isinstance(v, Decimal):
        if v != v.to_integral_value():
            raise Reject("invalid_number")
        v = int(v)
    if not lo <= v <= hi:
        raise Reject("invalid_number")
    return v


def cross_field(ok, obj, key, default):
    """A session field within its own range: check it against `count`
    (invalid_number, marked cross-field: JSON Schema cannot say it)."""
    if not ok:
        r = Reject("invalid_number")
        r.cross_field = True
        raise r
    if key not in obj:
        return default
    v = obj[key]
    return int(v)


def v2_deal_fields(obj, ev):
    """Lenient: an invalid origin/influenced is read as the default and
    noted in ev["ignored"]; influenced is read on won only."""
    ev["ignored"] = []
    origin = None
    if "origin" in obj:
        if isinstance(obj["origin"], str) and obj["origin"] in ORIGINS:
            origin = obj["origin"]
        else:
            ev["ignored"].append("origin")
    if origin is None:
        origin = CHANNEL_ORIGINS.get(ev["channel"], "marketing")
    ev["origin"] = origin
    ev["influenced"] = False
    if ev["stage"] == "won" and "influenced" in obj:
        if isinstance(obj["influenced"], bool):
            ev["influenced"] = obj["influenced"]
        else:
            ev["ignored"].append("influenced")


def v2_validate(obj, ev):
    t = ev["type"]
    if t == "session":
        n = ev["count"] = get_count(obj, "count")
        ev["pageviews"] = cross_field(get_int_in(obj, "pageviews", 1, MAX_COUNT, False, n) >= n,
                                      obj, "pageviews", n)
        ev["bounces"] = cross_field(get_int_in(obj, "bounces", 0, MAX_COUNT, False, 0) <= n,
                                    obj, "bounces", 0)
        ev["engaged"] = cross_field(get_int_in(obj, "engaged", 0, MAX_COUNT, False, 0) <= n,
                                    obj, "engaged", n - ev["bounces"])
    elif t == "conversion":
        ev["action"] = get_string(obj, "action", False, "conversion", max_bytes=64)
        ev["count"] = get_count(obj, "count")
        ev["value"] = get_money(obj, "value", False)
    elif t == "email":
        ev["action"] = get_enum(obj, "action", True, EMAIL_ACTIONS)
        ev["count"] = get_count(obj, "count")
    elif t == "survey":
        ev["kind"] = kind = get_enum(obj, "kind", False, SURVEY_KINDS, "nps")
        lo, hi = (0, 10) if kind == "nps" else (1, 5)
        ev["score"] = get_int_in(obj, "score", lo, hi, True, None)


class V2KeyTotals:
    def __init__(self):
        self.groups = set()   # "deal", "web", "email", "survey", "subs"
        self.pipeline_created = 0  # micro
        self.sessions = 0
        self.pageviews = 0
        self.conversions = {}  # action -> count
        self.email = {a: 0 for a in EMAIL_ACTIONS}
        self.survey = {k: 0 for k in SURVEY_KINDS}


def v2_apply(replay, k, ev):
    """All-time v2 state of an applied event (late ones included)."""
    v = k.v2
    t = ev["type"]
    if t == "deal":
        v.groups.add("deal")
        for f in ev["ignored"]:
            replay.fields_ignored[f] += 1
        if ev["stage"] == "open":
            v.pipeline_created += ev["amount"]
    elif t == "subscription":
        v.groups.add("subs")
    elif t == "session":
        v.groups.add("web")
        v.sessions += ev["count"]
        v.pageviews += ev["pageviews"]
    elif t == "conversion":
        v.conversions[ev["action"]] = v.conversions.get(ev["action"], 0) + ev["count"]
    elif t == "email":
        v.groups.add("email")
        v.email[ev["action"]] += ev["count"]
    elif t == "survey":
        v.groups.add("survey")
        v.survey[ev["kind"]] += 1


def v2_window_sums(events):
    s = {"pipeline_created": 0, "won_influenced": 0, "revenue_influenced": 0,
         "sessions": 0, "pageviews": 0, "bounces": 0, "engaged": 0,
         "nps": 0, "promoters": 0, "passives": 0, "detractors": 0,
         "csat": 0, "satisfied": 0}
    for o in ORIGINS:
        s["won_" + o] = s["revenue_" + o] = s["pipeline_" + o] = 0
    for a in EMAIL_ACTIONS:
        s["email_" + a] = 0
    s["conversions"] = {}  # action -> [count, value micro]
    for e in events:
        t = e["type"]
        if t == "deal":
            o = e["origin"]
            if e["stage"] == "open":
                s["pipeline_created"] += e["amount"]
                s["pipeline_" + o] += e["amount"]
            elif e["stage"] == "won":
                s["won_" + o] += 1
                s["revenue_" + o] += e["amount"]
                if e["influenced"]:
                    s["won_influenced"] += 1
                    s["revenue_influenced"] += e["amount"]
        elif t == "session":
            for f in ("pageviews", "bounces", "engaged"):
                s[f] += e[f]
            s["sessions"] += e["count"]
        elif t == "conversion":
            c = s["conversions"].setdefault(e["action"], [0, 0])
            c[0] += e["count"]
            c[1] += e["value"]
        elif t == "email":
            s["email_" + e["action"]] += e["count"]
        elif t == "survey":
            if e["kind"] == "nps":
                s["nps"] += 1
                sc = e["score"]
                s["promoters" if sc >= 9 else "passives" if sc >= 7 else "detractors"] += 1
            else:
                s["csat"] += 1
                s["satisfied"] += 1 if e["score"] >= 4 else 0
    return s


def v2_ltv(s, w, k, w_ms):
    """arpa * gm / monthly churn; arpa = MRR / customers (both > 0),
    monthly churn = customer_churn_ratio * month / W (> 0)."""
    if k.mrr <= 0 or k.customers <= 0:
        return None
    start = customers_start(s, k)
    if start <= 0:
        return None
    churn = Fraction(s["customers_churned"], start)
    if w_ms <= 0:
        return None  # a to-date window at its very first instant: no rate
    monthly = churn * MONTH_MS / w_ms
    if monthly <= 0:
        return None
    arpa = money(k.mrr) / k.customers
    return arpa * GROSS_MARGIN / monthly


def v2_render_key(replay, key, k, sums, out):
    ch, camp = key
    base = [("channel", ch), ("campaign", camp)]
    v = k.v2
    wins = {wl: s["_view"]["w_ms"] for wl, s in sums}
    v2s = [(wl, s, s["_v2"]) for wl, s in sums]

    def windowed(name, fn, fmt, extra=()):
        for wl, s, x in v2s:
            val = fn(s, x, wl)
            if val is not None:
                out.append((name, base + list(extra) + [("window", wl)], fmt(val)))

    def over_stock(num, stock):
        return None if stock <= 0 else Fraction(num) / stock

    def mrr_net(s):
        return (s["mrr_new"] + s["mrr_expansion"] + s["mrr_reactivation"]
                - s["mrr_contraction"] - s["mrr_churned"])

    # Windowed counts, by group.
    if "deal" in v.groups:
        windowed("funnel_pipeline_created", lambda s, x, wl: x["pipeline_created"], fmt_money)
        for o in ORIGINS:
            lab = [("origin", o)]
            windowed("funnel_deals_won_by_origin", lambda s, x, wl, o=o: x["won_" + o], str, lab)
            windowed("funnel_revenue_won_by_origin", lambda s, x, wl, o=o: x["revenue_" + o], fmt_money, lab)
            windowed("funnel_pipeline_created_by_origin", lambda s, x, wl, o=o: x["pipeline_" + o], fmt_money, lab)
        windowed("funnel_deals_won_influenced", lambda s, x, wl: x["won_influenced"], str)
        windowed("funnel_revenue_won_influenced", lambda s, x, wl: x["revenue_influenced"], fmt_money)
        out.append(("funnel_pipeline_created_total", base, fmt_money(v.pipeline_created)))
    if "web" in v.groups:
        for name, f in (("funnel_sessions", "sessions"), ("funnel_pageviews", "pageviews"),
                        ("funnel_bounces", "bounces"), ("funnel_engaged_sessions", "engaged")):
            windowed(name, lambda s, x, wl, f=f: x[f], str)
        out.append(("funnel_sessions_total", base, str(v.sessions)))
        out.append(("funnel_pageviews_total", base, str(v.pageviews)))
    for a in sorted(v.conversions):
        lab = [("action", a)]
        conv = lambda x, a=a: x["conversions"].get(a, [0, 0])
        windowed("funnel_conversions", lambda s, x, wl, c=conv: c(x)[0], str, lab)
        windowed("funnel_conversion_value", lambda s, x, wl, c=conv: c(x)[1], fmt_money, lab)
        windowed("funnel_session_conversion_ratio",
                 lambda s, x, wl, c=conv: ratio(c(x)[0], x["sessions"]), fmt_ratio, lab)
        windowed("funnel_cpa",
                 lambda s, x, wl, c=conv: ratio(money(s["ad_spend"]), c(x)[0]), fmt_ratio, lab)
        out.append(("funnel_conversions_total", base + lab, str(v.conversions[a])))
    if "email" in v.groups:
        names = {"sent": "funnel_emails_sent", "delivered": "funnel_emails_delivered",
                 "bounced": "funnel_emails_bounced", "opened": "funnel_emails_opened",
                 "clicked": "funnel_emails_clicked", "subscribed": "funnel_email_subscribes",
                 "unsubscribed": "funnel_email_unsubscribes",
                 "complained": "funnel_email_complaints"}
        for a in EMAIL_ACTIONS:
            windowed(names[a], lambda s, x, wl, a=a: x["email_" + a], str)
            out.append(("funnel_email_events_total", base + [("action", a)], str(v.email[a])))
        out.append(("funnel_email_subscribers", base, str(
            v.email["subscribed"] - v.email["unsubscribed"] - v.email["complained"])))
    if "survey" in v.groups:
        for name, f in (("funnel_nps_responses", "nps"), ("funnel_nps_promoters", "promoters"),
                        ("funnel_nps_passives", "passives"), ("funnel_nps_detractors", "detractors"),
                        ("funnel_csat_responses", "csat"), ("funnel_csat_satisfied", "satisfied")):
            windowed(name, lambda s, x, wl, f=f: x[f], str)
        for kd in SURVEY_KINDS:
            out.append(("funnel_survey_responses_total", base + [("kind", kd)], str(v.survey[kd])))
    if "subs" in v.groups:
        windowed("funnel_mrr_net_new", lambda s, x, wl: mrr_net(s), fmt_money)

    # Windowed KPIs (absence by denominator / stock only).

    def cac(s):
        return ratio(money(s["spend"]), s["won"])

    def ltv(s, wl):
        return v2_ltv(s, None, k, wins[wl])

    def ltv_to_cac(s, wl):
        l, c = ltv(s, wl), cac(s)
        return None if l is None or not c else l / c

    def payback(s):
        return ratio(money(s["spend"]), money(s["mrr_new"]) * GROSS_MARGIN)

    def nps(x):
        return None if x["nps"] == 0 else Fraction(100 * (x["promoters"] - x["detractors"]), x["nps"])

    kpis = [
        ("funnel_mer_ratio", lambda s, x, wl: ratio(money(s["revenue_won"]), money(s["spend"]))),
        ("funnel_sql_to_won_ratio", lambda s, x, wl: ratio(s["won"], s["sqls"])),
        ("funnel_mrr_growth_ratio", lambda s, x, wl: over_stock(money(mrr_net(s)), mrr_start(s, k))),
        ("funnel_net_mrr_churn_ratio", lambda s, x, wl: over_stock(
            money(s["mrr_contraction"] + s["mrr_churned"] - s["mrr_expansion"] - s["mrr_reactivation"]),
            mrr_start(s, k))),
        ("funnel_quick_ratio", lambda s, x, wl: ratio(s["mrr_new"] + s["mrr_expansion"],
                                                       s["mrr_contraction"] + s["mrr_churned"])),
        ("funnel_ltv", lambda s, x, wl: ltv(s, wl)),
        ("funnel_ltv_to_cac_ratio", lambda s, x, wl: ltv_to_cac(s, wl)),
        ("funnel_cac_payback_months", lambda s, x, wl: payback(s)),
        ("funnel_marketing_originated_ratio", lambda s, x, wl: ratio(x["won_marketing"], s["won"])),
        ("funnel_marketing_influenced_ratio", lambda s, x, wl: ratio(x["won_influenced"], s["won"])),
        ("funnel_bounce_ratio", lambda s, x, wl: ratio(x["bounces"], x["sessions"])),
        ("funnel_engagement_ratio", lambda s, x, wl: ratio(x["engaged"], x["sessions"])),
        ("funnel_session_to_lead_ratio", lambda s, x, wl: ratio(s["leads"], x["sessions"])),
        ("funnel_email_delivery_ratio", lambda s, x, wl: ratio(x["email_delivered"], x["email_sent"])),
        ("funnel_email_bounce_ratio", lambda s, x, wl: ratio(x["email_bounced"], x["email_sent"])),
        ("funnel_email_open_ratio", lambda s, x, wl: ratio(x["email_opened"], x["email_delivered"])),
        ("funnel_email_click_ratio", lambda s, x, wl: ratio(x["email_clicked"], x["email_delivered"])),
        ("funnel_email_unsubscribe_ratio", lambda s, x, wl: ratio(x["email_unsubscribed"], x["email_delivered"])),
        ("funnel_email_click_to_open_ratio", lambda s, x, wl: ratio(x["email_clicked"], x["email_opened"])),
        ("funnel_nps_score", lambda s, x, wl: nps(x)),
        ("funnel_csat_ratio", lambda s, x, wl: ratio(x["satisfied"], x["csat"])),
    ]
    for name, fn in kpis:
        windowed(name, fn, fmt_ratio)
    # Current state.
    if k.mrr > 0 and k.customers > 0:
        out.append(("funnel_arpa", base, fmt_ratio(money(k.mrr) / k.customers)))
    out.append(("funnel_arr", base, fmt_money(12 * k.mrr)))


V2_FLOAT_KPIS = [
    "funnel_mer_ratio", "funnel_sql_to_won_ratio", "funnel_mrr_growth_ratio",
    "funnel_net_mrr_churn_ratio", "funnel_quick_ratio", "funnel_ltv",
    "funnel_ltv_to_cac_ratio", "funnel_cac_payback_months",
    "funnel_marketing_originated_ratio", "funnel_marketing_influenced_ratio",
    "funnel_bounce_ratio", "funnel_engagement_ratio", "funnel_session_to_lead_ratio",
    "funnel_session_conversion_ratio", "funnel_cpa", "funnel_email_delivery_ratio",
    "funnel_email_bounce_ratio", "funnel_email_open_ratio", "funnel_email_click_ratio",
    "funnel_email_unsubscribe_ratio", "funnel_email_click_to_open_ratio",
    "funnel_nps_score", "funnel_csat_ratio", "funnel_arpa",
]


# ------------------------------------ calendar and previous windows (19) ----
# METRICS.md v2, "Calendar windows (v2, opt-in)" and "Growth against the
# previous window (v2)", and EVENTS.md v2's late rule. Written from the
# contract only. A window is a *view*: the events it holds (its span), the
# previous window's span, the span "from the window's start until now" that
# mrr_start and customers_start subtract, and W for per-month rates.
# A span is (lo, lo included, hi, hi included) in epoch ms.

CALENDAR_ORDER = ["mtd", "qtd", "ytd", "last_month", "last_quarter"]
CALENDAR_WINDOWS = []          # enabled ones, in CALENDAR_ORDER
CALENDAR_TZ = "UTC"            # IANA zone (zoneinfo)
FISCAL_YEAR_START_MONTH = 1
_TZ = None

# The contract lets an engine round the end point of a to-date window's
# previous window (the same local calendar point one period back, which is
# no period edge) to one bucket of W/60, W being the span the window covers
# (elapsed so far). Events this close to it are open: the larger of W/60 and
# the engine's bucket grid for that end point (6 h for mtd, 1 d for qtd and
# ytd).
DAY_MS = 86400 * 1000
PREVIOUS_END_GRID_MS = {"mtd": 6 * 3600 * 1000, "qtd": DAY_MS, "ytd": DAY_MS}

# x of funnel_<x>_previous / funnel_<x>_growth_ratio: (x, sums, field,
# format, group the key needs, like its base family; None = always).
GROWTH_FAMILIES = [
    ("leads", "v1", "leads", str, None),
    ("mqls", "v1", "mqls", str, None),
    ("sqls", "v1", "sqls", str, None),
    ("opportunities", "v1", "opportunities", str, None),
    ("deals_won", "v1", "won", str, None),
    ("revenue_won", "v1", "revenue_won", fmt_money, None),
    ("pipeline_created", "v2", "pipeline_created", fmt_money, "deal"),
    ("customers_new", "v1", "customers_new", str, None),
    ("sessions", "v2", "sessions", str, "web"),
]


def in_span(ts, span):
    lo, lo_in, hi, hi_in = span
    return (ts >= lo if lo_in else ts > lo) and (ts <= hi if hi_in else ts < hi)


def _tz():
    global _TZ
    if _TZ is None:
        from zoneinfo import ZoneInfo
        _TZ = ZoneInfo(CALENDAR_TZ)
    return _TZ


_EPOCH = None


def ms_to_local(ms):
    from datetime import datetime, timedelta, timezone
    global _EPOCH
    if _EPOCH is None:
        _EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(_tz())


def local_to_ms(y, mo, d, hh=0, mi=0, ss=0, us=0):
    """The first instant whose local wall time in the zone is the given one
    (for a time skipped by a daylight-saving gap, the first instant after the
    gap; for a repeated one, its first occurrence)."""
    from datetime import datetime, timezone
    naive = datetime(y, mo, d, hh, mi, ss, us)
    aware = naive.replace(tzinfo=_tz(), fold=0).astimezone(timezone.utc)
    ms = (aware - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _ms_delta()
    if ms_to_local(ms).replace(tzinfo=None) == naive:
        return ms  # fold=0: the first occurrence of a repeated time
    lo, hi = ms - DAY_MS, ms + DAY_MS  # in a gap: first instant at or after it
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ms_to_local(mid).replace(tzinfo=None) >= naive:
            hi = mid
        else:
            lo = mid
    return hi


def _ms_delta():
    from datetime import timedelta
    return timedelta(milliseconds=1)


def add_months(ym, n):
    t = ym[0] * 12 + (ym[1] - 1) + n
    return (t // 12, t % 12 + 1)


def month_start(ym):
    return local_to_ms(ym[0], ym[1], 1)


def rolling_views(now):
    out = []
    for wl, w in WINDOWS:
        span = (now - w, False, now, True)
        out.append({"label": wl, "span": span, "since": span, "w_ms": w,
                    "prev": (now - 2 * w, False, now - w, True),
                    "rolling": w})
    return out


def calendar_views(now):
    """METRICS.md: mtd/qtd/ytd = [start of the current month / fiscal quarter
    / fiscal year, now]; last_month/last_quarter = the whole previous month /
    fiscal quarter; periods in CALENDAR_TZ, fiscal years starting on the 1st
    of FISCAL_YEAR_START_MONTH. The previous window: the period before, for a
    to-date window from its start to the same local calendar point (same
    month offset, day of month, time of day; the whole period where that day
    does not exist)."""
    if not CALENDAR_WINDOWS:
        return []
    loc = ms_to_local(now)
    cur = (loc.year, loc.month)
    off = (loc.month - FISCAL_YEAR_START_MONTH) % 12  # months into the fiscal year
    quarter = add_months(cur, -(off % 3))
    year = add_months(cur, -off)
    out = []
    for name in CALENDAR_WINDOWS:
        if name in ("mtd", "qtd", "ytd"):
            first, months, offset = {"mtd": (cur, 1, 0), "qtd": (quarter, 3, off % 3),
                                     "ytd": (year, 12, off)}[name]
            start = month_start(first)
            prev_first = add_months(first, -months)
            prev_start = month_start(prev_first)
            pm = add_months(prev_first, offset)
            if loc.day <= days_in_month(*pm):
                point = local_to_ms(pm[0], pm[1], loc.day, loc.hour, loc.minute,
                                    loc.second, loc.microsecond)
                prev = (prev_start, True, point, True)
            else:
                point = None  # that day does not exist: the whole period
                prev = (prev_start, True, start, False)
            span = (start, True, now, True)
            out.append({"label": name, "span": span, "since": span, "w_ms": now - start,
                        "prev": prev, "point": point, "rolling": None})
        else:
            first, months = {"last_month": (cur, 1), "last_quarter": (quarter, 3)}[name]
            end = month_start(first)
            start = month_start(add_months(first, -months))
            prev_start = month_start(add_months(first, -2 * months))
            out.append({"label": name, "span": (start, True, end, False),
                        "since": (start, True, now, True), "w_ms": end - start,
                        "prev": (prev_start, True, start, False), "point": None,
                        "rolling": None})
    return out


def all_views(now):
    return rolling_views(now) + calendar_views(now)


def late_edge(now):
    """-> (edge, exact): an event with ts < edge is late. The oldest span any
    family covers: twice the longest rolling window, or the start of the
    previous period of the oldest calendar window, whichever reaches further
    back, minus the allowed lateness. `exact` when a calendar period start
    (exact, no bucket) decides it."""
    edge = now - 2 * max(w for _, w in WINDOWS)
    exact = False
    for v in calendar_views(now):
        if v["prev"][0] < edge:
            edge, exact = v["prev"][0], True
    return edge - ALLOWED_LATENESS_MS, exact


def view_sums(replay, k, view):
    """The v1 window sums of a view, with what the KPIs and the growth
    families need besides: the movement since the window's start, the v2
    sums, and the previous window's sums."""
    events = replay.window_events(k, view["span"])
    s = window_sums(events)
    since = s if view["since"] == view["span"] else window_sums(
        replay.window_events(k, view["since"]))
    s["since_mrr_net"] = mrr_net_movement(since)
    s["since_customers_net"] = customers_net_change(since)
    s["_view"] = view
    s["_v2"] = v2_window_sums(events)
    prev = replay.window_events(k, view["prev"])
    s["_prev"] = {"v1": window_sums(prev), "v2": v2_window_sums(prev)}
    return s


def growth_render_key(replay, key, k, sums, out):
    """funnel_<x>_previous (published where funnel_<x> is) and
    funnel_<x>_growth_ratio = (x - x_previous) / x_previous, absent while
    x_previous is 0."""
    ch, camp = key
    base = [("channel", ch), ("campaign", camp)]
    v = k.v2

    def family(x, get, fmt, extra=()):
        labels = lambda wl: base + list(extra) + [("window", wl)]
        for wl, s in sums:
            out.append(("funnel_%s_previous" % x, labels(wl), fmt(get(s["_prev"]))))
        for wl, s in sums:
            now, prev = get({"v1": s, "v2": s["_v2"]}), get(s["_prev"])
            if prev != 0:
                out.append(("funnel_%s_growth_ratio" % x, labels(wl),
                            fmt_ratio(Fraction(now - prev, prev))))

    for x, which, field, fmt, group in GROWTH_FAMILIES:
        if group is None or group in v.groups:
            family(x, lambda p, w=which, f=field: p[w][f], fmt)
    for a in sorted(v.conversions):
        family("conversions", lambda p, a=a: p["v2"]["conversions"].get(a, [0, 0])[0], str,
               [("action", a)])


# ------------------------------------------------------------------ main ----

def replay_file(path, wall_ms=None):
    r = Replay(time.time_ns() // 1_000_000 if wall_ms is None else wall_ms)
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the final newline ends the last line
    for i, raw in enumerate(lines, 1):
        r.feed(i, raw)
    return r


def check_margins(r):
    """Report every outcome the contract leaves open: windowed events within
    one bucket (W/60) of a rolling window's trailing edge now - W or of its
    previous window's edges now - 2W and now - W, on either side; events near
    the end point of a to-date calendar window's previous window (see
    PREVIOUS_END_GRID_MS; period edges themselves are exact); and the
    dedup, late and capacity cases collected while replaying."""
    bad = 0
    for key, k in sorted(r.keys.items()):
        for v in r.views():
            edges = []
            if v["rolling"]:
                w = v["rolling"]
                tol = max(w // 60, 1)
                edges = [("", r.now - w, tol), (" previous", r.now - 2 * w, tol)]
            elif v.get("point") is not None:
                tol = max(PREVIOUS_END_GRID_MS[v["label"]], v["w_ms"] // 60)
                edges = [(" previous end", v["point"], tol)]
            for what, edge, tol in edges:
                for e in k.windowed:
                    if edge - tol <= e["ts_eff"] <= edge + tol:
                        bad += 1
                        print("near %s%s edge: %s %s ts_eff=%d" % (
                            v["label"], what, key, e["id"], e["ts_eff"]), file=sys.stderr)
    for case in r.open_cases:
        bad += 1
        print(case, file=sys.stderr)
    print("margins: %d event(s) near a trailing edge or another open case" % bad,
          file=sys.stderr)
    return bad


USAGE_FLAGS = ("--check-margins", "--classify", "--v1-rules")
VALUE_FLAGS = ("--calendar-windows", "--calendar-timezone", "--fiscal-year-start-month")


def parse_args(argv):
    """-> (file, flags, settings) or None on bad usage. Value flags take
    `--flag VALUE` or `--flag=VALUE`, like the engine's."""
    files, flags, settings = [], set(), {}
    it = iter(argv[1:])
    for a in it:
        if a in USAGE_FLAGS:
            flags.add(a)
        elif a.split("=", 1)[0] in VALUE_FLAGS:
            name, eq, value = a.partition("=")
            if not eq:
                value = next(it, None)
                if value is None:
                    return None
            settings[name] = value
        elif a.startswith("--"):
            return None
        else:
            files.append(a)
    if len(files) != 1:
        return None
    return files[0], flags, settings


def apply_settings(settings):
    """The calendar settings of CLI.md v2; raises ValueError when invalid."""
    global CALENDAR_WINDOWS, CALENDAR_TZ, FISCAL_YEAR_START_MONTH, _TZ
    names = [n.strip() for n in settings.get("--calendar-windows", "").split(",") if n.strip()]
    for n in names:
        if n not in CALENDAR_ORDER:
            raise ValueError("calendar_windows: unknown window %r" % n)
    CALENDAR_WINDOWS = [n for n in CALENDAR_ORDER if n in names]
    CALENDAR_TZ = settings.get("--calendar-timezone", "UTC")
    _TZ = None
    _tz()  # raises for an unknown zone
    month = int(settings.get("--fiscal-year-start-month", "1"))
    if not 1 <= month <= 12:
        raise ValueError("fiscal_year_start_month: %d is not in 1..=12" % month)
    FISCAL_YEAR_START_MONTH = month


def main(argv):
    parsed = parse_args(argv)
    if parsed is None:
        print(__doc__, file=sys.stderr)
        return 2
    path, flags, settings = parsed
    try:
        apply_settings(settings)
    except Exception as e:  # unknown zone, bad number
        print("bad setting: %s" % e, file=sys.stderr)
        return 2
    if "--v1-rules" in flags:
        global V1_RULES
        V1_RULES = True
    r = replay_file(path)
    if "--classify" in flags:
        for lineno, outcome in r.trace:
            print("%d\t%s" % (lineno, outcome))
        return 0
    if "--check-margins" in flags:
        return 1 if check_margins(r) else 0
    if r.now is None:
        print("no valid event", file=sys.stderr)
    sys.stdout.write("\n".join(r.render()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
