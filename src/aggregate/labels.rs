//! Engine-wide interning of `channel` and `campaign` values with a
//! cardinality limit per label. Shared by every partition's aggregator, so
//! the limit holds for the whole engine; the fast path is a lock-free read.

use dashmap::DashMap;
use std::sync::{Arc, Mutex};

/// Value that every label value past the limit collapses into.
pub const OVERFLOW: &str = "__overflow__";

/// Interned values of one label. Id 0 is always [`OVERFLOW`].
#[derive(Debug)]
pub struct LabelValues {
    ids: DashMap<Box<str>, u32, ahash::RandomState>,
    names: Mutex<Vec<Arc<str>>>,
    limit: usize,
}

impl LabelValues {
    pub fn new(limit: usize) -> Self {
        let ids = DashMap::with_hasher(ahash::RandomState::new());
        ids.insert(OVERFLOW.into(), 0);
        LabelValues {
            ids,
            names: Mutex::new(vec![Arc::from(OVERFLOW)]),
            limit,
        }
    }

    /// The id of `value`, interning it while under the limit. The flag is
    /// `true` when the value was folded into [`OVERFLOW`].
    #[inline]
    pub fn intern(&self, value: &str) -> (u32, bool) {
        if let Some(id) = self.ids.get(value) {
            return (*id, false);
        }
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.ids.get(value) {
            return (*id, false);
        }
        // names[0] is the overflow value; `limit` real values may follow.
        if names.len() > self.limit {
            return (0, true);
        }
        let id = names.len() as u32;
        names.push(Arc::from(value));
        self.ids.insert(value.into(), id);
        (id, false)
    }

    pub fn name(&self, id: u32) -> Arc<str> {
        let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(OVERFLOW))
    }

    /// All names by id, for rendering without a lock per lookup.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Distinct values interned (the overflow value excluded).
    pub fn len(&self) -> usize {
        self.names.lock().map(|n| n.len() - 1).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The cardinality-limited labels: the two business labels and the
/// conversion `action` (v2).
#[derive(Debug)]
pub struct LabelTable {
    pub channel: LabelValues,
    pub campaign: LabelValues,
    pub action: LabelValues,
}

impl LabelTable {
    pub fn new(max_channels: usize, max_campaigns: usize, max_actions: usize) -> Self {
        LabelTable {
            channel: LabelValues::new(max_channels),
            campaign: LabelValues::new(max_campaigns),
            action: LabelValues::new(max_actions),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_past_the_limit() {
        let t = LabelValues::new(2);
        assert_eq!(t.intern("a"), (1, false));
        assert_eq!(t.intern("b"), (2, false));
        assert_eq!(t.intern("c"), (0, true));
        assert_eq!(t.intern("a"), (1, false));
        assert_eq!(&*t.name(2), "b");
        assert_eq!(&*t.name(0), OVERFLOW);
        assert_eq!(t.len(), 2);
        // A producer sending the literal overflow value is not "folded".
        assert_eq!(t.intern(OVERFLOW), (0, false));
    }
}
