//! A process-wide limit on how often something may happen: at most `per_second` times in each
//! second of the clock. For routes that anyone may call without credentials and that cost a store
//! look-up (front-channel logout); what goes beyond is refused cheaply, before the store.
//! Time is a parameter (the caller's clock).

use std::sync::Mutex;

/// At most `per_second` admissions in each second.
#[derive(Debug)]
pub struct RateLimit {
    per_second: u32,
    /// The second of the current window, and how many were admitted in it.
    window: Mutex<(i64, u32)>,
}

impl RateLimit {
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            window: Mutex::new((i64::MIN, 0)),
        }
    }

    /// Whether one more may happen at `now` (Unix seconds); counts it if so.
    pub fn admit(&self, now: i64) -> bool {
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        if window.0 != now {
            *window = (now, 0);
        }
        if window.1 >= self.per_second {
            return false;
        }
        window.1 += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_is_admitted_in_a_second_and_the_next_second_starts_afresh() {
        let limit = RateLimit::new(3);
        let admitted = (0..10).filter(|_| limit.admit(100)).count();
        assert_eq!(admitted, 3);
        assert!(limit.admit(101));
    }
}
