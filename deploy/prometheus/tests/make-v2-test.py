#!/usr/bin/env python3
"""Writes recording-rules-v2.test.yml: promtool unit tests of the v2 roll-ups.

    deploy/prometheus/tests/make-v2-test.py > deploy/prometheus/tests/recording-rules-v2.test.yml

The expected values are computed here from the formulas of METRICS.md v2
applied to the summed counts, in Python, independently of the PromQL of
recording-rules.yml. Counts and money are integers or binary fractions, so
sums are exact whatever order Prometheus adds them in; a ratio is one IEEE
division of two exact sums, the same double in Python and in Go. Where a
roll-up multiplies several floats (LTV, CAC payback, the growth ratios of a
difference), the operations are done in the order the formula is written,
which is the order the rules evaluate them, and promtool compares doubles
exactly.

The engine's per-key KPIs that the LTV and CAC payback roll-ups read to
recover `gross_margin` and the window's length (funnel_ltv,
funnel_customer_churn_ratio, funnel_arpa, funnel_cac_payback_months) are
input series here, computed per key with METRICS.md's formulas from the same
counts, with gross_margin = 0.75 and month = 30 days.

Python 3 standard library only.
"""

import math
import sys

GM = 0.75
WINDOWS = {"1d": 1, "30d": 30}  # window -> days
KEYS = [  # (channel, campaign)
    ("paid_search", "ps-brand"),
    ("paid_search", "ps-generic"),
    ("email", "em-news"),
    ("organic", "org-blog"),
    ("referral", "ref-partner"),
]
INSTANCE = 'job="funnelstream", instance="fs-0:9490"'

# ---------------------------------------------------------------- input data
# v1 windowed counts every key publishes.
V1 = ["leads", "mqls", "sqls", "opportunities", "deals_won", "revenue_won", "ad_spend",
      "spend", "mrr_new", "mrr_expansion", "mrr_reactivation", "mrr_contraction",
      "mrr_churned", "customers_new", "customers_churned", "customers_reactivated"]
v1 = {
    ("paid_search", "ps-brand", "1d"):    [60, 30, 12, 6, 2, 9000.5, 1500.25, 1800.25, 400, 100, 0, 50, 150, 4, 1, 0],
    ("paid_search", "ps-brand", "30d"):   [1000, 400, 160, 80, 20, 120000, 30000.5, 40000.5, 8000, 1000, 200, 600, 1600, 60, 16, 2],
    ("paid_search", "ps-generic", "1d"):  [30, 10, 4, 2, 0, 0, 2400, 2400, 0, 0, 0, 0, 100, 0, 1, 0],
    ("paid_search", "ps-generic", "30d"): [900, 300, 120, 60, 12, 48000, 60000, 65000, 4000, 500, 0, 300, 900, 30, 8, 0],
    ("email", "em-news", "1d"):           [45, 20, 8, 4, 1, 3000, 0, 250.75, 200, 0, 50, 0, 0, 2, 0, 1],
    ("email", "em-news", "30d"):          [600, 250, 100, 40, 8, 25000, 0, 5000.75, 2400, 200, 100, 100, 200, 24, 3, 2],
    ("organic", "org-blog", "1d"):        [20, 6, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ("organic", "org-blog", "30d"):       [400, 120, 40, 20, 4, 16000, 0, 1200.5, 800, 0, 0, 0, 100, 8, 2, 0],
    ("referral", "ref-partner", "1d"):    [3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ("referral", "ref-partner", "30d"):   [12, 4, 0, 0, 0, 0, 0, 0, 300, 0, 0, 0, 50, 3, 1, 0],
}
# Current state per key: mrr, customers. referral's MRR start over 30d is
# 100 - (300 - 50) = -150 and its customers start 1 - (3 - 1) = -1: KPIs
# over them are absent (METRICS.md v2).
current = {
    ("paid_search", "ps-brand"): (20000, 200),
    ("paid_search", "ps-generic"): (10000, 90),
    ("email", "em-news"): (6000, 60),
    ("organic", "org-blog"): (4000.5, 40),
    ("referral", "ref-partner"): (100, 1),
}
email_subscribers = {("email", "em-news"): 5400, ("organic", "org-blog"): 120}

# Groups (published only for keys that received an event of the group).
GROUPS = {
    "deal": ["pipeline_created", "deals_won_influenced", "revenue_won_influenced"],
    "web": ["sessions", "pageviews", "bounces", "engaged_sessions"],
    "email": ["emails_sent", "emails_delivered", "emails_bounced", "emails_opened",
              "emails_clicked", "email_subscribes", "email_unsubscribes", "email_complaints"],
    "survey": ["nps_responses", "nps_promoters", "nps_passives", "nps_detractors",
               "csat_responses", "csat_satisfied"],
}
v2 = {
    # deal: pipeline_created, won influenced, revenue influenced
    ("paid_search", "ps-brand", "1d", "deal"): [30000, 1, 4000.5],
    ("paid_search", "ps-brand", "30d", "deal"): [400000, 12, 70000],
    ("paid_search", "ps-generic", "1d", "deal"): [8000, 0, 0],
    ("paid_search", "ps-generic", "30d", "deal"): [240000, 6, 20000],
    ("email", "em-news", "1d", "deal"): [12000, 1, 3000],
    ("email", "em-news", "30d", "deal"): [160000, 8, 25000],
    ("organic", "org-blog", "1d", "deal"): [0, 0, 0],
    ("organic", "org-blog", "30d", "deal"): [60000, 2, 7000],
    # web: sessions, pageviews, bounces, engaged
    ("paid_search", "ps-brand", "1d", "web"): [4000, 9000, 1800, 1500],
    ("paid_search", "ps-brand", "30d", "web"): [90000, 210000, 36000, 40000],
    ("paid_search", "ps-generic", "1d", "web"): [5000, 8000, 3100, 900],
    ("paid_search", "ps-generic", "30d", "web"): [120000, 200000, 66000, 30000],
    ("organic", "org-blog", "1d", "web"): [3000, 7500, 1200, 1400],
    ("organic", "org-blog", "30d", "web"): [80000, 200000, 30000, 41000],
    # email: sent, delivered, bounced, opened, clicked, subscribes, unsubscribes, complaints
    ("email", "em-news", "1d", "email"): [0, 0, 0, 0, 0, 3, 1, 0],
    ("email", "em-news", "30d", "email"): [40000, 39000, 1000, 9750, 1560, 600, 234, 39],
    ("organic", "org-blog", "1d", "email"): [500, 490, 10, 147, 20, 5, 2, 1],
    ("organic", "org-blog", "30d", "email"): [2000, 1960, 40, 588, 98, 40, 10, 2],
    # survey: nps responses, promoters, passives, detractors, csat responses, satisfied
    ("email", "em-news", "1d", "survey"): [10, 5, 3, 2, 0, 0],
    ("email", "em-news", "30d", "survey"): [120, 54, 36, 30, 40, 33],
    ("organic", "org-blog", "1d", "survey"): [0, 0, 0, 0, 4, 3],
    ("organic", "org-blog", "30d", "survey"): [80, 20, 20, 40, 16, 12],
}
# deal group by origin: (deals_won, revenue_won, pipeline_created) for each origin
ORIGINS = ["marketing", "sales", "partner", "other"]
by_origin = {
    ("paid_search", "ps-brand", "1d"): {"marketing": (2, 9000.5, 30000), "sales": (0, 0, 0), "partner": (0, 0, 0), "other": (0, 0, 0)},
    ("paid_search", "ps-brand", "30d"): {"marketing": (16, 100000, 350000), "sales": (4, 20000, 50000), "partner": (0, 0, 0), "other": (0, 0, 0)},
    ("paid_search", "ps-generic", "1d"): {"marketing": (0, 0, 8000), "sales": (0, 0, 0), "partner": (0, 0, 0), "other": (0, 0, 0)},
    ("paid_search", "ps-generic", "30d"): {"marketing": (12, 48000, 240000), "sales": (0, 0, 0), "partner": (0, 0, 0), "other": (0, 0, 0)},
    ("email", "em-news", "1d"): {"marketing": (1, 3000, 12000), "sales": (0, 0, 0), "partner": (0, 0, 0), "other": (0, 0, 0)},
    ("email", "em-news", "30d"): {"marketing": (6, 20000, 120000), "sales": (0, 0, 0), "partner": (1, 2500, 20000), "other": (1, 2500, 20000)},
    ("organic", "org-blog", "1d"): {o: (0, 0, 0) for o in ORIGINS},
    ("organic", "org-blog", "30d"): {"marketing": (3, 12000, 50000), "sales": (1, 4000, 10000), "partner": (0, 0, 0), "other": (0, 0, 0)},
}
# conversions by action: (count, value)
conversions = {
    ("paid_search", "ps-brand", "1d"): {"signup": (200, 0), "demo_request": (40, 2000.5)},
    ("paid_search", "ps-brand", "30d"): {"signup": (4000, 0), "demo_request": (600, 30000)},
    ("paid_search", "ps-generic", "1d"): {"signup": (150, 0)},
    ("paid_search", "ps-generic", "30d"): {"signup": (3000, 0)},
    ("organic", "org-blog", "1d"): {"signup": (90, 0), "demo_request": (0, 0)},
    ("organic", "org-blog", "30d"): {"signup": (2000, 0), "demo_request": (100, 5000)},
}
# previous-window counts for the growth families (every key with the count)
GROWTH = ["leads", "mqls", "sqls", "opportunities", "deals_won", "revenue_won",
          "pipeline_created", "customers_new", "sessions"]
previous = {
    ("paid_search", "ps-brand", "1d"):    [50, 32, 12, 5, 2, 8000, 20000, 3, 3600],
    ("paid_search", "ps-brand", "30d"):   [800, 500, 150, 64, 16, 100000, 320000, 50, 100000],
    ("paid_search", "ps-generic", "1d"):  [30, 12, 0, 3, 1, 4000, 8000, 1, 4000],
    ("paid_search", "ps-generic", "30d"): [1000, 300, 100, 60, 12, 40000, 200000, 30, 120000],
    ("email", "em-news", "1d"):           [40, 25, 8, 4, 0, 0, 0, 2, None],
    ("email", "em-news", "30d"):          [500, 250, 90, 50, 10, 30000, 150000, 20, None],
    ("organic", "org-blog", "1d"):        [16, 6, 2, 0, 0, 0, 0, 0, 2400],
    ("organic", "org-blog", "30d"):       [320, 150, 40, 25, 5, 20000, 40000, 10, 64000],
    ("referral", "ref-partner", "1d"):    [4, 2, 0, 0, 0, 0, None, 0, None],
    ("referral", "ref-partner", "30d"):   [10, 5, 0, 0, 0, 0, None, 2, None],
}
conversions_previous = {
    ("paid_search", "ps-brand", "1d"): {"signup": 160, "demo_request": 40},
    ("paid_search", "ps-brand", "30d"): {"signup": 5000, "demo_request": 500},
    ("paid_search", "ps-generic", "1d"): {"signup": 0},
    ("paid_search", "ps-generic", "30d"): {"signup": 2000},
    ("organic", "org-blog", "1d"): {"signup": 60, "demo_request": 0},
    ("organic", "org-blog", "30d"): {"signup": 1600, "demo_request": 100},
}


def groups_of(ch, cp, w):
    return [g for g in GROUPS if (ch, cp, w, g) in v2]


def count(ch, cp, w, name):
    """A key's windowed count, or None where the key does not publish it."""
    if name in V1:
        return v1[(ch, cp, w)][V1.index(name)]
    for g, names in GROUPS.items():
        if name in names:
            row = v2.get((ch, cp, w, g))
            return None if row is None else row[names.index(name)]
    if name.endswith("_previous"):
        row = previous[(ch, cp, w)]
        return row[GROWTH.index(name[: -len("_previous")])]
    raise KeyError(name)


# ------------------------------------------------- the engine's per-key KPIs
def key_arpa(ch, cp):
    mrr, cust = current[(ch, cp)]
    return mrr / cust if mrr > 0 and cust > 0 else None


def key_customers_start(ch, cp, w):
    return current[(ch, cp)][1] - (count(ch, cp, w, "customers_new")
                                   + count(ch, cp, w, "customers_reactivated")
                                   - count(ch, cp, w, "customers_churned"))


def key_churn(ch, cp, w):
    start = key_customers_start(ch, cp, w)
    return count(ch, cp, w, "customers_churned") / start if start > 0 else None


def key_ltv(ch, cp, w):
    arpa, churn = key_arpa(ch, cp), key_churn(ch, cp, w)
    if arpa is None or churn is None:
        return None
    monthly = churn * 30 / WINDOWS[w]
    return arpa * GM / monthly if monthly > 0 else None


def key_payback(ch, cp, w):
    new = count(ch, cp, w, "mrr_new")
    return count(ch, cp, w, "spend") / (new * GM) if new > 0 else None


# ------------------------------------------------------------ the roll-ups
def levels():
    """(level prefix, group-by function of a key) for channel and total."""
    return [("channel_window", lambda ch: (("channel", ch),)), ("window", lambda ch: ())]


def sums(name, extra=None):
    """{labels tuple -> exact sum} of a windowed count by level; absent where no key publishes it."""
    out = {}
    for lvl, by in levels():
        res = {}
        for (ch, cp) in KEYS:
            for w in WINDOWS:
                if extra == "origin":
                    row = by_origin.get((ch, cp, w))
                    if row is None:
                        continue
                    idx = ["funnel_deals_won_by_origin", "funnel_revenue_won_by_origin",
                           "funnel_pipeline_created_by_origin"].index(name)
                    for o in ORIGINS:
                        k = by(ch) + (("window", w), ("origin", o))
                        res[k] = res.get(k, 0) + row[o][idx]
                    continue
                if extra == "action":
                    table = {"funnel_conversions": conversions,
                             "funnel_conversion_value": conversions,
                             "funnel_conversions_previous": conversions_previous}[name]
                    row = table.get((ch, cp, w))
                    if row is None:
                        continue
                    for a, val in row.items():
                        v = val if name == "funnel_conversions_previous" else val[0 if name == "funnel_conversions" else 1]
                        k = by(ch) + (("window", w), ("action", a))
                        res[k] = res.get(k, 0) + v
                    continue
                v = count(ch, cp, w, name[len("funnel_"):])
                if v is None:
                    continue
                k = by(ch) + (("window", w),)
                res[k] = res.get(k, 0) + v
        suffix = {"origin": "_origin", "action": "_action"}.get(extra, "")
        out[f"{lvl}{suffix}"] = res
    return out


def current_sums(idx_or_table):
    out = {"channel": {}, "total": {}}
    for (ch, cp) in KEYS:
        if isinstance(idx_or_table, dict):
            if (ch, cp) not in idx_or_table:
                continue
            v = idx_or_table[(ch, cp)]
        else:
            v = current[(ch, cp)][idx_or_table]
        for lvl, k in (("channel", (("channel", ch),)), ("total", ())):
            out[lvl][k] = out[lvl].get(k, 0) + v
    return out


def ratio(num, den):
    """{labels -> num/den} where den > 0 (labels of both must match)."""
    return {k: num[k] / d for k, d in den.items() if d > 0 and k in num}


tests = []  # (rule name, {labels tuple -> value})


def add(rule, values):
    tests.append((rule, values))


S = {}
SUM_NAMES = (
    [("funnel_pipeline_created", None), ("funnel_deals_won_by_origin", "origin"),
     ("funnel_revenue_won_by_origin", "origin"), ("funnel_pipeline_created_by_origin", "origin"),
     ("funnel_deals_won_influenced", None), ("funnel_revenue_won_influenced", None)]
    + [(f"funnel_{n}", None) for n in GROUPS["web"]]
    + [("funnel_conversions", "action"), ("funnel_conversion_value", "action")]
    + [(f"funnel_{n}", None) for n in GROUPS["email"] + GROUPS["survey"]]
    + [(f"funnel_{x}_previous", None) for x in GROWTH]
    + [("funnel_conversions_previous", "action")]
)
for name, extra in SUM_NAMES:
    per = sums(name, extra)
    for lvl, vals in per.items():
        S[(lvl, name)] = vals
        add(f"{lvl}:{name}:sum", vals)
# v1 sums the v2 KPIs use
for n in V1:
    per = sums(f"funnel_{n}")
    for lvl, vals in per.items():
        S[(lvl, f"funnel_{n}")] = vals

mrr_sum = current_sums(0)
for lvl in ("channel", "total"):
    add(f"{lvl}:funnel_arr:sum", {k: 12 * v for k, v in mrr_sum[lvl].items()})
subs = current_sums(email_subscribers)
for lvl in ("channel", "total"):
    add(f"{lvl}:funnel_email_subscribers:sum", subs[lvl])
cust = current_sums(1)
arpa = {}
for lvl in ("channel", "total"):
    arpa[lvl] = {k: mrr_sum[lvl][k] / c for k, c in cust[lvl].items() if mrr_sum[lvl][k] > 0 and c > 0}
    add(f"{lvl}:funnel_arpa:from_sums", arpa[lvl])

RATIOS = [
    ("funnel_mer_ratio", "funnel_revenue_won", "funnel_spend"),
    ("funnel_sql_to_won_ratio", "funnel_deals_won", "funnel_sqls"),
    ("funnel_marketing_influenced_ratio", "funnel_deals_won_influenced", "funnel_deals_won"),
    ("funnel_bounce_ratio", "funnel_bounces", "funnel_sessions"),
    ("funnel_engagement_ratio", "funnel_engaged_sessions", "funnel_sessions"),
    ("funnel_session_to_lead_ratio", "funnel_leads", "funnel_sessions"),
    ("funnel_email_delivery_ratio", "funnel_emails_delivered", "funnel_emails_sent"),
    ("funnel_email_bounce_ratio", "funnel_emails_bounced", "funnel_emails_sent"),
    ("funnel_email_open_ratio", "funnel_emails_opened", "funnel_emails_delivered"),
    ("funnel_email_click_ratio", "funnel_emails_clicked", "funnel_emails_delivered"),
    ("funnel_email_unsubscribe_ratio", "funnel_email_unsubscribes", "funnel_emails_delivered"),
    ("funnel_email_complaint_ratio", "funnel_email_complaints", "funnel_emails_delivered"),
    ("funnel_email_click_to_open_ratio", "funnel_emails_clicked", "funnel_emails_opened"),
    ("funnel_csat_ratio", "funnel_csat_satisfied", "funnel_csat_responses"),
]
for lvl in ("channel_window", "window"):
    g = lambda n: S[(lvl, n)]
    for kpi, num, den in RATIOS:
        add(f"{lvl}:{kpi}:from_sums", ratio(g(num), g(den)))
    # marketing-originated: the marketing origin's won deals over all won deals
    mk = {tuple(x for x in k if x[0] != "origin"): v
          for k, v in S[(f"{lvl}_origin", "funnel_deals_won_by_origin")].items()
          if ("origin", "marketing") in k}
    add(f"{lvl}:funnel_marketing_originated_ratio:from_sums", ratio(mk, g("funnel_deals_won")))
    resp = g("funnel_nps_responses")
    add(f"{lvl}:funnel_nps_score:from_sums",
        {k: 100 * (g("funnel_nps_promoters")[k] - g("funnel_nps_detractors")[k]) / r
         for k, r in resp.items() if r > 0})
    conv = S[(f"{lvl}_action", "funnel_conversions")]
    sess = g("funnel_sessions")
    strip = lambda k: tuple(x for x in k if x[0] != "action")
    add(f"{lvl}_action:funnel_session_conversion_ratio:from_sums",
        {k: c / sess[strip(k)] for k, c in conv.items() if sess.get(strip(k), 0) > 0})
    add(f"{lvl}_action:funnel_cpa:from_sums",
        {k: g("funnel_ad_spend")[strip(k)] / c for k, c in conv.items() if c > 0})
    new, exp, rea, con, chu = (g(f"funnel_mrr_{m}") for m in
                               ("new", "expansion", "reactivation", "contraction", "churned"))
    net = {k: new[k] + exp[k] + rea[k] - con[k] - chu[k] for k in new}
    add(f"{lvl}:funnel_mrr_net_new:from_sums", net)
    cur_lvl = "channel" if lvl == "channel_window" else "total"
    cur = lambda k: tuple(x for x in k if x[0] == "channel")
    inv = 1.0 / 0.000001  # Prometheus' round(v, to_nearest)
    start = {k: math.floor((mrr_sum[cur_lvl][cur(k)] - net[k]) * inv + 0.5) / inv for k in net}
    add(f"{lvl}:funnel_mrr_growth_ratio:from_sums", {k: net[k] / s for k, s in start.items() if s > 0})
    add(f"{lvl}:funnel_net_mrr_churn_ratio:from_sums",
        {k: (con[k] + chu[k] - exp[k] - rea[k]) / s for k, s in start.items() if s > 0})
    add(f"{lvl}:funnel_quick_ratio:from_sums",
        {k: (new[k] + exp[k]) / (con[k] + chu[k]) for k in new if con[k] + chu[k] > 0})
    # LTV: arpa * (1 / churn) * (gross_margin * W / month recovered from the keys)
    cstart = {k: cust[cur_lvl][cur(k)] - (g("funnel_customers_new")[k] + g("funnel_customers_reactivated")[k]
                                         - g("funnel_customers_churned")[k]) for k in new}
    churn = {k: g("funnel_customers_churned")[k] / s for k, s in cstart.items() if s > 0}
    scale = {}
    for (ch, cp) in KEYS:
        for w in WINDOWS:
            ltv = key_ltv(ch, cp, w)
            if ltv is not None:
                v = ltv * key_churn(ch, cp, w) / key_arpa(ch, cp)
                scale[w] = max(scale.get(w, v), v)
    ltv = {}
    for k, c in churn.items():
        w = dict(k)["window"]
        a = arpa[cur_lvl].get(cur(k))
        if c > 0 and a is not None and w in scale:
            ltv[k] = a * (1 / c) * scale[w]
    add(f"{lvl}:funnel_ltv:from_sums", ltv)
    cac = {k: g("funnel_spend")[k] / d for k, d in g("funnel_deals_won").items() if d > 0}
    add(f"{lvl}:funnel_ltv_to_cac_ratio:from_sums",
        {k: v / cac[k] for k, v in ltv.items() if cac.get(k, 0) > 0})
    gms = [count(ch, cp, w, "spend") / (count(ch, cp, w, "mrr_new") * key_payback(ch, cp, w))
           for (ch, cp) in KEYS for w in WINDOWS
           if key_payback(ch, cp, w) is not None and count(ch, cp, w, "mrr_new") * key_payback(ch, cp, w) > 0]
    gm = max(gms)
    add(f"{lvl}:funnel_cac_payback_months:from_sums",
        {k: g("funnel_spend")[k] / (n * gm) for k, n in new.items() if n > 0})
    for x in GROWTH:
        cur_x = g(f"funnel_{x}")
        prev = g(f"funnel_{x}_previous")
        add(f"{lvl}:funnel_{x}_growth_ratio:from_sums",
            {k: (cur_x[k] - p) / p for k, p in prev.items() if p > 0})
    cprev = S[(f"{lvl}_action", "funnel_conversions_previous")]
    add(f"{lvl}_action:funnel_conversions_growth_ratio:from_sums",
        {k: (conv[k] - p) / p for k, p in cprev.items() if p > 0})


# ------------------------------------------------------------------ output
def fmt(v):
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def labels(name, k):
    if not k:
        return name
    return name + "{" + ", ".join(f'{a}="{b}"' for a, b in k) + "}"


def series(name, lab, v):
    return f"      - series: '{name}{{{lab}, {INSTANCE}}}'\n        values: '{fmt(v)}x5'\n"


def main():
    o = sys.stdout
    o.write("# promtool unit tests of the v2 roll-ups of recording-rules.yml: every v2\n")
    o.write("# rule, exact values. GENERATED by make-v2-test.py (edit that, not this):\n")
    o.write("#\n#   deploy/prometheus/tests/make-v2-test.py > deploy/prometheus/tests/recording-rules-v2.test.yml\n#\n")
    o.write("# Five keys in four channels, windows 1d and 30d: paid_search (two campaigns:\n")
    o.write("# deals, web traffic, conversions), email (deals, email, surveys), organic\n")
    o.write("# (everything), referral (v1 counts only: no v2 group, so none of its v2\n")
    o.write("# roll-ups exist). Zero denominators (email's 1d sends, organic's 1d NPS\n")
    o.write("# responses, previous counts of 0) leave the KPI absent; referral's MRR start\n")
    o.write("# over 30d is negative (100 - 250), so the KPIs over it are absent too.\n")
    o.write("# The expected values come from METRICS.md v2's formulas in Python.\n\n")
    o.write("rule_files:\n  - ../recording-rules.yml\n\nevaluation_interval: 1m\n\ntests:\n")
    o.write("  - name: v2 roll-ups by channel and in total\n    interval: 1m\n    input_series:\n")
    for (ch, cp) in KEYS:
        base = f'channel="{ch}", campaign="{cp}"'
        mrr, cu = current[(ch, cp)]
        o.write(series("funnel_mrr", base, mrr))
        o.write(series("funnel_customers", base, cu))
        o.write(series("funnel_arr", base, 12 * mrr))
        if key_arpa(ch, cp) is not None:
            o.write(series("funnel_arpa", base, key_arpa(ch, cp)))
        if (ch, cp) in email_subscribers:
            o.write(series("funnel_email_subscribers", base, email_subscribers[(ch, cp)]))
        for w in WINDOWS:
            lab = f'{base}, window="{w}"'
            for n in V1:
                o.write(series(f"funnel_{n}", lab, count(ch, cp, w, n)))
            for g in groups_of(ch, cp, w):
                for n in GROUPS[g]:
                    o.write(series(f"funnel_{n}", lab, count(ch, cp, w, n)))
            if (ch, cp, w) in by_origin:
                for orig, (won, rev, pipe) in by_origin[(ch, cp, w)].items():
                    ol = f'{lab}, origin="{orig}"'
                    o.write(series("funnel_deals_won_by_origin", ol, won))
                    o.write(series("funnel_revenue_won_by_origin", ol, rev))
                    o.write(series("funnel_pipeline_created_by_origin", ol, pipe))
            for a, (c, val) in conversions.get((ch, cp, w), {}).items():
                o.write(series("funnel_conversions", f'{lab}, action="{a}"', c))
                o.write(series("funnel_conversion_value", f'{lab}, action="{a}"', val))
            for a, c in conversions_previous.get((ch, cp, w), {}).items():
                o.write(series("funnel_conversions_previous", f'{lab}, action="{a}"', c))
            for x, p in zip(GROWTH, previous[(ch, cp, w)]):
                if p is not None:
                    o.write(series(f"funnel_{x}_previous", lab, p))
            for name, fn in (("funnel_customer_churn_ratio", key_churn), ("funnel_ltv", key_ltv),
                             ("funnel_cac_payback_months", key_payback)):
                v = fn(ch, cp, w)
                if v is not None:
                    o.write(series(name, lab, v))
    o.write("    promql_expr_test:\n")
    for rule, vals in tests:
        o.write(f"      - expr: {rule}\n        eval_time: 2m\n")
        if not vals:
            o.write("        exp_samples: []\n")
            continue
        o.write("        exp_samples:\n")
        for k in sorted(vals):
            o.write(f"          - labels: '{labels(rule, k)}'\n            value: {fmt(vals[k])}\n")
    # v2 absence over a negative starting stock, for the v1 KPIs too.
    o.write("      # referral's MRR and customer starts over 30d are negative: absent (METRICS.md v2)\n")
    for rule in ("channel_window:funnel_nrr_ratio:from_sums", "channel_window:funnel_gross_mrr_churn_ratio:from_sums",
                 "channel_window:funnel_mrr_growth_ratio:from_sums", "channel_window:funnel_net_mrr_churn_ratio:from_sums",
                 "channel_window:funnel_customer_churn_ratio:from_sums", "channel_window:funnel_ltv:from_sums"):
        o.write(f"      - expr: {rule}{{channel=\"referral\", window=\"30d\"}}\n        eval_time: 2m\n        exp_samples: []\n")
    o.write("      - expr: channel_window:funnel_mrr_start:from_sums{channel=\"referral\", window=\"30d\"}\n"
            "        eval_time: 2m\n        exp_samples:\n"
            "          - labels: 'channel_window:funnel_mrr_start:from_sums{channel=\"referral\", window=\"30d\"}'\n"
            "            value: -150\n")


if __name__ == "__main__":
    main()
