//! The return-path validator: whatever comes in, what comes out is a same-origin relative path.
#![no_main]

use keycloak_bff_core::return_to;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let out = return_to::ReturnTo::new(Some(input)).as_str().to_owned();
    assert!(out.starts_with('/'), "{out:?}");
    assert!(!out.starts_with("//"), "{out:?}");
    assert!(!out.contains('\\'), "{out:?}");
    assert!(!out.chars().any(|c| c.is_control() || c.is_whitespace()), "{out:?}");
    let lower = out.to_ascii_lowercase();
    assert!(!lower.contains("%2f") && !lower.contains("%5c"), "{out:?}");
    // A browser resolving it against the app's origin stays on the app's origin.
    let base = url::Url::parse("http://app.example/").expect("base");
    let resolved = base.join(&out).expect("joins");
    assert_eq!(resolved.host_str(), Some("app.example"), "{out:?}");
});
