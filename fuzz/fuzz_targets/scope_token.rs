//! Scope tokens as a brick reads them from a tenant's connection
//! (tls/src/scope.rs `Verifier::verify`, and `peek`, which a client runs
//! on its own token). A token that verifies says what its claims say:
//! signed again by the same key it verifies again to the same claims.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((signer, verifier)) = tls::scope::fuzzing::fixed_key() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tls::scope::peek(s);
    // A fixed "now" inside the seeds' validity, so valid tokens get past
    // the clock checks.
    if let Ok(claims) = verifier.verify(s, 1_800_000_000) {
        let again = signer.sign(&claims).expect("signing verified claims");
        assert_eq!(verifier.verify(&again, 1_800_000_000).ok(), Some(claims));
    }
});
