//! Sub-volume records as the store gives them back
//! (subvolume/src/record.rs `Subvolume::decode`); one that decodes stores
//! and decodes back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use subvolume::record::Subvolume;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = Subvolume::decode("subvolumes/gv0/x", data) {
        let again = Subvolume::decode("subvolumes/gv0/x", &s.encode()).expect("re-decodes");
        assert_eq!(again, s);
    }
});
