//! Stage 2 of the flow: **decode**. Bytes in, a validated [`Event`] or a
//! [`RejectReason`] out, following the event contract (EVENTS.md) and the
//! choices of `docs/SEMANTICS.md`. Also home of the [`dedup::Dedup`] memory.
//!
//! Decoding borrows from the input where it can: field names are matched
//! without allocating and string values point into the message unless they
//! contain JSON escapes. The decoder never panics, whatever the bytes.

pub mod dedup;
mod flat;
pub mod time;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use std::mem::ManuallyDrop;

/// Why an event was rejected. A small fixed set, so that
/// `funnel_events_rejected_total{reason}` has bounded cardinality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    TooLarge,
    InvalidJson,
    NotObject,
    MissingField,
    WrongType,
    InvalidValue,
    InvalidNumber,
    InvalidLength,
    InvalidTimestamp,
    FutureTimestamp,
    CreatedAfterTs,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        Self::TooLarge,
        Self::InvalidJson,
        Self::NotObject,
        Self::MissingField,
        Self::WrongType,
        Self::InvalidValue,
        Self::InvalidNumber,
        Self::InvalidLength,
        Self::InvalidTimestamp,
        Self::FutureTimestamp,
        Self::CreatedAfterTs,
    ];

    /// The `reason` label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::InvalidJson => "invalid_json",
            Self::NotObject => "not_object",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidValue => "invalid_value",
            Self::InvalidNumber => "invalid_number",
            Self::InvalidLength => "invalid_length",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::FutureTimestamp => "future_timestamp",
            Self::CreatedAfterTs => "created_after_ts",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event types, in the order of EVENTS.md (the six of v1, then the
/// four of v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventType {
    Impression,
    Click,
    Lead,
    Deal,
    Spend,
    Subscription,
    Session,
    Conversion,
    Email,
    Survey,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        Self::Impression,
        Self::Click,
        Self::Lead,
        Self::Deal,
        Self::Spend,
        Self::Subscription,
        Self::Session,
        Self::Conversion,
        Self::Email,
        Self::Survey,
    ];
    /// Types of v1 (a format-1 or format-2 checkpoint counts these only).
    pub(crate) const V1_COUNT: usize = 6;
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Impression => "impression",
            Self::Click => "click",
            Self::Lead => "lead",
            Self::Deal => "deal",
            Self::Spend => "spend",
            Self::Subscription => "subscription",
            Self::Session => "session",
            Self::Conversion => "conversion",
            Self::Email => "email",
            Self::Survey => "survey",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Lead lifecycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadStage {
    New,
    Mql,
    Sql,
}
impl LeadStage {
    pub const ALL: [LeadStage; 3] = [Self::New, Self::Mql, Self::Sql];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Mql => "mql",
            Self::Sql => "sql",
        }
    }
}

/// Deal stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DealStage {
    Open,
    Won,
    Lost,
}
impl DealStage {
    pub const ALL: [DealStage; 3] = [Self::Open, Self::Won, Self::Lost];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }
}

/// Subscription MRR movement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    New,
    Expansion,
    Contraction,
    Churn,
    Reactivation,
}
impl Change {
    pub const ALL: [Change; 5] = [
        Self::New,
        Self::Expansion,
        Self::Contraction,
        Self::Churn,
        Self::Reactivation,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Expansion => "expansion",
            Self::Contraction => "contraction",
            Self::Churn => "churn",
            Self::Reactivation => "reactivation",
        }
    }
    /// `+1` for movements that add MRR, `-1` for those that remove it.
    pub fn sign(self) -> i64 {
        match self {
            Self::Contraction | Self::Churn => -1,
            _ => 1,
        }
    }
}

/// Who sourced an opportunity (deal `origin`, v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Marketing,
    Sales,
    Partner,
    Other,
}
impl Origin {
    pub const ALL: [Origin; 4] = [Self::Marketing, Self::Sales, Self::Partner, Self::Other];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Marketing => "marketing",
            Self::Sales => "sales",
            Self::Partner => "partner",
            Self::Other => "other",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
    /// The default of EVENTS.md v2 for a channel, before the
    /// `channel_origins` setting overrides it.
    pub(crate) fn default_for_channel(channel: &str) -> Self {
        match channel {
            "outbound" => Self::Sales,
            "partner" => Self::Partner,
            "unknown" => Self::Other,
            _ => Self::Marketing,
        }
    }
}

/// Email event `action` (v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmailAction {
    Sent,
    Delivered,
    Bounced,
    Opened,
    Clicked,
    Subscribed,
    Unsubscribed,
    Complained,
}
impl EmailAction {
    pub const ALL: [EmailAction; 8] = [
        Self::Sent,
        Self::Delivered,
        Self::Bounced,
        Self::Opened,
        Self::Clicked,
        Self::Subscribed,
        Self::Unsubscribed,
        Self::Complained,
    ];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Bounced => "bounced",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
            Self::Subscribed => "subscribed",
            Self::Unsubscribed => "unsubscribed",
            Self::Complained => "complained",
        }
    }
}

/// Survey `kind` (v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SurveyKind {
    Nps,
    Csat,
}
impl SurveyKind {
    pub const ALL: [SurveyKind; 2] = [Self::Nps, Self::Csat];
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Nps => "nps",
            Self::Csat => "csat",
        }
    }
    /// The accepted scores.
    pub const fn range(self) -> (u64, u64) {
        match self {
            Self::Nps => (0, 10),
            Self::Csat => (1, 5),
        }
    }
}

/// Bits of [`Body::Deal`]'s `ignored`: v2 optional fields whose invalid
/// value was read as the default (`funnel_fields_ignored_total{field}`).
pub(crate) const IGNORED_ORIGIN: u8 = 1;
pub(crate) const IGNORED_INFLUENCED: u8 = 2;
/// The `field` label values, by bit position.
pub(crate) const IGNORABLE_FIELDS: [&str; 2] = ["origin", "influenced"];

/// Type-specific payload of a valid event. Money is in integer micro-units.
#[derive(Debug, Clone, PartialEq)]
pub enum Body<'a> {
    Impression {
        count: u64,
        cost: i64,
    },
    Click {
        count: u64,
        cost: i64,
    },
    Lead {
        stage: LeadStage,
    },
    Deal {
        deal_id: Cow<'a, str>,
        stage: DealStage,
        amount: i64,
        /// Present for `won` and `lost` (required), optional for `open`.
        created_ts: Option<i64>,
        /// `None`: the default of the `channel_origins` setting (absent or
        /// invalid in the event).
        origin: Option<Origin>,
        /// Read on `won` only; `false` otherwise.
        influenced: bool,
        /// [`IGNORED_ORIGIN`] | [`IGNORED_INFLUENCED`].
        ignored: u8,
    },
    Spend {
        amount: i64,
        /// `category` is `ads` (the default).
        ads: bool,
    },
    Subscription {
        change: Change,
        mrr_delta: i64,
    },
    Session {
        count: u64,
        pageviews: u64,
        bounces: u64,
        engaged: u64,
    },
    Conversion {
        action: Cow<'a, str>,
        count: u64,
        value: i64,
    },
    Email {
        action: EmailAction,
        count: u64,
    },
    Survey {
        kind: SurveyKind,
        score: u8,
    },
}

/// A validated event. `ts` is epoch milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub id: Cow<'a, str>,
    pub ts: i64,
    pub channel: Cow<'a, str>,
    pub campaign: Cow<'a, str>,
    pub body: Body<'a>,
}

impl Event<'_> {
    pub(crate) fn event_type(&self) -> EventType {
        match self.body {
            Body::Impression { .. } => EventType::Impression,
            Body::Click { .. } => EventType::Click,
            Body::Lead { .. } => EventType::Lead,
            Body::Deal { .. } => EventType::Deal,
            Body::Spend { .. } => EventType::Spend,
            Body::Subscription { .. } => EventType::Subscription,
            Body::Session { .. } => EventType::Session,
            Body::Conversion { .. } => EventType::Conversion,
            Body::Email { .. } => EventType::Email,
            Body::Survey { .. } => EventType::Survey,
        }
    }
}

/// Largest accepted `count`: 2^53 - 1, the largest integer every JSON
/// implementation represents exactly.
pub const MAX_COUNT: u64 = (1 << 53) - 1;
/// Largest accepted money amount per event, in currency units.
pub(crate) const MAX_MONEY_UNITS: f64 = 1e12;
/// Micro-units per currency unit.
pub(crate) const MICRO: i64 = 1_000_000;

/// Decoder settings.
#[derive(Debug, Clone)]
pub struct DecodeConfig {
    /// How far `ts` may lie ahead of the wall clock.
    pub max_future_skew_ms: i64,
    /// Longest accepted message, in bytes.
    pub max_event_bytes: usize,
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            max_future_skew_ms: 5 * 60 * 1000,
            max_event_bytes: 1 << 20,
        }
    }
}

/// Decodes and validates one message value against the contract.
pub fn decode<'a>(
    bytes: &'a [u8],
    cfg: &DecodeConfig,
    wall_now_ms: i64,
) -> Result<Event<'a>, RejectReason> {
    decode_with(bytes, cfg, wall_now_ms, parse_raw)
}

/// [`decode`] with serde_json's general parser alone, never the fast path
/// for flat objects: the reference that path is checked against (the
/// differential tests and the fuzz target).
#[doc(hidden)]
pub fn decode_general<'a>(
    bytes: &'a [u8],
    cfg: &DecodeConfig,
    wall_now_ms: i64,
) -> Result<Event<'a>, RejectReason> {
    decode_with(bytes, cfg, wall_now_ms, |bytes, raw| {
        let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidJson)?;
        parse_general(text, raw)
    })
}

fn decode_with<'a>(
    bytes: &'a [u8],
    cfg: &DecodeConfig,
    wall_now_ms: i64,
    parse: impl FnOnce(&'a [u8], &mut Raw<'a>) -> Result<(), RejectReason>,
) -> Result<Event<'a>, RejectReason> {
    if bytes.len() > cfg.max_event_bytes {
        return Err(RejectReason::TooLarge);
    }
    // Filled in place: `Raw` is 608 bytes, and each move of it a copy.
    // Dropped only if serde_json filled it: the fast path's strings all
    // borrow from `bytes`, so such a `Raw` owns nothing, and its drop glue
    // (a test of each of its 25 fields) cost 90 instructions an event.
    let mut raw = ManuallyDrop::new(Raw::default());
    let parsed = parse(bytes, &mut raw).and_then(|()| validate(&mut raw));
    if raw.may_own {
        drop(ManuallyDrop::into_inner(raw));
    }
    let ev = parsed?;
    if ev.ts > wall_now_ms.saturating_add(cfg.max_future_skew_ms) {
        return Err(RejectReason::FutureTimestamp);
    }
    if let Body::Deal {
        created_ts: Some(c),
        ..
    } = ev.body
    {
        if c > ev.ts {
            return Err(RejectReason::CreatedAfterTs);
        }
    }
    Ok(ev)
}

// ---------------------------------------------------------------------------
// Raw parse: known fields as loosely typed scalars, everything else skipped.

/// Skips a JSON value while still checking it the way a full parse does
/// (numbers in range, strings valid: no lone surrogate escapes), unlike
/// `IgnoredAny`, so that an unknown field cannot smuggle invalid JSON in.
struct Skip;

impl<'de> de::Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Skip;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_unit<E>(self) -> Result<Skip, E> {
                Ok(Skip)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Skip, A::Error> {
                while a.next_element::<Skip>()?.is_some() {}
                Ok(Skip)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Skip, A::Error> {
                while a.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(Skip)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON value as far as validation needs to know it.
#[derive(Debug)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    /// A negative integer (serde_json reports non-negative ones as U64).
    Negative,
    F64(f64),
    /// A boolean (deal `influenced`; the wrong type everywhere else).
    Bool(bool),
    /// `null`, arrays and objects: always the wrong type here.
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Negative)
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<Skip>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<Skip, Skip>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Field names the contract defines.
#[derive(Clone, Copy)]
enum Field {
    Id,
    Type,
    Ts,
    Channel,
    Campaign,
    Count,
    Cost,
    LeadId,
    Stage,
    DealId,
    Amount,
    CreatedTs,
    Category,
    AccountId,
    Change,
    MrrDelta,
    Pageviews,
    Bounces,
    Engaged,
    Action,
    Value,
    Kind,
    Score,
    Origin,
    Influenced,
    Unknown,
}

impl Field {
    fn from_name(s: &str) -> Field {
        match s {
            "id" => Field::Id,
            "type" => Field::Type,
            "ts" => Field::Ts,
            "channel" => Field::Channel,
            "campaign" => Field::Campaign,
            "count" => Field::Count,
            "cost" => Field::Cost,
            "lead_id" => Field::LeadId,
            "stage" => Field::Stage,
            "deal_id" => Field::DealId,
            "amount" => Field::Amount,
            "created_ts" => Field::CreatedTs,
            "category" => Field::Category,
            "account_id" => Field::AccountId,
            "change" => Field::Change,
            "mrr_delta" => Field::MrrDelta,
            "pageviews" => Field::Pageviews,
            "bounces" => Field::Bounces,
            "engaged" => Field::Engaged,
            "action" => Field::Action,
            "value" => Field::Value,
            "kind" => Field::Kind,
            "score" => Field::Score,
            "origin" => Field::Origin,
            "influenced" => Field::Influenced,
            _ => Field::Unknown,
        }
    }
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(Field::from_name(v))
            }
        }
        d.deserialize_identifier(V)
    }
}

#[derive(Default)]
struct Raw<'a> {
    id: Option<Scalar<'a>>,
    type_: Option<Scalar<'a>>,
    ts: Option<Scalar<'a>>,
    channel: Option<Scalar<'a>>,
    campaign: Option<Scalar<'a>>,
    count: Option<Scalar<'a>>,
    cost: Option<Scalar<'a>>,
    lead_id: Option<Scalar<'a>>,
    stage: Option<Scalar<'a>>,
    deal_id: Option<Scalar<'a>>,
    amount: Option<Scalar<'a>>,
    created_ts: Option<Scalar<'a>>,
    category: Option<Scalar<'a>>,
    account_id: Option<Scalar<'a>>,
    change: Option<Scalar<'a>>,
    mrr_delta: Option<Scalar<'a>>,
    pageviews: Option<Scalar<'a>>,
    bounces: Option<Scalar<'a>>,
    engaged: Option<Scalar<'a>>,
    action: Option<Scalar<'a>>,
    value: Option<Scalar<'a>>,
    kind: Option<Scalar<'a>>,
    score: Option<Scalar<'a>>,
    origin: Option<Scalar<'a>>,
    influenced: Option<Scalar<'a>>,
    /// Set before serde_json fills it: it may hold owned strings (values
    /// with escapes), which the fast path never makes.
    may_own: bool,
}

impl<'a> Raw<'a> {
    /// Where a field's value goes; `None` for fields the contract does not
    /// define (skipped).
    fn slot(&mut self, field: Field) -> Option<&mut Option<Scalar<'a>>> {
        Some(match field {
            Field::Id => &mut self.id,
            Field::Type => &mut self.type_,
            Field::Ts => &mut self.ts,
            Field::Channel => &mut self.channel,
            Field::Campaign => &mut self.campaign,
            Field::Count => &mut self.count,
            Field::Cost => &mut self.cost,
            Field::LeadId => &mut self.lead_id,
            Field::Stage => &mut self.stage,
            Field::DealId => &mut self.deal_id,
            Field::Amount => &mut self.amount,
            Field::CreatedTs => &mut self.created_ts,
            Field::Category => &mut self.category,
            Field::AccountId => &mut self.account_id,
            Field::Change => &mut self.change,
            Field::MrrDelta => &mut self.mrr_delta,
            Field::Pageviews => &mut self.pageviews,
            Field::Bounces => &mut self.bounces,
            Field::Engaged => &mut self.engaged,
            Field::Action => &mut self.action,
            Field::Value => &mut self.value,
            Field::Kind => &mut self.kind,
            Field::Score => &mut self.score,
            Field::Origin => &mut self.origin,
            Field::Influenced => &mut self.influenced,
            Field::Unknown => return None,
        })
    }
}

/// The top-level value: an object's known fields, written into the `Raw`
/// it holds; deserializes to whether it was an object.
struct TopSeed<'r, 'a>(&'r mut Raw<'a>);

impl<'de> de::DeserializeSeed<'de> for TopSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct V<'r, 'a>(&'r mut Raw<'a>);
        impl<'de> Visitor<'de> for V<'_, 'de> {
            type Value = bool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let r = self.0;
                while let Some(field) = a.next_key::<Field>()? {
                    match r.slot(field) {
                        Some(slot) => *slot = Some(a.next_value::<Scalar<'de>>()?),
                        None => {
                            a.next_value::<Skip>()?;
                        }
                    }
                }
                Ok(true)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<Skip>()?.is_some() {}
                Ok(false)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(false)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(false)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(false)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(false)
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(false)
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(false)
            }
        }
        d.deserialize_any(V(self.0))
    }
}

fn parse_raw<'a>(bytes: &'a [u8], raw: &mut Raw<'a>) -> Result<(), RejectReason> {
    // The fast path checks UTF-8 itself (see `flat`).
    if flat::parse(bytes, raw) {
        return Ok(());
    }
    *raw = Raw::default();
    // Validate UTF-8 once for the whole message (skipped values included),
    // then parse from `&str`, which does not check it again.
    let text = std::str::from_utf8(bytes).map_err(|_| RejectReason::InvalidJson)?;
    parse_general(text, raw)
}

/// The raw parse by serde_json alone: every message the fast path gives up
/// on, and the reference it is tested against.
fn parse_general<'a>(text: &'a str, raw: &mut Raw<'a>) -> Result<(), RejectReason> {
    raw.may_own = true;
    let mut de = serde_json::Deserializer::from_str(text);
    let object = de::DeserializeSeed::deserialize(TopSeed(raw), &mut de)
        .map_err(|_| RejectReason::InvalidJson)?;
    de.end().map_err(|_| RejectReason::InvalidJson)?;
    if object {
        Ok(())
    } else {
        Err(RejectReason::NotObject)
    }
}

// ---------------------------------------------------------------------------
// Validation.

use RejectReason as R;

fn required<'a>(v: Option<Scalar<'a>>) -> Result<Scalar<'a>, RejectReason> {
    v.ok_or(R::MissingField)
}

fn string(v: Scalar<'_>) -> Result<Cow<'_, str>, RejectReason> {
    match v {
        Scalar::Str(s) => Ok(s),
        _ => Err(R::WrongType),
    }
}

fn bounded(s: Cow<'_, str>, max: usize) -> Result<Cow<'_, str>, RejectReason> {
    if s.is_empty() || s.len() > max {
        Err(R::InvalidLength)
    } else {
        Ok(s)
    }
}

fn optional_label<'a>(
    v: Option<Scalar<'a>>,
    default: &'static str,
    max: usize,
) -> Result<Cow<'a, str>, RejectReason> {
    match v {
        None => Ok(Cow::Borrowed(default)),
        Some(v) => bounded(string(v)?, max),
    }
}

fn timestamp(v: Scalar<'_>) -> Result<i64, RejectReason> {
    match v {
        // RFC 3339 names years 0000..=9999, so strings may lie before 1970.
        Scalar::Str(s) => time::parse_rfc3339_ms(&s).ok_or(R::InvalidTimestamp),
        Scalar::U64(n) if n <= time::MAX_TS_MS as u64 => Ok(n as i64),
        Scalar::U64(_) | Scalar::Negative => Err(R::InvalidTimestamp),
        Scalar::F64(x) if x.fract() == 0.0 && (0.0..=time::MAX_TS_MS as f64).contains(&x) => {
            Ok(x as i64)
        }
        Scalar::F64(_) => Err(R::InvalidTimestamp),
        Scalar::Bool(_) | Scalar::Other => Err(R::WrongType),
    }
}

fn count(v: Option<Scalar<'_>>) -> Result<u64, RejectReason> {
    match v {
        None => Ok(1),
        Some(v) => integer(v, 1, MAX_COUNT),
    }
}

/// An integer in `lo..=hi` (integral floats accepted, like `count`).
fn integer(v: Scalar<'_>, lo: u64, hi: u64) -> Result<u64, RejectReason> {
    match v {
        Scalar::U64(n) if (lo..=hi).contains(&n) => Ok(n),
        Scalar::U64(_) | Scalar::Negative => Err(R::InvalidNumber),
        Scalar::F64(x) => {
            if x.fract() == 0.0 && x >= lo as f64 && x <= hi as f64 {
                Ok(x as u64)
            } else {
                Err(R::InvalidNumber)
            }
        }
        _ => Err(R::WrongType),
    }
}

/// Money to integer micro-units.
fn money(v: Scalar<'_>) -> Result<i64, RejectReason> {
    match v {
        Scalar::U64(n) => {
            if n as f64 > MAX_MONEY_UNITS {
                Err(R::InvalidNumber)
            } else {
                Ok(n as i64 * MICRO)
            }
        }
        Scalar::Negative => Err(R::InvalidNumber),
        Scalar::F64(x) => {
            if !(0.0..=MAX_MONEY_UNITS).contains(&x) {
                Err(R::InvalidNumber)
            } else {
                Ok((x * MICRO as f64).round() as i64)
            }
        }
        _ => Err(R::WrongType),
    }
}

fn optional_money(v: Option<Scalar<'_>>) -> Result<i64, RejectReason> {
    v.map_or(Ok(0), money)
}

fn enum_value<T>(v: Scalar<'_>, parse: impl Fn(&str) -> Option<T>) -> Result<T, RejectReason> {
    let s = string(v)?;
    parse(&s).ok_or(R::InvalidValue)
}

fn validate<'a>(r: &mut Raw<'a>) -> Result<Event<'a>, RejectReason> {
    let ty = enum_value(required(r.type_.take())?, EventType::parse)?;
    let id = bounded(string(required(r.id.take())?)?, 128)?;
    let ts = timestamp(required(r.ts.take())?)?;
    let default_channel = if ty == EventType::Email {
        "email"
    } else {
        "unknown"
    };
    let channel = optional_label(r.channel.take(), default_channel, 64)?;
    let campaign = optional_label(r.campaign.take(), "none", 128)?;
    let body = match ty {
        EventType::Impression | EventType::Click => ad(ty, r)?,
        EventType::Lead => lead(r)?,
        EventType::Deal => deal(r)?,
        EventType::Spend => spend(r)?,
        EventType::Subscription => subscription(r)?,
        EventType::Session => session(r)?,
        EventType::Conversion => conversion(r)?,
        EventType::Email => email(r)?,
        EventType::Survey => survey(r)?,
    };
    Ok(Event {
        id,
        ts,
        channel,
        campaign,
        body,
    })
}

/// An impression or a click.
fn ad<'a>(ty: EventType, r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let count = count(r.count.take())?;
    let cost = optional_money(r.cost.take())?;
    Ok(if ty == EventType::Impression {
        Body::Impression { count, cost }
    } else {
        Body::Click { count, cost }
    })
}

/// A lead: `lead_id` required, `stage` defaults to `new`.
fn lead<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    string(required(r.lead_id.take())?)?;
    let stage = match r.stage.take() {
        None => LeadStage::New,
        Some(v) => enum_value(v, |s| LeadStage::ALL.into_iter().find(|x| x.as_str() == s))?,
    };
    Ok(Body::Lead { stage })
}

/// A deal: `amount` required when won, `created_ts` unless open; the v2
/// fields `origin` and `influenced` are lenient (an invalid value is read
/// as the default and counted).
fn deal<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let deal_id = string(required(r.deal_id.take())?)?;
    let stage = enum_value(required(r.stage.take())?, |s| {
        DealStage::ALL.into_iter().find(|x| x.as_str() == s)
    })?;
    let amount = match (stage, r.amount.take()) {
        (DealStage::Won, v) => money(required(v)?)?,
        (_, v) => optional_money(v)?,
    };
    let created_ts = match (stage, r.created_ts.take()) {
        (DealStage::Open, None) => None,
        (_, v) => Some(timestamp(required(v)?)?),
    };
    // Lenient v2 fields: an invalid value is read as the default.
    let mut ignored = 0;
    let origin = match r.origin.take() {
        None => None,
        Some(Scalar::Str(s)) if Origin::parse(&s).is_some() => Origin::parse(&s),
        Some(_) => {
            ignored |= IGNORED_ORIGIN;
            None
        }
    };
    let influenced = match (stage, r.influenced.take()) {
        (DealStage::Won, Some(Scalar::Bool(b))) => b,
        (DealStage::Won, Some(_)) => {
            ignored |= IGNORED_INFLUENCED;
            false
        }
        _ => false,
    };
    Ok(Body::Deal {
        deal_id,
        stage,
        amount,
        created_ts,
        origin,
        influenced,
        ignored,
    })
}

/// Spend: `amount` required; `category` other than `ads` is not ad spend.
fn spend<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let amount = money(required(r.amount.take())?)?;
    let ads = match r.category.take() {
        None => true,
        Some(v) => string(v)? == "ads",
    };
    Ok(Body::Spend { amount, ads })
}

/// A subscription change.
fn subscription<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    string(required(r.account_id.take())?)?;
    let change = enum_value(required(r.change.take())?, |s| {
        Change::ALL.into_iter().find(|x| x.as_str() == s)
    })?;
    let mrr_delta = money(required(r.mrr_delta.take())?)?;
    Ok(Body::Subscription { change, mrr_delta })
}

/// Web sessions: `pageviews` from `count` up, `bounces` and `engaged` up
/// to `count`.
fn session<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let count = count(r.count.take())?;
    let pageviews = match r.pageviews.take() {
        None => count,
        Some(v) => integer(v, count, MAX_COUNT)?,
    };
    let bounces = match r.bounces.take() {
        None => 0,
        Some(v) => integer(v, 0, count)?,
    };
    let engaged = match r.engaged.take() {
        None => count - bounces,
        Some(v) => integer(v, 0, count)?,
    };
    Ok(Body::Session {
        count,
        pageviews,
        bounces,
        engaged,
    })
}

/// Conversions of an `action`.
fn conversion<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let action = optional_label(r.action.take(), "conversion", 64)?;
    let count = count(r.count.take())?;
    let value = optional_money(r.value.take())?;
    Ok(Body::Conversion {
        action,
        count,
        value,
    })
}

/// An email action.
fn email<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let action = enum_value(required(r.action.take())?, |s| {
        EmailAction::ALL.into_iter().find(|x| x.as_str() == s)
    })?;
    let count = count(r.count.take())?;
    Ok(Body::Email { action, count })
}

/// A survey answer, its score within its kind's range.
fn survey<'a>(r: &mut Raw<'a>) -> Result<Body<'a>, RejectReason> {
    let kind = match r.kind.take() {
        None => SurveyKind::Nps,
        Some(v) => enum_value(v, |s| SurveyKind::ALL.into_iter().find(|x| x.as_str() == s))?,
    };
    let (lo, hi) = kind.range();
    let score = integer(required(r.score.take())?, lo, hi)? as u8;
    Ok(Body::Survey { kind, score })
}

#[cfg(test)]
mod tests;
