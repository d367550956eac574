//! The token parser and claim validator: any bytes as a token, and any JSON as claims.
#![no_main]

use keycloak_bff_core::jwt;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let algs = vec!["RS256".to_owned(), "PS256".to_owned()];
    let _ = jwt::parse_header(text, &algs);
    let claims = jwt::unverified_claims(text)
        .or_else(|| serde_json::from_slice(data).ok())
        .unwrap_or_default();
    for kind in [jwt::Kind::Id, jwt::Kind::Access] {
        for azp in [false, true] {
            let e = jwt::Expected {
                issuer: "http://localhost:8080/realms/demo",
                client_id: "demo-app",
                kind,
                nonce: Some("n"),
                azp_must_be_client: azp,
                leeway: 30,
                now: 1_800_000_000,
            };
            let _ = jwt::check_claims(&claims, &e);
        }
    }
    let _ = jwt::check_at_hash(&claims, "RS256", text);
});
