//! The one clock of the server side. The pure core takes `now` as a parameter (kanidm's way: time
//! is passed in, never read deep inside a decision); the edge reads it here, once per request.
//! Catalogue: none directly; every expiry check (C01–C06) gets its `now` from here.

/// The current Unix time in seconds, for callers at the edge (the core takes `now` as a parameter).
/// Before 1970 (a broken clock) it answers 0, which makes every token look expired: fail closed.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The current Unix time in nanoseconds: an ordering of events finer than seconds (which of a
/// browser's started sign-ins is the oldest). 0 before 1970.
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The same instant as a [`time::OffsetDateTime`], for the session records of tower-sessions.
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_readings_of_the_clock_agree_to_the_second() {
        let a = unix_now();
        let b = now_utc().unix_timestamp();
        assert!((b - a).abs() <= 1, "{a} vs {b}");
    }
}
