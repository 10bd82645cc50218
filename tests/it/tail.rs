//! `funnelstream tail` and its API against a running engine (`demo`, which
//! needs nothing installed), including its coloured output through a real
//! pseudo-terminal (tmux; `.ci/run` installs it).

use crate::support::tmux::{keep, Tmux};
use crate::support::{free_port, http_get, stdout_of, wait_until, Engine, BIN};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A demo on `port`, ready, on the benchmark stream (`--firehose`: KPIs
/// change all the time); `extra`: more flags (e.g. `--rate 0`: the
/// history only, so that its KPIs stay put).
fn demo_on(port: u16, extra: &[&str]) -> Engine {
    let firehose = ["--firehose", "--duration", "300"];
    Engine::demo_on(port, &[&firehose[..], extra].concat())
}

fn demo() -> Engine {
    demo_on(free_port(), &[])
}

fn tail(args: &[&str]) -> std::process::Output {
    Command::new(BIN).arg("tail").args(args).output().unwrap()
}

#[test]
fn api_once_and_follow() {
    let d = demo();
    let port = d.port;

    // The JSON API, filtered.
    let (status, body) = http_get(port, "/api/v1/kpis?metric=funnel_win_ratio&window=30d", &[]);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let series = v["series"].as_array().unwrap();
    assert!(!series.is_empty(), "{body}");
    for s in series {
        assert_eq!(s["metric"], "funnel_win_ratio");
        assert_eq!(s["labels"]["window"], "30d");
        let x = s["value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x));
    }

    // --once: a table, no colour when stdout is not a terminal.
    let out = tail(&[
        "--url",
        &d.url(),
        "--once",
        "--metric",
        "funnel_clicks",
        "--window",
        "1d",
    ]);
    let text = stdout_of(&out);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("METRIC"));
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 6, "{text}");
    assert!(
        rows.iter()
            .all(|r| r.starts_with("funnel_clicks ") && r.contains(" 1d ")),
        "{text}"
    );
    assert!(!text.contains('\x1b'));
    let out = tail(&[
        "--url",
        &d.url(),
        "--once",
        "--channel",
        "email",
        "--metric",
        "funnel_mrr",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().skip(1).all(|r| r.contains(" email ")),
        "{text}"
    );

    // Following: the table, then one line per changed series.
    let mut child = Command::new(BIN)
        .args([
            "tail",
            "--url",
            &d.url(),
            "--metric",
            "funnel_clicks",
            "--window",
            "5m",
            "--interval",
            "0.3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let _ = child.kill();
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let _ = child.wait();
    assert!(text.starts_with("METRIC"), "{text}");
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("funnel_clicks{channel="))
        .collect();
    assert!(!changes.is_empty(), "no change lines:\n{text}");
    assert!(changes.iter().all(|l| l.contains("window=\"5m\"")));

    // Unreachable engine: a clear error and exit 1.
    let out = tail(&["--url", "http://127.0.0.1:1", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("127.0.0.1:1"));
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn colours_only_on_a_terminal() {
    let d = demo();
    let session = format!("funnel-tail-{}", std::process::id());
    let cmd = format!(
        "{BIN} tail --url {} --metric funnel_clicks --window 5m --interval 0.3",
        d.url()
    );
    let ok = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "220",
            "-y",
            "60",
            &cmd,
        ])
        .status()
        .expect("tmux must be installed (Debian package tmux; .ci/run installs it)")
        .success();
    assert!(ok);
    std::thread::sleep(Duration::from_secs(4));
    let out = Command::new("tmux")
        .args(["capture-pane", "-p", "-e", "-t", &session])
        .output()
        .unwrap();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("funnel_clicks{channel="), "{screen}");
    assert!(
        screen.contains("\x1b["),
        "expected colour escapes on a terminal:\n{screen}"
    );
}

// ---- The board: `--once`, the full-screen board through tmux, and the
// engine going away. Expected values are computed here from the API's own
// windowed counts, independently of the board's code: ratios roll up as sum
// of numerator over sum of denominator (METRICS.md, Labels).

/// The board's KPI columns, in order.
const COLS: [&str; 14] = [
    "SPEND",
    "CLICKS",
    "CTR",
    "LEADS",
    "CPL",
    "MQLS",
    "SQLS",
    "OPPS",
    "WON",
    "WIN",
    "CAC",
    "REVENUE",
    "ROAS",
    "VELOCITY/D",
];

/// The API's series of one window (and those without a window), or all.
fn api_snapshot(port: u16, window: Option<&str>) -> serde_json::Value {
    let path = match window {
        Some(w) => format!("/api/v1/kpis?window={w}"),
        None => "/api/v1/kpis".to_string(),
    };
    let (status, body) = http_get(port, &path, &[]);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The v2 columns, after COLS, each shown only while TOTAL has a value.
const V2_COLS: [&str; 5] = ["LTV:CAC", "PAYBACK/MO", "BOUNCE", "OPEN", "NPS"];

/// Per row: the values of COLS then V2_COLS.
type Expected = std::collections::BTreeMap<String, Vec<Option<f64>>>;

/// Rows (labels joined by a space, and `TOTAL`) of `by` for `window`.
fn expected(snap: &serde_json::Value, window: &str, by: &str) -> Expected {
    use std::collections::BTreeMap;
    #[derive(Default, Clone, Copy)]
    struct S {
        spend: f64,
        ad_spend: f64,
        impressions: f64,
        clicks: f64,
        leads: f64,
        mqls: f64,
        sqls: f64,
        opps: f64,
        won: f64,
        lost: f64,
        revenue: f64,
        // Per key, the mean cycle times the deals won: the cycles' sum.
        cycle_sum: f64,
        // v2
        sessions: f64,
        bounces: f64,
        delivered: f64,
        opened: f64,
        nps: f64,
        promoters: f64,
        detractors: f64,
        mrr_new: f64,
        customers_new: f64,
        customers_reactivated: f64,
        customers_churned: f64,
        mrr: f64,
        customers: f64,
    }
    // Current MRR and customers per key (no window label).
    let mut state: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for s in snap["series"].as_array().unwrap() {
        let l = &s["labels"];
        let m = s["metric"].as_str().unwrap();
        if !l["window"].is_null() || !(m == "funnel_mrr" || m == "funnel_customers") {
            continue;
        }
        let k = (
            l["channel"].as_str().unwrap().to_string(),
            l["campaign"].as_str().unwrap().to_string(),
        );
        let e = state.entry(k).or_default();
        let v = s["value"].as_f64().unwrap();
        if m == "funnel_mrr" {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }
    // Per key first (the mean cycle needs the key's deals won).
    let mut keys: BTreeMap<(String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for s in snap["series"].as_array().unwrap() {
        let l = &s["labels"];
        if l["window"].as_str() != Some(window)
            || l.as_object()
                .unwrap()
                .keys()
                .any(|k| !["channel", "campaign", "window"].contains(&k.as_str()))
        {
            continue;
        }
        let (Some(v), Some(ch), Some(cp)) = (
            s["value"].as_f64(),
            l["channel"].as_str(),
            l["campaign"].as_str(),
        ) else {
            continue;
        };
        keys.entry((ch.into(), cp.into()))
            .or_default()
            .insert(s["metric"].as_str().unwrap().to_string(), v);
    }
    // The engine's gross margin and gross_margin * W / month, from the
    // first key that publishes CAC payback and LTV.
    let (mut gm, mut gm_w) = (None, None);
    for (k, m) in &keys {
        let g = |n: &str| m.get(n).copied().unwrap_or(0.0);
        if gm.is_none() && g("funnel_cac_payback_months") > 0.0 && g("funnel_mrr_new") > 0.0 {
            gm = Some(g("funnel_spend") / (g("funnel_mrr_new") * g("funnel_cac_payback_months")));
        }
        let (mrr, customers) = state.get(k).copied().unwrap_or_default();
        if gm_w.is_none() && g("funnel_ltv") > 0.0 && mrr > 0.0 && customers > 0.0 {
            gm_w = Some(g("funnel_ltv") * g("funnel_customer_churn_ratio") / (mrr / customers));
        }
    }
    let mut groups: BTreeMap<String, S> = BTreeMap::new();
    for ((ch, cp), m) in &keys {
        let g = |n: &str| m.get(n).copied().unwrap_or(0.0);
        let name = match by {
            "channel" => ch.clone(),
            "campaign" => cp.clone(),
            _ => format!("{ch} {cp}"),
        };
        for e in [name, "TOTAL".to_string()] {
            let x = groups.entry(e).or_default();
            x.spend += g("funnel_spend");
            x.ad_spend += g("funnel_ad_spend");
            x.impressions += g("funnel_impressions");
            x.clicks += g("funnel_clicks");
            x.leads += g("funnel_leads");
            x.mqls += g("funnel_mqls");
            x.sqls += g("funnel_sqls");
            x.opps += g("funnel_opportunities");
            x.won += g("funnel_deals_won");
            x.lost += g("funnel_deals_lost");
            x.revenue += g("funnel_revenue_won");
            x.cycle_sum += g("funnel_sales_cycle_mean_seconds") * g("funnel_deals_won");
            x.sessions += g("funnel_sessions");
            x.bounces += g("funnel_bounces");
            x.delivered += g("funnel_emails_delivered");
            x.opened += g("funnel_emails_opened");
            x.nps += g("funnel_nps_responses");
            x.promoters += g("funnel_nps_promoters");
            x.detractors += g("funnel_nps_detractors");
            x.mrr_new += g("funnel_mrr_new");
            x.customers_new += g("funnel_customers_new");
            x.customers_reactivated += g("funnel_customers_reactivated");
            x.customers_churned += g("funnel_customers_churned");
            let (mrr, customers) = state
                .get(&(ch.clone(), cp.clone()))
                .copied()
                .unwrap_or_default();
            x.mrr += mrr;
            x.customers += customers;
        }
    }
    let q = |a: f64, b: f64| (b != 0.0).then(|| a / b);
    groups
        .into_iter()
        .map(|(name, x)| {
            let velocity = if x.won > 0.0 && x.cycle_sum > 0.0 {
                let days = x.cycle_sum / x.won / 86_400.0;
                Some(x.opps * (x.revenue / x.won) * (x.won / (x.won + x.lost)) / days)
            } else {
                None
            };
            let row = vec![
                Some(x.spend),
                Some(x.clicks),
                q(x.clicks, x.impressions),
                Some(x.leads),
                q(x.spend, x.leads),
                Some(x.mqls),
                Some(x.sqls),
                Some(x.opps),
                Some(x.won),
                q(x.won, x.won + x.lost),
                q(x.spend, x.won),
                Some(x.revenue),
                q(x.revenue, x.ad_spend),
                velocity,
            ];
            // LTV:CAC = arpa * gm * W/month / churn / cac (METRICS.md v2).
            let start =
                x.customers - (x.customers_new + x.customers_reactivated - x.customers_churned);
            let ltv_cac = match (gm_w, q(x.spend, x.won)) {
                (Some(gw), Some(cac))
                    if x.mrr > 0.0
                        && x.customers > 0.0
                        && start > 0.0
                        && x.customers_churned > 0.0 =>
                {
                    Some(x.mrr / x.customers * gw / (x.customers_churned / start) / cac)
                }
                _ => None,
            };
            let payback = match gm {
                Some(gm) if x.mrr_new > 0.0 => Some(x.spend / (x.mrr_new * gm)),
                _ => None,
            };
            let mut row = row;
            row.extend([
                ltv_cac,
                payback,
                q(x.bounces, x.sessions),
                q(x.opened, x.delivered),
                q(100.0 * (x.promoters - x.detractors), x.nps),
            ]);
            (name, row)
        })
        .collect()
}

/// A board read back from text: its header cells and its rows (labels
/// joined by a space, `TOTAL` included), in display order.
#[derive(Debug)]
struct Board {
    header: Vec<String>,
    rows: Vec<(String, Vec<Option<f64>>)>,
}

fn cell(s: &str) -> Option<f64> {
    if s == "-" {
        return None;
    }
    match s.strip_suffix('%') {
        Some(p) => Some(p.parse::<f64>().unwrap() / 100.0),
        None => Some(s.parse::<f64>().unwrap_or_else(|_| panic!("cell `{s}`"))),
    }
}

fn parse_board(text: &str) -> Option<Board> {
    let mut lines = text.lines();
    let header: Vec<String> = lines.find_map(|l| {
        let h: Vec<String> = l
            .split_whitespace()
            .map(|c| c.trim_end_matches(['▼', '▲']).to_string())
            .collect();
        let labels = h
            .iter()
            .take_while(|c| *c == "CHANNEL" || *c == "CAMPAIGN")
            .count();
        (labels > 0
            && h.len() >= labels + COLS.len()
            && h[labels..labels + COLS.len()] == COLS.map(String::from)
            && h[labels + COLS.len()..]
                .iter()
                .all(|c| V2_COLS.contains(&c.as_str())))
        .then_some(h)
    })?;
    let labels = header
        .iter()
        .take_while(|c| *c == "CHANNEL" || *c == "CAMPAIGN")
        .count();
    let mut rows = Vec::new();
    for l in lines {
        let cells: Vec<&str> = l.split_whitespace().collect();
        if cells.first() == Some(&"TOTAL") {
            let values = cells[1..].iter().map(|c| cell(c)).collect();
            rows.push(("TOTAL".to_string(), values));
            return Some(Board { header, rows });
        }
        if cells.len() != header.len() {
            continue;
        }
        rows.push((
            cells[..labels].join(" "),
            cells[labels..].iter().map(|c| cell(c)).collect(),
        ));
    }
    None
}

/// Whether the board shows exactly the expected rows and values (to the
/// precision printed: 2 decimals, of a percent for ratios).
fn agrees(board: &Board, want: &Expected) -> Result<(), String> {
    let names: std::collections::BTreeSet<&String> = board.rows.iter().map(|r| &r.0).collect();
    let want_names: std::collections::BTreeSet<&String> = want.keys().collect();
    if names != want_names {
        return Err(format!("rows {names:?}, expected {want_names:?}"));
    }
    // The KPI columns shown: every v1 column, and the v2 ones whose TOTAL
    // has a value.
    let all: Vec<&str> = COLS.iter().chain(V2_COLS.iter()).copied().collect();
    let shown: Vec<&str> = board.header[board.header.len() - board.rows[0].1.len()..]
        .iter()
        .map(String::as_str)
        .collect();
    let want_shown: Vec<&str> = all
        .iter()
        .enumerate()
        .filter(|(i, c)| COLS.contains(c) || want["TOTAL"][*i].is_some())
        .map(|(_, c)| *c)
        .collect();
    if shown != want_shown {
        return Err(format!("columns {shown:?}, expected {want_shown:?}"));
    }
    for (name, got) in &board.rows {
        for (col, g) in shown.iter().zip(got) {
            let i = all.iter().position(|c| c == col).unwrap();
            let w = &want[name][i];
            let tol = if matches!(*col, "CTR" | "WIN" | "ROAS" | "BOUNCE" | "OPEN") {
                0.00005
            } else {
                0.005
            };
            let ok = match (g, w) {
                (None, None) => true,
                (Some(g), Some(w)) => (g - w).abs() <= tol * 1.0001 + w.abs() * 1e-9,
                _ => false,
            };
            if !ok {
                return Err(format!("{name} {col}: board {g:?}, API {w:?}"));
            }
        }
    }
    Ok(())
}

/// The values of one column, rows in display order (TOTAL left out).
fn column(board: &Board, header: &str) -> Vec<Option<f64>> {
    let i = COLS.iter().position(|c| *c == header).unwrap();
    board
        .rows
        .iter()
        .filter(|r| r.0 != "TOTAL")
        .map(|r| r.1[i])
        .collect()
}

/// Sorted by value (descending or not), rows without a value last.
fn is_sorted_by(values: &[Option<f64>], descending: bool) -> bool {
    values.windows(2).all(|w| match (w[0], w[1]) {
        (Some(a), Some(b)) => {
            if descending {
                a >= b
            } else {
                a <= b
            }
        }
        (None, Some(_)) => false,
        _ => true,
    })
}

#[test]
fn once_prints_the_board_the_api_adds_up_to() {
    // The history only: the KPIs stay put between the API's snapshot and
    // tail's (compared twice over to be sure).
    let d = demo_on(free_port(), &["--rate", "0"]);
    let port = d.port;
    for (window, by) in [
        ("1d", "channel"),
        ("30d", "channel"),
        ("30d", "campaign"),
        ("90d", "channel/campaign"),
    ] {
        wait_until(30, "a stable --once board", || {
            let a = api_snapshot(port, Some(window));
            let out = tail(&["--url", &d.url(), "--once", "--window", window, "--by", by]);
            let b = api_snapshot(port, Some(window));
            assert!(out.status.success(), "{out:?}");
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(!text.contains('\x1b'), "{text}");
            let first = text.lines().next().unwrap();
            assert!(
                first.contains(&format!("window {window}")) && first.contains(&format!("by {by}")),
                "{text}"
            );
            if a["series"] != b["series"] {
                return Err("the API moved".into());
            }
            let board = parse_board(&text).ok_or(format!("no board in\n{text}"))?;
            let want = expected(&a, window, by);
            assert!(want.len() > 2, "{want:?}");
            for c in ["BOUNCE", "OPEN", "NPS"] {
                assert!(
                    window == "1d" || board.header.iter().any(|h| h == c),
                    "{c}: {text}"
                );
            }
            agrees(&board, &want).map_err(|e| format!("{e}\n{text}"))?;
            assert!(is_sorted_by(&column(&board, "SPEND"), true), "{text}");
            Ok(())
        });
    }
    // Sorted by another column, ascending labels on request.
    let out = tail(&[
        "--url",
        &d.url(),
        "--once",
        "--window",
        "30d",
        "--sort",
        "funnel_cac",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    let board = parse_board(&text).unwrap();
    assert!(is_sorted_by(&column(&board, "CAC"), true), "{text}");
    let out = tail(&["--url", &d.url(), "--once", "--sort", "channel"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = parse_board(&text)
        .unwrap()
        .rows
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert!(names[..names.len() - 1].is_sorted(), "{text}");
    // Bad usage: exit 2 naming the flag.
    for (flag, v) in [("--sort", "nope"), ("--by", "region"), ("--window", "2d")] {
        let out = tail(&["--url", &d.url(), "--once", flag, v]);
        assert_eq!(out.status.code(), Some(2), "{flag} {v}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag.trim_start_matches('-')), "{err}");
    }
}

/// A child whose stderr is collected by a thread.
fn spawn_collecting(args: &[&str]) -> (Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let mut child = Command::new(BIN)
        .arg("tail")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for r in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let t = text.clone();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(r);
            let mut line = String::new();
            while std::io::BufRead::read_line(&mut r, &mut line).is_ok_and(|n| n > 0) {
                t.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
    }
    (child, text)
}

#[test]
fn tail_exits_1_when_the_engine_goes_away_and_follow_reconnects() {
    let port = free_port();
    let mut d = demo_on(port, &[]);
    let (mut plain, plain_out) =
        spawn_collecting(&["--url", &d.url(), "--changes", "--window", "5m"]);
    let (mut follow, follow_out) =
        spawn_collecting(&["--url", &d.url(), "--changes", "--follow", "--window", "5m"]);
    wait_until(20, "both tails following", || {
        for o in [&plain_out, &follow_out] {
            if !o.lock().unwrap().contains("funnel_clicks{") {
                return Err(o.lock().unwrap().clone());
            }
        }
        Ok(())
    });
    d.stop();

    // Without --follow: a clear message and exit 1, promptly.
    let code = wait_until(20, "tail exiting", || {
        plain.try_wait().unwrap().ok_or("still running".to_string())
    });
    assert_eq!(code.code(), Some(1));
    let text = plain_out.lock().unwrap().clone();
    assert!(
        text.contains(&format!(
            "funnelstream tail: the engine at {} went away",
            d.url()
        )),
        "{text}"
    );

    // With --follow: still there, saying it reconnects...
    wait_until(20, "follow saying it reconnects", || {
        let t = follow_out.lock().unwrap().clone();
        t.contains("reconnecting in").then_some(()).ok_or(t)
    });
    assert!(follow.try_wait().unwrap().is_none());
    // ...and back on the engine restarted on the same port, with its data.
    let seen = follow_out.lock().unwrap().len();
    let _d2 = demo_on(port, &[]);
    wait_until(40, "follow reconnected", || {
        let t = follow_out.lock().unwrap().clone();
        let after = &t[seen..];
        (after.contains(&format!("reconnected to {}", d.url())) && after.contains("funnel_clicks{"))
            .then_some(())
            .ok_or(t)
    });
    assert!(follow.try_wait().unwrap().is_none());
    let _ = follow.kill();
    let _ = follow.wait();
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn board_in_tmux_shows_sorts_switches_and_quits() {
    let d = demo_on(free_port(), &["--rate", "0"]);
    let port = d.port;
    let t = Tmux::shell(230, 50);
    // 30d: the history's last days (1d may hold no event of a short one).
    t.line(&format!(
        "{BIN} tail --url {} --window 30d; echo TAIL_EXIT=$?",
        d.url()
    ));

    // The board agrees with the API, for the view and window shown.
    let check = |name: &str, window: &str, by: &str| -> Board {
        let screen = wait_until(30, name, || {
            let s = t.screen();
            let title = s.lines().next().unwrap_or_default().to_string();
            if !title.contains(&format!("window {window}")) || !title.contains(&format!("by {by} "))
            {
                return Err(s);
            }
            let board = parse_board(&s).ok_or(s.clone())?;
            agrees(
                &board,
                &expected(&api_snapshot(port, Some(window)), window, by),
            )
            .map_err(|e| format!("{e}\n{s}"))?;
            Ok(s)
        });
        keep(name, &screen);
        parse_board(&screen).unwrap()
    };
    let board = check("1-channel-30d", "30d", "channel");
    let screen = t.screen();
    assert!(screen.contains("SPEND▼"), "{screen}");
    assert!(screen.contains("engine ready"), "{screen}");
    assert!(screen.contains("stream live"), "{screen}");
    assert!(screen.contains("q  quit"), "{screen}");
    assert!(is_sorted_by(&column(&board, "SPEND"), true), "{screen}");
    assert!(board.rows.len() >= 7, "{screen}");
    // The demo has web, email and survey events: their v2 columns show
    // (and agree with the API above, as LTV:CAC and CAC payback do when
    // shown).
    for c in ["BOUNCE", "OPEN", "NPS"] {
        assert!(board.header.iter().any(|h| h == c), "{c}: {screen}");
    }

    // Sort by the next column, then reversed.
    t.keys(&["Right"]);
    let screen = t.wait(10, "sorted by clicks", |s| s.contains("CLICKS▼"));
    assert!(
        is_sorted_by(&column(&parse_board(&screen).unwrap(), "CLICKS"), true),
        "{screen}"
    );
    t.keys(&["r"]);
    let screen = t.wait(10, "sorted by clicks, ascending", |s| s.contains("CLICKS▲"));
    keep("2-sorted-clicks-ascending", &screen);
    let clicks = column(&parse_board(&screen).unwrap(), "CLICKS");
    assert!(is_sorted_by(&clicks, false), "{screen}");
    assert!(clicks.first() < clicks.last(), "{screen}");

    // Per campaign, per channel and campaign, and back.
    t.keys(&["v"]);
    let b = check("3-campaign-30d", "30d", "campaign");
    assert_eq!(b.header[0], "CAMPAIGN");
    t.keys(&["v"]);
    let b = check("4-channel-campaign-30d", "30d", "channel/campaign");
    assert_eq!(b.header[..2], ["CHANNEL", "CAMPAIGN"]);
    t.keys(&["v"]);
    // The next window.
    t.keys(&["w"]);
    check("5-channel-90d", "90d", "channel");

    // Type to filter.
    t.keys(&["/"]);
    t.keys(&["-l", "paid"]);
    t.keys(&["Enter"]);
    let screen = t.wait(10, "filtered", |s| s.contains("filter \"paid\""));
    keep("6-filtered", &screen);
    let b = parse_board(&screen).unwrap();
    assert!(b.rows.len() >= 2, "{screen}");
    assert!(
        b.rows
            .iter()
            .all(|r| r.0.contains("paid") || r.0 == "TOTAL"),
        "{screen}"
    );

    // q quits and gives the terminal back: the shell's screen, cooked mode.
    t.keys(&["q"]);
    let screen = t.wait(10, "tail exited", |s| !exits(s).is_empty());
    assert_eq!(exits(&screen), ['0'], "{screen}");
    assert!(!screen.contains("TOTAL"), "{screen}");
    t.line("stty -a | tr ' ;' '\\n\\n' | grep -x -e -icanon -e icanon -e -echo -e echo | tr '\\n' ' '; echo STTY_DONE");
    // The command line shows the marker once, its output a second time.
    let screen = t.wait(10, "stty", |s| s.matches("STTY_DONE").count() >= 2);
    // Raw mode would print -icanon -echo.
    assert!(
        screen.lines().any(|l| l.trim() == "icanon echo STTY_DONE"),
        "{screen}"
    );
}

#[test]
#[ignore = "needs tmux: run scripts/test"]
fn board_in_tmux_highlights_changes_and_says_when_the_engine_goes_away() {
    let port = free_port();
    let mut d = demo_on(port, &[]);
    let t = Tmux::shell(230, 40);
    t.line(&format!(
        "{BIN} tail --url {} --window 5m --interval 0.5; echo TAIL_EXIT=$?",
        d.url()
    ));
    t.wait(30, "the board", |s| {
        s.contains("stream live") && s.contains("TOTAL")
    });
    // Live traffic changes the 5m window every update: changed cells get
    // a green (up) or red (down) background for a moment.
    let screen = wait_until(20, "a highlighted cell", || {
        let s = t.screen_with(true);
        ["[48;5;2m", "[48;5;1m", "[42m", "[41m"]
            .iter()
            .any(|c| s.contains(c))
            .then_some(s.clone())
            .ok_or(s)
    });
    keep("7-highlighted-5m.ansi", &screen);
    d.stop();
    let screen = t.wait(20, "tail gone", |s| !exits(s).is_empty());
    keep("8-engine-gone", &screen);
    assert_eq!(exits(&screen), ['1'], "{screen}");
    assert!(
        screen.contains(&format!("the engine at {} went away", d.url())),
        "{screen}"
    );

    // --follow: the status line says it reconnects, then the board is back.
    let mut d = demo_on(port, &[]);
    t.line(&format!(
        "{BIN} tail --url {} --follow; echo TAIL_EXIT=$?",
        d.url()
    ));
    t.wait(30, "the board", |s| {
        s.contains("stream live") && s.contains("TOTAL")
    });
    d.stop();
    let screen = t.wait(20, "reconnecting", |s| s.contains("reconnecting in"));
    keep("9-follow-reconnecting", &screen);
    let _d = demo_on(port, &[]);
    let screen = t.wait(40, "reconnected", |s| {
        s.contains("stream live") && s.contains("engine ready")
    });
    keep("10-follow-reconnected", &screen);
    t.keys(&["q"]);
    let screen = t.wait(10, "tail exited", |s| exits(s).len() > 1);
    assert_eq!(exits(&screen), ['1', '0'], "{screen}");
}

/// The exit statuses the shell printed after `echo TAIL_EXIT=$?`, in
/// order. The command line itself shows `TAIL_EXIT=$?` as soon as the board
/// leaves the screen, before `tail` has exited: waiting for that text alone
/// raced with the exit.
fn exits(screen: &str) -> Vec<char> {
    screen
        .match_indices("TAIL_EXIT=")
        .filter_map(|(i, m)| screen[i + m.len()..].chars().next())
        .filter(char::is_ascii_digit)
        .collect()
}
