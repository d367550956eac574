//! The logout-token handler's input: any form body, then any claims.
#![no_main]

use keycloak_bff_core::jwt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jwt::logout_token_from_form(data);
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(target) = jwt::check_logout_claims(
            &claims,
            "http://localhost:8080/realms/demo",
            "demo-app",
            30,
            1_800_000_000,
        ) {
            assert!(target.sid.is_some() || target.sub.is_some());
            assert!(!target.jti.is_empty());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(h) = jwt::parse_header(text, &["RS256".to_owned()]) {
            let _ = jwt::check_logout_header(&h);
        }
    }
});
