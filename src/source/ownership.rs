//! `funnel_partition_owned{topic,partition}`: 1 for every partition whose
//! state the exposition holds, rendered from the same copy as the business
//! series (`LiveState::copy_partitions`). An extension of METRICS.md (live
//! use only, like `funnel_consumer_lag_messages`): while partitions move
//! between instances, Prometheus can hold one instance's scrape from before
//! a rebalance and another's from after it, and a plain `sum by (...)` over
//! instances then counts a partition twice (or not at all). Recording rules
//! join on this gauge to leave out, during that window, every instance
//! that claims a partition another instance also claims
//! (`deploy/prometheus/rebalance-rules.yml`, docs/REBALANCE-OVERLAP.md).

use std::fmt::Write;

/// Appends the family (nothing when no partition is owned, as in replay).
pub fn render(out: &mut String, owned: &[(String, i32)]) {
    if owned.is_empty() {
        return;
    }
    out.push_str(
        "# HELP funnel_partition_owned 1 for each Kafka partition whose state this instance publishes.\n\
         # TYPE funnel_partition_owned gauge\n",
    );
    for (topic, partition) in owned {
        out.push_str("funnel_partition_owned{topic=\"");
        crate::export::prometheus::escape_label_value(out, topic);
        let _ = writeln!(out, "\",partition=\"{partition}\"}} 1");
    }
}
