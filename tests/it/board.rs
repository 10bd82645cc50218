//! The live KPI board at `/` in a real headless Chromium (Debian's
//! `chromium`, driven over the DevTools protocol by `headless_chrome`):
//! against a running `demo` it loads with no console error, shows the
//! values `/api/v1/kpis` serves (rolled up here, independently of the
//! page's JavaScript), updates without a reload, and leaves a screenshot in
//! `target/artefacts/`; behind the web config's TLS and basic auth its
//! stream and API requests get through.

use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{http_get, openssl, Engine, Scratch};
const CHROMIUM: &str = "/usr/bin/chromium";

fn artefacts() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artefacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Chromium's environment: its temporary files (`org.chromium.Chromium.*`,
/// left behind otherwise) in `dir`, a [`Scratch`] of their own with a short
/// name. Chromium makes a Unix socket in there, whose path must fit in 107
/// bytes: when `dir` is too deep for that, Chromium gets the inherited
/// temporary directory. (Its profile stays in the fresh directory per
/// launch that headless_chrome makes and deletes: a fixed `user_data_dir`
/// is still locked by a Chromium whose launch failed, so every retry fails.)
fn chromium_env(dir: &Path) -> HashMap<String, String> {
    let socket = dir.join("org.chromium.Chromium.XXXXXX/SingletonSocket");
    if socket.as_os_str().len() > 107 {
        return HashMap::new();
    }
    HashMap::from([("TMPDIR".to_string(), dir.display().to_string())])
}

/// Chromium, its temporary files in `dir`, and every console
/// error, uncaught exception and failed load the page reports.
fn browser(dir: &Path) -> Browser {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} missing: install Debian's chromium (scripts/test does)"
    );
    Browser::new(
        LaunchOptions::default_builder()
            .path(Some(PathBuf::from(CHROMIUM)))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1400, 1500)))
            .process_envs(Some(chromium_env(dir)))
            .idle_browser_timeout(Duration::from_secs(180))
            .build()
            .unwrap(),
    )
    .unwrap()
}

fn watch_errors(tab: &Arc<Tab>) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    tab.enable_log().unwrap();
    tab.enable_runtime().unwrap();
    let e = errors.clone();
    tab.add_event_listener(Arc::new(move |ev: &Event| {
        let msg = match ev {
            Event::LogEntryAdded(x) => {
                let entry = &x.params.entry;
                format!("{:?}", entry.level)
                    .eq_ignore_ascii_case("error")
                    .then(|| format!("log: {} ({:?})", entry.text, entry.url))
            }
            Event::RuntimeExceptionThrown(x) => Some(format!(
                "exception: {} {:?}",
                x.params.exception_details.text,
                x.params
                    .exception_details
                    .exception
                    .as_ref()
                    .and_then(|o| o.description.clone())
            )),
            Event::RuntimeConsoleAPICalled(x) => format!("{:?}", x.params.Type)
                .eq_ignore_ascii_case("error")
                .then(|| format!("console.error: {:?}", x.params.args)),
            _ => None,
        };
        if let Some(m) = msg {
            e.lock().unwrap().push(m);
        }
    }))
    .unwrap();
    errors
}

/// Evaluates `js` (an expression) in the page; its value through JSON.
fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    let r = tab
        .evaluate(&format!("JSON.stringify(({js}))"), false)
        .unwrap();
    match r.value {
        Some(serde_json::Value::String(s)) => serde_json::from_str(&s).unwrap(),
        other => panic!("{js}: {other:?}"),
    }
}

fn wait_for(tab: &Tab, js: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = eval(tab, js);
        if v.as_bool() == Some(true) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for `{js}`; page text:\n{}",
            eval(tab, "document.body.innerText")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `data-value` of the element with this id, as a number.
fn value(tab: &Tab, id: &str) -> Option<f64> {
    let v = eval(
        tab,
        &format!("(document.getElementById({id:?}) || {{dataset: {{}}}}).dataset.value"),
    );
    v.as_str().and_then(|s| s.parse().ok())
}

fn text(tab: &Tab, id: &str) -> String {
    eval(tab, &format!("document.getElementById({id:?}).textContent"))
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Sums of `/api/v1/kpis` series over keys, per metric, for one window,
/// optionally for one channel: the test's own roll-up.
fn api_sums(port: u16, window: &str) -> (i64, BTreeMap<(String, String), f64>) {
    let (code, body) = http_get(port, &format!("/api/v1/kpis?window={window}"), &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["series"].as_array().unwrap() {
        let labels = s["labels"].as_object().unwrap();
        if labels
            .keys()
            .any(|k| !["channel", "campaign", "window"].contains(&k.as_str()))
        {
            continue;
        }
        if labels.get("window").and_then(|w| w.as_str()) != Some(window) {
            continue;
        }
        let m = s["metric"].as_str().unwrap().to_string();
        let ch = labels["channel"].as_str().unwrap().to_string();
        let x = s["value"].as_f64().unwrap();
        *out.entry((m.clone(), String::new())).or_default() += x;
        *out.entry((m, ch)).or_default() += x;
    }
    (v["now"].as_i64().unwrap(), out)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// `x` lies between `lo` and `hi` (within float rounding).
fn between(lo: f64, x: f64, hi: f64) -> bool {
    (lo <= x || close(lo, x)) && (x <= hi || close(x, hi))
}

#[test]
#[ignore = "needs chromium: run scripts/test"]
fn the_board_shows_the_demo_live_in_chromium() {
    let demo = Engine::demo(&["--history", "179", "--rate", "20", "--duration", "600"]);
    let port = demo.port;
    // The page is self-contained: nothing but inline code, no other host.
    let (code, html) = http_get(port, "/", &[]);
    assert_eq!(code, 200);
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
    assert!(!html.contains("<script src") && !html.contains("<link rel=\"stylesheet\""));

    let chromium = Scratch::new("chromium");
    let browser = browser(&chromium);
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    let errors = watch_errors(&tab);
    let url = format!("http://127.0.0.1:{port}/");
    tab.navigate_to(&url).unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "document.getElementById('stream').textContent === 'live' && \
         document.getElementById('kpi-spend').dataset.value !== '' && \
         document.getElementById('kpi-spend').dataset.value !== undefined && \
         document.getElementById('ready').textContent === 'ready'",
        Duration::from_secs(60),
    );

    // The window selector: every window of the demo, 30d first shown.
    let windows = eval(
        &tab,
        "[...document.querySelectorAll('#windows button')].map(b => b.dataset.window)",
    );
    assert_eq!(
        windows,
        serde_json::json!(["5m", "1h", "1d", "7d", "30d", "90d", "mtd", "qtd"])
    );
    assert_eq!(
        eval(
            &tab,
            "document.querySelector('#windows button.on').dataset.window"
        ),
        "30d"
    );
    eval(
        &tab,
        "document.querySelector('#windows button[data-window=\"90d\"]').click() || true",
    );
    wait_for(
        &tab,
        "document.getElementById('funnel-window').textContent.includes('90d')",
        Duration::from_secs(5),
    );

    // The page's numbers lie between two API snapshots taken before and
    // after reading them: over 90 days the demo's counts only grow (its
    // history spans at most 90 days), so the page must show a state in
    // between. The stream ticks every 2 s: wait for a tick of the page
    // newer than the first snapshot.
    let (t_before, before) = api_sums(port, "90d");
    wait_for(
        &tab,
        &format!("Number(document.getElementById('now').dataset.value) >= {t_before}"),
        Duration::from_secs(10),
    );
    let shown: Vec<(&str, &str, Option<f64>)> = [
        ("funnel-impressions", "funnel_impressions"),
        ("funnel-clicks", "funnel_clicks"),
        ("funnel-leads", "funnel_leads"),
        ("funnel-mqls", "funnel_mqls"),
        ("funnel-sqls", "funnel_sqls"),
        ("funnel-opportunities", "funnel_opportunities"),
        ("funnel-won", "funnel_deals_won"),
        ("kpi-spend", "funnel_spend"),
        ("kpi-leads", "funnel_leads"),
        ("cell-TOTAL-spend", "funnel_spend"),
        ("cell-TOTAL-leads", "funnel_leads"),
    ]
    .into_iter()
    .map(|(id, m)| (id, m, value(&tab, id)))
    .collect();
    let channels = eval(
        &tab,
        "[...document.querySelectorAll('#table tbody tr')].map(r => [r.dataset.name, \
           Number(r.querySelector('[data-col=spend]').dataset.value), \
           Number(r.querySelector('[data-col=leads]').dataset.value)])",
    );
    let (_, after) = api_sums(port, "90d");
    for (id, m, v) in &shown {
        let v = v.unwrap_or_else(|| panic!("#{id} shows no value"));
        let key = (m.to_string(), String::new());
        let (lo, hi) = (before[&key], after[&key]);
        assert!(between(lo, v, hi), "#{id}: page {v}, API {lo}..{hi} ({m})");
    }
    let channels = channels.as_array().unwrap();
    assert!(channels.len() >= 4, "{channels:?}");
    for c in channels {
        let ch = c[0].as_str().unwrap().to_string();
        for (i, m) in [(1, "funnel_spend"), (2, "funnel_leads")] {
            let key = (m.to_string(), ch.clone());
            let v = c[i].as_f64().unwrap();
            let (lo, hi) = (
                before.get(&key).copied().unwrap_or(0.0),
                after.get(&key).copied().unwrap_or(0.0),
            );
            assert!(
                between(lo, v, hi),
                "channel {ch}: page {m} {v}, API {lo}..{hi}"
            );
        }
    }
    // What is shown is what is in data-value: the visible text of a count
    // (both read at once: the page keeps updating).
    let both = eval(
        &tab,
        "[document.getElementById('kpi-leads').textContent, document.getElementById('kpi-leads').dataset.value]",
    );
    assert_eq!(
        both[0]
            .as_str()
            .unwrap()
            .replace(',', "")
            .parse::<f64>()
            .ok(),
        both[1].as_str().unwrap().parse::<f64>().ok(),
        "visible leads"
    );
    // Ratios are the page's own sums over sums: CPL = spend / leads.
    let v = eval(
        &tab,
        "['kpi-spend', 'kpi-leads', 'kpi-cpl'].map(id => Number(document.getElementById(id).dataset.value))",
    );
    let (spend, leads, cpl) = (
        v[0].as_f64().unwrap(),
        v[1].as_f64().unwrap(),
        v[2].as_f64().unwrap(),
    );
    assert!(close(cpl, spend / leads), "CPL {cpl} vs {spend}/{leads}");
    // The demo has v2 events: their cards show values in range.
    for (id, lo, hi) in [
        ("kpi-bounce", 0.0, 1.0),
        ("kpi-open", 0.0, 1.0),
        ("kpi-nps", -100.0, 100.0),
    ] {
        let v = value(&tab, id).unwrap_or_else(|| panic!("#{id} shows no value"));
        assert!((lo..=hi).contains(&v), "#{id} = {v}");
    }
    // MRR and customers are current state: equal to the API's sums now
    // (the demo's subscription events are few: retry until no event lands
    // between the two reads).
    let state_ok = (0..20).any(|_| {
        let (_, body) = http_get(port, "/api/v1/kpis?metric=funnel_customers", &[]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let api: f64 = v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .sum();
        let page = value(&tab, "kpi-customers");
        if page == Some(api) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(500));
        false
    });
    assert!(state_ok, "customers on the page never matched the API");

    // Live: engine time and values move without a reload.
    eval(&tab, "(window.__not_reloaded = 42)");
    let (t0, spend0) = (value(&tab, "now").unwrap(), value(&tab, "kpi-spend"));
    wait_for(
        &tab,
        &format!(
            "Number(document.getElementById('now').dataset.value) > {t0} && \
             document.getElementById('kpi-spend').dataset.value !== '{}'",
            spend0.map(|s| s.to_string()).unwrap_or_default()
        ),
        Duration::from_secs(30),
    );
    assert_eq!(eval(&tab, "window.__not_reloaded"), 42, "the page reloaded");
    // Sparklines: drawn from the server's history and the stream.
    wait_for(
        &tab,
        "document.querySelectorAll('#card-spend svg polyline').length === 1",
        Duration::from_secs(30),
    );
    // Health: events counted, a rate shown.
    assert!(value(&tab, "h-ingested").unwrap() > 1000.0);
    // The campaign view and sorting by a column.
    eval(
        &tab,
        "document.querySelector('#views button[data-view=campaign]').click() || true",
    );
    wait_for(
        &tab,
        "document.querySelector('#table th.name').textContent === 'Campaign' && \
         document.querySelectorAll('#table tbody tr').length > 6",
        Duration::from_secs(5),
    );
    eval(
        &tab,
        "document.querySelector('#table th[data-col=leads]').click() || true",
    );
    let leads: Vec<f64> = eval(
        &tab,
        "[...document.querySelectorAll('#table tbody td[data-col=leads]')].map(c => Number(c.dataset.value))",
    )
    .as_array()
    .unwrap()
    .iter()
    .map(|x| x.as_f64().unwrap())
    .collect();
    assert!(
        leads.windows(2).all(|w| w[0] >= w[1]),
        "sorted by leads: {leads:?}"
    );
    eval(
        &tab,
        "document.querySelector('#views button[data-view=channel]').click() || true",
    );
    eval(
        &tab,
        "document.querySelector('#windows button[data-window=\"30d\"]').click() || true",
    );
    std::thread::sleep(Duration::from_secs(3));

    let png = tab
        .capture_screenshot(
            headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
            None,
            None,
            true,
        )
        .unwrap();
    let path = artefacts().join("board.png");
    std::fs::write(&path, png).unwrap();
    println!("board screenshot: {}", path.display());
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// A web config (`web.yml`, in a scratch directory of its own named after
/// `tag`) with a throw-away self-signed certificate for 127.0.0.1 and the
/// user `ops` with `password`: the directory, which the test keeps while
/// the engine runs.
fn tls_web_config(tag: &str, password: &str) -> Scratch {
    let d = Scratch::new(tag);
    openssl(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
        ],
    );
    let hash = bcrypt::hash(password, 4).unwrap();
    std::fs::write(
        d.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  ops: {hash}\n"
        ),
    )
    .unwrap();
    d
}

/// Behind TLS and basic auth (`run` with a web config; no broker is
/// needed to serve the page: the engine is up, not ready): the page loads
/// with the credentials the browser was given, and its stream and API
/// requests carry them (the stream delivers, `/api/v1/health` answers).
#[test]
#[ignore = "needs chromium and openssl: run scripts/test"]
fn the_board_works_behind_tls_and_basic_auth() {
    let password = "b0ard-Pa55";
    let d = tls_web_config("board", password);
    let web = d.join("web.yml");
    let engine = Engine::without_broker(&["--web-config-file", web.to_str().unwrap()]);
    let port = engine.port;
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "not listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    let chromium = Scratch::new("chromium");
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(PathBuf::from(CHROMIUM)))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1400, 1000)))
            .process_envs(Some(chromium_env(&chromium)))
            // The throw-away certificate is self-signed.
            .ignore_certificate_errors(true)
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .unwrap();

    // Without credentials: the server's 401 (headless Chromium, which
    // cannot ask, fails the navigation), no board.
    let tab = browser.new_tab().unwrap();
    match tab.navigate_to(&format!("https://127.0.0.1:{port}/")) {
        Err(e) => assert!(e.to_string().contains("AUTH"), "{e}"),
        Ok(_) => {
            let _ = tab.wait_until_navigated();
            let body = eval(&tab, "document.body ? document.body.innerText : ''");
            assert!(
                !body.as_str().unwrap_or_default().contains("live KPI board"),
                "{body}"
            );
        }
    }

    // With credentials: the board, its stream and its API calls.
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    let errors = watch_errors(&tab);
    tab.navigate_to(&format!("https://ops:{password}@127.0.0.1:{port}/"))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "document.getElementById('stream').textContent === 'live' && \
         document.getElementById('ready').textContent.startsWith('not ready: ') && \
         location.protocol === 'https:'",
        Duration::from_secs(30),
    );
    let png = tab
        .capture_screenshot(
            headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
            None,
            None,
            true,
        )
        .unwrap();
    let path = artefacts().join("board-tls.png");
    std::fs::write(&path, png).unwrap();
    println!(
        "board screenshot behind TLS and basic auth: {}",
        path.display()
    );
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Every KPI of the board from `/api/v1/kpis` (all windows), rolled up here
/// with the METRICS.md formulas, sum of numerator over sum of denominator:
/// (group name or "TOTAL") -> KPI id of the page -> value.
fn expected_kpis(
    snap: &serde_json::Value,
    window: &str,
) -> BTreeMap<String, BTreeMap<&'static str, Option<f64>>> {
    type Key = (String, String);
    let mut win: BTreeMap<Key, BTreeMap<String, f64>> = BTreeMap::new();
    let mut state: BTreeMap<Key, BTreeMap<String, f64>> = BTreeMap::new();
    for s in snap["series"].as_array().unwrap() {
        let l = s["labels"].as_object().unwrap();
        if l.keys()
            .any(|k| !["channel", "campaign", "window"].contains(&k.as_str()))
        {
            continue;
        }
        let k = (
            l["channel"].as_str().unwrap().to_string(),
            l["campaign"].as_str().unwrap().to_string(),
        );
        let (m, v) = (
            s["metric"].as_str().unwrap().to_string(),
            s["value"].as_f64().unwrap(),
        );
        match l.get("window").and_then(|w| w.as_str()) {
            None => {
                state.entry(k).or_default().insert(m, v);
            }
            Some(w) if w == window => {
                win.entry(k).or_default().insert(m, v);
            }
            _ => {}
        }
    }
    // The engine's settings, from its per-key KPIs (recording-rules.yml).
    let (mut gm, mut gm_w) = (None, None);
    for (k, m) in &win {
        let g = |n: &str| m.get(n).copied().unwrap_or(0.0);
        let st = |n: &str| state.get(k).and_then(|s| s.get(n)).copied().unwrap_or(0.0);
        if gm.is_none() && g("funnel_cac_payback_months") > 0.0 && g("funnel_mrr_new") > 0.0 {
            gm = Some(g("funnel_spend") / (g("funnel_mrr_new") * g("funnel_cac_payback_months")));
        }
        if gm_w.is_none()
            && g("funnel_ltv") > 0.0
            && st("funnel_mrr") > 0.0
            && st("funnel_customers") > 0.0
        {
            gm_w = Some(
                g("funnel_ltv") * g("funnel_customer_churn_ratio")
                    / (st("funnel_mrr") / st("funnel_customers")),
            );
        }
    }
    let mut sums: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for (k, m) in &win {
        for group in [k.0.clone(), "TOTAL".to_string()] {
            let s = sums.entry(group).or_default();
            for (n, v) in m {
                *s.entry(n.clone()).or_default() += v;
            }
            *s.entry("cycle_sum".into()).or_default() += m
                .get("funnel_sales_cycle_mean_seconds")
                .copied()
                .unwrap_or(0.0)
                * m.get("funnel_deals_won").copied().unwrap_or(0.0);
            for (n, v) in state.get(k).into_iter().flatten() {
                *s.entry(format!("state:{n}")).or_default() += v;
            }
        }
    }
    let q = |a: f64, b: f64| (b != 0.0).then(|| a / b);
    sums.into_iter()
        .map(|(name, s)| {
            let g = |n: &str| s.get(n).copied().unwrap_or(0.0);
            let (won, lost) = (g("funnel_deals_won"), g("funnel_deals_lost"));
            let cac = q(g("funnel_spend"), won);
            let velocity = (won > 0.0 && g("cycle_sum") > 0.0).then(|| {
                g("funnel_opportunities") * (g("funnel_revenue_won") / won) * (won / (won + lost))
                    / (g("cycle_sum") / won / 86_400.0)
            });
            let (mrr, cust) = (g("state:funnel_mrr"), g("state:funnel_customers"));
            let net =
                g("funnel_mrr_new") + g("funnel_mrr_expansion") + g("funnel_mrr_reactivation")
                    - g("funnel_mrr_contraction")
                    - g("funnel_mrr_churned");
            let mrr_start = ((mrr - net) * 1e6).round() / 1e6;
            let nrr =
                (mrr_start > 0.0).then(|| (mrr_start + net - g("funnel_mrr_new")) / mrr_start);
            let cust_start = cust
                - (g("funnel_customers_new") + g("funnel_customers_reactivated")
                    - g("funnel_customers_churned"));
            let churn = (cust_start > 0.0).then(|| g("funnel_customers_churned") / cust_start);
            let ltv_cac = match (gm_w, churn, cac) {
                // Over a CAC of 0 (won deals, no spend) the ratio is absent,
                // as every ratio over a zero denominator (METRICS.md).
                (Some(gw), Some(ch), Some(cac))
                    if ch > 0.0 && mrr > 0.0 && cust > 0.0 && cac > 0.0 =>
                {
                    Some(mrr / cust * gw / ch / cac)
                }
                _ => None,
            };
            let payback = match gm {
                Some(gm) if g("funnel_mrr_new") > 0.0 => {
                    Some(g("funnel_spend") / (g("funnel_mrr_new") * gm))
                }
                _ => None,
            };
            let kpis = BTreeMap::from([
                ("spend", Some(g("funnel_spend"))),
                ("leads", Some(g("funnel_leads"))),
                ("cpl", q(g("funnel_spend"), g("funnel_leads"))),
                ("cac", cac),
                ("roas", q(g("funnel_revenue_won"), g("funnel_ad_spend"))),
                ("win", q(won, won + lost)),
                ("velocity", velocity),
                ("mrr", Some(mrr)),
                ("customers", Some(cust)),
                ("nrr", nrr),
                ("churn", churn),
                ("ltv_cac", ltv_cac),
                ("payback", payback),
                ("bounce", q(g("funnel_bounces"), g("funnel_sessions"))),
                (
                    "open",
                    q(g("funnel_emails_opened"), g("funnel_emails_delivered")),
                ),
                (
                    "email_click",
                    q(g("funnel_emails_clicked"), g("funnel_emails_delivered")),
                ),
                (
                    "nps",
                    q(
                        100.0 * (g("funnel_nps_promoters") - g("funnel_nps_detractors")),
                        g("funnel_nps_responses"),
                    ),
                ),
            ]);
            (name, kpis)
        })
        .collect()
}

/// With the demo's history only (no live traffic, so the API holds still),
/// every number of the cards and of the table by channel equals the roll-up
/// of `/api/v1/kpis` computed here, for two windows.
#[test]
#[ignore = "needs chromium: run scripts/test"]
fn every_kpi_on_the_board_equals_the_apis_roll_up() {
    let demo = Engine::demo(&["--history", "179", "--rate", "0", "--duration", "600"]);
    let port = demo.port;
    let chromium = Scratch::new("chromium");
    let browser = browser(&chromium);
    let tab = browser.new_tab().unwrap();
    let errors = watch_errors(&tab);
    tab.navigate_to(&format!("http://127.0.0.1:{port}/"))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    wait_for(
        &tab,
        "document.getElementById('stream').textContent === 'live'",
        Duration::from_secs(60),
    );
    let card_ids = [
        "spend",
        "leads",
        "cpl",
        "cac",
        "roas",
        "win",
        "velocity",
        "mrr",
        "customers",
        "nrr",
        "churn",
        "ltv_cac",
        "payback",
        "bounce",
        "open",
        "email_click",
        "nps",
    ];
    let table_ids = [
        "spend", "leads", "cpl", "cac", "roas", "win", "velocity", "ltv_cac", "bounce", "nps",
    ];
    for window in ["30d", "90d"] {
        eval(
            &tab,
            &format!("document.querySelector('#windows button[data-window=\"{window}\"]').click() || true"),
        );
        let mut last = String::new();
        let mut checked = 0;
        let deadline = Instant::now() + Duration::from_secs(40);
        while checked == 0 {
            assert!(Instant::now() < deadline, "window {window}: {last}");
            std::thread::sleep(Duration::from_millis(2500));
            let (_, a) = http_get(port, &format!("/api/v1/kpis?window={window}"), &[]);
            let page: serde_json::Value = eval(
                &tab,
                "Object.fromEntries([...document.querySelectorAll('[data-value]')].map(e => [e.id, e.dataset.value]))",
            );
            let (_, b) = http_get(port, &format!("/api/v1/kpis?window={window}"), &[]);
            let (a, b): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(&a).unwrap(),
                serde_json::from_str(&b).unwrap(),
            );
            if a["series"] != b["series"] {
                last = "the API moved".into();
                continue;
            }
            let want = expected_kpis(&a, window);
            let got = |id: &str| -> Option<f64> {
                page.get(id)
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse().ok())
            };
            let mut bad = Vec::new();
            let mut cmp = |what: String, g: Option<f64>, w: Option<f64>| {
                let ok = match (g, w) {
                    (None, None) => true,
                    (Some(g), Some(w)) => close(g, w),
                    _ => false,
                };
                if !ok {
                    bad.push(format!("{what}: page {g:?}, API {w:?}"));
                }
            };
            for id in card_ids {
                cmp(
                    format!("card {id}"),
                    got(&format!("kpi-{id}")),
                    want["TOTAL"][id],
                );
            }
            for (name, k) in &want {
                for id in table_ids {
                    cmp(
                        format!("{name} {id}"),
                        got(&format!("cell-{name}-{id}")),
                        k[id],
                    );
                }
            }
            if bad.is_empty() {
                checked = want.len();
            } else {
                last = bad.join("\n");
            }
        }
        assert!(checked >= 5, "window {window}: {checked} rows");
    }
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// Behind TLS and basic auth, with data: `run` on a real Kafka broker
/// (tests/it/support), a handful of events whose KPIs are worked out here by
/// hand; the board shows them, then, when more events arrive, the new
/// values without a reload.
#[test]
#[ignore = "needs chromium, openssl and Kafka (Java, Maven): run scripts/test"]
fn the_board_shows_kafka_values_behind_tls_and_basic_auth() {
    let broker = crate::support::Broker::start();
    broker.create_topic("board", 1);
    let password = "k4fka-b0ard";
    let d = tls_web_config("board-kafka", password);
    let web = d.join("web.yml");
    let engine = Engine::start(
        &broker.addr(),
        "board",
        "board",
        &["--web-config-file", web.to_str().unwrap()],
    );
    let port = engine.port;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (ts, day) = (now - 60_000, 86_400_000i64);
    let ev = |id: &str, ch: &str, rest: &str| {
        format!(r#"{{"id":"{id}","ts":{ts},"channel":"{ch}","campaign":"c-{ch}",{rest}}}"#)
    };
    let mut first = vec![
        ev(
            "i1",
            "paid_search",
            r#""type":"impression","count":1000,"cost":50.5"#,
        ),
        ev(
            "c1",
            "paid_search",
            r#""type":"click","count":40,"cost":20.25"#,
        ),
        ev(
            "o1",
            "paid_search",
            r#""type":"deal","deal_id":"D1","stage":"open","amount":1200"#,
        ),
        ev(
            "w1",
            "paid_search",
            &format!(
                r#""type":"deal","deal_id":"D1","stage":"won","amount":1200,"created_ts":{}"#,
                ts - 30 * day
            ),
        ),
        ev(
            "x1",
            "paid_search",
            &format!(
                r#""type":"deal","deal_id":"D2","stage":"lost","amount":500,"created_ts":{}"#,
                ts - 10 * day
            ),
        ),
        ev(
            "s1",
            "organic",
            r#""type":"spend","amount":100,"category":"tools""#,
        ),
    ];
    for i in 0..4 {
        first.push(ev(
            &format!("lp{i}"),
            "paid_search",
            &format!(r#""type":"lead","lead_id":"LP{i}""#),
        ));
    }
    for i in 0..2 {
        first.push(ev(
            &format!("lo{i}"),
            "organic",
            &format!(r#""type":"lead","lead_id":"LO{i}""#),
        ));
    }
    let file = d.join("first.ndjson");
    std::fs::write(&file, first.join("\n") + "\n").unwrap();
    crate::support::produce_file(&broker.addr(), "board", &file);

    let chromium = Scratch::new("chromium");
    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(PathBuf::from(CHROMIUM)))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1400, 1300)))
            .process_envs(Some(chromium_env(&chromium)))
            .ignore_certificate_errors(true)
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    )
    .unwrap();
    let tab = browser.new_tab().unwrap();
    let errors = watch_errors(&tab);
    tab.navigate_to(&format!("https://ops:{password}@127.0.0.1:{port}/"))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    // By hand: spend = 50.5 + 20.25 + 100 = 170.75 (ad spend 70.75), six
    // leads, one deal won of 1200 and one lost.
    wait_for(
        &tab,
        "document.getElementById('kpi-leads').dataset.value === '6' && \
         document.getElementById('ready').textContent === 'ready'",
        Duration::from_secs(60),
    );
    eval(&tab, "(window.__not_reloaded = 7)");
    let want = [
        ("kpi-spend", 170.75),
        ("kpi-cpl", 170.75 / 6.0),
        ("kpi-cac", 170.75),
        ("kpi-roas", 1200.0 / 70.75),
        ("kpi-win", 0.5),
        ("funnel-impressions", 1000.0),
        ("funnel-clicks", 40.0),
        ("funnel-opportunities", 1.0),
        ("funnel-won", 1.0),
        ("cell-organic-spend", 100.0),
        ("cell-organic-cpl", 50.0),
        ("cell-paid_search-cpl", 70.75 / 4.0),
        ("cell-paid_search-win", 0.5),
        // 1 opportunity x 1200 x 0.5 / 30 days.
        ("cell-paid_search-velocity", 20.0),
    ];
    for (id, w) in want {
        let v = value(&tab, id).unwrap_or_else(|| panic!("#{id} shows nothing"));
        assert!(close(v, w), "#{id}: page {v}, by hand {w}");
    }
    assert_eq!(text(&tab, "rate-clicks"), "↓ 4.00%");

    // Three more leads: the page follows without a reload.
    let more: Vec<String> = (0..3)
        .map(|i| {
            ev(
                &format!("lm{i}"),
                "organic",
                &format!(r#""type":"lead","lead_id":"LM{i}""#),
            )
        })
        .collect();
    let file = d.join("more.ndjson");
    std::fs::write(&file, more.join("\n") + "\n").unwrap();
    crate::support::produce_file(&broker.addr(), "board", &file);
    wait_for(
        &tab,
        "document.getElementById('kpi-leads').dataset.value === '9'",
        Duration::from_secs(30),
    );
    assert!(close(value(&tab, "kpi-cpl").unwrap(), 170.75 / 9.0));
    assert_eq!(eval(&tab, "window.__not_reloaded"), 7, "the page reloaded");
    let png = tab
        .capture_screenshot(
            headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
            None,
            None,
            true,
        )
        .unwrap();
    let path = artefacts().join("board-tls-kafka.png");
    std::fs::write(&path, png).unwrap();
    println!(
        "board screenshot, Kafka behind TLS and basic auth: {}",
        path.display()
    );
    let errors = errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}
