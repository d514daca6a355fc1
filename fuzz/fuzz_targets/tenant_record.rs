//! Tenant records as the store gives them back (tenant/src/record.rs
//! `Tenant::decode`, its networks parsed as CIDRs); one that decodes
//! stores and decodes back the same, and answers `allows`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant::Tenant;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Tenant::decode("tenants/x", data) {
        let again = Tenant::decode("tenants/x", &t.encode()).expect("re-decodes");
        assert_eq!(again, t);
        let _ = t.allows("10.1.2.3".parse().expect("ip"));
        let _ = t.allows("fd00::1".parse().expect("ip"));
    }
});
