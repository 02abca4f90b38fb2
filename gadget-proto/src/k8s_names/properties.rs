//! Property tests: each check agrees with the regular expression and
//! length limit the API server validates the same rule with
//! (`k8s.io/apimachinery/pkg/util/validation`), on names built to be valid
//! and on arbitrary text.

use std::sync::LazyLock;

use proptest::prelude::*;
use regex::Regex;

use super::*;

/// `dns1123LabelFmt`, anchored.
static DNS_LABEL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());

/// `dns1123SubdomainFmt`: labels joined by dots, anchored.
static DNS_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
});

/// `qualifiedNameFmt`: the name part of a label key, and a non-empty label
/// value.
static QUALIFIED_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());

fn api_server_accepts_dns_label(name: &str) -> bool {
    name.len() <= MAX_LABEL_LEN && DNS_LABEL.is_match(name)
}

fn api_server_accepts_dns_subdomain(name: &str) -> bool {
    name.len() <= MAX_SUBDOMAIN_LEN && DNS_SUBDOMAIN.is_match(name)
}

fn api_server_accepts_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    prefix.is_none_or(api_server_accepts_dns_subdomain)
        && name.len() <= MAX_LABEL_LEN
        && QUALIFIED_NAME.is_match(name)
}

fn api_server_accepts_label_value(value: &str) -> bool {
    value.is_empty() || (value.len() <= MAX_LABEL_LEN && QUALIFIED_NAME.is_match(value))
}

/// One of the characters the rules are about, or others (upper case,
/// `_`, `/`, spaces, `é`, `日`, controls, a direction override), or now
/// and then any character of the first plane; from one u16, cheaper to
/// generate and shrink than a strategy per character.
fn name_character(code: u16) -> char {
    const CHARACTERS: &[char] = &[
        'a', 'z', '0', '9', '-', '.', 'Z', '_', '/', ' ', 'é', '日', '\0', '\n', '\u{202e}',
    ];
    match char::from_u32(code.into()) {
        Some(c) if code >= 0xff00 => c,
        _ => CHARACTERS[usize::from(code) % CHARACTERS.len()],
    }
}

/// Names that the rules accept (DNS labels and subdomains, label keys and
/// values, up to past their limits), as they are or with one or two
/// characters replaced, and text of the characters the rules are about:
/// accepted and refused names both come up often.
fn name_like(max_len: usize) -> impl Strategy<Value = String> {
    let valid = prop_oneof![
        "[a-z0-9]([-a-z0-9]{0,66}[a-z0-9])?",
        "([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\\.){0,30}[a-z0-9]{1,4}",
        "([a-z0-9]([-a-z0-9.]{0,20}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,64}[A-Za-z0-9])?",
    ];
    let edits = proptest::collection::vec((any::<usize>(), any::<u16>()), 0..3);
    let edited = (valid, edits).prop_map(move |(name, edits)| {
        let mut chars: Vec<char> = name.chars().take(max_len).collect();
        for (at, code) in edits {
            if !chars.is_empty() {
                let at = at % chars.len();
                chars[at] = name_character(code);
            }
        }
        String::from_iter(chars)
    });
    let random = proptest::collection::vec(any::<u16>(), 0..=max_len)
        .prop_map(|codes| codes.into_iter().map(name_character).collect());
    prop_oneof![3 => edited, 1 => random]
}

/// A DNS label the API server accepts, up to `max_len` bytes.
fn dns_label(max_len: usize) -> impl Strategy<Value = String> {
    let pattern = format!("[a-z0-9]([-a-z0-9]{{0,{}}}[a-z0-9])?", max_len - 2);
    proptest::string::string_regex(&pattern).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(5000))]

    #[test]
    fn dns_label_check_is_the_api_servers(name in name_like(70)) {
        prop_assert_eq!(check_dns_label(&name).is_ok(), api_server_accepts_dns_label(&name));
    }

    #[test]
    fn dns_subdomain_check_is_the_api_servers(name in name_like(260)) {
        prop_assert_eq!(
            check_dns_subdomain(&name).is_ok(),
            api_server_accepts_dns_subdomain(&name)
        );
    }

    #[test]
    fn qualified_name_check_is_the_api_servers(key in name_like(80)) {
        prop_assert_eq!(
            check_qualified_name(&key).is_ok(),
            api_server_accepts_qualified_name(&key)
        );
    }

    #[test]
    fn label_value_check_is_the_api_servers(value in name_like(70)) {
        prop_assert_eq!(
            check_label_value(&value).is_ok(),
            api_server_accepts_label_value(&value)
        );
    }

    /// Valid names, up to and past the length limits: accepted exactly
    /// while they fit, and a name too long is refused for its length.
    #[test]
    fn valid_names_are_refused_only_for_their_length(
        labels in proptest::collection::vec(dns_label(70), 1..6),
    ) {
        let label = &labels[0];
        match check_dns_label(label) {
            Ok(()) => prop_assert!(label.len() <= MAX_LABEL_LEN),
            Err(problem) => {
                prop_assert!(label.len() > MAX_LABEL_LEN);
                prop_assert_eq!(problem, NameProblem::TooLong { max: MAX_LABEL_LEN });
            }
        }
        // Long labels joined by dots reach the subdomain limit too.
        let subdomain = labels.join(".").repeat(3);
        match check_dns_subdomain(&subdomain) {
            Ok(()) => prop_assert!(subdomain.len() <= MAX_SUBDOMAIN_LEN),
            Err(problem) => {
                prop_assert!(subdomain.len() > MAX_SUBDOMAIN_LEN);
                prop_assert_eq!(problem, NameProblem::TooLong { max: MAX_SUBDOMAIN_LEN });
            }
        }
    }

    /// A refusal says why in one line, and the reason is the right one for
    /// the simple cases: empty, and too long.
    #[test]
    fn refusals_name_their_reason(name in name_like(300)) {
        for (result, max) in [
            (check_dns_label(&name), MAX_LABEL_LEN),
            (check_dns_subdomain(&name), MAX_SUBDOMAIN_LEN),
        ] {
            let Err(problem) = result else { continue };
            prop_assert!(!problem.to_string().contains('\n'));
            prop_assert_eq!(problem == NameProblem::Empty, name.is_empty());
            prop_assert_eq!(problem == NameProblem::TooLong { max }, name.len() > max);
        }
    }
}
