//! librdkafka's statistics (every second): end offsets and consumer lag
//! of the assigned partitions.

use crate::live::LiveState;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Records what one statistics report says about the assigned partitions.
pub(super) fn record(live: &LiveState, raw: &[u8]) {
    // Only the fields needed, rather than rdkafka's full `Statistics`.
    #[derive(serde::Deserialize)]
    struct Stats {
        #[serde(default)]
        topics: HashMap<String, TopicStats>,
    }
    #[derive(serde::Deserialize)]
    struct TopicStats {
        #[serde(default)]
        partitions: HashMap<String, PartStats>,
    }
    #[derive(serde::Deserialize)]
    struct PartStats {
        #[serde(default = "minus_one")]
        hi_offset: i64,
        #[serde(default = "minus_one")]
        committed_offset: i64,
    }
    fn minus_one() -> i64 {
        -1
    }
    let Ok(stats) = serde_json::from_slice::<Stats>(raw) else {
        return;
    };
    for (name, topic) in &stats.topics {
        for (p, part) in &topic.partitions {
            let Ok(p) = p.parse::<i32>() else { continue };
            if p < 0 || part.hi_offset < 0 {
                continue;
            }
            let slot = live.slot(name, p);
            if !slot.assigned.load(Ordering::Acquire) {
                continue;
            }
            if !slot.target_confirmed.load(Ordering::Acquire) {
                slot.target.fetch_max(part.hi_offset, Ordering::AcqRel);
                slot.target_confirmed.store(true, Ordering::Release);
            }
            // Committed position: librdkafka's view of the last commit,
            // or where consumption started before the first commit.
            let committed = if part.committed_offset >= 0 {
                part.committed_offset
            } else {
                slot.start_offset.load(Ordering::Acquire)
            };
            if committed >= 0 {
                slot.lag
                    .store((part.hi_offset - committed).max(0), Ordering::Release);
            }
        }
    }
}
