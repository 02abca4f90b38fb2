//! Property tests of `--ring-buffer-size`: every spelling of every size
//! reads as its bytes or is refused for the right reason, and whatever
//! else is given is refused in one line, never accepted by accident.

use proptest::prelude::*;

use super::*;

/// The suffixes and what they multiply by.
const SUFFIXES: &[(&str, u64)] = &[
    ("", 1),
    ("B", 1),
    ("K", 1 << 10),
    ("Ki", 1 << 10),
    ("KiB", 1 << 10),
    ("M", 1 << 20),
    ("Mi", 1 << 20),
    ("MiB", 1 << 20),
];

/// Numbers around the edges (0, the 4 GiB limit in each unit, the end of
/// 64 bits) and anywhere, up to more digits than 64 bits hold.
fn number() -> impl Strategy<Value = u128> {
    let max = u128::from(u64::MAX);
    prop_oneof![
        0u128..=2,
        (1u128 << 32) - 2..=(1 << 32) + 1,
        (1u128 << 22) - 2..=(1 << 22) + 1,
        (1u128 << 12) - 2..=(1 << 12) + 1,
        max - 1..=max + 1,
        any::<u64>().prop_map(u128::from),
        0u128..10u128.pow(25),
        0u128..100_000,
    ]
}

/// The problem of a refused size.
fn problem(text: &str) -> &'static str {
    match parse_size(text) {
        Err(TraceRequestError::RingBufferSize { size, problem }) => {
            assert_eq!(size, text);
            problem
        }
        other => panic!("{text:?} was not refused as a size: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// A number with a suffix, with or without leading zeros: its bytes
    /// when they are from 1 to 4 GiB - 1, else refused saying why.
    #[test]
    fn sizes_read_as_their_bytes(
        number in number(),
        suffix in proptest::sample::select(SUFFIXES),
        zeros in 0usize..3,
    ) {
        let (suffix, multiplier) = suffix;
        let text = format!("{}{number}{suffix}", "0".repeat(zeros));
        let bytes = number * u128::from(multiplier);
        if number == 0 {
            prop_assert!(problem(&text).contains("more than 0"));
        } else if bytes > u128::from(u32::MAX) {
            prop_assert_eq!(problem(&text), "it must be less than 4G");
        } else {
            prop_assert_eq!(parse_size(&text), Ok(bytes as u32));
        }
    }

    /// Anything: accepted only as digits and a known suffix, and then as
    /// the bytes they say; refused with a one-line message naming it.
    #[test]
    fn anything_else_is_refused(
        text in prop_oneof![
            "[0-9]{0,12}[ KkMmGgiB+\\-.]{0,4}[0-9]{0,2}",
            any::<String>(),
        ],
    ) {
        match parse_size(&text) {
            Ok(bytes) => {
                let (digits, multiplier) = SUFFIXES
                    .iter()
                    .rev()
                    .find_map(|(suffix, multiplier)| {
                        Some((text.strip_suffix(suffix)?, multiplier))
                    })
                    .unwrap();
                prop_assert!(!digits.is_empty());
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{:?}", text);
                prop_assert_eq!(
                    u128::from(bytes),
                    digits.parse::<u128>().unwrap() * u128::from(*multiplier)
                );
                prop_assert!(bytes > 0);
            }
            Err(err) => {
                let message = err.to_string();
                let expected = format!("invalid --ring-buffer-size {text:?}: ");
                prop_assert!(message.starts_with(&expected), "{}", message);
                prop_assert!(!message.contains('\n'));
            }
        }
    }
}

/// Found by `sizes_read_as_their_bytes`: a number of more digits than fit
/// 64 bits was "not a number" instead of too large.
#[test]
fn a_number_too_long_for_64_bits_is_too_large_not_malformed() {
    assert_eq!(problem("18446744073709551616"), "it must be less than 4G");
    assert_eq!(
        problem("99999999999999999999999M"),
        "it must be less than 4G"
    );
}
