//! The callback query handling: any query string.
#![no_main]

use keycloak_bff_core::callback;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(raw) = std::str::from_utf8(data) {
        if let Ok(p) = callback::parse(raw) {
            assert!(!p.state.is_empty() && p.state.len() <= 512);
            assert!(p.code.as_ref().is_none_or(|c| !c.is_empty() && c.len() <= 4096));
        }
    }
});
