//! Unit tests of the decoder against EVENTS.md and docs/SEMANTICS.md: every
//! rejection reason, the check order, accepted forms and defaults, borrowing,
//! the contract's examples, and robustness on random and mutated bytes
//! (with a differential check against a small `serde_json::Value` model of
//! SEMANTICS.md).
//!
//! Tests named `regression_*` document behaviour that contradicts
//! SEMANTICS.md / the golden Python reference and FAIL until the decoder is
//! fixed; each says what is expected and what happens instead.

use super::time::{format_rfc3339_ms, parse_rfc3339_ms, MAX_TS_MS};
use super::RejectReason as R;
use super::*;
use crate::synth::{Rng, Synth, SynthConfig};
use proptest::prelude::*;
use serde_json::Value;

/// Wall clock of most tests: 2027-01-15T08:00:00Z, after every example.
const WALL: i64 = 1_800_000_000_000;
/// 2026-11-25T08:00:00Z.
const T0: i64 = 1_795_593_600_000;
const M: i64 = MICRO;
/// Earliest and latest `ts` an RFC 3339 string can produce: year 0000 at
/// +23:59, and a leap second of 9999-12-31 at -23:59.
const MIN_STR_TS: i64 = -62_167_219_200_000 - (23 * 60 + 59) * 60_000;
const MAX_STR_TS: i64 = MAX_TS_MS + 1_000 + (23 * 60 + 59) * 60_000;

fn cfg() -> DecodeConfig {
    DecodeConfig::default()
}

fn dec(s: &str) -> Result<Event<'_>, RejectReason> {
    decode(s.as_bytes(), &cfg(), WALL)
}

#[track_caller]
fn ok(s: &str) -> Event<'_> {
    match dec(s) {
        Ok(ev) => ev,
        Err(r) => panic!("expected a valid event, got {r} for {s}"),
    }
}

/// Like [`ok`], with the strings copied, for inputs built on the fly.
#[track_caller]
fn valid(s: &str) -> Event<'static> {
    let ev = ok(s);
    let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
    let body = match ev.body {
        Body::Deal {
            deal_id,
            stage,
            amount,
            created_ts,
            origin,
            influenced,
            ignored,
        } => Body::Deal {
            deal_id: own(deal_id),
            stage,
            amount,
            created_ts,
            origin,
            influenced,
            ignored,
        },
        Body::Conversion {
            action,
            count,
            value,
        } => Body::Conversion {
            action: own(action),
            count,
            value,
        },
        Body::Session {
            count,
            pageviews,
            bounces,
            engaged,
        } => Body::Session {
            count,
            pageviews,
            bounces,
            engaged,
        },
        Body::Email { action, count } => Body::Email { action, count },
        Body::Survey { kind, score } => Body::Survey { kind, score },
        Body::Impression { count, cost } => Body::Impression { count, cost },
        Body::Click { count, cost } => Body::Click { count, cost },
        Body::Lead { stage } => Body::Lead { stage },
        Body::Spend { amount, ads } => Body::Spend { amount, ads },
        Body::Subscription { change, mrr_delta } => Body::Subscription { change, mrr_delta },
    };
    Event {
        id: own(ev.id),
        ts: ev.ts,
        channel: own(ev.channel),
        campaign: own(ev.campaign),
        body,
    }
}

#[track_caller]
fn rejects(s: &str, want: RejectReason) {
    match dec(s) {
        Ok(ev) => panic!("expected {want}, got Ok({ev:?}) for {s}"),
        Err(r) => assert_eq!(r, want, "input: {s}"),
    }
}

#[track_caller]
fn rejects_bytes(b: &[u8], want: RejectReason) {
    match decode(b, &cfg(), WALL) {
        Ok(ev) => panic!("expected {want}, got Ok({ev:?}) for {}", show(b)),
        Err(r) => assert_eq!(r, want, "input: {}", show(b)),
    }
}

/// Printable form of arbitrary bytes for failure messages.
fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

// ---------------------------------------------------------------------------
// A tiny builder of event objects: ordered (key, raw JSON value) pairs.

#[derive(Clone, Debug)]
struct Obj(Vec<(String, String)>);

impl Obj {
    fn new(pairs: &[(&str, &str)]) -> Self {
        Obj(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A valid event of type `ty` with every field of its type present.
    fn full(ty: &str) -> Self {
        let ty_json = format!("\"{ty}\"");
        let mut o = Obj::new(&[
            ("id", "\"e1\""),
            ("type", &ty_json),
            ("ts", "\"2026-11-25T08:00:00Z\""),
            ("channel", "\"paid_search\""),
            ("campaign", "\"brand-q4\""),
        ]);
        let own: &[(&str, &str)] = match ty {
            "impression" | "click" => &[("count", "3"), ("cost", "1.5")],
            "lead" => &[("lead_id", "\"L-1\""), ("stage", "\"mql\"")],
            "deal" => &[
                ("deal_id", "\"D-1\""),
                ("stage", "\"won\""),
                ("amount", "24000"),
                ("created_ts", "\"2026-10-01T12:00:00Z\""),
            ],
            "spend" => &[("amount", "5000"), ("category", "\"salaries\"")],
            "subscription" => &[
                ("account_id", "\"A-1\""),
                ("change", "\"new\""),
                ("mrr_delta", "2000"),
            ],
            "session" => &[
                ("count", "120"),
                ("pageviews", "310"),
                ("bounces", "48"),
                ("engaged", "70"),
            ],
            "conversion" => &[
                ("action", "\"demo_request\""),
                ("count", "2"),
                ("value", "150.5"),
            ],
            "email" => &[("action", "\"opened\""), ("count", "412")],
            "survey" => &[("kind", "\"nps\""), ("score", "9")],
            _ => panic!("unknown type {ty}"),
        };
        for (k, v) in own {
            o = o.set(k, v);
        }
        o
    }

    /// Replaces the value of `k` (every occurrence), or appends it.
    fn set(mut self, k: &str, v: &str) -> Self {
        let mut found = false;
        for (key, val) in &mut self.0 {
            if key == k {
                *val = v.to_string();
                found = true;
            }
        }
        if !found {
            self.0.push((k.to_string(), v.to_string()));
        }
        self
    }

    /// Appends `k` even if present (duplicate keys).
    fn push(mut self, k: &str, v: &str) -> Self {
        self.0.push((k.to_string(), v.to_string()));
        self
    }

    fn del(mut self, k: &str) -> Self {
        self.0.retain(|(key, _)| key != k);
        self
    }

    fn json(&self) -> String {
        let body: Vec<String> = self.0.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

const TYPES: [&str; 6] = [
    "impression",
    "click",
    "lead",
    "deal",
    "spend",
    "subscription",
];

/// The event types EVENTS.md v2 adds.
const TYPES_V2: [&str; 4] = ["session", "conversion", "email", "survey"];

/// Every type of EVENTS.md v2, in its table order.
fn all_types() -> Vec<&'static str> {
    TYPES.iter().chain(TYPES_V2.iter()).copied().collect()
}

/// The type's own fields, in EVENTS.md table order.
fn own_fields(ty: &str) -> &'static [&'static str] {
    match ty {
        "impression" | "click" => &["count", "cost"],
        "lead" => &["lead_id", "stage"],
        "deal" => &["deal_id", "stage", "amount", "created_ts"],
        "spend" => &["amount", "category"],
        "subscription" => &["account_id", "change", "mrr_delta"],
        _ => unreachable!(),
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Str,
    Num,
    Ts,
}

fn kind(field: &str) -> Kind {
    match field {
        "ts" | "created_ts" => Kind::Ts,
        "count" | "cost" | "amount" | "mrr_delta" => Kind::Num,
        _ => Kind::Str,
    }
}

/// JSON values of the wrong type for a field of kind `k` (`null` included).
fn wrong_values(k: Kind) -> &'static [&'static str] {
    match k {
        Kind::Str => &[
            "null",
            "true",
            "false",
            "0",
            "1",
            "-1",
            "1.5",
            "1e3",
            "[]",
            "[\"e1\"]",
            "{}",
            "{\"a\":\"b\"}",
        ],
        Kind::Num => &[
            "null",
            "true",
            "false",
            "\"1\"",
            "\"\"",
            "\"1.5\"",
            "[]",
            "[1]",
            "{}",
            "{\"n\":1}",
        ],
        Kind::Ts => &[
            "null",
            "true",
            "false",
            "[]",
            "[1764057600123]",
            "{}",
            "{\"ts\":\"2026-11-25T08:00:00Z\"}",
        ],
    }
}

// ---------------------------------------------------------------------------
// Reason labels.

#[test]
fn reason_labels_match_the_semantics_table_in_order() {
    let labels: Vec<&str> = R::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        labels,
        [
            "too_large",
            "invalid_json",
            "not_object",
            "missing_field",
            "wrong_type",
            "invalid_value",
            "invalid_number",
            "invalid_length",
            "invalid_timestamp",
            "future_timestamp",
            "created_after_ts",
        ]
    );
    for (i, r) in R::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
        assert_eq!(r.to_string(), r.as_str());
    }
}

// ---------------------------------------------------------------------------
// too_large

#[test]
fn too_large_uses_max_event_bytes() {
    let ev = Obj::full("click").json();
    let n = ev.len();
    let at = |max: usize| {
        decode(
            ev.as_bytes(),
            &DecodeConfig {
                max_event_bytes: max,
                ..cfg()
            },
            WALL,
        )
    };
    assert!(at(n).is_ok(), "exactly max_event_bytes is accepted");
    assert_eq!(at(n - 1).unwrap_err(), R::TooLarge);
    assert_eq!(at(10).unwrap_err(), R::TooLarge);
    assert_eq!(at(0).unwrap_err(), R::TooLarge);
    // Checked before anything else: garbage, non-objects and bad UTF-8 that
    // are too long are too_large.
    let small = DecodeConfig {
        max_event_bytes: 4,
        ..cfg()
    };
    for b in [&b"{{{{{"[..], b"[1,2,3]", b"\xff\xff\xff\xff\xff", b"nulll"] {
        assert_eq!(
            decode(b, &small, WALL).unwrap_err(),
            R::TooLarge,
            "{}",
            show(b)
        );
    }
    // An empty message is never too large, it is invalid JSON.
    assert_eq!(
        decode(
            b"",
            &DecodeConfig {
                max_event_bytes: 0,
                ..cfg()
            },
            WALL
        )
        .unwrap_err(),
        R::InvalidJson
    );
}

#[test]
fn too_large_default_is_one_mebibyte() {
    let prefix = r#"{"id":"e1","type":"click","ts":0,"pad":""#;
    let suffix = r#""}"#;
    let pad = (1 << 20) - prefix.len() - suffix.len();
    let exact = format!("{prefix}{}{suffix}", "x".repeat(pad));
    assert_eq!(exact.len(), 1 << 20);
    assert!(dec(&exact).is_ok());
    let over = format!("{prefix}{}{suffix}", "x".repeat(pad + 1));
    rejects(&over, R::TooLarge);
}

// ---------------------------------------------------------------------------
// invalid_json

#[test]
fn invalid_json_syntax() {
    let ev = r#"{"id":"e1","type":"click","ts":0}"#;
    for s in [
        "",
        " ",
        "\n",
        "{",
        "}",
        "{\"id\"",
        "{\"id\":",
        "{\"id\":\"e1\"",
        "{\"id\":\"e1\",}",
        "{,}",
        "{'id':'e1'}",
        "{id:\"e1\"}",
        "{\"id\" \"e1\"}",
        "{\"id\":\"e1\" \"type\":\"click\"}",
        "{\"id\":\"e\\x1\"}",
        "{\"id\":\"e\\u12\"}",
        "{\"id\":\"a\tb\",\"type\":\"click\",\"ts\":0}",
        "{\"id\":\"a\u{1}b\",\"type\":\"click\",\"ts\":0}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":01}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":+1}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":.5}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":1.}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":1e}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":0x10}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":NaN}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":Infinity}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":-Infinity}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":nul}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":tru}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":[1,]}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":{\"a\"}}",
        "{\"id\":\"e1\",\"type\":\"click\",\"ts\":0 /* c */}",
        "// c\n{\"id\":\"e1\",\"type\":\"click\",\"ts\":0}",
        "\u{feff}{\"id\":\"e1\",\"type\":\"click\",\"ts\":0}",
    ] {
        rejects(s, R::InvalidJson);
    }
    // Trailing garbage after the object.
    for tail in [
        "x",
        "}",
        "]",
        ",",
        "{}",
        "0",
        "\"\"",
        " {\"id\":\"e2\"}",
        "\0",
        "null",
    ] {
        rejects(&format!("{ev}{tail}"), R::InvalidJson);
    }
    // Whitespace around the object is fine.
    assert!(dec(&format!(" \t\r\n{ev} \t\r\n")).is_ok());
}

#[test]
fn invalid_json_every_truncation() {
    for ty in TYPES {
        let ev = Obj::full(ty).json();
        assert!(dec(&ev).is_ok(), "{ev}");
        for cut in 0..ev.len() {
            rejects(&ev[..cut], R::InvalidJson);
        }
    }
}

#[test]
fn invalid_json_bad_utf8_in_decoded_positions() {
    let cases: [&[u8]; 10] = [
        b"\xff",
        b"{\"id\":\"\xff\",\"type\":\"click\",\"ts\":0}",
        b"{\"id\":\"e\xc3\",\"type\":\"click\",\"ts\":0}",
        // overlong '/'
        b"{\"id\":\"\xc0\xaf\",\"type\":\"click\",\"ts\":0}",
        // UTF-8 encoded surrogate
        b"{\"id\":\"\xed\xa0\x80\",\"type\":\"click\",\"ts\":0}",
        b"{\"id\":\"e1\",\"type\":\"cl\xffick\",\"ts\":0}",
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"channel\":\"\xfe\"}",
        // in a field name, known or not
        b"{\"\xff\":1,\"id\":\"e1\",\"type\":\"click\",\"ts\":0}",
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\xff\":1}",
        // outside any string
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0}\xff",
    ];
    for b in cases {
        rejects_bytes(b, R::InvalidJson);
    }
    // A field of another type is still parsed as a value, so bad UTF-8 in
    // it is caught too.
    rejects_bytes(
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"amount\":\"\xff\"}",
        R::InvalidJson,
    );
}

#[test]
fn invalid_json_lone_surrogate_in_read_string() {
    for s in [
        r#"{"id":"\ud800","type":"click","ts":0}"#,
        r#"{"id":"\udc00x","type":"click","ts":0}"#,
        r#"{"id":"e1","type":"click","ts":0,"channel":"a\ud83dz"}"#,
    ] {
        rejects(s, R::InvalidJson);
    }
    // A proper pair is fine.
    let ev = ok(r#"{"id":"\ud83d\ude00","type":"click","ts":0}"#);
    assert_eq!(ev.id, "\u{1F600}");
}

#[test]
fn invalid_json_numbers_out_of_double_range() {
    for (k, v) in [
        ("ts", "1e400"),
        ("ts", "-1e400"),
        ("count", "1e309"),
        ("cost", "1e400"),
        ("cost", "-1e400"),
        ("amount", "1e99999"),
    ] {
        rejects(&Obj::full("click").set(k, v).json(), R::InvalidJson);
    }
    rejects(
        &Obj::full("spend").set("amount", "1e400").json(),
        R::InvalidJson,
    );
    rejects(
        &Obj::full("subscription").set("mrr_delta", "2e308").json(),
        R::InvalidJson,
    );
    // Tiny numbers underflow to 0, which is a valid double.
    let ev = valid(&Obj::full("click").set("cost", "1e-400").json());
    assert_eq!(ev.body, Body::Click { count: 3, cost: 0 });
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let deep = 100_000;
    let open = "[".repeat(deep);
    let close = "]".repeat(deep);
    // Unclosed: invalid JSON.
    rejects(&open, R::InvalidJson);
    rejects(&"{\"a\":".repeat(deep), R::InvalidJson);
    // Closed, at the top level or inside values: any answer, but no crash.
    let _ = dec(&format!("{open}{close}"));
    let _ = dec(&format!(
        r#"{{"id":"e1","type":"click","ts":0,"x":{open}{close}}}"#
    ));
    let _ = dec(&format!(
        r#"{{"id":"e1","type":"click","ts":0,"channel":{open}{close}}}"#
    ));
    let objs = format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep));
    let _ = dec(&objs);
    let _ = dec(&format!(
        r#"{{"id":"e1","type":"click","ts":0,"x":{objs}}}"#
    ));
}

// ---------------------------------------------------------------------------
// not_object

#[test]
fn not_object() {
    for s in [
        "[]",
        "[{\"id\":\"e1\",\"type\":\"click\",\"ts\":0}]",
        "[1,\"a\",null,{}]",
        "\"\"",
        "\"str\"",
        "\"{\\\"id\\\":\\\"e1\\\"}\"",
        "0",
        "1",
        "-1",
        "1.5",
        "-0.0",
        "1e300",
        "18446744073709551616",
        "null",
        "true",
        "false",
        "  null  ",
        "\n[ ]\n",
    ] {
        rejects(s, R::NotObject);
    }
}

// ---------------------------------------------------------------------------
// missing_field

#[test]
fn missing_field_for_every_required_field() {
    let mut n = 0;
    for ty in TYPES {
        let full = Obj::full(ty);
        assert!(dec(&full.json()).is_ok(), "{}", full.json());
        let required: Vec<&str> = match ty {
            "lead" => vec!["lead_id"],
            "deal" => vec!["deal_id", "stage", "amount", "created_ts"], // stage won
            "spend" => vec!["amount"],
            "subscription" => vec!["account_id", "change", "mrr_delta"],
            _ => vec![],
        };
        for f in ["type", "id", "ts"].iter().chain(&required) {
            rejects(&full.clone().del(f).json(), R::MissingField);
            n += 1;
        }
    }
    // Lost deals need created_ts but not amount.
    let lost = Obj::full("deal").set("stage", "\"lost\"");
    rejects(&lost.clone().del("created_ts").json(), R::MissingField);
    assert!(dec(&lost.clone().del("amount").json()).is_ok());
    // Everything missing.
    rejects("{}", R::MissingField);
    rejects(r#"{"x":1}"#, R::MissingField);
    assert!(n >= 17, "{n}");
}

#[test]
fn optional_fields_may_be_absent() {
    for ty in TYPES {
        let full = Obj::full(ty);
        for f in ["channel", "campaign"] {
            ok(&full.clone().del(f).json());
        }
    }
    for (ty, f) in [
        ("impression", "count"),
        ("impression", "cost"),
        ("click", "count"),
        ("click", "cost"),
        ("lead", "stage"),
        ("spend", "category"),
    ] {
        ok(&Obj::full(ty).del(f).json());
    }
    let open = Obj::full("deal").set("stage", "\"open\"");
    ok(&open.clone().del("amount").del("created_ts").json());
}

// ---------------------------------------------------------------------------
// wrong_type

#[test]
fn wrong_type_for_every_field_of_every_type() {
    let mut n = 0;
    for ty in TYPES {
        for f in ["type", "id", "ts", "channel", "campaign"]
            .iter()
            .chain(own_fields(ty))
        {
            for v in wrong_values(kind(f)) {
                rejects(&Obj::full(ty).set(f, v).json(), R::WrongType);
                n += 1;
            }
        }
    }
    // Optional fields of open deals are type-checked when present.
    let open = Obj::full("deal").set("stage", "\"open\"");
    for v in wrong_values(Kind::Num) {
        rejects(&open.clone().set("amount", v).json(), R::WrongType);
    }
    for v in wrong_values(Kind::Ts) {
        rejects(&open.clone().set("created_ts", v).json(), R::WrongType);
    }
    assert!(n > 300, "{n}");
}

// ---------------------------------------------------------------------------
// invalid_value

#[test]
fn invalid_value_for_type_stage_and_change() {
    for t in [
        "refund",
        "Click",
        "CLICK",
        "",
        " click",
        "click ",
        "clicks",
        "click\\u0000",
        "lead\\n",
    ] {
        rejects(
            &Obj::full("click").set("type", &format!("\"{t}\"")).json(),
            R::InvalidValue,
        );
    }
    for s in ["won", "open", "MQL", "", "new ", "lead"] {
        rejects(
            &Obj::full("lead").set("stage", &format!("\"{s}\"")).json(),
            R::InvalidValue,
        );
    }
    for s in ["new", "closed", "Won", "", "mql", "won\\t"] {
        rejects(
            &Obj::full("deal").set("stage", &format!("\"{s}\"")).json(),
            R::InvalidValue,
        );
    }
    for c in ["upgrade", "Churn", "", "downgrade", "expand", "new "] {
        rejects(
            &Obj::full("subscription")
                .set("change", &format!("\"{c}\""))
                .json(),
            R::InvalidValue,
        );
    }
}

#[test]
fn every_enum_value_is_accepted() {
    for t in TYPES {
        let ev = valid(&Obj::full(t).json());
        assert_eq!(ev.event_type().as_str(), t);
    }
    for s in LeadStage::ALL {
        let ev = valid(
            &Obj::full("lead")
                .set("stage", &format!("\"{}\"", s.as_str()))
                .json(),
        );
        assert_eq!(ev.body, Body::Lead { stage: s });
    }
    for s in DealStage::ALL {
        let ev = valid(
            &Obj::full("deal")
                .set("stage", &format!("\"{}\"", s.as_str()))
                .json(),
        );
        assert!(matches!(ev.body, Body::Deal { stage, .. } if stage == s));
    }
    for c in Change::ALL {
        let ev = valid(
            &Obj::full("subscription")
                .set("change", &format!("\"{}\"", c.as_str()))
                .json(),
        );
        assert_eq!(
            ev.body,
            Body::Subscription {
                change: c,
                mrr_delta: 2000 * M
            }
        );
    }
}

// ---------------------------------------------------------------------------
// invalid_number

const BAD_COUNTS: [&str; 17] = [
    "0",
    "-1",
    "-0",
    "-0.0",
    "0.0",
    "0.5",
    "1.5",
    "-1.5",
    "1.0000001",
    "9007199254740992",
    "9007199254740993",
    "9007199254740992.0",
    "1e16",
    "18446744073709551615",
    "18446744073709551616",
    "1e300",
    "-9223372036854775808",
];

const BAD_MONEY: [&str; 12] = [
    "-1",
    "-0.5",
    "-1e-9",
    "-1000",
    "-9223372036854775808",
    "-1e300",
    "1000000000001",
    "1000000000000.001",
    "1e13",
    "1e300",
    "18446744073709551615",
    "18446744073709551616",
];

#[test]
fn invalid_number_counts() {
    for ty in ["impression", "click"] {
        for v in BAD_COUNTS {
            rejects(&Obj::full(ty).set("count", v).json(), R::InvalidNumber);
        }
    }
}

#[test]
fn invalid_number_money() {
    let mut n = 0;
    for (ty, f, extra) in [
        ("impression", "cost", None),
        ("click", "cost", None),
        ("deal", "amount", None),
        ("deal", "amount", Some("\"open\"")),
        ("deal", "amount", Some("\"lost\"")),
        ("spend", "amount", None),
        ("subscription", "mrr_delta", None),
    ] {
        let mut base = Obj::full(ty);
        if let Some(stage) = extra {
            base = base.set("stage", stage);
        }
        for v in BAD_MONEY {
            rejects(&base.clone().set(f, v).json(), R::InvalidNumber);
            n += 1;
        }
    }
    assert_eq!(n, 7 * BAD_MONEY.len());
}

#[test]
fn number_bounds_are_inclusive() {
    let c = |v: &str| valid(&Obj::full("impression").set("count", v).json()).body;
    assert_eq!(
        c("1"),
        Body::Impression {
            count: 1,
            cost: 1_500_000
        }
    );
    assert_eq!(
        c("9007199254740991"),
        Body::Impression {
            count: MAX_COUNT,
            cost: 1_500_000
        }
    );
    assert_eq!(
        c("4503599627370497.0"),
        Body::Impression {
            count: (1 << 52) + 1,
            cost: 1_500_000
        }
    );
    let m = |v: &str| match valid(&Obj::full("spend").set("amount", v).json()).body {
        Body::Spend { amount, .. } => amount,
        b => panic!("{b:?}"),
    };
    assert_eq!(m("1000000000000"), 1_000_000_000_000 * M);
    assert_eq!(m("1e12"), 1_000_000_000_000 * M);
    assert_eq!(m("1000000000000.0"), 1_000_000_000_000 * M);
    assert_eq!(m("123456.789012"), 123_456_789_012);
    assert_eq!(m("0"), 0);
    assert_eq!(m("0.0"), 0);
    assert_eq!(m("-0"), 0, "-0 is not negative");
    assert_eq!(m("-0.0"), 0, "-0.0 is not negative");
    assert_eq!(m("0e5"), 0);
}

// ---------------------------------------------------------------------------
// invalid_length

#[test]
fn invalid_length_of_id_channel_campaign() {
    let with = |f: &str, v: &str| Obj::full("click").set(f, &format!("\"{v}\"")).json();
    for (f, max) in [("id", 128), ("channel", 64), ("campaign", 128)] {
        rejects(&with(f, ""), R::InvalidLength);
        rejects(&with(f, &"a".repeat(max + 1)), R::InvalidLength);
        rejects(&with(f, &"a".repeat(1000)), R::InvalidLength);
        let len = |ev: Event<'_>| match f {
            "id" => ev.id.len(),
            "channel" => ev.channel.len(),
            _ => ev.campaign.len(),
        };
        assert_eq!(len(valid(&with(f, &"a".repeat(max)))), max);
        assert_eq!(len(valid(&with(f, &"\\u00e9".repeat(max / 2)))), max);
        ok(&with(f, "a"));
        // Bytes, not characters: é is 2 bytes, € 3, 😀 4.
        rejects(&with(f, &"é".repeat(max / 2 + 1)), R::InvalidLength);
        ok(&with(f, &"é".repeat(max / 2)));
        rejects(
            &with(f, &format!("{}a", "é".repeat(max / 2))),
            R::InvalidLength,
        );
        rejects(&with(f, &"😀".repeat(max / 4 + 1)), R::InvalidLength);
        ok(&with(f, &"😀".repeat(max / 4)));
        rejects(&with(f, &"€".repeat(max / 3 + 1)), R::InvalidLength);
        ok(&with(
            f,
            &format!("{}{}", "€".repeat(max / 3), "a".repeat(max % 3)),
        ));
        // The decoded length counts, not the escaped one.
        ok(&with(f, &"\\u00e9".repeat(max / 2)));
        rejects(&with(f, &"\\u00e9".repeat(max / 2 + 1)), R::InvalidLength);
        ok(&with(f, &"\\n".repeat(max)));
        rejects(&with(f, &"\\n".repeat(max + 1)), R::InvalidLength);
    }
    // The exact maxima decode to the given values.
    let ev = valid(
        &Obj::full("click")
            .set("id", &format!("\"{}\"", "i".repeat(128)))
            .set("channel", &format!("\"{}\"", "c".repeat(64)))
            .set("campaign", &format!("\"{}\"", "p".repeat(128)))
            .json(),
    );
    assert_eq!(
        (ev.id.len(), ev.channel.len(), ev.campaign.len()),
        (128, 64, 128)
    );
}

#[test]
fn other_strings_have_no_length_bounds() {
    let long = format!("\"{}\"", "x".repeat(10_000));
    for (ty, f) in [
        ("lead", "lead_id"),
        ("deal", "deal_id"),
        ("subscription", "account_id"),
        ("spend", "category"),
    ] {
        ok(&Obj::full(ty).set(f, "\"\"").json());
        ok(&Obj::full(ty).set(f, &long).json());
    }
}

// ---------------------------------------------------------------------------
// invalid_timestamp

const BAD_TS_STRINGS: [&str; 32] = [
    "",
    "yesterday",
    "now",
    "1764057600123",
    "2026-11-25",
    "2026-11-25T08:00:00",
    "2026-11-25T08:00Z",
    "2026-11-25T8:00:00Z",
    "2026-1-25T08:00:00Z",
    "26-11-25T08:00:00Z",
    "+2026-11-25T08:00:00Z",
    "20261-11-25T08:00:00Z",
    "2026-13-25T08:00:00Z",
    "2026-00-25T08:00:00Z",
    "2026-11-00T08:00:00Z",
    "2026-11-31T08:00:00Z",
    "2026-02-29T08:00:00Z",
    "2100-02-29T08:00:00Z",
    "2026-11-25T24:00:00Z",
    "2026-11-25T08:60:00Z",
    "2026-11-25T08:00:61Z",
    "2026-11-25T08:00:00+0200",
    "2026-11-25T08:00:00+02",
    "2026-11-25T08:00:00+24:00",
    "2026-11-25T08:00:00+02:60",
    "2026-11-25T08:00:00.Z",
    "2026-11-25T08:00:00,5Z",
    "2026-11-25T08:00:00ZZ",
    " 2026-11-25T08:00:00Z",
    "2026-11-25T08:00:00Z ",
    "2026-11-25_08:00:00Z",
    "2026-11-25T08:00:00 UTC",
];

const BAD_TS_NUMBERS: [&str; 12] = [
    "-1",
    "-1764057600123",
    "-9223372036854775808",
    "253402300800000",
    "18446744073709551615",
    "1e20",
    "1e300",
    "1764057600123.5",
    "0.5",
    "-1.0",
    "-0.5",
    "253402300800000.0",
];

#[test]
fn invalid_timestamp_strings_and_numbers() {
    let mut n = 0;
    let non_ascii = [
        "２０２６-11-25T08:00:00Z",
        "2026-11-25Ṫ08:00:00Z",
        "2026-11-25T08:00:00.12€Z",
        "2026-11-25T08:00:00\u{fe0f}Z",
        "é026-11-25T08:00:00Z",
    ];
    for s in BAD_TS_STRINGS.iter().chain(&non_ascii) {
        let v = format!("\"{s}\"");
        rejects(
            &Obj::full("click").set("ts", &v).json(),
            R::InvalidTimestamp,
        );
        rejects(
            &Obj::full("deal").set("created_ts", &v).json(),
            R::InvalidTimestamp,
        );
        n += 2;
    }
    for v in BAD_TS_NUMBERS {
        rejects(&Obj::full("click").set("ts", v).json(), R::InvalidTimestamp);
        rejects(
            &Obj::full("deal").set("created_ts", v).json(),
            R::InvalidTimestamp,
        );
        n += 2;
    }
    // created_ts of an open deal is optional but validated when present.
    rejects(
        &Obj::full("deal")
            .set("stage", "\"open\"")
            .set("created_ts", "\"soon\"")
            .json(),
        R::InvalidTimestamp,
    );
    assert!(n > 80);
}

#[test]
fn numeric_timestamp_bounds() {
    let ts = |v: &str| {
        decode(
            Obj::full("click").set("ts", v).json().as_bytes(),
            &cfg(),
            i64::MAX,
        )
        .map(|e| e.ts)
    };
    assert_eq!(ts("0"), Ok(0));
    assert_eq!(ts("-0"), Ok(0));
    assert_eq!(ts("-0.0"), Ok(0));
    assert_eq!(ts("0.0"), Ok(0));
    assert_eq!(ts("253402300799999"), Ok(MAX_TS_MS));
    assert_eq!(ts("253402300799999.0"), Ok(MAX_TS_MS));
    assert_eq!(ts("2.53402300799999e14"), Ok(MAX_TS_MS));
    assert_eq!(ts("253402300800000"), Err(R::InvalidTimestamp));
    assert_eq!(ts("1764057600123"), Ok(1_764_057_600_123));
    assert_eq!(ts("1764057600123.0"), Ok(1_764_057_600_123));
    assert_eq!(ts("1.764057600123e12"), Ok(1_764_057_600_123));
    assert_eq!(ts("1764057600123.000"), Ok(1_764_057_600_123));
    assert_eq!(ts("17640576001230e-1"), Ok(1_764_057_600_123));
}

// ---------------------------------------------------------------------------
// future_timestamp

#[test]
fn future_timestamp_relative_to_wall_and_skew() {
    let skew = cfg().max_future_skew_ms;
    assert_eq!(skew, 300_000, "default max future skew is 5 minutes");
    let at = |ts: String, wall: i64, c: &DecodeConfig| {
        decode(Obj::full("click").set("ts", &ts).json().as_bytes(), c, wall).map(|e| e.ts)
    };
    let d = cfg();
    // Integer and string forms, right at and just past the edge.
    assert_eq!(at((WALL + skew).to_string(), WALL, &d), Ok(WALL + skew));
    assert_eq!(
        at((WALL + skew + 1).to_string(), WALL, &d),
        Err(R::FutureTimestamp)
    );
    let s = |ms: i64| format!("\"{}\"", format_rfc3339_ms(ms));
    assert_eq!(at(s(WALL + skew), WALL, &d), Ok(WALL + skew));
    assert_eq!(at(s(WALL + skew + 1), WALL, &d), Err(R::FutureTimestamp));
    assert_eq!(at(s(WALL + 86_400_000), WALL, &d), Err(R::FutureTimestamp));
    // The wall clock is the argument, not the system clock.
    assert_eq!(at("\"2026-11-25T08:00:00Z\"".into(), T0 - skew, &d), Ok(T0));
    assert_eq!(
        at("\"2026-11-25T08:00:00Z\"".into(), T0 - skew - 1, &d),
        Err(R::FutureTimestamp)
    );
    assert_eq!(at("1".into(), 0, &d), Ok(1));
    // A configured skew.
    let zero = DecodeConfig {
        max_future_skew_ms: 0,
        ..cfg()
    };
    assert_eq!(at(WALL.to_string(), WALL, &zero), Ok(WALL));
    assert_eq!(
        at((WALL + 1).to_string(), WALL, &zero),
        Err(R::FutureTimestamp)
    );
    let hour = DecodeConfig {
        max_future_skew_ms: 3_600_000,
        ..cfg()
    };
    assert_eq!(
        at((WALL + 3_600_000).to_string(), WALL, &hour),
        Ok(WALL + 3_600_000)
    );
    assert_eq!(
        at((WALL + 3_600_001).to_string(), WALL, &hour),
        Err(R::FutureTimestamp)
    );
    // Extreme wall clocks do not overflow.
    assert_eq!(at(MAX_TS_MS.to_string(), i64::MAX, &d), Ok(MAX_TS_MS));
    assert_eq!(at("0".into(), i64::MIN, &d), Err(R::FutureTimestamp));
    assert_eq!(at("0".into(), -skew, &d), Ok(0));
    assert_eq!(at("0".into(), -skew - 1, &d), Err(R::FutureTimestamp));
    // Only ts is compared with the wall clock, not created_ts.
    let far = Obj::full("deal")
        .set("ts", &WALL.to_string())
        .set("created_ts", &(WALL + 86_400_000).to_string())
        .json();
    rejects(&far, R::CreatedAfterTs);
}

// ---------------------------------------------------------------------------
// created_after_ts

#[test]
fn created_after_ts() {
    for stage in ["won", "lost", "open"] {
        let deal = Obj::full("deal").set("stage", &format!("\"{stage}\""));
        let with =
            |ts: &str, created: &str| deal.clone().set("ts", ts).set("created_ts", created).json();
        rejects(&with("1000", "1001"), R::CreatedAfterTs);
        rejects(
            &with("\"2026-11-25T08:00:00Z\"", "\"2026-11-25T08:00:00.001Z\""),
            R::CreatedAfterTs,
        );
        // Mixed forms compare as milliseconds.
        rejects(
            &with("\"2026-11-25T08:00:00Z\"", "1795593600001"),
            R::CreatedAfterTs,
        );
        rejects(
            &with("1795593600000", "\"2026-11-25T09:00:00+00:59\""),
            R::CreatedAfterTs,
        );
        // Equal is fine, as is the same instant in another offset.
        let ev = valid(&with("1000", "1000"));
        assert!(matches!(
            ev.body,
            Body::Deal {
                created_ts: Some(1000),
                ..
            }
        ));
        let ev = valid(&with(
            "\"2026-11-25T08:00:00Z\"",
            "\"2026-11-25T10:00:00+02:00\"",
        ));
        assert!(matches!(
            ev.body,
            Body::Deal {
                created_ts: Some(T0),
                ..
            }
        ));
        ok(&with("1795593600000", "\"2026-11-25T09:00:00+01:00\""));
    }
}

// ---------------------------------------------------------------------------
// Check order: type, id, ts, channel, campaign, the type's own fields in
// EVENTS.md order, future_timestamp, created_after_ts.

#[test]
fn check_order_between_common_fields() {
    let future = (WALL + 3_600_000).to_string();
    for (s, want) in [
        // type first
        (
            r#"{"type":"refund","ts":"bad","channel":""}"#.to_string(),
            R::InvalidValue,
        ),
        (r#"{"type":1,"id":""}"#.to_string(), R::WrongType),
        (r#"{"type":null}"#.to_string(), R::WrongType),
        (r#"{"id":"","ts":"bad"}"#.to_string(), R::MissingField),
        (
            r#"{"id":5,"type":"click","ts":"bad"}"#.to_string(),
            R::WrongType,
        ),
        (r#"{"type":"refund","id":5}"#.to_string(), R::InvalidValue),
        // then id
        (
            r#"{"type":"click","ts":"bad"}"#.to_string(),
            R::MissingField,
        ),
        (
            r#"{"type":"click","id":"","ts":"bad"}"#.to_string(),
            R::InvalidLength,
        ),
        (
            r#"{"type":"click","id":[],"ts":null}"#.to_string(),
            R::WrongType,
        ),
        (
            r#"{"type":"click","id":"","channel":5}"#.to_string(),
            R::InvalidLength,
        ),
        // then ts
        (
            r#"{"type":"click","id":"e1","channel":""}"#.to_string(),
            R::MissingField,
        ),
        (
            r#"{"type":"click","id":"e1","ts":"bad","channel":""}"#.to_string(),
            R::InvalidTimestamp,
        ),
        (
            r#"{"type":"click","id":"e1","ts":null,"channel":""}"#.to_string(),
            R::WrongType,
        ),
        (
            r#"{"type":"click","id":"e1","ts":-1,"campaign":5}"#.to_string(),
            R::InvalidTimestamp,
        ),
        // then channel, campaign
        (
            r#"{"type":"click","id":"e1","ts":0,"channel":"","campaign":5}"#.to_string(),
            R::InvalidLength,
        ),
        (
            r#"{"type":"click","id":"e1","ts":0,"channel":5,"campaign":""}"#.to_string(),
            R::WrongType,
        ),
        (
            r#"{"type":"click","id":"e1","ts":0,"campaign":"","count":"x"}"#.to_string(),
            R::InvalidLength,
        ),
        (
            r#"{"type":"click","id":"e1","ts":0,"campaign":true,"count":0}"#.to_string(),
            R::WrongType,
        ),
        // common fields before future_timestamp
        (
            format!(r#"{{"type":"click","id":"e1","ts":{future},"channel":""}}"#),
            R::InvalidLength,
        ),
        (
            format!(r#"{{"type":"click","id":"","ts":{future}}}"#),
            R::InvalidLength,
        ),
    ] {
        rejects(&s, want);
    }
}

#[test]
fn check_order_within_type_fields() {
    let future = (WALL + 3_600_000).to_string();
    let cases: Vec<(Obj, R)> = vec![
        // impression / click: count, cost
        (
            Obj::full("impression")
                .set("count", "0")
                .set("cost", "\"x\""),
            R::InvalidNumber,
        ),
        (
            Obj::full("impression")
                .set("count", "\"x\"")
                .set("cost", "-1"),
            R::WrongType,
        ),
        (
            Obj::full("click").set("count", "1.5").set("cost", "null"),
            R::InvalidNumber,
        ),
        (
            Obj::full("click").set("cost", "-1").set("ts", &future),
            R::InvalidNumber,
        ),
        // lead: lead_id, stage
        (
            Obj::full("lead").del("lead_id").set("stage", "\"bad\""),
            R::MissingField,
        ),
        (
            Obj::full("lead")
                .set("lead_id", "5")
                .set("stage", "\"bad\""),
            R::WrongType,
        ),
        (
            Obj::full("lead").set("stage", "\"bad\"").set("ts", &future),
            R::InvalidValue,
        ),
        // deal: deal_id, stage, amount, created_ts
        (
            Obj::full("deal").del("deal_id").set("stage", "\"bad\""),
            R::MissingField,
        ),
        (
            Obj::full("deal").set("deal_id", "null").del("stage"),
            R::WrongType,
        ),
        (
            Obj::full("deal").del("stage").set("amount", "-1"),
            R::MissingField,
        ),
        (
            Obj::full("deal")
                .set("stage", "\"bad\"")
                .set("amount", "-1"),
            R::InvalidValue,
        ),
        (
            Obj::full("deal").del("amount").set("created_ts", "\"bad\""),
            R::MissingField,
        ),
        (
            Obj::full("deal")
                .set("amount", "-1")
                .set("created_ts", "\"bad\""),
            R::InvalidNumber,
        ),
        (
            Obj::full("deal").set("amount", "\"1\"").del("created_ts"),
            R::WrongType,
        ),
        (
            Obj::full("deal")
                .set("created_ts", "\"bad\"")
                .set("ts", &future),
            R::InvalidTimestamp,
        ),
        (
            Obj::full("deal")
                .set("stage", "\"lost\"")
                .set("amount", "-1")
                .del("created_ts"),
            R::InvalidNumber,
        ),
        // spend: amount, category
        (
            Obj::full("spend").del("amount").set("category", "5"),
            R::MissingField,
        ),
        (
            Obj::full("spend")
                .set("amount", "\"x\"")
                .set("category", "5"),
            R::WrongType,
        ),
        (
            Obj::full("spend").set("category", "5").set("ts", &future),
            R::WrongType,
        ),
        // subscription: account_id, change, mrr_delta
        (
            Obj::full("subscription")
                .del("account_id")
                .set("change", "\"x\""),
            R::MissingField,
        ),
        (
            Obj::full("subscription")
                .set("account_id", "1")
                .del("change"),
            R::WrongType,
        ),
        (
            Obj::full("subscription")
                .set("change", "\"x\"")
                .set("mrr_delta", "-1"),
            R::InvalidValue,
        ),
        (
            Obj::full("subscription").del("change").del("mrr_delta"),
            R::MissingField,
        ),
        (
            Obj::full("subscription")
                .set("mrr_delta", "-5")
                .set("ts", &future),
            R::InvalidNumber,
        ),
        // common fields before own fields
        (
            Obj::full("deal").set("campaign", "\"\"").del("deal_id"),
            R::InvalidLength,
        ),
        (
            Obj::full("spend").set("ts", "\"x\"").del("amount"),
            R::InvalidTimestamp,
        ),
        (
            Obj::full("subscription")
                .set("id", "1")
                .set("change", "\"x\""),
            R::WrongType,
        ),
        // future_timestamp before created_after_ts
        (
            Obj::full("deal")
                .set("ts", &future)
                .set("created_ts", &(WALL + 7_200_000).to_string()),
            R::FutureTimestamp,
        ),
    ];
    for (o, want) in cases {
        rejects(&o.json(), want);
    }
}

#[test]
fn field_order_in_the_message_does_not_matter() {
    // The same problems in every field order give the same reason.
    let pairs = [
        ("campaign", "\"\""),
        ("ts", "\"bad\""),
        ("id", "\"e1\""),
        ("type", "\"click\""),
        ("count", "0"),
    ];
    let mut rng = Rng::new(7);
    for _ in 0..50 {
        let mut p = pairs.to_vec();
        for i in (1..p.len()).rev() {
            p.swap(i, rng.below(i as u64 + 1) as usize);
        }
        rejects(&Obj::new(&p).json(), R::InvalidTimestamp);
    }
}

// ---------------------------------------------------------------------------
// Accepted forms and defaults

#[test]
fn defaults() {
    let ev = ok(r#"{"id":"e1","type":"click","ts":0}"#);
    assert_eq!(ev.channel, "unknown");
    assert_eq!(ev.campaign, "none");
    assert_eq!(ev.body, Body::Click { count: 1, cost: 0 });
    let ev = ok(r#"{"id":"e1","type":"impression","ts":0}"#);
    assert_eq!(ev.body, Body::Impression { count: 1, cost: 0 });
    let ev = ok(r#"{"id":"e1","type":"lead","ts":0,"lead_id":"L"}"#);
    assert_eq!(
        ev.body,
        Body::Lead {
            stage: LeadStage::New
        }
    );
    let ev = ok(r#"{"id":"e1","type":"spend","ts":0,"amount":1}"#);
    assert_eq!(
        ev.body,
        Body::Spend {
            amount: M,
            ads: true
        }
    );
    let ev = ok(r#"{"id":"e1","type":"deal","ts":0,"deal_id":"D","stage":"open"}"#);
    assert_eq!(
        ev.body,
        Body::Deal {
            deal_id: "D".into(),
            stage: DealStage::Open,
            amount: 0,
            created_ts: None,
            origin: None,
            influenced: false,
            ignored: 0
        }
    );
    let ev = ok(r#"{"id":"e1","type":"deal","ts":5,"deal_id":"D","stage":"lost","created_ts":1}"#);
    assert_eq!(
        ev.body,
        Body::Deal {
            deal_id: "D".into(),
            stage: DealStage::Lost,
            amount: 0,
            created_ts: Some(1),
            origin: None,
            influenced: false,
            ignored: 0
        }
    );
    let ev = ok(
        r#"{"id":"e1","type":"deal","ts":5,"deal_id":"D","stage":"open","amount":7.25,"created_ts":2}"#,
    );
    assert_eq!(
        ev.body,
        Body::Deal {
            deal_id: "D".into(),
            stage: DealStage::Open,
            amount: 7_250_000,
            created_ts: Some(2),
            origin: None,
            influenced: false,
            ignored: 0
        }
    );
}

#[test]
fn spend_category_ads_versus_other() {
    let cat = |v: &str| match valid(&Obj::full("spend").set("category", v).json()).body {
        Body::Spend { ads, .. } => ads,
        b => panic!("{b:?}"),
    };
    assert!(cat("\"ads\""));
    assert!(cat("\"\\u0061ds\""), "escaped ads is ads");
    for other in [
        "salaries", "tools", "agency", "", "Ads", "ADS", "ads ", "ad",
    ] {
        assert!(!cat(&format!("\"{other}\"")), "{other}");
    }
}

#[test]
fn integral_floats_for_count_and_ts() {
    let ev = ok(r#"{"id":"e1","type":"click","ts":1764057600123.0,"count":2.0}"#);
    assert_eq!(ev.ts, 1_764_057_600_123);
    assert_eq!(ev.body, Body::Click { count: 2, cost: 0 });
    let ev = ok(r#"{"id":"e1","type":"impression","ts":1.5e3,"count":1e3}"#);
    assert_eq!(ev.ts, 1500);
    assert_eq!(
        ev.body,
        Body::Impression {
            count: 1000,
            cost: 0
        }
    );
    let ev = ok(r#"{"id":"e1","type":"impression","ts":0,"count":12E+1}"#);
    assert_eq!(
        ev.body,
        Body::Impression {
            count: 120,
            cost: 0
        }
    );
    let ev = ok(
        r#"{"id":"e1","type":"deal","ts":2e3,"deal_id":"D","stage":"won","amount":1,"created_ts":1000.0}"#,
    );
    assert!(matches!(
        ev.body,
        Body::Deal {
            created_ts: Some(1000),
            ..
        }
    ));
}

#[test]
fn rfc3339_forms() {
    let ts = |s: &str| {
        let ev = Obj::full("click").set("ts", &format!("\"{s}\"")).json();
        match decode(ev.as_bytes(), &cfg(), i64::MAX) {
            Ok(ev) => ev.ts,
            Err(r) => panic!("{r} for {s}"),
        }
    };
    for s in [
        "2026-11-25T08:00:00Z",
        "2026-11-25t08:00:00z",
        "2026-11-25 08:00:00Z",
        "2026-11-25T08:00:00+00:00",
        "2026-11-25T08:00:00-00:00",
        "2026-11-25T10:00:00+02:00",
        "2026-11-25T03:30:00-04:30",
        "2026-11-26T07:59:00+23:59",
        "2026-11-24T08:01:00-23:59",
        "2026-11-25T08:00:00.000Z",
        "2026-11-25T08:00:00.0Z",
        "2026-11-25T08:00:00.000000000000Z",
        "2026-11-25T08:00:00.0009999Z",
        "2026-11-25T08:00:00.000+00:00",
    ] {
        assert_eq!(ts(s), T0, "{s}");
    }
    assert_eq!(ts("2026-11-25T08:00:00.1Z"), T0 + 100);
    assert_eq!(ts("2026-11-25T08:00:00.12Z"), T0 + 120);
    assert_eq!(ts("2026-11-25T08:00:00.123Z"), T0 + 123);
    assert_eq!(ts("2026-11-25T08:00:00.123456789Z"), T0 + 123);
    assert_eq!(ts("2026-11-25T08:00:00.999999999999Z"), T0 + 999);
    assert_eq!(ts("2026-11-25T10:00:00.5+02:00"), T0 + 500);
    // Before 1970 from a string.
    assert_eq!(ts("1969-12-31T23:59:59.999Z"), -1);
    assert_eq!(ts("1970-01-01T00:00:00+00:01"), -60_000);
    assert_eq!(ts("0000-01-01T00:00:00Z"), -62_167_219_200_000);
    assert_eq!(ts("9999-12-31T23:59:59.999Z"), MAX_TS_MS);
    // Leap days and a leap second.
    assert_eq!(ts("2024-02-29T00:00:00Z"), 1_709_164_800_000);
    assert_eq!(ts("2000-02-29T00:00:00Z"), 951_782_400_000);
    assert_eq!(ts("2016-12-31T23:59:60Z"), 1_483_228_800_000);
    // Escaped characters inside the string.
    assert_eq!(ts("2026-11-25\\u005408:00:00\\u005a"), T0);
    // A wall clock of i64::MAX lets the far future through.
    let far = Obj::full("click")
        .set("ts", "\"9999-12-31T23:59:59Z\"")
        .json();
    assert_eq!(
        decode(far.as_bytes(), &cfg(), i64::MAX).unwrap().ts,
        MAX_TS_MS - 999
    );
}

/// An independent calendar: day numbers by counting, checked against the
/// parser for every day of several centuries and the edges of every year.
#[test]
fn rfc3339_calendar_against_naive_day_count() {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mdays = |y: i64, m: i64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    // year_start[y] = days from 0000-01-01 to y-01-01.
    let mut year_start = vec![0i64; 10_001];
    for y in 1..=10_000usize {
        let p = (y - 1) as i64;
        year_start[y] = year_start[y - 1] + if leap(p) { 366 } else { 365 };
    }
    let epoch = year_start[1970];
    let mut checked = 0;
    let mut check = |y: i64, m: i64, d: i64| {
        let mut days = year_start[y as usize] - epoch + d - 1;
        for mm in 1..m {
            days += mdays(y, mm);
        }
        let s = format!("{y:04}-{m:02}-{d:02}T00:00:00Z");
        assert_eq!(parse_rfc3339_ms(&s), Some(days * 86_400_000), "{s}");
        checked += 1;
    };
    for y in (0..=12).chain(1890..=2110).chain(9990..=9999) {
        for m in 1..=12 {
            for d in 1..=mdays(y, m) {
                check(y, m, d);
            }
        }
    }
    for y in 0..=9999 {
        for (m, d) in [(1, 1), (2, 28), (3, 1), (12, 31)] {
            check(y, m, d);
        }
        if leap(y) {
            check(y, 2, 29);
        }
    }
    assert!(checked > 100_000);
    // Impossible days are rejected.
    for y in [1900, 2023, 2100, 2200, 1, 9999] {
        assert_eq!(
            parse_rfc3339_ms(&format!("{y:04}-02-29T00:00:00Z")),
            None,
            "{y}"
        );
    }
    for y in [0, 4, 2000, 2024, 2400, 9996] {
        assert!(
            parse_rfc3339_ms(&format!("{y:04}-02-29T00:00:00Z")).is_some(),
            "{y}"
        );
        assert_eq!(parse_rfc3339_ms(&format!("{y:04}-02-30T00:00:00Z")), None);
    }
    for m in [4, 6, 9, 11] {
        assert_eq!(parse_rfc3339_ms(&format!("2026-{m:02}-31T00:00:00Z")), None);
    }
}

/// Random instants written with random offsets, separators, zone letters and
/// fraction lengths parse back to the instant (fractions truncated).
#[test]
fn rfc3339_random_offsets_and_fractions() {
    let mut rng = Rng::new(0xF00D);
    for _ in 0..20_000 {
        let ms = rng.below((MAX_TS_MS - 86_400_000) as u64) as i64;
        let off_min = rng.below(2 * 1439 + 1) as i64 - 1439;
        let local = format_rfc3339_ms(ms + off_min * 60_000); // YYYY-MM-DDTHH:MM:SS.mmmZ
        let (date, time, frac) = (&local[..10], &local[11..19], &local[20..23]);
        let sep = [" ", "T", "t"][rng.below(3) as usize];
        let digits = rng.below(10) as usize;
        let (fraction, want) = match digits {
            0 => (String::new(), ms - ms.rem_euclid(1000)),
            1..=3 => {
                let unit = [100, 10, 1][digits - 1];
                (format!(".{}", &frac[..digits]), ms - ms.rem_euclid(unit))
            }
            _ => {
                let extra: String = (3..digits)
                    .map(|_| char::from(b'0' + rng.below(10) as u8))
                    .collect();
                (format!(".{frac}{extra}"), ms)
            }
        };
        let zone = if off_min == 0 && rng.below(2) == 0 {
            ["Z", "z", "+00:00", "-00:00"][rng.below(4) as usize].to_string()
        } else {
            let sign = if off_min < 0 { '-' } else { '+' };
            format!("{sign}{:02}:{:02}", off_min.abs() / 60, off_min.abs() % 60)
        };
        let s = format!("{date}{sep}{time}{fraction}{zone}");
        assert_eq!(parse_rfc3339_ms(&s), Some(want), "{s}");
    }
}

#[test]
fn unknown_fields_are_ignored() {
    let ev = ok(
        r#"{"id":"e1","meta":{"a":[1,2,{"b":null}],"c":"x","d":{"e":{"f":[[],{}]}}},"type":"click","tags":["a","b",1.5,true,null],"x":null,"y":-1.5e300,"z":"\u00e9\n\"","ts":0,"w":{},"v":[],"Type":"refund","ID":"","ts ":"bad","":1}"#,
    );
    assert_eq!(ev.id, "e1");
    assert_eq!(ev.ts, 0);
    assert_eq!(ev.body, Body::Click { count: 1, cost: 0 });
    // Synthetic events carry unknown fields too.
    let ev = ok(
        r#"{"id":"e1","ts":0,"type":"lead","lead_id":"L","stage":"sql","form":"demo-request","utm":{"source":"g"}}"#,
    );
    assert_eq!(
        ev.body,
        Body::Lead {
            stage: LeadStage::Sql
        }
    );
}

#[test]
fn fields_of_other_types_are_ignored_even_if_invalid() {
    // Every field of every other type, with a value invalid for that type.
    let invalid = |f: &str| match f {
        "count" => "0",
        "cost" | "amount" | "mrr_delta" => "\"x\"",
        "created_ts" => "\"not a time\"",
        "stage" => "\"bogus\"",
        "change" => "[]",
        _ => "null", // lead_id, deal_id, account_id, category
    };
    let all = [
        "count",
        "cost",
        "lead_id",
        "stage",
        "deal_id",
        "amount",
        "created_ts",
        "category",
        "account_id",
        "change",
        "mrr_delta",
    ];
    for ty in TYPES {
        let own = own_fields(ty);
        let mut o = Obj::full(ty);
        for f in all.iter().filter(|f| !own.contains(f)) {
            o = o.set(f, invalid(f));
        }
        let want = valid(&Obj::full(ty).json()).body;
        assert_eq!(valid(&o.json()).body, want, "{}", o.json());
    }
    ok(r#"{"id":"e1","type":"click","ts":0,"amount":"x"}"#);
    ok(r#"{"id":"e1","type":"impression","ts":0,"stage":5,"created_ts":-1,"mrr_delta":-1}"#);
    ok(r#"{"id":"e1","type":"spend","ts":0,"amount":1,"count":-5,"cost":null}"#);
}

#[test]
fn duplicate_keys_last_wins() {
    let ev = ok(r#"{"id":"a","id":"b","type":"click","ts":0}"#);
    assert_eq!(ev.id, "b");
    ok(r#"{"id":"e1","type":"refund","type":"click","ts":0}"#);
    rejects(
        r#"{"id":"e1","type":"click","type":"refund","ts":0}"#,
        R::InvalidValue,
    );
    ok(r#"{"id":5,"id":"e1","type":"click","ts":0}"#);
    rejects(r#"{"id":"e1","id":5,"type":"click","ts":0}"#, R::WrongType);
    let ev = ok(r#"{"id":"e1","type":"click","ts":"bad","ts":7}"#);
    assert_eq!(ev.ts, 7);
    let ev = ok(r#"{"id":"e1","type":"click","ts":0,"count":0,"count":2}"#);
    assert_eq!(ev.body, Body::Click { count: 2, cost: 0 });
    rejects(
        r#"{"id":"e1","type":"click","ts":0,"count":2,"count":0}"#,
        R::InvalidNumber,
    );
    let ev = ok(r#"{"id":"e1","type":"click","ts":0,"channel":"","channel":"email"}"#);
    assert_eq!(ev.channel, "email");
    // null does not mean "absent" for a later duplicate.
    rejects(
        r#"{"id":"e1","type":"click","ts":0,"channel":"email","channel":null}"#,
        R::WrongType,
    );
    // Escaped keys are the same keys.
    let ev = ok(r#"{"id":"a","\u0069d":"b","type":"refund","\u0074ype":"click","ts":0}"#);
    assert_eq!(ev.id, "b");
    // Duplicates through the builder, for each type.
    for ty in TYPES {
        let o = Obj::full(ty).push("id", "\"second\"");
        assert_eq!(ok(&o.json()).id, "second");
    }
}

#[test]
fn money_rounds_to_micro_units() {
    let cost = |v: &str| match ok(&Obj::full("click").set("cost", v).json()).body {
        Body::Click { cost, .. } => cost,
        b => panic!("{b:?}"),
    };
    for (v, want) in [
        ("0", 0),
        ("1", M),
        ("12.5", 12_500_000),
        ("1.8", 1_800_000),
        ("0.1", 100_000),
        ("0.2", 200_000),
        ("0.3", 300_000),
        ("0.30000000000000004", 300_000),
        ("0.000001", 1),
        ("1e-6", 1),
        ("0.0000001", 0),
        ("0.0000004", 0),
        // round(x * 1e6) on doubles, ties away from zero (f64::round):
        // 5e-7 * 1e6 == 0.5 exactly in doubles.
        ("0.0000005", 1),
        ("0.0000015", 2),
        ("0.0000025", 3),
        ("2.0000005", 2_000_001),
        // 1.0000005 * 1e6 == 1000000.5000000001 in doubles.
        ("1.0000005", 1_000_001),
        // 1.9999995 * 1e6 == 1999999.5 in doubles.
        ("1.9999995", 2_000_000),
        ("0.1234565", 123_457),
        ("24000", 24_000_000_000),
        ("24000.0", 24_000_000_000),
        ("2.4e4", 24_000_000_000),
        ("4503599627.3705", 4_503_599_627_370_500),
        ("999999999999.999999", 1_000_000_000_000 * M),
    ] {
        assert_eq!(cost(v), want, "{v}");
    }
    // 0.1 + 0.2 over two events adds up exactly in micro-units.
    assert_eq!(cost("0.1") + cost("0.2"), cost("0.3"));
}

#[test]
fn escaped_strings_are_owned_and_decoded() {
    let ev = ok(
        r#"{"id":"e\u0031","type":"cl\u0069ck","ts":0,"channel":"a\"b","campaign":"x\\y\/z\n"}"#,
    );
    assert_eq!(ev.id, "e1");
    assert!(matches!(ev.id, Cow::Owned(_)));
    assert_eq!(ev.channel, "a\"b");
    assert!(matches!(ev.channel, Cow::Owned(_)));
    assert_eq!(ev.campaign, "x\\y/z\n");
    assert!(matches!(ev.campaign, Cow::Owned(_)));
    assert_eq!(ev.body, Body::Click { count: 1, cost: 0 });
    let ev = ok(
        r#"{"id":"e1","type":"deal","ts":1,"deal_id":"D\t9","stage":"w\u006fn","amount":1,"created_ts":0}"#,
    );
    match ev.body {
        Body::Deal { deal_id, stage, .. } => {
            assert_eq!(deal_id, "D\t9");
            assert!(matches!(deal_id, Cow::Owned(_)));
            assert_eq!(stage, DealStage::Won);
        }
        b => panic!("{b:?}"),
    }
    let ev = ok(r#"{"id":"\u00e9\u20ac\ud83d\ude00","type":"click","ts":0}"#);
    assert_eq!(ev.id, "é€😀");
    assert_eq!(ev.id.len(), 2 + 3 + 4);
}

#[test]
fn plain_strings_are_borrowed_from_the_input() {
    let input = r#"{"id":"e1","type":"deal","ts":1,"channel":"paid_search","campaign":"brand-q4","deal_id":"D-9","stage":"won","amount":1,"created_ts":0}"#;
    let ev = ok(input);
    let range = input.as_bytes().as_ptr_range();
    for s in [&ev.id, &ev.channel, &ev.campaign] {
        match s {
            Cow::Borrowed(b) => assert!(range.contains(&b.as_ptr()), "{b} points into the input"),
            Cow::Owned(o) => panic!("{o} was copied"),
        }
    }
    match &ev.body {
        Body::Deal {
            deal_id: Cow::Borrowed(d),
            ..
        } => assert!(range.contains(&d.as_ptr())),
        b => panic!("deal_id not borrowed: {b:?}"),
    }
    // Non-ASCII without escapes is borrowed too.
    let ev = ok(r#"{"id":"é€😀","type":"click","ts":0,"channel":"café"}"#);
    assert!(matches!(ev.id, Cow::Borrowed("é€😀")));
    assert!(matches!(ev.channel, Cow::Borrowed("café")));
    // Defaults are static strings.
    let ev = ok(r#"{"id":"e1","type":"click","ts":0}"#);
    assert!(matches!(ev.channel, Cow::Borrowed("unknown")));
    assert!(matches!(ev.campaign, Cow::Borrowed("none")));
}

// ---------------------------------------------------------------------------
// The contract's examples.

const CONTRACT_EXAMPLES: [&str; 6] = [
    r#"{"id":"e1","type":"impression","ts":"2026-11-25T08:00:00Z","channel":"paid_search","campaign":"brand-q4","count":1000,"cost":12.5}"#,
    r#"{"id":"e2","type":"click","ts":1764057600123,"channel":"paid_search","campaign":"brand-q4","cost":1.8}"#,
    r#"{"id":"e3","type":"lead","ts":"2026-11-25T08:03:10Z","channel":"paid_search","campaign":"brand-q4","lead_id":"L-77","stage":"mql"}"#,
    r#"{"id":"e4","type":"deal","ts":"2026-11-25T09:00:00Z","channel":"paid_search","campaign":"brand-q4","deal_id":"D-9","stage":"won","amount":24000,"created_ts":"2026-10-01T12:00:00Z"}"#,
    r#"{"id":"e5","type":"spend","ts":"2026-11-25T00:00:00Z","channel":"outbound","amount":5000,"category":"salaries"}"#,
    r#"{"id":"e6","type":"subscription","ts":"2026-11-25T10:00:00Z","channel":"paid_search","campaign":"brand-q4","account_id":"A-1","change":"new","mrr_delta":2000}"#,
];

#[test]
fn contract_examples_decode() {
    let ev = |id: &'static str, ts, channel: &'static str, campaign: &'static str, body| Event {
        id: Cow::Borrowed(id),
        ts,
        channel: Cow::Borrowed(channel),
        campaign: Cow::Borrowed(campaign),
        body,
    };
    let want = [
        ev(
            "e1",
            T0,
            "paid_search",
            "brand-q4",
            Body::Impression {
                count: 1000,
                cost: 12_500_000,
            },
        ),
        // 2025-11-25T08:00:00.123Z, a year before the others.
        ev(
            "e2",
            1_764_057_600_123,
            "paid_search",
            "brand-q4",
            Body::Click {
                count: 1,
                cost: 1_800_000,
            },
        ),
        ev(
            "e3",
            T0 + 190_000,
            "paid_search",
            "brand-q4",
            Body::Lead {
                stage: LeadStage::Mql,
            },
        ),
        ev(
            "e4",
            T0 + 3_600_000,
            "paid_search",
            "brand-q4",
            Body::Deal {
                deal_id: Cow::Borrowed("D-9"),
                stage: DealStage::Won,
                amount: 24_000 * M,
                created_ts: Some(1_790_856_000_000),
                origin: None,
                influenced: false,
                ignored: 0,
            },
        ),
        ev(
            "e5",
            T0 - 8 * 3_600_000,
            "outbound",
            "none",
            Body::Spend {
                amount: 5_000 * M,
                ads: false,
            },
        ),
        ev(
            "e6",
            T0 + 2 * 3_600_000,
            "paid_search",
            "brand-q4",
            Body::Subscription {
                change: Change::New,
                mrr_delta: 2_000 * M,
            },
        ),
    ];
    for (line, want) in CONTRACT_EXAMPLES.iter().zip(want) {
        assert_eq!(ok(line), want, "{line}");
        assert_eq!(decode(line.as_bytes(), &cfg(), i64::MAX).unwrap(), want);
    }
    // With the wall clock at e6's time all six are valid; an hour earlier
    // e6 is in the future.
    for line in CONTRACT_EXAMPLES {
        assert!(decode(line.as_bytes(), &cfg(), T0 + 2 * 3_600_000).is_ok());
    }
    assert_eq!(
        decode(CONTRACT_EXAMPLES[5].as_bytes(), &cfg(), T0 + 3_600_000).unwrap_err(),
        R::FutureTimestamp
    );
}

#[test]
fn every_reason_has_an_example() {
    let small = DecodeConfig {
        max_event_bytes: 8,
        ..cfg()
    };
    let examples: [(&str, R); 11] = [
        ("{\"id\":\"e1\",\"pad\":1}", R::TooLarge),
        ("{\"id\"", R::InvalidJson),
        ("[]", R::NotObject),
        (r#"{"type":"click","ts":0}"#, R::MissingField),
        (r#"{"id":1,"type":"click","ts":0}"#, R::WrongType),
        (r#"{"id":"e1","type":"refund","ts":0}"#, R::InvalidValue),
        (
            r#"{"id":"e1","type":"spend","ts":0,"amount":-5}"#,
            R::InvalidNumber,
        ),
        (r#"{"id":"","type":"click","ts":0}"#, R::InvalidLength),
        (
            r#"{"id":"e1","type":"click","ts":"yesterday"}"#,
            R::InvalidTimestamp,
        ),
        (
            r#"{"id":"e1","type":"click","ts":"9999-01-01T00:00:00Z"}"#,
            R::FutureTimestamp,
        ),
        (
            r#"{"id":"e1","type":"deal","ts":0,"deal_id":"D","stage":"lost","created_ts":1}"#,
            R::CreatedAfterTs,
        ),
    ];
    for (i, (s, want)) in examples.iter().enumerate() {
        let c = if i == 0 { small.clone() } else { cfg() };
        assert_eq!(decode(s.as_bytes(), &c, WALL).unwrap_err(), *want, "{s}");
    }
    let covered: Vec<R> = examples.iter().map(|e| e.1).collect();
    assert_eq!(covered, R::ALL);
}

// ---------------------------------------------------------------------------
// Regressions: bugs found by this suite, now fixed.

/// Fixed: SEMANTICS.md says a message that is "not UTF-8" is
/// `invalid_json`, and reference.py decodes the whole message as UTF-8 first.
/// The decoder skips values it does not read with serde's `IgnoredAny`, and
/// serde_json's `SliceRead::ignore_str` does not validate UTF-8: invalid
/// bytes inside an unknown field's string, or nested inside an array or
/// object value, are not noticed.
#[test]
fn regression_invalid_utf8_inside_skipped_values_is_invalid_json() {
    for b in [
        // expected invalid_json, actual Ok
        &b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":\"\xff\"}"[..],
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":[\"\xc0\xaf\"]}",
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"x\":{\"\xff\":1}}",
        // expected invalid_json, actual wrong_type
        b"{\"id\":\"e1\",\"type\":\"click\",\"ts\":0,\"channel\":[\"\xff\"]}",
        // expected invalid_json, actual not_object
        b"[\"\xff\"]",
    ] {
        rejects_bytes(b, R::InvalidJson);
    }
}

/// Fixed: SEMANTICS.md: `invalid_json` includes "numbers out of the
/// double range", and reference.py rejects them anywhere in the message. The
/// decoder only notices them in fields it reads: `IgnoredAny` skips number
/// syntax without converting it.
#[test]
fn regression_out_of_range_number_inside_skipped_values_is_invalid_json() {
    for s in [
        // expected invalid_json, actual Ok
        r#"{"id":"e1","type":"click","ts":0,"x":1e400}"#,
        r#"{"id":"e1","type":"click","ts":0,"x":{"y":[-1e400]}}"#,
        // expected invalid_json, actual wrong_type
        r#"{"id":"e1","type":"click","ts":0,"channel":[1e400]}"#,
        // expected invalid_json, actual not_object
        "[1e400]",
    ] {
        rejects(s, R::InvalidJson);
    }
}

/// Fixed: a `\ud800` escape that is not part of a
/// surrogate pair is `invalid_json` in a field the decoder reads (see
/// `invalid_json_lone_surrogate_in_read_string`) and in reference.py
/// anywhere, but the decoder accepts it inside skipped values.
#[test]
fn regression_lone_surrogate_inside_skipped_values_is_invalid_json() {
    for s in [
        // expected invalid_json, actual Ok
        r#"{"id":"e1","type":"click","ts":0,"x":"\ud800"}"#,
        r#"{"id":"e1","type":"click","ts":0,"x":["\udc00"]}"#,
        // expected invalid_json, actual wrong_type
        r#"{"id":"e1","type":"click","ts":0,"campaign":{"a":"\ud800"}}"#,
    ] {
        rejects(s, R::InvalidJson);
    }
}

/// Fixed: SEMANTICS.md: "Second `60` (a leap second) is read as the
/// first millisecond of the next minute", and reference.py drops the
/// fraction of a leap second. `time::parse_rfc3339_ms` keeps it:
/// `2016-12-31T23:59:60.500Z` gives 1483228800500 instead of 1483228800000.
#[test]
fn regression_leap_second_with_fraction_is_first_millisecond_of_next_minute() {
    let next_minute = 1_483_228_800_000; // 2017-01-01T00:00:00.000Z
    for s in [
        "2016-12-31T23:59:60.500Z",
        "2016-12-31T23:59:60.999Z",
        "2016-12-31T23:59:60.1Z",
        "2017-01-01T01:59:60.250+02:00",
    ] {
        assert_eq!(parse_rfc3339_ms(s), Some(next_minute), "{s}");
    }
}

/// Fixed: SEMANTICS.md: "an integral JSON float (`1764057600123.0`) is
/// accepted as that integer". serde_json is built without its
/// `float_roundtrip` feature, so literals with more than about 16
/// significant digits can be parsed 1 ulp off: `1764057600014.000000` is
/// read as a non-integral double and rejected as `invalid_timestamp` (about
/// 6% of current-era timestamps written with 6 fraction zeros, 10% of
/// random ones with 1..=7 zeros), and `9007199254740991.0` is read as
/// 9007199254740990. Enabling `serde_json/float_roundtrip` fixes all
/// cases below (checked with serde_json 1.0.154 in a scratch crate).
#[test]
fn regression_integral_floats_with_many_digits_are_read_exactly() {
    let ts = |v: &str| {
        let ev = Obj::full("click").set("ts", v).json();
        decode(ev.as_bytes(), &cfg(), i64::MAX).map(|e| e.ts)
    };
    // expected Ok(ms), actual Err(invalid_timestamp)
    assert_eq!(ts("1764057600014.000000"), Ok(1_764_057_600_014));
    assert_eq!(ts("97658234961275.000"), Ok(97_658_234_961_275));
    assert_eq!(ts("252596107494749.0000"), Ok(252_596_107_494_749));
    // expected count 9007199254740991, actual 9007199254740990
    let ev = valid(
        &Obj::full("impression")
            .set("count", "9007199254740991.0")
            .json(),
    );
    assert_eq!(
        ev.body,
        Body::Impression {
            count: MAX_COUNT,
            cost: 1_500_000
        }
    );
}

// ---------------------------------------------------------------------------
// Robustness: random and mutated inputs, invariants, and a differential
// check against a `serde_json::Value` model of SEMANTICS.md.

/// What every valid event satisfies, whatever the input.
#[track_caller]
fn check_invariants(ev: &Event<'_>, input: &[u8], c: &DecodeConfig, wall: i64) {
    let ctx = || show(input);
    assert!((1..=128).contains(&ev.id.len()), "id length: {}", ctx());
    assert!(
        (1..=64).contains(&ev.channel.len()),
        "channel length: {}",
        ctx()
    );
    assert!(
        (1..=128).contains(&ev.campaign.len()),
        "campaign length: {}",
        ctx()
    );
    assert!(
        (MIN_STR_TS..=MAX_STR_TS).contains(&ev.ts),
        "ts range: {}",
        ctx()
    );
    assert!(
        ev.ts <= wall.saturating_add(c.max_future_skew_ms),
        "future: {}",
        ctx()
    );
    assert!(input.len() <= c.max_event_bytes);
    let money = |m: i64| {
        assert!(
            (0..=1_000_000_000_000 * M).contains(&m),
            "money {m}: {}",
            ctx()
        )
    };
    match &ev.body {
        Body::Impression { count, cost } | Body::Click { count, cost } => {
            assert!((1..=MAX_COUNT).contains(count), "count: {}", ctx());
            money(*cost);
        }
        Body::Lead { .. } => {}
        Body::Deal {
            stage,
            amount,
            created_ts,
            ..
        } => {
            money(*amount);
            if *stage != DealStage::Open {
                assert!(
                    created_ts.is_some(),
                    "closed deal without created_ts: {}",
                    ctx()
                );
            }
            if let Some(c) = created_ts {
                assert!(*c <= ev.ts, "created after ts: {}", ctx());
                assert!((MIN_STR_TS..=MAX_STR_TS).contains(c));
            }
        }
        Body::Spend { amount, .. } => money(*amount),
        Body::Subscription { mrr_delta, .. } => money(*mrr_delta),
        Body::Session {
            count,
            pageviews,
            bounces,
            engaged,
        } => {
            assert!((1..=MAX_COUNT).contains(count), "count: {}", ctx());
            assert!(pageviews >= count && *pageviews <= MAX_COUNT, "{}", ctx());
            assert!(bounces <= count && engaged <= count, "{}", ctx());
        }
        Body::Conversion {
            action,
            count,
            value,
        } => {
            assert!((1..=64).contains(&action.len()), "action: {}", ctx());
            assert!((1..=MAX_COUNT).contains(count), "count: {}", ctx());
            money(*value);
        }
        Body::Email { count, .. } => {
            assert!((1..=MAX_COUNT).contains(count), "count: {}", ctx())
        }
        Body::Survey { kind, score } => {
            let (lo, hi) = kind.range();
            assert!((lo..=hi).contains(&u64::from(*score)), "score: {}", ctx());
        }
    }
    // Borrowed strings point into the input (or are the static defaults).
    let range = input.as_ptr_range();
    let mut strs = vec![&ev.id, &ev.channel, &ev.campaign];
    match &ev.body {
        Body::Deal { deal_id, .. } => strs.push(deal_id),
        Body::Conversion { action, .. } => strs.push(action),
        _ => {}
    }
    for s in strs {
        if let Cow::Borrowed(b) = s {
            let inside = range.contains(&b.as_ptr()) && b.len() <= input.len();
            assert!(
                inside || ["unknown", "none", "email", "conversion"].contains(b),
                "borrowed {b:?}: {}",
                ctx()
            );
        }
    }
}

/// SEMANTICS.md written out a second time over a `serde_json::Value`
/// (whose parser checks UTF-8, number ranges and surrogates everywhere, and
/// keeps the last of duplicate keys).
fn reference(bytes: &[u8], c: &DecodeConfig, wall: i64) -> Result<Event<'static>, R> {
    if bytes.len() > c.max_event_bytes {
        return Err(R::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| R::InvalidJson)?;
    let v: Value = serde_json::from_str(text).map_err(|_| R::InvalidJson)?;
    let Value::Object(o) = v else {
        return Err(R::NotObject);
    };
    let get = |k: &str, required: bool| -> Result<Option<&Value>, R> {
        match o.get(k) {
            None if required => Err(R::MissingField),
            v => Ok(v),
        }
    };
    let string = |k: &str, required: bool| -> Result<Option<String>, R> {
        match get(k, required)? {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(R::WrongType),
        }
    };
    let bounded = |k: &str, max: usize, default: &str, required: bool| -> Result<String, R> {
        match string(k, required)? {
            None => Ok(default.to_string()),
            Some(s) if s.is_empty() || s.len() > max => Err(R::InvalidLength),
            Some(s) => Ok(s),
        }
    };
    let enumerated = |k: &str, required: bool, allowed: &[&str]| -> Result<Option<usize>, R> {
        match string(k, required)? {
            None => Ok(None),
            Some(s) => allowed
                .iter()
                .position(|a| *a == s)
                .map(Some)
                .ok_or(R::InvalidValue),
        }
    };
    let ts_of = |k: &str, required: bool| -> Result<Option<i64>, R> {
        match get(k, required)? {
            None => Ok(None),
            Some(Value::String(s)) => parse_rfc3339_ms(s).map(Some).ok_or(R::InvalidTimestamp),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return if u <= MAX_TS_MS as u64 {
                        Ok(Some(u as i64))
                    } else {
                        Err(R::InvalidTimestamp)
                    };
                }
                let x = n.as_f64().unwrap();
                if x == x.trunc() && x >= 0.0 && x <= MAX_TS_MS as f64 {
                    Ok(Some(x as i64))
                } else {
                    Err(R::InvalidTimestamp)
                }
            }
            Some(_) => Err(R::WrongType),
        }
    };
    let money_of = |k: &str, required: bool| -> Result<i64, R> {
        match get(k, required)? {
            None => Ok(0),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return if u <= 1_000_000_000_000 {
                        Ok(u as i64 * M)
                    } else {
                        Err(R::InvalidNumber)
                    };
                }
                let x = n.as_f64().unwrap();
                if !(0.0..=1e12).contains(&x) {
                    Err(R::InvalidNumber)
                } else {
                    Ok((x * 1e6).round() as i64)
                }
            }
            Some(_) => Err(R::WrongType),
        }
    };
    let count_of = |k: &str| -> Result<u64, R> {
        match get(k, false)? {
            None => Ok(1),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return if (1..=MAX_COUNT).contains(&u) {
                        Ok(u)
                    } else {
                        Err(R::InvalidNumber)
                    };
                }
                let x = n.as_f64().unwrap();
                if x == x.trunc() && x >= 1.0 && x <= MAX_COUNT as f64 {
                    Ok(x as u64)
                } else {
                    Err(R::InvalidNumber)
                }
            }
            Some(_) => Err(R::WrongType),
        }
    };

    // An integer field: JSON integers, or floats with no fraction (like
    // `count`), within `lo..=2^53-1`; `None` when absent.
    let int_of = |k: &str, lo: u64| -> Result<Option<u64>, R> {
        match get(k, false)? {
            None => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    return if (lo..=MAX_COUNT).contains(&u) {
                        Ok(Some(u))
                    } else {
                        Err(R::InvalidNumber)
                    };
                }
                let x = n.as_f64().unwrap();
                if x == x.trunc() && x >= lo as f64 && x <= MAX_COUNT as f64 {
                    Ok(Some(x as u64))
                } else {
                    Err(R::InvalidNumber)
                }
            }
            Some(_) => Err(R::WrongType),
        }
    };

    let types = all_types();
    let ty = types[enumerated("type", true, &types)?.unwrap()];
    let id = bounded("id", 128, "", true)?;
    let ts = ts_of("ts", true)?.unwrap();
    // EVENTS.md v2: an email event's channel defaults to `email`.
    let default_channel = if ty == "email" { "email" } else { "unknown" };
    let channel = bounded("channel", 64, default_channel, false)?;
    let campaign = bounded("campaign", 128, "none", false)?;
    let body = match ty {
        "impression" | "click" => {
            let count = count_of("count")?;
            let cost = money_of("cost", false)?;
            if ty == "impression" {
                Body::Impression { count, cost }
            } else {
                Body::Click { count, cost }
            }
        }
        "lead" => {
            string("lead_id", true)?;
            let stage = enumerated("stage", false, &["new", "mql", "sql"])?.unwrap_or(0);
            Body::Lead {
                stage: LeadStage::ALL[stage],
            }
        }
        "deal" => {
            let deal_id = string("deal_id", true)?.unwrap();
            let stage =
                DealStage::ALL[enumerated("stage", true, &["open", "won", "lost"])?.unwrap()];
            let amount = money_of("amount", stage == DealStage::Won)?;
            let created_ts = ts_of("created_ts", stage != DealStage::Open)?;
            // v2: `origin` (every stage) and `influenced` (won only) never
            // reject; an invalid value reads as the default and is noted.
            let mut ignored = 0;
            let origin = match o.get("origin") {
                None => None,
                Some(Value::String(s))
                    if ["marketing", "sales", "partner", "other"].contains(&s.as_str()) =>
                {
                    Origin::ALL.iter().copied().find(|x| x.as_str() == s)
                }
                Some(_) => {
                    ignored |= IGNORED_ORIGIN;
                    None
                }
            };
            let influenced = match (stage, o.get("influenced")) {
                (DealStage::Won, Some(Value::Bool(b))) => *b,
                (DealStage::Won, Some(_)) => {
                    ignored |= IGNORED_INFLUENCED;
                    false
                }
                _ => false,
            };
            Body::Deal {
                deal_id: Cow::Owned(deal_id),
                stage,
                amount,
                created_ts,
                origin,
                influenced,
                ignored,
            }
        }
        "spend" => {
            let amount = money_of("amount", true)?;
            let ads = string("category", false)?.is_none_or(|c| c == "ads");
            Body::Spend { amount, ads }
        }
        "subscription" => {
            string("account_id", true)?;
            let change = enumerated(
                "change",
                true,
                &["new", "expansion", "contraction", "churn", "reactivation"],
            )?;
            let mrr_delta = money_of("mrr_delta", true)?;
            Body::Subscription {
                change: Change::ALL[change.unwrap()],
                mrr_delta,
            }
        }
        "session" => {
            let count = count_of("count")?;
            let pageviews = int_of("pageviews", 1)?.unwrap_or(count);
            if pageviews < count {
                return Err(R::InvalidNumber);
            }
            let bounces = int_of("bounces", 0)?.unwrap_or(0);
            if bounces > count {
                return Err(R::InvalidNumber);
            }
            let engaged = int_of("engaged", 0)?.unwrap_or(count - bounces);
            if engaged > count {
                return Err(R::InvalidNumber);
            }
            Body::Session {
                count,
                pageviews,
                bounces,
                engaged,
            }
        }
        "conversion" => {
            let action = bounded("action", 64, "conversion", false)?;
            let count = count_of("count")?;
            let value = money_of("value", false)?;
            Body::Conversion {
                action: Cow::Owned(action),
                count,
                value,
            }
        }
        "email" => {
            const ACTIONS: [&str; 8] = [
                "sent",
                "delivered",
                "bounced",
                "opened",
                "clicked",
                "subscribed",
                "unsubscribed",
                "complained",
            ];
            let action = ACTIONS[enumerated("action", true, &ACTIONS)?.unwrap()];
            let count = count_of("count")?;
            Body::Email {
                action: EmailAction::ALL
                    .into_iter()
                    .find(|a| a.as_str() == action)
                    .unwrap(),
                count,
            }
        }
        "survey" => {
            let nps = enumerated("kind", false, &["nps", "csat"])?.unwrap_or(0) == 0;
            let (lo, hi) = if nps { (0, 10) } else { (1, 5) };
            let score = match int_of("score", 0)? {
                None => return Err(R::MissingField),
                Some(v) if (lo..=hi).contains(&v) => v as u8,
                _ => return Err(R::InvalidNumber),
            };
            Body::Survey {
                kind: if nps {
                    SurveyKind::Nps
                } else {
                    SurveyKind::Csat
                },
                score,
            }
        }
        other => unreachable!("type {other}"),
    };
    if ts > wall.saturating_add(c.max_future_skew_ms) {
        return Err(R::FutureTimestamp);
    }
    if let Body::Deal {
        created_ts: Some(c),
        ..
    } = body
    {
        if c > ts {
            return Err(R::CreatedAfterTs);
        }
    }
    Ok(Event {
        id: Cow::Owned(id),
        ts,
        channel: Cow::Owned(channel),
        campaign: Cow::Owned(campaign),
        body,
    })
}

#[derive(Default, Debug)]
struct Tally {
    inputs: usize,
    valid: usize,
    rejected: [usize; 11],
    /// Inputs the flat fast path parsed (the others went to serde_json).
    fast: usize,
}

/// Decodes one input, checks the invariants and compares with the model.
#[track_caller]
fn run_one(input: &[u8], c: &DecodeConfig, wall: i64, tally: &mut Tally) {
    let got = decode(input, c, wall);
    tally.inputs += 1;
    match &got {
        Ok(ev) => {
            tally.valid += 1;
            check_invariants(ev, input, c, wall);
        }
        Err(r) => tally.rejected[r.index()] += 1,
    }
    let want = reference(input, c, wall);
    assert!(
        got == want,
        "decoder and model disagree\n input: {}\n decoder: {got:?}\n model:   {want:?}",
        show(input)
    );
    tally.fast += usize::from(fast_and_general_agree(input, c, wall));
}

/// The decoder (fast path first) and serde_json's general parser alone
/// give the same result; whether the fast path took the input.
#[track_caller]
fn fast_and_general_agree(input: &[u8], c: &DecodeConfig, wall: i64) -> bool {
    let got = decode(input, c, wall);
    let general = decode_general(input, c, wall);
    assert!(
        got == general,
        "fast path and serde_json disagree\n input: {}\n decoder: {got:?}\n general: {general:?}",
        show(input)
    );
    let taken = flat::parse(input, &mut Raw::default());
    assert!(
        !taken || std::str::from_utf8(input).is_ok(),
        "the fast path took invalid UTF-8: {}",
        show(input)
    );
    taken
}

const TOKENS: [&[u8]; 40] = [
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"0",
    b"7",
    b"-",
    b".",
    b"e",
    b"E",
    b"+",
    b" ",
    b"\t",
    b"\n",
    b"\0",
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\xf0\x9f\x98\x80",
    b"\xc3\xa9",
    b"null",
    b"true",
    b"1e400",
    b"\\u0000",
    b"\\ud800",
    b"\\u00e9",
    b"\"\":\"\"",
    b"-1",
    b"9007199254740992",
    b"253402300800000",
    b"\"x\"",
    b"[]",
    b"{}",
    b"1.5",
    b"\"\"",
];

const VALUES: [&str; 62] = [
    "\"e1\"",
    "\"session\"",
    "\"conversion\"",
    "\"email\"",
    "\"survey\"",
    "\"opened\"",
    "\"complained\"",
    "\"delivered\"",
    "\"demo_request\"",
    "\"nps\"",
    "\"csat\"",
    "\"marketing\"",
    "\"partner\"",
    "\"Sales\"",
    "false",
    "5",
    "10",
    "11",
    "9.0",
    "\"impression\"",
    "\"click\"",
    "\"lead\"",
    "\"deal\"",
    "\"spend\"",
    "\"subscription\"",
    "\"refund\"",
    "\"new\"",
    "\"mql\"",
    "\"sql\"",
    "\"open\"",
    "\"won\"",
    "\"lost\"",
    "\"expansion\"",
    "\"contraction\"",
    "\"churn\"",
    "\"reactivation\"",
    "\"ads\"",
    "\"tools\"",
    "\"2026-11-25T08:00:00Z\"",
    "\"2026-10-01T12:00:00+02:00\"",
    "\"2030-01-01T00:00:00Z\"",
    "\"bad\"",
    "\"\"",
    "1764057600123",
    "1795593600000.0",
    "0",
    "1",
    "2",
    "-1",
    "-0",
    "1.5",
    "12.5",
    "1e12",
    "1000000000001",
    "9007199254740992",
    "253402300800000",
    "null",
    "true",
    "[]",
    "{}",
    "[1,\"x\",{\"a\":null}]",
    "\"a\\\"b\\u00e9\"",
];

const KEYS: [&str; 29] = [
    "id",
    "pageviews",
    "bounces",
    "engaged",
    "action",
    "value",
    "kind",
    "score",
    "origin",
    "influenced",
    "type",
    "ts",
    "channel",
    "campaign",
    "count",
    "cost",
    "lead_id",
    "stage",
    "deal_id",
    "amount",
    "created_ts",
    "category",
    "account_id",
    "change",
    "mrr_delta",
    "x",
    "\\u0069d",
    "t\\u0079pe",
    "",
];

fn pick<'a, T>(rng: &mut Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.below(xs.len() as u64) as usize]
}

fn at(rng: &mut Rng, len: usize) -> usize {
    rng.below(len as u64 + 1) as usize
}

/// Bounds of the `"key":value` pair around a random position: from a `,`
/// or `{` to the next `,` or `}` (a rough cut, good enough to mutate).
fn pair_span(rng: &mut Rng, buf: &[u8]) -> Option<(usize, usize)> {
    let starts: Vec<usize> = (0..buf.len())
        .filter(|&i| buf[i] == b',' || buf[i] == b'{')
        .collect();
    if starts.is_empty() {
        return None;
    }
    let s = *pick(rng, &starts[..]) + 1;
    let e = (s..buf.len()).find(|&i| buf[i] == b',' || buf[i] == b'}')?;
    Some((s, e))
}

fn mutate(rng: &mut Rng, buf: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = buf.len();
    // Structural edits (replace a value, add a pair) get extra weight.
    let op = match rng.below(16) {
        12 | 13 => 8,
        14 | 15 => 11,
        op => op,
    };
    match op {
        0 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len as u64) as usize;
            buf[i] = rng.next_u64() as u8;
        }
        2 => buf.truncate(at(rng, len)),
        3 | 4 => {
            let i = at(rng, len);
            let t = *pick(rng, &TOKENS);
            buf.splice(i..i, t.iter().copied());
        }
        5 => {
            let i = at(rng, len);
            buf.insert(i, rng.next_u64() as u8);
        }
        6 => {
            let a = at(rng, len);
            let b = (a + rng.below(12) as usize).min(len);
            buf.drain(a..b);
        }
        7 if buf.contains(&b'{') => {
            // Duplicate a field, next to itself or at the end.
            if let Some((s, e)) = pair_span(rng, buf) {
                let pair = buf[s..e].to_vec();
                match buf.iter().rposition(|&c| c == b'}') {
                    Some(close) if rng.below(2) == 0 => {
                        let ins = [&b","[..], &pair].concat();
                        buf.splice(close..close, ins);
                    }
                    _ => {
                        let ins = [&pair[..], b","].concat();
                        buf.splice(s..s, ins);
                    }
                }
            }
        }
        8 if buf.contains(&b':') => {
            // Replace a value.
            let colons: Vec<usize> = (0..len).filter(|&i| buf[i] == b':').collect();
            let c = *pick(rng, &colons[..]) + 1;
            let e = (c..len)
                .find(|&i| buf[i] == b',' || buf[i] == b'}')
                .unwrap_or(len);
            let v = if rng.below(3) == 0 {
                pick(rng, &TOKENS).to_vec()
            } else {
                pick(rng, &VALUES).as_bytes().to_vec()
            };
            buf.splice(c..e, v);
        }
        9 if buf.contains(&b'{') => {
            // Remove a field.
            if let Some((s, e)) = pair_span(rng, buf) {
                let e = if buf.get(e) == Some(&b',') { e + 1 } else { e };
                buf.drain(s..e);
            }
        }
        10 => {
            // Splice with another input.
            let other = pick(rng, pool);
            let a = at(rng, len);
            let b = at(rng, other.len());
            buf.truncate(a);
            buf.extend_from_slice(&other[b..]);
        }
        _ => {
            // Insert a "key":value pair after a '{' or ','.
            let k = pick(rng, &KEYS);
            let v = pick(rng, &VALUES);
            let pair = format!("\"{k}\":{v},");
            let i = buf.iter().position(|&c| c == b'{').map_or(0, |p| p + 1);
            buf.splice(i..i, pair.bytes());
        }
    }
}

#[test]
fn robustness_random_and_mutated_inputs() {
    let c = cfg();
    let mut tally = Tally::default();
    let mut synth = Synth::new(SynthConfig {
        seed: 11,
        ..SynthConfig::default()
    });
    let wall = synth.current_ms() + 400_000_000; // after every synthetic event
    let mut pool: Vec<Vec<u8>> = (0..400).map(|_| synth.next_line().into_bytes()).collect();
    pool.extend(CONTRACT_EXAMPLES.iter().map(|s| s.as_bytes().to_vec()));
    for ty in all_types() {
        pool.push(Obj::full(ty).json().into_bytes());
    }
    // v2 deals with their optional fields, valid and invalid.
    for (origin, influenced) in [("\"partner\"", "true"), ("7", "\"yes\"")] {
        let deal = Obj::full("deal")
            .set("origin", origin)
            .set("influenced", influenced);
        pool.push(deal.json().into_bytes());
    }
    // Deals created at their own ts: most edits of either time reject.
    for stage in ["\"won\"", "\"lost\"", "\"open\""] {
        let deal = Obj::full("deal")
            .set("stage", stage)
            .set("created_ts", "\"2026-11-25T08:00:00Z\"");
        pool.push(deal.json().into_bytes());
        pool.push(deal.set("ts", "1795593600000").json().into_bytes());
    }
    // Unmutated inputs are valid.
    for input in &pool {
        assert!(decode(input, &c, wall).is_ok(), "{}", show(input));
        run_one(input, &c, wall, &mut tally);
    }
    let mut rng = Rng::new(0x5EED_F00D);
    // Mutated valid events.
    for _ in 0..8_000 {
        let mut buf = pick(&mut rng, &pool).clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut rng, &mut buf, &pool);
        }
        run_one(&buf, &c, wall, &mut tally);
    }
    // Fully random bytes, and random strings over a JSON-ish alphabet.
    let alphabet = b"{}[]\":,.-+eE0123456789 \\utrfalsn";
    for i in 0..3_000 {
        let n = rng.below(80) as usize;
        let buf: Vec<u8> = if i % 2 == 0 {
            (0..n).map(|_| rng.next_u64() as u8).collect()
        } else {
            (0..n).map(|_| *pick(&mut rng, alphabet)).collect()
        };
        run_one(&buf, &c, wall, &mut tally);
    }
    // A small size limit and other wall clocks, on a sample.
    let small = DecodeConfig {
        max_event_bytes: 120,
        max_future_skew_ms: 0,
    };
    for _ in 0..1_000 {
        let mut buf = pick(&mut rng, &pool).clone();
        mutate(&mut rng, &mut buf, &pool);
        let w = [0, T0, wall, i64::MIN, i64::MAX][rng.below(5) as usize];
        run_one(&buf, &small, w, &mut tally);
        run_one(&buf, &c, w, &mut tally);
    }
    eprintln!("robustness: {tally:?}");
    assert!(tally.inputs >= 5_000);
    // Both parse paths are exercised: flat objects by the fast one, the
    // rest (escapes, nesting, invalid JSON) by serde_json.
    assert!(tally.fast > 2_000, "{tally:?}");
    assert!(tally.inputs - tally.fast > 2_000, "{tally:?}");
    // The mutations reach valid events and every parse-level reason.
    assert!(tally.valid > 1_000, "{tally:?}");
    for r in R::ALL {
        assert!(
            tally.rejected[r.index()] > 0,
            "{r} never produced: {tally:?}"
        );
    }
}

/// The engine never crashes on the same inputs either.
#[test]
fn engine_partition_survives_mutated_inputs() {
    use crate::config::EngineConfig;
    use crate::engine::{Engine, Outcome};
    let engine = Engine::new(EngineConfig::default());
    let mut part = engine.partition();
    let mut synth = Synth::new(SynthConfig {
        seed: 5,
        ..SynthConfig::default()
    });
    let pool: Vec<Vec<u8>> = (0..200).map(|_| synth.next_line().into_bytes()).collect();
    let wall = synth.current_ms() + 1_000;
    let mut rng = Rng::new(99);
    let dcfg = engine.config.decode_config();
    let mut applied = 0;
    for _ in 0..3_000 {
        let mut buf = pick(&mut rng, &pool).clone();
        if rng.below(3) > 0 {
            mutate(&mut rng, &mut buf, &pool);
        }
        let by_decoder = decode(&buf, &dcfg, wall).err();
        match part.process_at(&buf, wall) {
            Outcome::Rejected(r) => assert_eq!(Some(r), by_decoder),
            _ => {
                assert_eq!(by_decoder, None);
                applied += 1;
            }
        }
    }
    assert!(applied > 500);
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 2_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A JSON object of random contract keys and values, usually with `id`,
/// `type` and `ts` (before or after the random pairs, for duplicates).
fn event_like() -> impl Strategy<Value = String> {
    let pair = (
        prop::sample::select(KEYS.to_vec()),
        prop::sample::select(VALUES.to_vec()),
    );
    (
        prop::sample::select(all_types()),
        prop::sample::select(VALUES.to_vec()),
        prop::collection::vec(pair, 0..10),
        0u8..4,
    )
        .prop_map(|(ty, ts, pairs, mode)| {
            let mut o = Obj::new(&[]);
            let head = [
                ("id", "\"e1\"".to_string()),
                ("type", format!("\"{ty}\"")),
                ("ts", ts.to_string()),
            ];
            if mode == 0 {
                for (k, v) in &head {
                    o = o.push(k, v);
                }
            }
            for (k, v) in pairs {
                o = o.push(k, v);
            }
            if mode == 1 || mode == 2 {
                for (k, v) in &head {
                    o = o.push(k, v);
                }
            }
            o.json()
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn proptest_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut tally = Tally::default();
        run_one(&bytes, &cfg(), WALL, &mut tally);
    }

    #[test]
    fn proptest_jsonish_strings(
        s in r#"[{}\[\]":,.\-+eE0-9 \\utrfalsnid]{0,100}"#,
        prefixed in any::<bool>(),
    ) {
        let input = if prefixed {
            format!(r#"{{"id":"e1","type":"click","ts":0,{s}"#)
        } else {
            s
        };
        let mut tally = Tally::default();
        run_one(input.as_bytes(), &cfg(), WALL, &mut tally);
    }

    /// Random combinations of contract fields: the decoder and the model
    /// agree exactly (valid events, reasons and check order).
    #[test]
    fn proptest_event_like_objects_match_the_model(s in event_like()) {
        let got = decode(s.as_bytes(), &cfg(), WALL);
        let want = reference(s.as_bytes(), &cfg(), WALL);
        prop_assert_eq!(&got, &want, "input: {}", s);
        if let Ok(ev) = &got {
            check_invariants(ev, s.as_bytes(), &cfg(), WALL);
        }
    }
}

/// Small integers around the edges of the v2 ranges (`bounces` and
/// `engaged` up to `count`, `pageviews` from `count`, survey scores 0..=10
/// or 1..=5), each field sometimes absent: decoder and model agree.
fn v2_numbers() -> impl Strategy<Value = String> {
    let small = || prop::option::of(-1i64..=12);
    (
        prop::sample::select(TYPES_V2.to_vec()),
        (small(), small(), small(), small()),
        prop::option::of(prop::sample::select(vec![
            "\"nps\"", "\"csat\"", "\"ces\"", "3",
        ])),
        prop::option::of(prop::sample::select(vec![
            "\"sent\"",
            "\"bounced\"",
            "\"unsubscribed\"",
            "\"spam\"",
            "\"\"",
        ])),
    )
        .prop_map(|(ty, (count, pageviews, bounces, engaged), kind, action)| {
            let mut o = Obj::new(&[
                ("id", "\"e1\""),
                ("type", &format!("\"{ty}\"")),
                ("ts", "1"),
            ]);
            let fields = [
                ("count", count),
                ("pageviews", pageviews),
                ("bounces", bounces),
                ("engaged", engaged),
                ("score", pageviews),
            ];
            for (k, v) in fields {
                if let Some(v) = v {
                    o = o.push(k, &v.to_string());
                }
            }
            if let Some(k) = kind {
                o = o.push("kind", k);
            }
            if let Some(a) = action {
                o = o.push("action", a);
            }
            o.json()
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn proptest_v2_ranges_match_the_model(s in v2_numbers()) {
        let got = decode(s.as_bytes(), &cfg(), WALL);
        let want = reference(s.as_bytes(), &cfg(), WALL);
        prop_assert_eq!(&got, &want, "input: {}", s);
    }
}

// --- v2 types and fields (EVENTS.md v2) ---------------------------------------

#[test]
fn v2_contract_examples_decode() {
    let e7 = ok(
        r#"{"id":"e7","type":"session","ts":"2026-11-25T10:05:00Z","channel":"organic","campaign":"blog","count":120,"pageviews":310,"bounces":48}"#,
    );
    assert_eq!(
        e7.body,
        Body::Session {
            count: 120,
            pageviews: 310,
            bounces: 48,
            engaged: 72
        }
    );
    let e8 = ok(
        r#"{"id":"e8","type":"conversion","ts":"2026-11-25T10:06:00Z","channel":"organic","campaign":"blog","action":"demo_request"}"#,
    );
    assert_eq!(
        e8.body,
        Body::Conversion {
            action: "demo_request".into(),
            count: 1,
            value: 0
        }
    );
    let e9 = ok(
        r#"{"id":"e9","type":"email","ts":"2026-11-25T11:00:00Z","campaign":"newsletter-48","action":"opened","count":412}"#,
    );
    assert_eq!(e9.channel, "email", "email events default to channel email");
    assert_eq!(
        e9.body,
        Body::Email {
            action: EmailAction::Opened,
            count: 412
        }
    );
    let e10 = ok(
        r#"{"id":"e10","type":"survey","ts":"2026-11-25T12:00:00Z","channel":"paid_search","campaign":"brand-q4","kind":"nps","score":9}"#,
    );
    assert_eq!(
        e10.body,
        Body::Survey {
            kind: SurveyKind::Nps,
            score: 9
        }
    );
    let e11 = ok(
        r#"{"id":"e11","type":"deal","ts":"2026-11-25T13:00:00Z","channel":"outbound","campaign":"abm-q4","deal_id":"D-10","stage":"won","amount":18000,"created_ts":"2026-09-30T09:00:00Z","origin":"sales","influenced":true}"#,
    );
    assert!(matches!(
        e11.body,
        Body::Deal {
            origin: Some(Origin::Sales),
            influenced: true,
            ignored: 0,
            ..
        }
    ));
    for ty in ["session", "conversion", "survey"] {
        let line = format!(r#"{{"id":"x","type":"{ty}","ts":1,"action":"a","score":3}}"#);
        assert_eq!(ok(&line).channel, "unknown", "{ty}");
    }
}

#[test]
fn v2_defaults() {
    let s = ok(r#"{"id":"e","type":"session","ts":1}"#);
    assert_eq!(
        s.body,
        Body::Session {
            count: 1,
            pageviews: 1,
            bounces: 0,
            engaged: 1
        }
    );
    let s = ok(r#"{"id":"e","type":"session","ts":1,"count":10,"bounces":3,"engaged":9}"#);
    assert_eq!(
        s.body,
        Body::Session {
            count: 10,
            pageviews: 10,
            bounces: 3,
            engaged: 9
        }
    );
    let c = ok(r#"{"id":"e","type":"conversion","ts":1,"count":3,"value":12.5}"#);
    assert_eq!(
        c.body,
        Body::Conversion {
            action: "conversion".into(),
            count: 3,
            value: 12_500_000
        }
    );
    let v = ok(r#"{"id":"e","type":"survey","ts":1,"score":0}"#);
    assert_eq!(
        v.body,
        Body::Survey {
            kind: SurveyKind::Nps,
            score: 0
        }
    );
    // An explicit channel on an email event is kept.
    let e = ok(r#"{"id":"e","type":"email","ts":1,"action":"sent","channel":"crm"}"#);
    assert_eq!(e.channel, "crm");
}

#[test]
fn v2_ranges_and_rejections() {
    for (line, want) in [
        // session: pageviews >= count, bounces and engaged <= count.
        (
            r#"{"id":"e","type":"session","ts":1,"count":5,"pageviews":4}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"count":5,"bounces":6}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"count":5,"engaged":6}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"count":5,"bounces":-1}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"count":5,"bounces":1.5}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"count":0}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"session","ts":1,"pageviews":"3"}"#,
            R::WrongType,
        ),
        // No pageviews given: default = count, whatever count is.
        // conversion: action a label of 1..=64 bytes, value money.
        (
            r#"{"id":"e","type":"conversion","ts":1,"action":""}"#,
            R::InvalidLength,
        ),
        (
            &format!(
                r#"{{"id":"e","type":"conversion","ts":1,"action":"{}"}}"#,
                "a".repeat(65)
            ),
            R::InvalidLength,
        ),
        (
            r#"{"id":"e","type":"conversion","ts":1,"action":5}"#,
            R::WrongType,
        ),
        (
            r#"{"id":"e","type":"conversion","ts":1,"value":-1}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"conversion","ts":1,"value":"1"}"#,
            R::WrongType,
        ),
        // email: action required, from the fixed set.
        (r#"{"id":"e","type":"email","ts":1}"#, R::MissingField),
        (
            r#"{"id":"e","type":"email","ts":1,"action":"forwarded"}"#,
            R::InvalidValue,
        ),
        (
            r#"{"id":"e","type":"email","ts":1,"action":null}"#,
            R::WrongType,
        ),
        (
            r#"{"id":"e","type":"email","ts":1,"action":"sent","count":0}"#,
            R::InvalidNumber,
        ),
        // survey: kind from the set, score required and in range.
        (
            r#"{"id":"e","type":"survey","ts":1,"kind":"ces","score":3}"#,
            R::InvalidValue,
        ),
        (r#"{"id":"e","type":"survey","ts":1}"#, R::MissingField),
        (
            r#"{"id":"e","type":"survey","ts":1,"score":11}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"score":-1}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"score":8.5}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"kind":"csat","score":0}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"kind":"csat","score":6}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"score":"9"}"#,
            R::WrongType,
        ),
        (
            r#"{"id":"e","type":"survey","ts":1,"score":true}"#,
            R::WrongType,
        ),
        // Type fields before future_timestamp, as for v1 types.
        (
            r#"{"id":"e","type":"survey","ts":253402300799999,"score":12}"#,
            R::InvalidNumber,
        ),
        (
            r#"{"id":"e","type":"email","ts":253402300799999,"action":"sent"}"#,
            R::FutureTimestamp,
        ),
    ] {
        rejects(line, want);
    }
    // Bounds are inclusive.
    ok(r#"{"id":"e","type":"session","ts":1,"count":5,"pageviews":5,"bounces":5,"engaged":5}"#);
    ok(r#"{"id":"e","type":"survey","ts":1,"kind":"csat","score":1}"#);
    ok(r#"{"id":"e","type":"survey","ts":1,"kind":"csat","score":5}"#);
    ok(r#"{"id":"e","type":"survey","ts":1,"score":10.0}"#);
    ok(&format!(
        r#"{{"id":"e","type":"conversion","ts":1,"action":"{}"}}"#,
        "a".repeat(64)
    ));
    for a in EmailAction::ALL {
        let line = format!(
            r#"{{"id":"e","type":"email","ts":1,"action":"{}"}}"#,
            a.as_str()
        );
        assert!(matches!(ok(&line).body, Body::Email { action, .. } if action == a));
    }
}

#[test]
fn v2_deal_fields_are_lenient() {
    let deal = |stage: &str, extra: &str| {
        format!(
            r#"{{"id":"e","type":"deal","ts":10,"deal_id":"D","stage":"{stage}","amount":1,"created_ts":1{extra}}}"#
        )
    };
    let body = |line: &str| valid(line).body;
    let fields = |b: Body<'_>| match b {
        Body::Deal {
            origin,
            influenced,
            ignored,
            ..
        } => (origin, influenced, ignored),
        other => panic!("{other:?}"),
    };
    for o in Origin::ALL {
        let line = deal("open", &format!(r#","origin":"{}""#, o.as_str()));
        assert_eq!(fields(body(&line)), (Some(o), false, 0));
    }
    // Invalid origin: another string, another type, null -> default, noted.
    for bad in [r#""Marketing""#, r#""""#, "1", "null", "true", "[]"] {
        for stage in ["open", "won", "lost"] {
            let line = deal(stage, &format!(r#","origin":{bad}"#));
            assert_eq!(fields(body(&line)), (None, false, IGNORED_ORIGIN), "{line}");
        }
    }
    // influenced: read (and checked) on won only.
    assert_eq!(
        fields(body(&deal("won", r#","influenced":true"#))),
        (None, true, 0)
    );
    assert_eq!(
        fields(body(&deal("won", r#","influenced":false"#))),
        (None, false, 0)
    );
    for bad in [r#""true""#, "1", "null", "{}"] {
        let line = deal("won", &format!(r#","influenced":{bad}"#));
        assert_eq!(
            fields(body(&line)),
            (None, false, IGNORED_INFLUENCED),
            "{line}"
        );
        for stage in ["open", "lost"] {
            let line = deal(stage, &format!(r#","influenced":{bad}"#));
            assert_eq!(fields(body(&line)), (None, false, 0), "{line}");
        }
    }
    assert_eq!(
        fields(body(&deal("open", r#","influenced":true"#))),
        (None, false, 0)
    );
    // Both invalid.
    let line = deal("won", r#","origin":7,"influenced":"yes""#);
    assert_eq!(
        fields(body(&line)),
        (None, false, IGNORED_ORIGIN | IGNORED_INFLUENCED)
    );
    // An invalid v2 field never hides a real rejection.
    rejects(
        r#"{"id":"e","type":"deal","ts":10,"deal_id":"D","stage":"won","created_ts":1,"origin":5}"#,
        R::MissingField,
    );
}

// --- The flat fast path against serde_json ------------------------------------

/// A JSON value as the fast path meets it: plain and escaped strings (any
/// character, control characters included), numbers of every shape,
/// literals, and now and then a nested value.
fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_ .:+-]{0,24}".prop_map(|s| format!("\"{s}\"")),
        1 => any::<String>().prop_map(|s| format!("\"{s}\"")),
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => r#""[a-z\\"/bfnrtu0-9A-F]{0,12}""#,
        3 => "-?(0|[1-9][0-9]{0,21})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,3})?",
        1 => "[0-9.eE+-]{1,8}",
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|x| x.to_string()),
        1 => (0u64..1_000_000_000_000, 0u32..1_000_000).prop_map(|(a, b)| format!("{a}.{b:06}")),
        1 => prop::sample::select(vec!["true", "false", "null", "tru", "nul", "[]", "{}", "[1,{\"a\":2}]"])
            .prop_map(String::from),
    ]
}

/// Objects of contract and unknown keys with [`json_value`]s, between
/// random JSON whitespace, sometimes with a stray byte, as valid UTF-8.
fn flat_object() -> impl Strategy<Value = String> {
    flat_object_bytes(false).prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A string's bytes, now and then not UTF-8: lone continuation bytes,
/// truncated, overlong and surrogate sequences, code points past U+10FFFF,
/// between ASCII and valid multi-byte characters.
fn raw_string() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop::sample::select(vec![
        &b"a"[..],
        b"campaign-x",
        b"\xc3\xa9",
        b"\xe2\x82\xac",
        b"\xf0\x9f\x98\x80",
        b"\x80",
        b"\xbf",
        b"\xc3",
        b"\xe2\x82",
        b"\xc0\x80",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xff",
    ]);
    prop::collection::vec(piece, 0..8).prop_map(|ps| {
        let mut b = vec![b'"'];
        ps.iter().for_each(|p| b.extend_from_slice(p));
        b.push(b'"');
        b
    })
}

/// [`flat_object`]'s objects as bytes; with `raw`, one value or key may be
/// a [`raw_string`] and the stray byte is kept as it is.
fn flat_object_bytes(raw: bool) -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        3 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        1 => "[a-z_]{0,8}",
        1 => Just("ty\\u0070e".to_string()),
    ];
    let ws = || "[ \t\r\n]{0,2}";
    (
        prop::sample::select(all_types()),
        prop::collection::vec((key, json_value(), ws(), ws()), 0..10),
        ws(),
        ws(),
        prop::option::of((any::<prop::sample::Index>(), any::<u8>())),
        (
            prop::option::of(raw_string()),
            any::<prop::sample::Index>(),
            any::<bool>(),
        ),
    )
        .prop_map(move |(ty, pairs, lead, trail, stray, (r, at, as_key))| {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>, String, String)> = pairs
                .into_iter()
                .map(|(k, v, w1, w2)| (format!("\"{k}\"").into_bytes(), v.into_bytes(), w1, w2))
                .collect();
            if let (true, Some(r)) = (raw, r) {
                let slot = at.index(pairs.len() + 1);
                let value = (b"\"campaign\"".to_vec(), r.clone());
                if slot == pairs.len() {
                    pairs.push((value.0, value.1, String::new(), String::new()));
                } else if as_key {
                    pairs[slot].0 = r;
                } else {
                    pairs[slot].1 = r;
                }
            }
            let mut b = format!(
                "{lead}{{\"id\":\"e1\",{lead}\"type\":\"{ty}\",\"ts\":\"2026-11-25T10:00:00Z\""
            )
            .into_bytes();
            for (k, v, w1, w2) in pairs {
                b.push(b',');
                b.extend_from_slice(w1.as_bytes());
                b.extend_from_slice(&k);
                b.extend_from_slice(w2.as_bytes());
                b.push(b':');
                b.extend_from_slice(w1.as_bytes());
                b.extend_from_slice(&v);
                b.extend_from_slice(w2.as_bytes());
            }
            b.push(b'}');
            b.extend_from_slice(trail.as_bytes());
            if let Some((i, byte)) = stray {
                let i = i.index(b.len());
                b[i] = byte;
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..proptest_config() })]

    /// Whatever the fast path accepts it reads exactly as serde_json does,
    /// and whatever it declines serde_json decides.
    #[test]
    fn proptest_fast_path_agrees_with_serde_json(s in flat_object()) {
        fast_and_general_agree(s.as_bytes(), &cfg(), WALL);
    }

    /// The same on bytes that need not be UTF-8: the fast path checks it
    /// itself, only in strings with a byte that is not ASCII.
    #[test]
    fn proptest_fast_path_agrees_on_bytes_that_are_not_utf8(b in flat_object_bytes(true)) {
        fast_and_general_agree(&b, &cfg(), WALL);
    }
}

#[test]
fn fast_path_takes_the_synthetic_and_realistic_shapes() {
    let mut synth = Synth::new(SynthConfig {
        seed: 3,
        v2_ratio: 0.3,
        ..SynthConfig::default()
    });
    for _ in 0..5_000 {
        let line = synth.next_line();
        assert!(
            fast_and_general_agree(line.as_bytes(), &cfg(), synth.current_ms() + 1),
            "declined: {line}"
        );
    }
    for s in [
        r#" {"id" : "e1", "type":"click","ts":1795593600000,"count":3,"cost":0.1} "#,
        r#"{"id":"é€😀","type":"deal","ts":"2026-11-25T10:00:00.125+01:00","deal_id":"d","stage":"open","amount":12345678901.5,"x":null,"influenced":true}"#,
        "{}",
    ] {
        assert!(fast_and_general_agree(s.as_bytes(), &cfg(), WALL), "{s}");
    }
    for s in [
        r#"{"id":"e\"1","type":"click","ts":0}"#,
        r#"{"id":"e1","type":"click","ts":0,"x":[1]}"#,
        r#"{"id":"e1","type":"click","ts":0,"cost":1e2}"#,
        r#"{"id":"e1","type":"click","ts":0,"cost":-1}"#,
        r#"{"id":"e1","type":"click","ts":0,"count":12345678901234567890}"#,
        r#"{"id":"e1","type":"click","ts":0}x"#,
    ] {
        assert!(!fast_and_general_agree(s.as_bytes(), &cfg(), WALL), "{s}");
    }
}
