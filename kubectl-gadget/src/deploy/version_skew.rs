//! Whether deploying this client's version over the deployed one is an
//! upgrade, a downgrade or neither: versions are compared as semantic
//! versions (`MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`).

use std::cmp::Ordering;

/// What replacing the deployed gadget-node with this client's would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionChange {
    /// Nothing is deployed yet.
    Fresh,
    /// The deployment names no version: it predates the version label.
    Unlabelled,
    /// The same version is deployed.
    Same,
    /// An older version is deployed.
    Upgrade {
        /// The deployed version.
        from: String,
    },
    /// A newer version is deployed.
    Downgrade {
        /// The deployed version.
        from: String,
    },
    /// The version label holds something that is not a version.
    Unknown {
        /// The label's value.
        label: String,
    },
}

impl VersionChange {
    /// Compares the `deployed` version label (`None`: no label; the outer
    /// `None`: nothing deployed) with the `client`'s version.
    pub fn between(deployed: Option<Option<&str>>, client: &str) -> VersionChange {
        let Some(deployed) = deployed else {
            return VersionChange::Fresh;
        };
        let Some(label) = deployed else {
            return VersionChange::Unlabelled;
        };
        let (Some(old), Some(new)) = (SemVer::parse(label), SemVer::parse(client)) else {
            return VersionChange::Unknown {
                label: label.to_string(),
            };
        };
        match old.cmp(&new) {
            Ordering::Less => VersionChange::Upgrade {
                from: label.to_string(),
            },
            Ordering::Equal => VersionChange::Same,
            Ordering::Greater => VersionChange::Downgrade {
                from: label.to_string(),
            },
        }
    }

    /// Whether applying needs `--force`: a downgrade, or a version that
    /// cannot be compared.
    pub fn needs_force(&self) -> bool {
        matches!(
            self,
            VersionChange::Downgrade { .. } | VersionChange::Unknown { .. }
        )
    }
}

/// A semantic version; build metadata is ignored, as semver orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SemVer<'a> {
    core: [u64; 3],
    /// The dot-separated pre-release identifiers; empty for a release.
    pre: Vec<&'a str>,
}

impl<'a> SemVer<'a> {
    fn parse(text: &'a str) -> Option<SemVer<'a>> {
        let text = text
            .split_once('+')
            .map_or(text, |(version, _build)| version);
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let mut numbers = core.split('.').map(|part| {
            let canonical = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            canonical.then(|| part.parse::<u64>().ok()).flatten()
        });
        let core = [numbers.next()??, numbers.next()??, numbers.next()??];
        if numbers.next().is_some() {
            return None;
        }
        let pre: Vec<&str> = match pre {
            Some(pre) => pre.split('.').collect(),
            None => Vec::new(),
        };
        let valid_identifier = |id: &&str| {
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if !pre.iter().all(valid_identifier) {
            return None;
        }
        Some(SemVer { core, pre })
    }
}

impl Ord for SemVer<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre_release(&self.pre, &other.pre),
            }
        })
    }
}

impl PartialOrd for SemVer<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver's order of pre-release identifiers: numeric ones by value and
/// before alphanumeric ones, which compare as ASCII; a shorter list that is
/// a prefix of the other comes first.
fn compare_pre_release(a: &[&str], b: &[&str]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(deployed: &str, client: &str) -> VersionChange {
        VersionChange::between(Some(Some(deployed)), client)
    }

    #[test]
    fn newer_deployed_version_is_a_downgrade_that_needs_force() {
        let change = change("0.2.0", "0.1.0");
        assert_eq!(
            change,
            VersionChange::Downgrade {
                from: "0.2.0".into()
            }
        );
        assert!(change.needs_force());
        // Numbers, not strings: 0.10.0 is newer than 0.9.0.
        assert!(matches!(
            VersionChange::between(Some(Some("0.10.0")), "0.9.0"),
            VersionChange::Downgrade { .. }
        ));
        assert!(matches!(
            VersionChange::between(Some(Some("1.0.0")), "0.99.99"),
            VersionChange::Downgrade { .. }
        ));
    }

    #[test]
    fn older_or_same_or_absent_needs_no_force() {
        for (deployed, expected) in [
            (
                Some(Some("0.1.0")),
                VersionChange::Upgrade {
                    from: "0.1.0".into(),
                },
            ),
            (Some(Some("0.2.0")), VersionChange::Same),
            (Some(Some("0.2.0+build.7")), VersionChange::Same),
            (Some(None), VersionChange::Unlabelled),
            (None, VersionChange::Fresh),
        ] {
            let change = VersionChange::between(deployed, "0.2.0");
            assert_eq!(change, expected, "{deployed:?}");
            assert!(!change.needs_force(), "{deployed:?}");
        }
    }

    #[test]
    fn pre_releases_order_as_semver_says() {
        // 1.0.0-alpha < 1.0.0-alpha.1 < 1.0.0-alpha.beta < 1.0.0-beta
        // < 1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(
                matches!(change(pair[1], pair[0]), VersionChange::Downgrade { .. }),
                "{} after {}",
                pair[1],
                pair[0]
            );
            assert!(
                matches!(change(pair[0], pair[1]), VersionChange::Upgrade { .. }),
                "{} before {}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn a_label_that_is_not_a_version_needs_force() {
        for label in [
            "",
            "latest",
            "1.2",
            "1.2.3.4",
            "01.2.3",
            "1.2.x",
            "1.2.3-",
            "1.2.3-a..b",
            "v1.2.3",
        ] {
            let change = change(label, "0.1.0");
            assert_eq!(
                change,
                VersionChange::Unknown {
                    label: label.into()
                },
                "{label:?}"
            );
            assert!(change.needs_force(), "{label:?}");
        }
    }
}
