//! Tenant tokens as the management API reads them from a request
//! (tenant/src/token.rs `Token::parse`). A token that parses is the one
//! it prints as: one secret has one spelling.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant::Token;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = Token::parse(s) {
        assert!(t.to_string().eq_ignore_ascii_case(s.trim()));
        assert_eq!(Token::parse(&t.to_string()).as_ref(), Some(&t));
        let _ = t.matches(&t.secret_hash());
    }
});
