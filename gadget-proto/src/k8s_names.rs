//! The Kubernetes rules for names and labels, as the API server checks them:
//! a name the API server would refuse can match nothing, so both ends check
//! names before using them.
//!
//! | rule                        | used for                          | check                     |
//! |-----------------------------|-----------------------------------|---------------------------|
//! | DNS-1123 label              | namespace, container name         | [`check_dns_label`]       |
//! | DNS-1123 subdomain          | pod name, node name, key prefix   | [`check_dns_subdomain`]   |
//! | qualified name              | label key (`[prefix/]name`)       | [`check_qualified_name`]  |
//! | label value                 | label value                       | [`check_label_value`]     |
//!
//! Lengths are in bytes: every allowed character is ASCII, so a name with
//! other characters is refused either way.
//!
//! # Examples
//!
//! ```
//! use gadget_proto::k8s_names::{check_dns_label, check_qualified_name, NameProblem};
//!
//! assert!(check_dns_label("kube-system").is_ok());
//! assert_eq!(check_dns_label("Kube"), Err(NameProblem::DnsLabelCharacters));
//! assert_eq!(
//!     check_dns_label("Kube").unwrap_err().to_string(),
//!     "only lower-case letters, digits and '-' are allowed"
//! );
//! assert!(check_qualified_name("app.kubernetes.io/name").is_ok());
//! ```

/// Longest DNS-1123 label, qualified name part (after the prefix) and label
/// value.
pub const MAX_LABEL_LEN: usize = 63;

/// Longest DNS-1123 subdomain, including a label key's prefix.
pub const MAX_SUBDOMAIN_LEN: usize = 253;

/// Why a name breaks its rule, as a short lower-case clause to put after the
/// name (`invalid namespace "A": only lower-case letters, ...`). Callers with
/// their own wording match on the variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameProblem {
    /// The name is empty.
    #[error("it is empty")]
    Empty,
    /// The name is longer than [`MAX_LABEL_LEN`] or [`MAX_SUBDOMAIN_LEN`].
    #[error("it is longer than {max} characters")]
    TooLong {
        /// The limit it exceeds.
        max: usize,
    },
    /// A DNS-1123 label with a character other than `a-z`, `0-9` and `-`.
    #[error("only lower-case letters, digits and '-' are allowed")]
    DnsLabelCharacters,
    /// A DNS-1123 subdomain with a character other than `a-z`, `0-9`, `-`
    /// and `.`.
    #[error("only lower-case letters, digits, '-' and '.' are allowed")]
    DnsSubdomainCharacters,
    /// A label name or value with a character other than letters, digits,
    /// `-`, `_` and `.`.
    #[error("only letters, digits, '-', '_' and '.' are allowed")]
    LabelCharacters,
    /// The name (or, in a subdomain, one of its dot-separated labels) is
    /// empty or starts or ends with something else than a letter or digit.
    #[error("it must start and end with a letter or digit")]
    Ends,
}

/// Why a label key breaks the qualified name rule, and in which part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QualifiedNameProblem {
    /// The prefix before `/` is not a DNS-1123 subdomain.
    #[error("the prefix before '/': {0}")]
    Prefix(NameProblem),
    /// More than one `/`.
    #[error("it contains more than one '/'")]
    Slashes,
    /// The name (after the prefix, if any) is not a label name.
    #[error("the name part: {0}")]
    Name(NameProblem),
}

/// Checks a DNS-1123 label, the rule for namespace and container names: 1 to
/// 63 lower-case letters, digits and `-`, starting and ending with a letter
/// or digit.
pub fn check_dns_label(name: &str) -> Result<(), NameProblem> {
    check_length(name, MAX_LABEL_LEN)?;
    if !name.bytes().all(is_dns_byte) {
        return Err(NameProblem::DnsLabelCharacters);
    }
    check_ends(name)
}

/// Checks a DNS-1123 subdomain, the rule for pod and node names and label key
/// prefixes: at most 253 characters, lower-case DNS labels (without their
/// own length limit) joined by `.`.
pub fn check_dns_subdomain(name: &str) -> Result<(), NameProblem> {
    check_length(name, MAX_SUBDOMAIN_LEN)?;
    if !name.bytes().all(|b| is_dns_byte(b) || b == b'.') {
        return Err(NameProblem::DnsSubdomainCharacters);
    }
    name.split('.').try_for_each(check_ends)
}

/// Checks a qualified name, the rule for label keys: an optional DNS-1123
/// subdomain prefix and `/`, then a name of 1 to 63 letters, digits, `-`,
/// `_` and `.`, starting and ending with a letter or digit.
pub fn check_qualified_name(key: &str) -> Result<(), QualifiedNameProblem> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            check_dns_subdomain(prefix).map_err(QualifiedNameProblem::Prefix)?;
            if name.contains('/') {
                return Err(QualifiedNameProblem::Slashes);
            }
            name
        }
        None => key,
    };
    check_length(name, MAX_LABEL_LEN)
        .and_then(|()| check_label_word(name))
        .map_err(QualifiedNameProblem::Name)
}

/// Checks a label value: empty, or up to 63 letters, digits, `-`, `_` and
/// `.`, starting and ending with a letter or digit.
pub fn check_label_value(value: &str) -> Result<(), NameProblem> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_LABEL_LEN {
        return Err(NameProblem::TooLong { max: MAX_LABEL_LEN });
    }
    check_label_word(value)
}

fn check_length(name: &str, max: usize) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.len() > max {
        return Err(NameProblem::TooLong { max });
    }
    Ok(())
}

/// The characters of a label name or value, then its ends.
fn check_label_word(word: &str) -> Result<(), NameProblem> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if !word.bytes().all(allowed) {
        return Err(NameProblem::LabelCharacters);
    }
    check_ends(word)
}

fn is_dns_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
}

/// Whether `part` is non-empty and starts and ends with a letter or digit;
/// the caller has checked which letters are allowed.
fn check_ends(part: &str) -> Result<(), NameProblem> {
    match (part.bytes().next(), part.bytes().last()) {
        (Some(first), Some(last))
            if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() =>
        {
            Ok(())
        }
        _ => Err(NameProblem::Ends),
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["a", "kube-system", "0", "a-0", &"a".repeat(63)] {
            assert_eq!(check_dns_label(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_dns_label(""), Err(NameProblem::Empty));
        assert_eq!(
            check_dns_label(&"a".repeat(64)),
            Err(NameProblem::TooLong { max: 63 })
        );
        for bad in ["a.b", "A", "a_b", "é"] {
            assert_eq!(
                check_dns_label(bad),
                Err(NameProblem::DnsLabelCharacters),
                "{bad:?}"
            );
        }
        for bad in ["-a", "a-", "-"] {
            assert_eq!(check_dns_label(bad), Err(NameProblem::Ends), "{bad:?}");
        }
    }

    #[test]
    fn dns_subdomains() {
        for good in ["a", "a.b-c.d", "node-1.example.com", &"a".repeat(253)] {
            assert_eq!(check_dns_subdomain(good), Ok(()), "{good:?}");
        }
        assert_eq!(check_dns_subdomain(""), Err(NameProblem::Empty));
        assert_eq!(
            check_dns_subdomain(&"a".repeat(254)),
            Err(NameProblem::TooLong { max: 253 })
        );
        for bad in ["Example.com", "a_b", "a/b"] {
            assert_eq!(
                check_dns_subdomain(bad),
                Err(NameProblem::DnsSubdomainCharacters),
                "{bad:?}"
            );
        }
        for bad in ["a..b", "a.-b", ".a", "a.", "a-"] {
            assert_eq!(check_dns_subdomain(bad), Err(NameProblem::Ends), "{bad:?}");
        }
    }

    #[test]
    fn qualified_names() {
        for good in [
            "app",
            "A_b.C-9",
            "app.kubernetes.io/name",
            &"k".repeat(63),
            &format!("{}.io/k", "p".repeat(60)),
        ] {
            assert_eq!(check_qualified_name(good), Ok(()), "{good:?}");
        }
        use QualifiedNameProblem::*;
        let cases = [
            ("/a", Prefix(NameProblem::Empty)),
            ("Example.com/a", Prefix(NameProblem::DnsSubdomainCharacters)),
            ("a..b/c", Prefix(NameProblem::Ends)),
            ("a/b/c", Slashes),
            ("a/", Name(NameProblem::Empty)),
            ("", Name(NameProblem::Empty)),
            ("a$b", Name(NameProblem::LabelCharacters)),
            ("-a", Name(NameProblem::Ends)),
            ("a-", Name(NameProblem::Ends)),
        ];
        for (bad, problem) in cases {
            assert_eq!(check_qualified_name(bad), Err(problem), "{bad:?}");
        }
        assert_eq!(
            check_qualified_name(&"k".repeat(64)),
            Err(Name(NameProblem::TooLong { max: 63 }))
        );
        assert_eq!(
            check_qualified_name(&format!("{}/k", "p".repeat(254))),
            Err(Prefix(NameProblem::TooLong { max: 253 }))
        );
    }

    #[test]
    fn label_values() {
        for good in ["", "web", "Web_1.2-x", &"v".repeat(63)] {
            assert_eq!(check_label_value(good), Ok(()), "{good:?}");
        }
        assert_eq!(
            check_label_value(&"v".repeat(64)),
            Err(NameProblem::TooLong { max: 63 })
        );
        assert_eq!(check_label_value("x/y"), Err(NameProblem::LabelCharacters));
        assert_eq!(check_label_value("ü"), Err(NameProblem::LabelCharacters));
        assert_eq!(check_label_value("-b"), Err(NameProblem::Ends));
        assert_eq!(check_label_value("bad_"), Err(NameProblem::Ends));
    }

    /// The clauses the client's `invalid namespace "A": ...` messages end
    /// with; they are part of its output.
    #[test]
    fn problems_read_as_the_clients_messages() {
        let text = |problem: NameProblem| problem.to_string();
        assert_eq!(text(NameProblem::Empty), "it is empty");
        assert_eq!(
            text(check_dns_label(&"a".repeat(64)).unwrap_err()),
            "it is longer than 63 characters"
        );
        assert_eq!(
            text(check_dns_subdomain(&"a".repeat(254)).unwrap_err()),
            "it is longer than 253 characters"
        );
        assert_eq!(
            text(NameProblem::DnsLabelCharacters),
            "only lower-case letters, digits and '-' are allowed"
        );
        assert_eq!(
            text(NameProblem::DnsSubdomainCharacters),
            "only lower-case letters, digits, '-' and '.' are allowed"
        );
        assert_eq!(
            text(NameProblem::Ends),
            "it must start and end with a letter or digit"
        );
    }
}
