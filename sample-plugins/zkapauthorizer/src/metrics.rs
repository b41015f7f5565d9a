//! ZKAPAuthorizer's one server metric, the histogram
//! `zkapauthorizer_server_spending_successes` of passes spent per successful operation,
//! with the original's buckets (1, 2, 4, ..., 1024, +Inf).
//!
//! It is kept as host counters, which `gbs plugin status` and the host's metrics show:
//! `spending_successes_bucket_le_<N>` (cumulative, as Prometheus buckets are),
//! `spending_successes_bucket_le_inf`, `spending_successes_count`, `spending_successes_sum`.
//! With `prometheus-metrics-path` set, the plugin also writes the Prometheus text format
//! there every `prometheus-metrics-interval` seconds, as the original does.

use std::sync::atomic::{AtomicU64, Ordering};

use gbs_plugin_interface::Host;

/// The finite bucket bounds.
pub const BUCKETS: [u64; 11] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

/// The histogram: host counters, and a copy here for the text file.
#[derive(Debug, Default)]
pub struct SpendingHistogram {
    buckets: [AtomicU64; 11],
    count: AtomicU64,
    sum: AtomicU64,
}

impl SpendingHistogram {
    /// Records one successful operation that spent `passes`.
    pub fn observe(&self, host: &Host, passes: u64) {
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if passes <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
                host.counter_add(&format!("spending_successes_bucket_le_{bound}"), 1);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(passes, Ordering::Relaxed);
        host.counter_add("spending_successes_bucket_le_inf", 1);
        host.counter_add("spending_successes_count", 1);
        host.counter_add("spending_successes_sum", passes);
    }

    /// The Prometheus text exposition of the histogram.
    pub fn prometheus_text(&self) -> String {
        const NAME: &str = "zkapauthorizer_server_spending_successes";
        let mut text =
            format!("# HELP {NAME} ZKAP Spending Successes histogram\n# TYPE {NAME} histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let value = bucket.load(Ordering::Relaxed);
            text.push_str(&format!("{NAME}_bucket{{le=\"{bound}.0\"}} {value}\n"));
        }
        let count = self.count.load(Ordering::Relaxed);
        text.push_str(&format!("{NAME}_bucket{{le=\"+Inf\"}} {count}\n"));
        text.push_str(&format!("{NAME}_count {count}\n"));
        let sum = self.sum.load(Ordering::Relaxed);
        text.push_str(&format!("{NAME}_sum {sum}.0\n"));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gbs_plugin_interface::testing::TestHost;

    #[test]
    fn observations_fill_cumulative_buckets_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let test_host = TestHost::new(dir.path());
        let histogram = SpendingHistogram::default();
        histogram.observe(&test_host.host(), 3);
        histogram.observe(&test_host.host(), 2000);
        let counters = test_host.counters();
        assert_eq!(counters.get("spending_successes_bucket_le_2"), None);
        assert_eq!(counters["spending_successes_bucket_le_4"], 1);
        assert_eq!(counters["spending_successes_bucket_le_1024"], 1);
        assert_eq!(counters["spending_successes_bucket_le_inf"], 2);
        assert_eq!(counters["spending_successes_count"], 2);
        assert_eq!(counters["spending_successes_sum"], 2003);
        let text = histogram.prometheus_text();
        assert!(text.contains("zkapauthorizer_server_spending_successes_bucket{le=\"4.0\"} 1\n"));
        assert!(text.contains("zkapauthorizer_server_spending_successes_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("zkapauthorizer_server_spending_successes_sum 2003.0\n"));
    }
}
