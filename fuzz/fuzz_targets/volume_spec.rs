//! Volume specs as every process loads them from the store
//! (volgen/src/spec.rs `VolumeSpec::from_json`: JSON, retired options,
//! format, validation). A spec that loads must store and load back the
//! same, and everything that reads a loaded spec relies on its validation:
//! option accessors (which panic on values validation should have
//! refused), the client graph and plan, each brick's config.
#![no_main]

use libfuzzer_sys::fuzz_target;
use volgen::spec::{OptionKind, VolumeSpec, OPTIONS};

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = VolumeSpec::from_json(data) else {
        return;
    };
    assert_eq!(
        VolumeSpec::from_json(spec.to_json().as_bytes()).as_ref(),
        Ok(&spec)
    );
    for def in OPTIONS {
        match def.kind {
            OptionKind::Secs(_) => {
                let _ = spec.option_duration(def.key);
            }
            OptionKind::Ratio { .. } => {
                let _ = spec.option_ratio(def.key);
            }
        }
    }
    let _ = volgen::graph::client_graph(&spec).render();
    let _ = volgen::plan::client_plan(&spec);
    for i in 0..spec.bricks.len() {
        assert!(volgen::graph::brick_config(&spec, i).is_some());
    }
});
