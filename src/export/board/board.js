// The live KPI board. Reads only the public API: /api/v1/kpis/stream (the
// per-key series: a snapshot, then changes), /api/v1/kpis/history (the last
// hour of sums, for the sparklines) and /api/v1/health. Every roll-up is sum
// of numerator over sum of denominator, as deploy/prometheus/recording-rules.yml.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  // Same origin, never the page's user:password@ (fetch refuses such URLs;
  // the browser sends the credentials it was given for the page).
  const api = (path) => new URL(path, location.origin).toString();
  const STREAM_INTERVAL = 2;
  const HOUR_MS = 3600e3;
  const MONTH_S = 30 * 86400;
  const CALENDAR = ['mtd', 'qtd', 'ytd', 'last_month', 'last_quarter'];

  // ---- state -------------------------------------------------------------
  // key "channel\u0000campaign" -> {ch, cp, w: Map(window -> Map(metric -> v)), s: Map(metric -> v)}
  const keys = new Map();
  let now = 0;
  let win = null;
  let view = 'channel';
  let sortCol = 'spend';
  let sortDesc = true;
  const hist = new Map(); // window -> [{t, kpis}] from the server
  const livePts = new Map(); // window -> [{t, kpis}] computed from the stream
  const shown = new Map(); // element id -> last value, for the flash
  const errors = [];

  function parseDur(w) {
    const m = /^(\d+)(ms|s|m|h|d|w|y)$/.exec(w);
    if (!m) return null;
    const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 7 * 86400e3, y: 365 * 86400e3 }[m[2]];
    return Number(m[1]) * unit;
  }

  function apply(snap, full) {
    if (full) keys.clear();
    now = snap.now;
    for (const s of snap.series) {
      const l = s.labels || {};
      const names = Object.keys(l);
      // Only the per-key series: channel, campaign and at most a window.
      if (names.some((n) => n !== 'channel' && n !== 'campaign' && n !== 'window')) continue;
      const id = l.channel + '\u0000' + l.campaign;
      let k = keys.get(id);
      if (!k) {
        if (s.value === null) continue;
        k = { ch: l.channel, cp: l.campaign, w: new Map(), s: new Map() };
        keys.set(id, k);
      }
      let m;
      if (l.window !== undefined) {
        m = k.w.get(l.window);
        if (!m) { m = new Map(); k.w.set(l.window, m); }
      } else {
        m = k.s;
      }
      if (s.value === null) m.delete(s.metric); else m.set(s.metric, s.value);
    }
  }

  // The windows the engine serves (from a small API call); until known,
  // those in the store.
  let served = [];
  function windows() {
    if (served.length) return served;
    const set = new Set();
    for (const k of keys.values()) for (const [w, m] of k.w) if (m.size) set.add(w);
    return sortWindows(set);
  }
  function sortWindows(set) {
    return [...set].sort((a, b) => {
      const da = parseDur(a), db = parseDur(b);
      if (da !== null && db !== null) return da - db;
      if (da !== null) return -1;
      if (db !== null) return 1;
      // Calendar windows in the contract's order.
      const ca = CALENDAR.indexOf(a), cb = CALENDAR.indexOf(b);
      if (ca >= 0 && cb >= 0) return ca - cb;
      if (ca >= 0) return -1;
      if (cb >= 0) return 1;
      return a < b ? -1 : 1;
    });
  }

  // ---- roll-ups ----------------------------------------------------------
  const COUNTS = ['funnel_impressions', 'funnel_clicks', 'funnel_leads', 'funnel_mqls', 'funnel_sqls',
    'funnel_opportunities', 'funnel_deals_won', 'funnel_deals_lost', 'funnel_revenue_won',
    'funnel_ad_spend', 'funnel_spend', 'funnel_mrr_new', 'funnel_mrr_expansion',
    'funnel_mrr_reactivation', 'funnel_mrr_contraction', 'funnel_mrr_churned',
    'funnel_customers_new', 'funnel_customers_churned', 'funnel_customers_reactivated',
    'funnel_sessions', 'funnel_bounces', 'funnel_emails_sent', 'funnel_emails_delivered',
    'funnel_emails_opened', 'funnel_emails_clicked', 'funnel_nps_responses',
    'funnel_nps_promoters', 'funnel_nps_detractors'];
  const CYCLE = 'funnel_sales_cycle_seconds_sum';

  function emptySums() {
    const s = { state: { funnel_mrr: 0, funnel_customers: 0 }, has: new Set() };
    for (const c of COUNTS) s[c] = 0;
    s[CYCLE] = 0;
    return s;
  }

  function addKey(sums, k, w) {
    const m = k.w.get(w);
    if (!m) return false;
    for (const c of COUNTS) {
      const v = m.get(c);
      if (v !== undefined) { sums[c] += v; sums.has.add(c); }
    }
    const mean = m.get('funnel_sales_cycle_mean_seconds');
    if (mean !== undefined) sums[CYCLE] += mean * (m.get('funnel_deals_won') || 0);
    for (const c of ['funnel_mrr', 'funnel_customers']) {
      const v = k.s.get(c);
      if (v !== undefined) { sums.state[c] += v; sums.has.add(c); }
    }
    return true;
  }

  // The engine's gross margin and, per window, gross_margin * W / month,
  // recovered from its own per-key KPIs (recording-rules.yml explains why).
  function constants(w) {
    let gm = null, gmW = null;
    for (const k of keys.values()) {
      const m = k.w.get(w);
      if (!m) continue;
      const pb = m.get('funnel_cac_payback_months');
      const sp = m.get('funnel_spend'), mn = m.get('funnel_mrr_new');
      if (gm === null && pb > 0 && sp > 0 && mn > 0) gm = sp / (mn * pb);
      const ltv = m.get('funnel_ltv'), ch = m.get('funnel_customer_churn_ratio');
      const mrr = k.s.get('funnel_mrr'), cu = k.s.get('funnel_customers');
      if (gmW === null && ltv > 0 && ch > 0 && mrr > 0 && cu > 0) gmW = ltv * ch / (mrr / cu);
      if (gm !== null && gmW !== null) break;
    }
    if (gmW === null && gm !== null && parseDur(w) !== null) gmW = gm * parseDur(w) / 1e3 / MONTH_S;
    // A closed calendar period's starting stock is today's minus the
    // movement since it began, which its own sums do not hold: the KPIs
    // over a starting stock are left out of its roll-ups.
    return { gm, gmW, closed: w === 'last_month' || w === 'last_quarter' };
  }

  const div = (a, b) => (b !== 0 && Number.isFinite(a) && Number.isFinite(b) ? a / b : null);
  const round6 = (x) => Math.round(x * 1e6) / 1e6;

  // Every KPI of a group from its sums (METRICS.md formulas).
  function kpis(s, c) {
    const g = (n) => s[n] || 0;
    const won = g('funnel_deals_won'), lost = g('funnel_deals_lost');
    const k = {
      impressions: g('funnel_impressions'), clicks: g('funnel_clicks'), leads: g('funnel_leads'),
      mqls: g('funnel_mqls'), sqls: g('funnel_sqls'), opportunities: g('funnel_opportunities'),
      won, spend: g('funnel_spend'), revenue: g('funnel_revenue_won'),
    };
    k.ctr = div(k.clicks, k.impressions);
    k.cpl = div(k.spend, k.leads);
    k.cac = div(k.spend, won);
    k.roas = div(k.revenue, g('funnel_ad_spend'));
    k.win = div(won, won + lost);
    const cycle = s[CYCLE] || 0;
    k.velocity = won > 0 && won + lost > 0 && cycle > 0
      ? k.opportunities * (k.revenue / won) * (won / (won + lost)) / (cycle / won / 86400) : null;
    const mrr = s.state ? s.state.funnel_mrr : 0, cust = s.state ? s.state.funnel_customers : 0;
    k.mrr = s.has.has('funnel_mrr') ? mrr : null;
    k.customers = s.has.has('funnel_customers') ? cust : null;
    const exp = g('funnel_mrr_expansion'), rea = g('funnel_mrr_reactivation');
    const con = g('funnel_mrr_contraction'), chu = g('funnel_mrr_churned'), nw = g('funnel_mrr_new');
    const mrrStart = round6(mrr - (nw + exp + rea - con - chu));
    k.nrr = mrrStart > 0 && !c.closed ? (mrrStart + exp + rea - con - chu) / mrrStart : null;
    const custStart = cust - (g('funnel_customers_new') + g('funnel_customers_reactivated') - g('funnel_customers_churned'));
    k.churn = custStart > 0 && !c.closed ? g('funnel_customers_churned') / custStart : null;
    const arpa = mrr > 0 && cust > 0 ? mrr / cust : null;
    const ltv = arpa !== null && k.churn > 0 && c.gmW !== null ? arpa * c.gmW / k.churn : null;
    k.ltv_cac = ltv !== null && k.cac ? ltv / k.cac : null;
    k.payback = nw > 0 && c.gm !== null ? k.spend / (nw * c.gm) : null;
    k.bounce = div(g('funnel_bounces'), g('funnel_sessions'));
    k.open = div(g('funnel_emails_opened'), g('funnel_emails_delivered'));
    k.email_click = div(g('funnel_emails_clicked'), g('funnel_emails_delivered'));
    const resp = g('funnel_nps_responses');
    k.nps = resp > 0 ? 100 * (g('funnel_nps_promoters') - g('funnel_nps_detractors')) / resp : null;
    return k;
  }

  function rollup(w, by) {
    const groups = new Map();
    const total = emptySums();
    let any = false;
    for (const k of keys.values()) {
      const name = by === 'campaign' ? k.cp : k.ch;
      let s = groups.get(name);
      if (!s) s = emptySums();
      if (addKey(s, k, w)) { groups.set(name, s); addKey(total, k, w); any = true; }
    }
    return { groups, total, any };
  }

  // ---- formatting --------------------------------------------------------
  const nf0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const nf2 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const nf1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const fmt = {
    count: (v) => nf0.format(v),
    money: (v) => nf2.format(v),
    pct: (v) => nf2.format(v * 100) + '%',
    ratio: (v) => nf2.format(v),
    months: (v) => nf1.format(v) + ' mo',
    score: (v) => nf1.format(v),
  };
  const show = (unit, v) => (v === null || v === undefined ? '–' : fmt[unit](v));

  function setValue(el, unit, v) {
    const text = show(unit, v);
    const before = shown.get(el.id || el);
    el.dataset.value = v === null || v === undefined ? '' : String(v);
    if (el.textContent !== text) {
      el.textContent = text;
      if (before !== undefined && before !== null && v !== null && v !== before) {
        el.classList.remove('flash-up', 'flash-down');
        void el.offsetWidth;
        el.classList.add(v > before ? 'flash-up' : 'flash-down');
      }
    }
    shown.set(el.id || el, v);
  }

  // ---- cards and sparklines ------------------------------------------------
  const HEADLINE = [
    ['spend', 'Spend', 'money'], ['leads', 'Leads', 'count'], ['cpl', 'Cost per lead', 'money'],
    ['cac', 'CAC', 'money'],
    ['roas', 'ROAS', 'pct', 'Return on ad spend: revenue won / ad spend, over all channels, so the revenue of ' +
      'channels without ad spend (organic, outbound, ...) counts too'],
    ['win', 'Win rate', 'pct'],
    ['velocity', 'Pipeline velocity / day', 'money'], ['mrr', 'MRR (now)', 'money'],
    ['customers', 'Customers (now)', 'count'], ['nrr', 'NRR', 'pct'], ['churn', 'Customer churn', 'pct'],
  ];
  const V2 = [
    ['ltv_cac', 'LTV:CAC', 'ratio'], ['payback', 'CAC payback', 'months'], ['bounce', 'Bounce rate', 'pct'],
    ['open', 'Email open rate', 'pct'], ['email_click', 'Email click rate', 'pct'], ['nps', 'NPS', 'score'],
  ];

  function makeCards(host, list) {
    for (const [id, label, , hint] of list) {
      const c = document.createElement('div');
      c.className = 'card';
      c.id = 'card-' + id;
      if (hint) c.title = hint;
      c.innerHTML = '<div class="k"></div><div class="v" data-kpi=""></div><svg viewBox="0 0 100 30" preserveAspectRatio="none"></svg>';
      c.querySelector('.k').textContent = label;
      const v = c.querySelector('.v');
      v.id = 'kpi-' + id;
      v.dataset.kpi = id;
      host.appendChild(c);
    }
  }

  function spark(svg, pts) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const xs = pts.filter((p) => p.v !== null && Number.isFinite(p.v));
    if (xs.length < 2) return;
    const t1 = xs[xs.length - 1].t, t0 = Math.min(xs[0].t, t1 - 60e3);
    let lo = Math.min(...xs.map((p) => p.v)), hi = Math.max(...xs.map((p) => p.v));
    if (hi === lo) { hi += Math.abs(hi) * 0.01 || 1; lo -= Math.abs(lo) * 0.01 || 1; }
    const X = (t) => ((t - t0) / (t1 - t0)) * 98 + 1;
    const Y = (v) => 28 - ((v - lo) / (hi - lo)) * 26;
    const line = document.createElementNS(SVG, 'polyline');
    line.setAttribute('class', 'spark');
    line.setAttribute('vector-effect', 'non-scaling-stroke');
    line.setAttribute('points', xs.map((p) => X(p.t).toFixed(2) + ',' + Y(p.v).toFixed(2)).join(' '));
    svg.appendChild(line);
    const last = xs[xs.length - 1];
    const dot = document.createElementNS(SVG, 'circle');
    dot.setAttribute('class', 'spark-dot');
    dot.setAttribute('cx', X(last.t));
    dot.setAttribute('cy', Y(last.v));
    dot.setAttribute('r', 1.5);
    svg.appendChild(dot);
  }

  function series(w, id) {
    const cutoff = now - HOUR_MS;
    const out = [];
    const h = hist.get(w) || [];
    const l = livePts.get(w) || [];
    const firstLive = l.length ? l[0].t : Infinity;
    for (const p of h) if (p.t >= cutoff && p.t < firstLive) out.push({ t: p.t, v: p.kpis[id] });
    for (const p of l) if (p.t >= cutoff) out.push({ t: p.t, v: p.kpis[id] });
    return out;
  }

  // ---- funnel ---------------------------------------------------------------
  const STEPS = [['impressions', 'Impressions'], ['clicks', 'Clicks'], ['leads', 'Leads'], ['mqls', 'MQLs'],
    ['sqls', 'SQLs'], ['opportunities', 'Opportunities'], ['won', 'Won']];

  function drawFunnel(k) {
    const svg = $('funnel');
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const max = Math.max(1, ...STEPS.map(([id]) => k[id] || 0));
    const el = (name, attrs, text) => {
      const e = document.createElementNS(SVG, name);
      for (const a in attrs) e.setAttribute(a, attrs[a]);
      if (text !== undefined) e.textContent = text;
      svg.appendChild(e);
      return e;
    };
    STEPS.forEach(([id, label], i) => {
      const y = 8 + i * 41;
      const v = k[id] || 0;
      // Log scale: impressions and won deals differ by orders of magnitude.
      const w = v > 0 ? Math.max(2, (Math.log10(v + 1) / Math.log10(max + 1)) * 300) : 0;
      el('text', { x: 0, y: y + 17, class: 'lbl' }, label);
      el('rect', { x: 110, y: y + 3, width: w.toFixed(1), height: 20, rx: 3 });
      const t = el('text', { x: 118 + w, y: y + 18, id: 'funnel-' + id }, fmt.count(v));
      t.dataset.value = String(v);
      if (i > 0) {
        const prev = k[STEPS[i - 1][0]] || 0;
        const r = prev > 0 ? fmt.pct(v / prev) : '–';
        el('text', { x: 480, y: y + 5, class: 'rate', id: 'rate-' + id }, '↓ ' + r);
      }
    });
  }

  // ---- table ------------------------------------------------------------------
  const TABLE = [['spend', 'money'], ['leads', 'count'], ['cpl', 'money'], ['cac', 'money'], ['roas', 'pct'],
    ['win', 'pct'], ['velocity', 'money'], ['ltv_cac', 'ratio'], ['bounce', 'pct'], ['nps', 'score']];

  function row(name, k, tag) {
    const tr = document.createElement('tr');
    const td = document.createElement(tag);
    td.className = 'name';
    td.textContent = name;
    tr.appendChild(td);
    for (const [id, unit] of TABLE) {
      const c = document.createElement(tag);
      c.dataset.col = id;
      c.id = 'cell-' + name + '-' + id;
      setValue(c, unit, k[id]);
      tr.appendChild(c);
    }
    tr.dataset.name = name;
    return tr;
  }

  function drawTable(roll, c) {
    const body = document.querySelector('#table tbody');
    const foot = document.querySelector('#table tfoot');
    const rows = [...roll.groups].map(([n, s]) => [n, kpis(s, c)]);
    rows.sort((a, b) => {
      let o;
      if (sortCol === 'name') o = a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      else {
        const x = a[1][sortCol], y = b[1][sortCol];
        if (x === null && y === null) o = 0;
        else if (x === null) return 1;
        else if (y === null) return -1;
        else o = x - y;
      }
      if (sortDesc) o = -o;
      return o || (a[0] < b[0] ? -1 : 1);
    });
    body.replaceChildren(...rows.map(([n, k]) => row(n, k, 'td')));
    foot.replaceChildren(row('TOTAL', kpis(roll.total, c), 'td'));
    document.querySelectorAll('#table th').forEach((th) => {
      th.classList.toggle('sorted', th.dataset.col === sortCol);
      th.classList.toggle('asc', th.dataset.col === sortCol && !sortDesc);
    });
    document.querySelector('#table th.name').textContent = view === 'campaign' ? 'Campaign' : 'Channel';
  }

  // ---- render ----------------------------------------------------------------
  function drawWindows(ws) {
    const nav = $('windows');
    const have = [...nav.children].map((b) => b.dataset.window).join(',');
    if (have !== ws.join(',')) {
      nav.replaceChildren(...ws.map((w) => {
        const b = document.createElement('button');
        b.type = 'button';
        b.textContent = w;
        b.dataset.window = w;
        b.addEventListener('click', () => { setWindow(w); render(); });
        return b;
      }));
    }
    for (const b of nav.children) b.classList.toggle('on', b.dataset.window === win);
  }

  // First shown: 30d, where a B2B funnel has every KPI (a day, or a
  // weekend, may hold no closed deal); else 1d; else the first window.
  function defaultWindow(ws) {
    return ['30d', '1d'].find((w) => ws.includes(w)) || ws[0];
  }

  function render() {
    const ws = windows();
    if (ws.length && !ws.includes(win)) setWindow(defaultWindow(ws));
    drawWindows(ws);
    const nowEl = $('now');
    nowEl.dataset.value = String(now);
    nowEl.textContent = now ? new Date(now).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '–';
    if (!win) {
      $('empty').hidden = false;
      for (const [id] of V2) $('card-' + id).hidden = true;
      return;
    }
    const c = constants(win);
    const roll = rollup(win, view);
    $('empty').hidden = roll.any;
    const tot = kpis(roll.total, c);
    for (const [id, , unit] of HEADLINE.concat(V2)) {
      setValue($('kpi-' + id), unit, tot[id]);
      spark(document.querySelector('#card-' + id + ' svg'), series(win, id));
    }
    let anyV2 = false;
    for (const [id] of V2) {
      const present = tot[id] !== null;
      $('card-' + id).hidden = !present;
      anyV2 = anyV2 || present;
    }
    $('v2-none').hidden = anyV2;
    $('funnel-window').textContent = 'window ' + win + ' · step conversion rates';
    drawFunnel(tot);
    drawTable(roll, c);
  }

  // The stream carries the chosen window only (a sixth of all series with
  // the default windows): switching reconnects, and the new snapshot
  // replaces the store.
  function setWindow(w) {
    win = w;
    shown.clear();
    livePts.delete(w);
    loadHistory(w);
    connect();
  }

  async function loadWindows() {
    try {
      const r = await fetch(api('/api/v1/kpis?metric=funnel_spend'), { cache: 'no-store' });
      if (r.ok) {
        const set = new Set();
        for (const s of (await r.json()).series) if (s.labels.window) set.add(s.labels.window);
        if (set.size) served = sortWindows(set);
      }
    } catch (e) {
      // Retried below; until then the store's windows serve.
    }
    setTimeout(loadWindows, 30000);
  }

  // Totals of the window at this tick, for the sparklines.
  function recordTick() {
    for (const w of win ? [win] : []) {
      const roll = rollup(w, 'channel');
      const k = kpis(roll.total, constants(w));
      let l = livePts.get(w);
      if (!l) { l = []; livePts.set(w, l); }
      if (!l.length || l[l.length - 1].t !== now) l.push({ t: now, kpis: k });
      while (l.length && l[0].t < now - HOUR_MS) l.shift();
    }
  }

  async function loadHistory(w) {
    try {
      const r = await fetch(api('/api/v1/kpis/history?window=' + encodeURIComponent(w)), { cache: 'no-store' });
      if (!r.ok) return;
      const h = await r.json();
      const c = constants(w);
      hist.set(w, h.points.filter((p) => p.windows[w]).map((p) => {
        const s = emptySums();
        Object.assign(s, p.windows[w]);
        s.state = { funnel_mrr: p.state.funnel_mrr || 0, funnel_customers: p.state.funnel_customers || 0 };
        for (const n of Object.keys(p.state)) s.has.add(n);
        return { t: p.now, kpis: kpis(s, c) };
      }));
      if (w === win) render();
    } catch (e) {
      // The next window switch retries; the stream carries on.
    }
  }

  // ---- stream ------------------------------------------------------------------
  let es = null;
  let retry = 500;
  function badge(id, cls, text) {
    const b = $(id);
    b.className = 'badge ' + cls;
    b.textContent = text;
  }
  let gen = 0;
  function connect() {
    if (es) es.close();
    const me = ++gen;
    const again = () => { if (me === gen) connect(); };
    const q = '/api/v1/kpis/stream?interval=' + STREAM_INTERVAL + (win ? '&window=' + encodeURIComponent(win) : '');
    const src = new EventSource(api(q));
    es = src;
    src.addEventListener('snapshot', (e) => {
      if (me !== gen) return;
      apply(JSON.parse(e.data), true);
      retry = 500;
      badge('stream', 'ok', 'live');
      recordTick();
      render();
    });
    src.addEventListener('changes', (e) => {
      if (me !== gen) return;
      apply(JSON.parse(e.data), false);
      recordTick();
      render();
    });
    src.addEventListener('shutdown', () => {
      badge('stream', 'bad', 'engine stopping');
      src.close();
      setTimeout(again, retry);
    });
    src.onerror = () => {
      if (me !== gen) return;
      badge('stream', 'wait', 'reconnecting');
      if (src.readyState === EventSource.CLOSED) {
        setTimeout(again, retry);
        retry = Math.min(retry * 2, 10000);
      }
    };
  }

  // ---- health --------------------------------------------------------------------
  let prevHealth = null;
  async function pollHealth() {
    try {
      const r = await fetch(api('/api/v1/health'), { cache: 'no-store' });
      if (!r.ok) throw new Error(String(r.status));
      const h = await r.json();
      badge('ready', h.ready ? 'ok' : 'bad', h.ready ? 'ready' : 'not ready: ' + h.reason);
      $('h-ingested').textContent = fmt.count(h.ingested);
      $('h-ingested').dataset.value = String(h.ingested);
      $('h-late').textContent = fmt.count(h.late);
      $('h-lag').textContent = fmt.count(h.lag);
      $('h-lag').dataset.value = String(h.lag);
      const t = performance.now();
      if (prevHealth) {
        const dt = (t - prevHealth.t) / 1e3;
        const di = h.ingested - prevHealth.h.ingested;
        const dr = h.rejected - prevHealth.h.rejected;
        const dd = h.duplicates - prevHealth.h.duplicates;
        const all = di + dr + dd;
        $('h-rate').textContent = fmt.count(Math.max(0, di) / dt);
        $('h-rejected').textContent = (all > 0 ? fmt.pct(dr / all) : '–') + ' (' + fmt.count(h.rejected) + ')';
        $('h-duplicates').textContent = (all > 0 ? fmt.pct(dd / all) : '–') + ' (' + fmt.count(h.duplicates) + ')';
      } else {
        const all = h.ingested + h.rejected + h.duplicates;
        $('h-rejected').textContent = (all > 0 ? fmt.pct(h.rejected / all) : '–') + ' (' + fmt.count(h.rejected) + ')';
        $('h-duplicates').textContent = (all > 0 ? fmt.pct(h.duplicates / all) : '–') + ' (' + fmt.count(h.duplicates) + ')';
      }
      prevHealth = { t, h };
    } catch (e) {
      badge('ready', 'bad', 'engine unreachable');
    }
    setTimeout(pollHealth, 5000);
  }

  // ---- controls --------------------------------------------------------------------
  makeCards($('cards'), HEADLINE);
  makeCards($('v2'), V2);
  document.querySelectorAll('#views button').forEach((b) => b.addEventListener('click', () => {
    view = b.dataset.view;
    shown.clear();
    document.querySelectorAll('#views button').forEach((x) => x.classList.toggle('on', x === b));
    render();
  }));
  document.querySelectorAll('#table th').forEach((th) => th.addEventListener('click', () => {
    if (sortCol === th.dataset.col) sortDesc = !sortDesc;
    else { sortCol = th.dataset.col; sortDesc = th.dataset.col !== 'name'; }
    render();
  }));
  window.addEventListener('error', (e) => errors.push(String(e.message)));
  loadWindows().finally(() => {
    const ws = windows();
    if (ws.length) setWindow(defaultWindow(ws));
    else connect();
  });
  pollHealth();
})();
