//! The bearer-token check alone, against the real Keycloak that `scripts/bench.sh` starts: what
//! `ApiUser` costs for a token it has not seen (header checks, signature, claims, `azp`, the
//! user's roles and groups; the key set cached), and for one it accepted a moment ago.
//!
//! `BENCH_ISSUER` (the realm's issuer), `BENCH_TOKEN` (an access token of the realm for
//! `demo-app`, obtained by the client `BENCH_AZP`, default `notes-reader`: the demo's service
//! account). Without them the benchmark says so and measures nothing.
#![allow(clippy::expect_used, clippy::unwrap_used)] // a benchmark fails by panicking

use criterion::{criterion_group, criterion_main, Criterion};
use keycloak_bff::server::test_support::{Counter, Oidc};
use keycloak_bff::server::{unix_now, NoAppSettings, Settings};
use std::collections::BTreeMap;

fn verify(c: &mut Criterion) {
    let (Ok(issuer), Ok(token)) = (std::env::var("BENCH_ISSUER"), std::env::var("BENCH_TOKEN"))
    else {
        eprintln!("verify: set BENCH_ISSUER and BENCH_TOKEN (scripts/bench.sh does)");
        return;
    };
    let azp = std::env::var("BENCH_AZP").unwrap_or_else(|_| "notes-reader".into());
    let file = format!(
        "[keycloak]\nissuer_url = \"{issuer}\"\nclient_id = \"demo-app\"\nbearer_clients = [\"{azp}\"]\n"
    );
    // Never used: the check needs no secret.
    let env = BTreeMap::from([("APP_KEYCLOAK_CLIENT_SECRET".into(), "unused".into())]);
    let settings = Settings::<NoAppSettings>::from_parts(&file, &env)
        .expect("settings")
        .auth;
    let oidc = Oidc::new(settings.keycloak, Counter::default()).expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let now = unix_now();
    // The first call discovers Keycloak and fetches its keys; the benchmark measures the rest.
    runtime
        .block_on(oidc.validate_bearer(&token, now))
        .expect("Keycloak's token is valid");
    c.bench_function("bearer token check (RS256, keys cached)", |b| {
        b.iter(|| {
            runtime
                .block_on(oidc.check_bearer(std::hint::black_box(&token), now))
                .expect("valid")
        })
    });
    c.bench_function("bearer token seen again (accepted tokens cached)", |b| {
        b.iter(|| {
            runtime
                .block_on(oidc.validate_bearer(std::hint::black_box(&token), now))
                .expect("valid")
        })
    });
}

criterion_group!(benches, verify);
criterion_main!(benches);
