//! The Kubernetes name rules both ends apply: a name that breaks them can
//! match no object, so it is refused where it is typed.

/// Checks an RFC 1123 label, the rule for namespaces and container names:
/// at most 63 lower-case letters, digits and '-', starting and ending with a
/// letter or digit. The error says what is wrong.
pub fn check_dns_label(value: &str) -> Result<(), &'static str> {
    check_dns_name(value, 63, false)
}

/// Checks an RFC 1123 subdomain, the rule for pod and node names: at most
/// 253 characters, labels as in [`check_dns_label`] joined by '.'.
pub fn check_dns_subdomain(value: &str) -> Result<(), &'static str> {
    check_dns_name(value, 253, true)
}

fn check_dns_name(value: &str, max_len: usize, dots: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > max_len {
        return Err(if dots {
            "it is longer than 253 characters"
        } else {
            "it is longer than 63 characters"
        });
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !value.chars().all(|c| allowed(c) || (dots && c == '.')) {
        return Err(if dots {
            "only lower-case letters, digits, '-' and '.' are allowed"
        } else {
            "only lower-case letters, digits and '-' are allowed"
        });
    }
    let labels_ok = value
        .split('.')
        .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
    if !labels_ok {
        return Err("it must start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_kubernetes_does() {
        assert!(check_dns_label("a").is_ok());
        assert!(check_dns_label(&"a".repeat(63)).is_ok());
        assert!(check_dns_label(&"a".repeat(64)).is_err());
        assert!(check_dns_label("a.b").is_err());
        assert!(check_dns_subdomain("a.b-c.d").is_ok());
        assert!(check_dns_subdomain("a..b").is_err());
        assert!(check_dns_subdomain("a.-b").is_err());
        assert!(check_dns_subdomain(&"a".repeat(254)).is_err());
    }
}
