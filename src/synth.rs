//! Synthetic, realistic event streams: for benchmarks now, and for `demo` and
//! `produce`. Seeded and deterministic. A believable B2B funnel per
//! campaign: impressions -> clicks -> leads -> MQL -> SQL -> opportunities ->
//! won/lost with amounts and sales cycles, spend, subscription movements,
//! plus optional duplicates and malformed events.

use crate::decode::time::format_rfc3339_ms;
use std::fmt::Write as _;

/// SplitMix64: tiny, fast, good enough for synthetic data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub const CHANNELS: [&str; 6] = [
    "paid_search",
    "paid_social",
    "email",
    "organic",
    "referral",
    "outbound",
];

/// Settings of a synthetic stream.
#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub seed: u64,
    /// Distinct (channel, campaign) keys.
    pub keys: u64,
    /// Event time of the first event, epoch ms.
    pub start_ms: i64,
    /// Event time advances by this much per event on average.
    pub step_ms: f64,
    /// Share of events re-sent with an id already used (duplicates).
    pub duplicate_ratio: f64,
    /// Share of malformed events.
    pub invalid_ratio: f64,
    /// Zipf exponent of key popularity: 0 draws keys uniformly (the worst
    /// case for caches); 1 gives the key of rank `r` a share proportional
    /// to `1/r`, roughly how ad traffic spreads over campaigns.
    pub key_skew: f64,
    /// Share of events of the v2 types (sessions, conversions, email,
    /// surveys: EVENTS.md v2), with deal `origin`/`influenced` fields too
    /// when positive. 0 (the default) keeps the v1-only stream exactly as
    /// it was, so benches and fixtures built on it stay comparable.
    pub v2_ratio: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 42,
            keys: 40,
            start_ms: 1_795_593_600_000,
            step_ms: 100.0,
            duplicate_ratio: 0.0,
            invalid_ratio: 0.0,
            key_skew: 0.0,
            v2_ratio: 0.0,
        }
    }
}

/// Generator of NDJSON event lines.
#[derive(Debug, Clone)]
pub struct Synth {
    cfg: SynthConfig,
    rng: Rng,
    seq: u64,
    ts: f64,
    open_deals: Vec<(u64, i64, u64)>,
    accounts: Vec<(u64, u64, i64)>,
    last: String,
    /// Cumulative key shares when `key_skew > 0` (empty: uniform).
    key_cdf: Vec<f64>,
}

impl Synth {
    pub fn new(cfg: SynthConfig) -> Self {
        let key_cdf = if cfg.key_skew > 0.0 {
            let w: Vec<f64> = (1..=cfg.keys)
                .map(|r| (r as f64).powf(-cfg.key_skew))
                .collect();
            let total: f64 = w.iter().sum();
            w.iter()
                .scan(0.0, |acc, x| {
                    *acc += x / total;
                    Some(*acc)
                })
                .collect()
        } else {
            Vec::new()
        };
        Synth {
            key_cdf,
            rng: Rng::new(cfg.seed),
            ts: cfg.start_ms as f64,
            cfg,
            seq: 0,
            open_deals: Vec::new(),
            accounts: Vec::new(),
            last: String::new(),
        }
    }

    /// Event time of the next event.
    pub fn current_ms(&self) -> i64 {
        self.ts as i64
    }

    /// Sets how far event time advances per event on average.
    pub(crate) fn set_step_ms(&mut self, step_ms: f64) {
        self.cfg.step_ms = step_ms;
    }

    /// Sets the event time of the following events (live generators follow
    /// the wall clock).
    pub fn set_time_ms(&mut self, ms: i64) {
        self.ts = ms as f64;
    }

    fn key(&mut self) -> (u64, &'static str, String) {
        let k = if self.key_cdf.is_empty() {
            self.rng.below(self.cfg.keys)
        } else {
            let u = self.rng.unit();
            let r = self.key_cdf.partition_point(|&c| c < u);
            (r as u64).min(self.cfg.keys.saturating_sub(1))
        };
        let channel = CHANNELS[(k % CHANNELS.len() as u64) as usize];
        (
            k,
            channel,
            format!("{channel}-cmp-{:03}", k / CHANNELS.len() as u64),
        )
    }

    fn key_of(&self, k: u64) -> (&'static str, String) {
        let channel = CHANNELS[(k % CHANNELS.len() as u64) as usize];
        (
            channel,
            format!("{channel}-cmp-{:03}", k / CHANNELS.len() as u64),
        )
    }

    /// The next event line (no trailing newline).
    pub fn next_line(&mut self) -> String {
        let r = self.rng.unit();
        if r < self.cfg.duplicate_ratio && !self.last.is_empty() {
            return self.last.clone();
        }
        if r < self.cfg.duplicate_ratio + self.cfg.invalid_ratio {
            return self.invalid();
        }
        let ts = self.advance();
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            r#"{{"id":"evt-{:012}","ts":"{}","#,
            self.seq,
            format_rfc3339_ms(ts)
        );
        if self.cfg.v2_ratio > 0.0 && self.rng.unit() < self.cfg.v2_ratio {
            self.v2_event(&mut s);
        } else {
            self.v1_event(&mut s, ts);
        }
        self.last.clone_from(&s);
        s
    }

    /// Moves event time on and takes the next sequence number; returns the
    /// new event's time.
    fn advance(&mut self) -> i64 {
        self.ts += self.cfg.step_ms * 2.0 * self.rng.unit();
        let ts = self.ts as i64;
        self.seq += 1;
        ts
    }

    /// The rest of one v1 event, at `ts`. Shares: 40% impressions, 30%
    /// clicks, 16% leads, 7% deals, 3% spend, 4% subscriptions.
    fn v1_event(&mut self, s: &mut String, ts: i64) {
        let p = self.rng.unit();
        if p < 0.70 {
            self.ad_event(s, p >= 0.40);
        } else if p < 0.86 {
            self.lead_event(s);
        } else if p < 0.93 {
            if self.open_deals.is_empty() || self.rng.unit() < 0.5 {
                self.open_deal(s, ts);
            } else {
                self.close_deal(s);
            }
        } else if p < 0.96 {
            self.spend_event(s);
        } else {
            self.subscription_event(s);
        }
    }

    fn ad_event(&mut self, s: &mut String, click: bool) {
        let (_, channel, campaign) = self.key();
        let count = if click {
            1 + self.rng.below(5)
        } else {
            50 + self.rng.below(2000)
        };
        let cost = if click {
            0.2 + self.rng.unit() * 4.0
        } else {
            count as f64 * 0.004
        };
        let _ = write!(
            s,
            r#""type":"{}","channel":"{channel}","campaign":"{campaign}","count":{count},"cost":{:.2},"source":"ads-sync","ad_group":"ag-{}"}}"#,
            if click { "click" } else { "impression" },
            cost,
            self.rng.below(40)
        );
    }

    fn lead_event(&mut self, s: &mut String) {
        let (_, channel, campaign) = self.key();
        let q = self.rng.unit();
        let stage = if q < 0.6 {
            "new"
        } else if q < 0.85 {
            "mql"
        } else {
            "sql"
        };
        let _ = write!(
            s,
            r#""type":"lead","channel":"{channel}","campaign":"{campaign}","lead_id":"L-{}","stage":"{stage}","form":"demo-request"}}"#,
            self.rng.below(1_000_000)
        );
    }

    /// A new open deal, remembered (up to 10,000) for a later close.
    fn open_deal(&mut self, s: &mut String, ts: i64) {
        let (k, channel, campaign) = self.key();
        let deal = self.seq;
        let amount = 5_000 + self.rng.below(60_000) as i64;
        self.open_deals.push((deal, ts, k));
        if self.open_deals.len() > 10_000 {
            self.open_deals.swap_remove(0);
        }
        let _ = write!(
            s,
            r#""type":"deal","channel":"{channel}","campaign":"{campaign}","deal_id":"D-{deal}","stage":"open","amount":{amount}}}"#
        );
    }

    /// One remembered open deal, won or lost.
    fn close_deal(&mut self, s: &mut String) {
        let i = self.rng.below(self.open_deals.len() as u64) as usize;
        let (deal, created, k) = self.open_deals.swap_remove(i);
        let (channel, campaign) = self.key_of(k);
        let won = self.rng.unit() < 0.3;
        let amount = 5_000 + self.rng.below(60_000);
        // v2: the CRM's attribution on some closed deals (about
        // 40% of won deals marketing-influenced; an explicit
        // partner origin now and then).
        let mut extra = String::new();
        if self.cfg.v2_ratio > 0.0 {
            if won && self.rng.unit() < 0.4 {
                extra.push_str(r#","influenced":true"#);
            }
            if self.rng.unit() < 0.1 {
                extra.push_str(r#","origin":"partner""#);
            }
        }
        let _ = write!(
            s,
            r#""type":"deal","channel":"{channel}","campaign":"{campaign}","deal_id":"D-{deal}","stage":"{}","amount":{amount},"created_ts":"{}"{extra}}}"#,
            if won { "won" } else { "lost" },
            format_rfc3339_ms(created)
        );
    }

    fn spend_event(&mut self, s: &mut String) {
        let (_, channel, campaign) = self.key();
        let ads = self.rng.unit() < 0.7;
        let _ = write!(
            s,
            r#""type":"spend","channel":"{channel}","campaign":"{campaign}","amount":{:.2},"category":"{}"}}"#,
            50.0 + self.rng.unit() * 500.0,
            if ads { "ads" } else { "tools" }
        );
    }

    fn subscription_event(&mut self, s: &mut String) {
        let (change, k, acct, delta) = self.subscription_change();
        let (channel, campaign) = self.key_of(k);
        let _ = write!(
            s,
            r#""type":"subscription","channel":"{channel}","campaign":"{campaign}","account_id":"A-{acct}","change":"{change}","mrr_delta":{delta}}}"#
        );
    }

    /// `(change, key, account, mrr_delta)` of a subscription movement: a new
    /// account (remembered, up to 10,000), or an expansion, contraction or
    /// churn of a remembered one.
    fn subscription_change(&mut self) -> (&'static str, u64, u64, i64) {
        let q = self.rng.unit();
        if self.accounts.is_empty() || q < 0.45 {
            let (k, _, _) = self.key();
            let delta = 200 + self.rng.below(3000) as i64;
            let acct = self.seq;
            self.accounts.push((acct, k, delta));
            if self.accounts.len() > 10_000 {
                self.accounts.swap_remove(0);
            }
            return ("new", k, acct, delta);
        }
        let i = self.rng.below(self.accounts.len() as u64) as usize;
        let (acct, k, mrr) = self.accounts[i];
        if q < 0.75 {
            let d = 50 + self.rng.below(500) as i64;
            self.accounts[i].2 += d;
            ("expansion", k, acct, d)
        } else if q < 0.88 {
            let d = (mrr / 4).max(1);
            self.accounts[i].2 -= d;
            ("contraction", k, acct, d)
        } else {
            self.accounts.swap_remove(i);
            ("churn", k, acct, mrr)
        }
    }

    /// One event of a v2 type, at believable rates (shared/background):
    /// bounce rate about 45%, 2 to 3 pages a session, conversions a few
    /// percent of sessions; email delivered ~97%, bounced ~3%, opened
    /// ~22%, clicked ~3% of sent (click-to-open ~14%), unsubscribes ~0.3%;
    /// NPS answers half promoters and ~15% detractors (NPS ~35), CSAT ~80%
    /// satisfied.
    fn v2_event(&mut self, s: &mut String) {
        let p = self.rng.unit();
        if p < 0.45 {
            let (_, channel, campaign) = self.key();
            let count = 1 + self.rng.below(40);
            let pageviews = count + (count as f64 * (0.5 + 2.0 * self.rng.unit())) as u64;
            let bounces = ((count as f64) * (0.3 + 0.3 * self.rng.unit())).round() as u64;
            let _ = write!(
                s,
                r#""type":"session","channel":"{channel}","campaign":"{campaign}","count":{count},"pageviews":{pageviews},"bounces":{}}}"#,
                bounces.min(count)
            );
        } else if p < 0.55 {
            let (_, channel, campaign) = self.key();
            const ACTIONS: [&str; 4] = ["signup", "demo_request", "download", "form_submit"];
            let action = ACTIONS[self.rng.below(4) as usize];
            let value = if action == "signup" {
                20.0 + self.rng.unit() * 180.0
            } else {
                0.0
            };
            let _ = write!(
                s,
                r#""type":"conversion","channel":"{channel}","campaign":"{campaign}","action":"{action}","value":{value:.2}}}"#
            );
        } else if p < 0.9 {
            // A newsletter of the key's campaign; channel defaults to email.
            let (_, _, campaign) = self.key();
            let n = 200 + self.rng.below(2000);
            let (action, share) = match self.rng.below(8) {
                0 => ("sent", 1.0),
                1 => ("delivered", 0.97),
                2 => ("bounced", 0.03),
                3 => ("opened", 0.22),
                4 => ("clicked", 0.03),
                5 => ("subscribed", 0.01),
                6 => ("unsubscribed", 0.003),
                _ => ("complained", 0.0005),
            };
            let count = ((n as f64 * share).round() as u64).max(1);
            let _ = write!(
                s,
                r#""type":"email","campaign":"{campaign}","action":"{action}","count":{count}}}"#
            );
        } else {
            let (_, channel, campaign) = self.key();
            let q = self.rng.unit();
            let (kind, score) = if self.rng.unit() < 0.8 {
                let score = if q < 0.5 {
                    9 + self.rng.below(2)
                } else if q < 0.85 {
                    7 + self.rng.below(2)
                } else {
                    self.rng.below(7)
                };
                ("nps", score)
            } else {
                let score = if q < 0.8 {
                    4 + self.rng.below(2)
                } else {
                    1 + self.rng.below(3)
                };
                ("csat", score)
            };
            let _ = write!(
                s,
                r#""type":"survey","channel":"{channel}","campaign":"{campaign}","kind":"{kind}","score":{score}}}"#
            );
        }
    }

    fn invalid(&mut self) -> String {
        match self.rng.below(4) {
            0 => r#"{"id":"bad-1","type":"click","ts":"yesterday"}"#.to_string(),
            1 => r#"{"id":"bad-2","type":"refund","ts":0}"#.to_string(),
            2 => r#"{"id":"bad-3","type":"spend","ts":0,"amount":-5}"#.to_string(),
            _ => r#"{"id":"bad-4","type":"click","#.to_string(),
        }
    }
}

impl Iterator for Synth {
    type Item = String;
    fn next(&mut self) -> Option<String> {
        Some(self.next_line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, DecodeConfig};

    #[test]
    fn synthetic_events_are_valid_and_realistic_in_size() {
        let mut g = Synth::new(SynthConfig::default());
        let cfg = DecodeConfig::default();
        let mut bytes = 0;
        for _ in 0..5000 {
            let l = g.next_line();
            bytes += l.len();
            decode(l.as_bytes(), &cfg, i64::MAX / 2).unwrap_or_else(|r| panic!("{r}: {l}"));
        }
        let avg = bytes / 5000;
        assert!((150..=260).contains(&avg), "average event size {avg}");
    }

    /// With v2 events, every v2 type is there, valid, at the ratio asked;
    /// without, the stream is the v1 one, line for line.
    #[test]
    fn v2_events_are_valid_and_off_by_default() {
        let cfg = DecodeConfig::default();
        let mut g = Synth::new(SynthConfig {
            v2_ratio: 0.3,
            ..SynthConfig::default()
        });
        let mut types = std::collections::BTreeMap::new();
        for _ in 0..5000 {
            let l = g.next_line();
            let ev =
                decode(l.as_bytes(), &cfg, i64::MAX / 2).unwrap_or_else(|r| panic!("{r}: {l}"));
            *types.entry(ev.event_type().as_str()).or_insert(0) += 1;
        }
        for t in crate::decode::EventType::ALL {
            assert!(
                types.get(t.as_str()).copied().unwrap_or(0) > 20,
                "{t:?}: {types:?}"
            );
        }
        let v2: u32 = ["session", "conversion", "email", "survey"]
            .iter()
            .map(|t| types[t])
            .sum();
        assert!((1300..=1700).contains(&v2), "{v2} of 5000");
        let mut a = Synth::new(SynthConfig::default());
        let mut b = Synth::new(SynthConfig {
            v2_ratio: 0.0,
            ..SynthConfig::default()
        });
        for _ in 0..2000 {
            let l = a.next_line();
            assert_eq!(l, b.next_line());
            assert!(!l.contains("\"influenced\"") && !l.contains("\"origin\""));
        }
    }

    /// Share of the keyed events that the most frequent key received.
    fn top_share(key_skew: f64) -> f64 {
        let mut g = Synth::new(SynthConfig {
            keys: 1000,
            key_skew,
            ..SynthConfig::default()
        });
        let cfg = DecodeConfig::default();
        let mut counts = std::collections::HashMap::new();
        let n = 20_000;
        for _ in 0..n {
            let l = g.next_line();
            let ev = decode(l.as_bytes(), &cfg, i64::MAX / 2).unwrap();
            *counts
                .entry((ev.channel.to_string(), ev.campaign.to_string()))
                .or_insert(0u32) += 1;
        }
        f64::from(*counts.values().max().unwrap()) / n as f64
    }

    #[test]
    fn key_skew_follows_zipf() {
        // Uniform over 1,000 keys: about 0.1% each.
        assert!(top_share(0.0) < 0.005, "{}", top_share(0.0));
        // Zipf(1) over 1,000 keys: the first takes 1/H(1000) = 13.4% of
        // the keyed draws (open deals and accounts reuse earlier keys).
        let top = top_share(1.0);
        assert!((0.10..0.17).contains(&top), "{top}");
    }
}
