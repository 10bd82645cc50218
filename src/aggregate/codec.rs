//! Checkpoint glue of the aggregator: how its state (counters, keys by
//! label names, open deals) writes itself with `util::codec` and reads
//! itself back; the container around it is `crate::checkpoint`.

use super::aggregator::DealState;
use super::key::{KeyState, Rings, Totals};
use super::labels;
use super::prefetch::pair_hash;
use super::ring::{CycleRing, Ring};
use super::v2::{seen, V2Key};
use super::Aggregator;
use crate::util::codec::{CheckpointError, ReadResult, Reader, Writer};

impl Totals {
    pub(super) fn fields(&self) -> [&i128; 19] {
        let t = self;
        [
            &t.impressions,
            &t.clicks,
            &t.leads[0],
            &t.leads[1],
            &t.leads[2],
            &t.deals[0],
            &t.deals[1],
            &t.deals[2],
            &t.revenue_won,
            &t.ad_spend,
            &t.spend,
            &t.mrr_movement[0],
            &t.mrr_movement[1],
            &t.mrr_movement[2],
            &t.mrr_movement[3],
            &t.mrr_movement[4],
            &t.mrr,
            &t.customers,
            &t.open_pipeline,
        ]
    }

    pub(super) fn encode_into(&self, w: &mut Writer) {
        for v in self.fields() {
            w.i128var(*v);
        }
    }

    pub(super) fn decode_from(r: &mut Reader<'_>) -> ReadResult<Totals> {
        let mut v = [0i128; 19];
        for x in v.iter_mut() {
            *x = r.i128var()?;
        }
        Ok(Totals {
            impressions: v[0],
            clicks: v[1],
            leads: [v[2], v[3], v[4]],
            deals: [v[5], v[6], v[7]],
            revenue_won: v[8],
            ad_spend: v[9],
            spend: v[10],
            mrr_movement: [v[11], v[12], v[13], v[14], v[15]],
            mrr: v[16],
            customers: v[17],
            open_pipeline: v[18],
        })
    }
}

impl KeyState {
    /// Checkpoint encoding; the pending traffic and the log must have been
    /// settled.
    pub(super) fn encode_into(&self, w: &mut Writer, action_name: &dyn Fn(u32) -> String) {
        debug_assert!(!self.has_pending() && self.log_len == 0);
        self.totals.encode_into(w);
        let mask = u8::from(self.traffic.is_some())
            | u8::from(self.leads.is_some()) << 1
            | u8::from(self.deals.is_some()) << 2
            | u8::from(self.cycles.is_some()) << 3
            | u8::from(self.subs.is_some()) << 4
            | u8::from(self.v2.is_some()) << 5;
        w.u8(mask);
        // Format 3: the v2 seen bits, then (mask bit 5) the v2 block at
        // the end.
        w.u8(self.seen);
        fn each<T>(r: &Rings<T>, w: &mut Writer, f: impl Fn(&T, &mut Writer)) {
            for x in r.iter().flat_map(|r| r.iter()) {
                f(x, w);
            }
        }
        each(&self.traffic, w, Ring::encode_into);
        each(&self.leads, w, Ring::encode_into);
        each(&self.deals, w, Ring::encode_into);
        each(&self.cycles, w, CycleRing::encode_into);
        each(&self.subs, w, Ring::encode_into);
        if let Some(v) = &self.v2 {
            v.encode_into(w, action_name);
        }
    }

    pub(super) fn decode_from(
        &mut self,
        r: &mut Reader<'_>,
        nw: usize,
        version: u16,
        intern: &mut dyn FnMut(&str) -> u32,
    ) -> ReadResult<()> {
        self.totals = Totals::decode_from(r)?;
        let mask = r.u8()?;
        let max_bits = if version >= 3 { 6 } else { 5 };
        if mask >> max_bits != 0 {
            return Err(CheckpointError::Corrupt("key group mask".into()));
        }
        if version >= 3 {
            self.seen = r.u8()?;
            if self.seen & !seen::ALL != 0 {
                return Err(CheckpointError::Corrupt("key seen bits".into()));
            }
        }
        fn each<T>(
            present: bool,
            r: &mut Reader<'_>,
            nw: usize,
            f: impl Fn(&mut Reader<'_>) -> ReadResult<T>,
        ) -> ReadResult<Rings<T>> {
            if !present {
                return Ok(None);
            }
            let mut v = Vec::with_capacity(nw);
            for _ in 0..nw {
                v.push(f(r)?);
            }
            Ok(Some(v.into_boxed_slice()))
        }
        self.traffic = each(mask & 1 != 0, r, nw, Ring::decode_from)?;
        self.leads = each(mask & 2 != 0, r, nw, Ring::decode_from)?;
        self.deals = each(mask & 4 != 0, r, nw, Ring::decode_from)?;
        self.cycles = each(mask & 8 != 0, r, nw, CycleRing::decode_from)?;
        self.subs = each(mask & 16 != 0, r, nw, Ring::decode_from)?;
        if mask & 32 != 0 {
            self.v2 = Some(Box::new(V2Key::decode_from(r, nw, intern)?));
        }
        if version < 3 {
            // Formats 1 and 2 knew no v2 groups: a key had deal events if
            // it counted any, subscription events if it holds any movement
            // or subscription rings (one whose every movement was 0 and
            // has left every window is not told apart).
            let t = &self.totals;
            if t.deals.iter().any(|&d| d != 0) {
                self.seen |= seen::DEAL;
            }
            if self.subs.is_some() || t.mrr_movement.iter().any(|&m| m != 0) || t.customers != 0 {
                self.seen |= seen::SUBS;
            }
        }
        Ok(())
    }
}

impl Aggregator {
    /// Checkpoint encoding: counters, keys (by label names, since label ids
    /// are per process), open deals.
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        w.uvar(self.stats.late);
        w.uvar(self.stats.label_overflow[0]);
        w.uvar(self.stats.label_overflow[1]);
        w.uvar(self.stats.deals_untracked);
        // Format 3.
        w.uvar(self.stats.label_overflow[2]);
        w.uvar(self.stats.fields_ignored[0]);
        w.uvar(self.stats.fields_ignored[1]);
        let channels = self.labels.channel.names();
        let campaigns = self.labels.campaign.names();
        let name = labels::name_in;
        let actions = self.labels.action.names();
        let action_name = |id: u32| name(&actions, id).to_string();
        w.uvar(self.keys.len() as u64);
        for k in &self.keys {
            w.str(&name(&channels, k.channel));
            w.str(&name(&campaigns, k.campaign));
            k.encode_into(w, &action_name);
        }
        // By hash: the map's own order depends on its history, and a
        // restored partition must write the same bytes as the one it
        // restores.
        let mut deals: Vec<_> = self.deals.iter().collect();
        deals.sort_unstable_by_key(|(h, _)| **h);
        w.uvar(deals.len() as u64);
        for (h, d) in deals {
            w.u64_fixed(*h);
            w.uvar(u64::from(d.key));
            w.ivar(d.amount);
            w.u8(u8::from(d.closed));
        }
        // Events folded by the series budget: written only when there were
        // any, last (the aggregator ends the partition's state), so that a
        // checkpoint without any is byte for byte format 3 as before the
        // budget existed.
        if self.stats.label_overflow[3] != 0 {
            w.uvar(self.stats.label_overflow[3]);
        }
    }

    /// Inverse of [`encode_into`](Self::encode_into), into an empty
    /// aggregator.
    pub(crate) fn decode_from(&mut self, r: &mut Reader<'_>, version: u16) -> ReadResult<()> {
        self.stats.late = r.uvar()?;
        self.stats.label_overflow[0] = r.uvar()?;
        self.stats.label_overflow[1] = r.uvar()?;
        self.stats.deals_untracked = r.uvar()?;
        if version >= 3 {
            self.stats.label_overflow[2] = r.uvar()?;
            self.stats.fields_ignored[0] = r.uvar()?;
            self.stats.fields_ignored[1] = r.uvar()?;
        }
        let labels = self.labels.clone();
        let mut intern = |name: &str| labels.action.intern(name).0;
        let nw = self.slots.len();
        let n = r.count(3)?;
        // Index in the checkpoint -> index here (keys can fold together
        // when a label limit is now lower).
        let mut remap = Vec::with_capacity(n);
        for _ in 0..n {
            let (channel, campaign) = (r.str()?, r.str()?);
            let mut key = KeyState::default();
            key.decode_from(r, nw, version, &mut intern)?;
            let (ch, ch_over) = self.labels.channel.intern(channel);
            let (ca, ca_over) = self.labels.campaign.intern(campaign);
            let (ch, ca, admitted) = self.admit_restored(ch, ca, &key);
            let composite = (u64::from(ch) << 32) | u64::from(ca);
            let next = self.keys.len() as u32;
            let idx = *self.index.entry(composite).or_insert(next);
            if idx == next {
                key.channel = ch;
                key.campaign = ca;
                self.keys.push(key);
            } else {
                self.keys[idx as usize].merge_from(&key, nw);
            }
            if !ch_over && !ca_over && admitted {
                self.cache.insert(pair_hash(channel, campaign), idx);
            }
            remap.push(idx);
        }
        let n = r.count(11)?;
        self.deals.reserve(n);
        for _ in 0..n {
            let h = r.u64_fixed()?;
            let key = usize::try_from(r.uvar()?)
                .ok()
                .and_then(|k| remap.get(k).copied())
                .ok_or_else(|| CheckpointError::Corrupt("deal key".into()))?;
            let amount = r.ivar()?;
            let closed = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(CheckpointError::Corrupt("deal flag".into())),
            };
            self.deals.insert(
                h,
                DealState {
                    key,
                    amount,
                    closed,
                },
            );
        }
        // The count of events folded by the series budget (see encode_into).
        if r.remaining() != 0 {
            self.stats.label_overflow[3] = r.uvar()?;
        }
        Ok(())
    }
}
