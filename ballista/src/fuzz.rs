//! Property tests feeding an executor's definition decoders what a plan
//! from anyone could carry: arbitrary bytes, valid definitions with bytes
//! changed, and well-formed definitions whose every field is arbitrary.
//! Each must decode or be refused with an error, never panic. `tools/fuzz`
//! runs them long; CI runs a few hundred cases each.
//!
//! Definitions here carry no source: decoding a source writes it to the
//! user's private directory, which a million cases would fill.

use proptest::prelude::*;

use super::*;

/// Cases per property: `PROPTEST_CASES` when larger than `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, |n: u32| n.max(default))
}

/// A valid definition (a module target, so no source), as JSON.
fn valid() -> Vec<u8> {
    let definition = Definition {
        v: VERSION,
        name: "slug".into(),
        target: "mypkg.text:slug".into(),
        function: "slug".into(),
        source: None,
        kind: "scalar".into(),
        args: Some(vec![Some("utf8".into()), None, Some("list<int64>".into())]),
        arg_names: vec!["title".into(), "n".into(), "xs".into()],
        returns: "map<utf8,int64>".into(),
        volatility: "stable".into(),
        window: false,
        options: vec![
            ("python.worker-count".into(), "2".into()),
            ("python.fn-execution.timeout".into(), "30s".into()),
        ],
    };
    serde_json::to_vec(&definition).unwrap()
}

/// Every decoder an executor runs on a definition from a plan.
fn decode_all(decoded: &Decoded, buf: &[u8]) {
    let _ = decoded.decode("f", buf);
    let _ = decoded.decode_udaf("f", buf);
    let _ = decoded.decode_udwf("f", buf);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(256)))]

    #[test]
    fn arbitrary_bytes_never_panic_the_definition_decoders(
        buf in proptest::collection::vec(any::<u8>(), 0..512)
    ) {
        decode_all(&Decoded::default(), &buf);
    }

    #[test]
    fn changing_bytes_of_a_definition_never_panics_its_decoders(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..5),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut buf = valid();
        for (at, byte) in changes {
            let i = at.index(buf.len());
            buf[i] = byte;
        }
        if truncate {
            buf.truncate(cut.index(buf.len()));
        }
        decode_all(&Decoded::default(), &buf);
    }

    #[test]
    fn every_field_of_a_definition_is_checked_not_trusted(
        v in prop_oneof![Just(VERSION), any::<u32>()],
        kind in prop_oneof![
            Just("scalar".to_string()), Just("aggregate".to_string()), ".{0,12}"
        ],
        returns in prop_oneof![Just("int64".to_string()), "[a-z0-9<>,\\[\\]: ]{0,24}"],
        args in proptest::option::of(proptest::collection::vec(
            proptest::option::of("[a-z0-9<>,\\[\\]: ]{0,16}"), 0..4
        )),
        volatility in prop_oneof![Just("volatile".to_string()), ".{0,10}"],
        options in proptest::collection::vec(
            (prop_oneof![Just("python.worker-count".to_string()), "python\\.[a-z.-]{0,24}", ".{0,12}"],
             ".{0,12}"),
            0..4
        ),
        target in "[a-z.:/_]{0,24}",
    ) {
        let definition = Definition {
            v,
            name: "f".into(),
            target,
            function: "f".into(),
            source: None,
            kind,
            args,
            arg_names: Vec::new(),
            returns,
            volatility,
            window: false,
            options,
        };
        let buf = serde_json::to_vec(&definition).unwrap();
        decode_all(&Decoded::default(), &buf);
        // What decodes is what was written: a function is never made up.
        if let Ok(f) = definition.function() {
            prop_assert_eq!(definition.v, VERSION);
            prop_assert!(
                ["immutable", "stable", "volatile"].contains(&definition.volatility.as_str())
            );
            prop_assert_eq!(f.spec.target, definition.target.clone());
        }
    }
}
