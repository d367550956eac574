//! Session cookie decoding: tower-sessions' session id parser on any cookie value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::str::FromStr;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = std::str::from_utf8(data) {
        if let Ok(id) = tower_sessions_core::session::Id::from_str(value) {
            // What parses round-trips: the cookie value is the id and nothing else.
            assert_eq!(tower_sessions_core::session::Id::from_str(&id.to_string()).ok(), Some(id));
        }
    }
});
