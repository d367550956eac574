//! The limits of the session event streams (`<prefix>/events`), as numbers: how long a browser
//! waits before opening a stream again after one was refused or broke, how long a stream waits
//! before reading a store that failed again, how long a stream lives at most, and how widely the
//! streams of a process spread their reads after they were all woken at once (a Redis
//! reconnection). Every wait is jittered (`unit`: a random number in `[0, 1)`), so that many
//! browsers or streams hit by one event do not come back in step. Catalogue: C (a client holding
//! or reopening connections on purpose), E03 (a store outage is not a busy loop).

/// `base_ms · 2^(attempt − 1)`, at most `cap_ms`, scaled into its upper half by `unit`
/// (`[½, 1)` of it): exponential back-off with jitter. Attempt 0 waits nothing.
pub fn backoff_ms(attempt: u32, base_ms: u64, cap_ms: u64, unit: f64) -> u64 {
    if attempt == 0 {
        return 0;
    }
    let exponent = (attempt - 1).min(32);
    let full = base_ms.saturating_mul(1u64 << exponent).min(cap_ms);
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    ((full as f64) * (0.5 + unit / 2.0)) as u64
}

/// How long a browser waits before opening its stream again after `failures` refusals or
/// breaks in a row (429 at a cap, 503, a network error): 1 s, 2 s, 4 s… up to 5 minutes.
pub fn browser_retry_ms(failures: u32, unit: f64) -> u64 {
    backoff_ms(failures, 1_000, 300_000, unit)
}

/// How long a stream waits before reading the session again after `errors` store errors in a
/// row: 1 s, 2 s, 4 s… up to 30 s (never a busy loop against a store that is down).
pub fn store_retry_ms(errors: u32, unit: f64) -> u64 {
    backoff_ms(errors, 1_000, 30_000, unit)
}

/// The longest a stream stays open, seconds: `limit_secs` (`session.max_event_stream_age_secs`,
/// an hour by default) ± 10 %, after which the server closes it and the browser opens a new one,
/// so no connection is held for ever, and streams opened together do not close together.
pub fn max_age_secs(limit_secs: u64, unit: f64) -> u64 {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.5
    };
    ((limit_secs as f64) * (0.9 + 0.2 * unit)).round().max(1.0) as u64
}

/// The `retry` a stream tells its browser (how long the browser waits before reconnecting a
/// stream that ended): 2 to 5 s.
pub fn reconnect_ms(unit: f64) -> u64 {
    2_000 + wake_spread_ms(2_750, unit)
}

/// How long one of `streams` woken together waits before reading its session: spread over up
/// to a quarter second plus one millisecond per stream (at most 10 s).
pub fn wake_spread_ms(streams: usize, unit: f64) -> u64 {
    let window = (250 + streams as u64).min(10_000) as f64;
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    (window * unit) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_waits_twice_as_long_after_each_refusal_up_to_five_minutes() {
        let waits: Vec<u64> = (0..12).map(|n| browser_retry_ms(n, 0.999_999)).collect();
        assert_eq!(waits[0], 0);
        assert_eq!(&waits[1..5], [999, 1_999, 3_999, 7_999]);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(browser_retry_ms(40, 0.999_999), 299_999, "capped");
        assert_eq!(browser_retry_ms(u32::MAX, 0.0), 150_000, "no overflow");
    }

    #[test]
    fn jitter_keeps_a_wait_between_half_and_all_of_it() {
        assert_eq!(backoff_ms(3, 1_000, 60_000, 0.0), 2_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000, 0.5), 3_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000, f64::NAN), 3_000);
        assert_eq!(backoff_ms(3, 1_000, 60_000, 7.0), 4_000);
    }

    #[test]
    fn a_stream_reads_a_failing_store_at_most_once_a_second_then_less() {
        assert!(store_retry_ms(1, 0.0) >= 500);
        assert!(store_retry_ms(2, 0.0) >= 1_000);
        assert_eq!(store_retry_ms(30, 0.999_999), 29_999);
    }

    #[test]
    fn streams_live_about_an_hour_and_reconnect_after_two_to_five_seconds() {
        assert_eq!(max_age_secs(3_600, 0.0), 3_240);
        assert_eq!(max_age_secs(3_600, 0.999_999), 3_960);
        assert_eq!(max_age_secs(1, 0.0), 1, "never zero");
        assert_eq!(reconnect_ms(0.0), 2_000);
        assert_eq!(reconnect_ms(0.999_999), 4_999);
    }

    #[test]
    fn streams_woken_together_spread_their_reads_more_when_there_are_more() {
        assert_eq!(wake_spread_ms(10, 0.0), 0);
        assert_eq!(wake_spread_ms(10, 0.999_999), 259);
        assert_eq!(wake_spread_ms(5_000, 0.5), 2_625);
        assert_eq!(wake_spread_ms(1_000_000, 0.999_999), 9_999);
    }
}
