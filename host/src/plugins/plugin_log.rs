//! What a plugin writes to the node's log: a line it cannot forge other lines with, at a
//! rate it cannot flood the log (and the disk under it) with.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines a plugin may log at once after a quiet spell.
pub(crate) const LOG_BURST: u32 = 1000;
/// Lines a plugin may log per second, over time.
pub(crate) const LOG_RATE: u32 = 100;

/// A plugin's text in a log line: control characters (newlines, escape sequences) are shown
/// escaped, so a plugin cannot start a line of its own or recolour the terminal.
pub(crate) struct Escaped<'a>(pub(crate) &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One plugin's log budget: [`LOG_BURST`] lines, refilled at [`LOG_RATE`] a second. Lines
/// past it are dropped and counted, and the count is told with the next line let through,
/// at most once every [`TELL_EVERY`]: told with every line, a plugin that floods for good
/// doubled its lines with the warnings.
#[derive(Debug)]
pub(crate) struct LogBudget(Mutex<Bucket>);

/// The least time between two warnings counting dropped lines.
const TELL_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Bucket {
    lines: f64,
    at: Instant,
    dropped: u64,
    /// When dropped lines were last told of.
    told: Option<Instant>,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self(Mutex::new(Bucket {
            lines: f64::from(LOG_BURST),
            at: Instant::now(),
            dropped: 0,
            told: None,
        }))
    }
}

impl LogBudget {
    /// Whether plugin `plugin` may log a line now. When lines were dropped since the last
    /// one let through, a warning counting them goes first.
    pub(crate) fn admits(&self, plugin: &str) -> bool {
        let Some(dropped) = self.take_at(Instant::now()) else {
            return false;
        };
        if dropped > 0 {
            tracing::warn!(
                plugin,
                "dropped {dropped} log lines of the plugin (over {LOG_RATE} a second)"
            );
        }
        true
    }

    /// `Some(dropped)` when a line may be logged at `now`, with the lines dropped since
    /// they were last told of if it is time to tell them (else 0); `None` to drop this one.
    fn take_at(&self, now: Instant) -> Option<u64> {
        let mut bucket = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(bucket.at).as_secs_f64() * f64::from(LOG_RATE);
        bucket.lines = (bucket.lines + refill).min(f64::from(LOG_BURST));
        bucket.at = now;
        if bucket.lines < 1.0 {
            bucket.dropped += 1;
            return None;
        }
        bucket.lines -= 1.0;
        let time_to_tell = bucket
            .told
            .is_none_or(|told| now.saturating_duration_since(told) >= TELL_EVERY);
        if bucket.dropped == 0 || !time_to_tell {
            return Some(0);
        }
        bucket.told = Some(now);
        Some(std::mem::take(&mut bucket.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs tried: 1,500 lines at once, then 50 more after half a second, then 2 after a
    /// further 10 ms, then one a second after the first warning.
    #[test]
    fn a_burst_then_the_rate_and_the_dropped_lines_are_told() {
        let budget = LogBudget::default();
        let start = Instant::now();
        let through = (0..1500)
            .filter(|_| budget.take_at(start).is_some())
            .count();
        assert_eq!(through, LOG_BURST as usize);
        // Half a second refills 50 lines; the first says how many were dropped before it.
        let later = start + Duration::from_millis(500);
        assert_eq!(budget.take_at(later), Some(500));
        let through = (0..49).filter(|_| budget.take_at(later).is_some()).count();
        assert_eq!(through, 49);
        assert_eq!(budget.take_at(later), None);
        // Let through, but the drop it follows is told only a second after the last
        // warning, with those dropped meanwhile.
        let then = later + Duration::from_millis(10);
        assert_eq!(budget.take_at(then), Some(0));
        assert_eq!(budget.take_at(then), None);
        assert_eq!(budget.take_at(later + TELL_EVERY), Some(2));
    }

    /// Inputs tried: a line that starts a forged line of its own, and one with a terminal
    /// escape sequence; ordinary text, quotes and non-ASCII letters stay as they are.
    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            Escaped("ok\n2026-01-01 ERROR forged").to_string(),
            "ok\\n2026-01-01 ERROR forged"
        );
        assert_eq!(Escaped("\u{1b}[31mred").to_string(), "\\u{1b}[31mred");
        assert_eq!(Escaped("héllo \"x\"").to_string(), "héllo \"x\"");
    }
}
