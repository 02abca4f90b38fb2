//! Linux kernel versions as both ends read them: gadget-node from its own
//! `uname -r`, `kubectl gadget deploy` from each node's
//! `status.nodeInfo.kernelVersion` (the kubelet's `uname -r`). Both ask the
//! same question of it, whether BPF memory counts against
//! `RLIMIT_MEMLOCK` there, and so whether the gadget pod needs
//! `CAP_SYS_RESOURCE` to raise that limit.
//!
//! # Examples
//!
//! ```
//! use gadget_proto::kernel_version::KernelVersion;
//!
//! let version = KernelVersion::parse("5.10.0-1057-aws").unwrap();
//! assert_eq!(version.to_string(), "5.10.0");
//! assert!(version.charges_bpf_to_memlock());
//! assert!(!KernelVersion::parse("6.1.0").unwrap().charges_bpf_to_memlock());
//! assert_eq!(KernelVersion::parse("garbage"), None);
//! ```

use std::fmt;

/// The first kernel that charges BPF memory (maps, ring buffers) to the
/// memory cgroup of the process that made it; before it the kernel charges
/// it to the `RLIMIT_MEMLOCK` of the user, whose container default is below
/// one ring buffer, and raising that limit needs `CAP_SYS_RESOURCE`.
pub const MEMCG_BPF_ACCOUNTING: KernelVersion = KernelVersion::new(5, 11, 0);

/// A kernel version: the leading `MAJOR.MINOR[.PATCH]` of a release string
/// (`5.10.0-1057-aws`, `4.18.0-513.el8.x86_64`), without the distribution's
/// suffix. Ordered as the kernel orders versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    /// The major version (`5` of `5.10.0`).
    pub major: u32,
    /// The minor version (`10` of `5.10.0`).
    pub minor: u32,
    /// The patch level (`0` of `5.10.0`; `0` when the release has none).
    pub patch: u32,
}

impl KernelVersion {
    /// The version `major.minor.patch`.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelVersion {
            major,
            minor,
            patch,
        }
    }

    /// The version at the start of a kernel release string (`uname -r`), or
    /// `None` when it does not start with `MAJOR.MINOR`. What follows the
    /// numbers (`-1057-aws`, `+`, `-rc1`) is the builder's and ignored.
    pub fn parse(release: &str) -> Option<Self> {
        let (major, rest) = leading_number(release)?;
        let (minor, rest) = leading_number(rest.strip_prefix('.')?)?;
        // `5.10-custom` has no patch level.
        let patch = rest
            .strip_prefix('.')
            .and_then(leading_number)
            .map_or(0, |(patch, _)| patch);
        Some(KernelVersion::new(major, minor, patch))
    }

    /// `MAJOR.MINOR`, as kernel series are named in prose (`5.11`).
    pub fn major_minor(self) -> String {
        format!("{}.{}", self.major, self.minor)
    }

    /// Whether this kernel charges BPF memory to `RLIMIT_MEMLOCK` (before
    /// [`MEMCG_BPF_ACCOUNTING`]), so that loading gadgets needs the limit
    /// raised, which needs `CAP_SYS_RESOURCE`.
    pub fn charges_bpf_to_memlock(self) -> bool {
        self < MEMCG_BPF_ACCOUNTING
    }
}

/// The decimal number `text` starts with, and the text after it.
fn leading_number(text: &str) -> Option<(u32, &str)> {
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let number = text[..digits].parse().ok()?;
    Some((number, &text[digits..]))
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_to_their_leading_version() {
        for (release, expected) in [
            ("5.10.0-1057-aws", (5, 10, 0)),
            ("6.18.44-fc-v657", (6, 18, 44)),
            ("4.18.0-513.el8.x86_64", (4, 18, 0)),
            ("5.11.0", (5, 11, 0)),
            ("6.8.0-1017-gcp", (6, 8, 0)),
            ("5.15.153.1-microsoft-standard-WSL2", (5, 15, 153)),
            ("6.1.0-rc1", (6, 1, 0)),
            ("5.4.0+", (5, 4, 0)),
            ("5.10", (5, 10, 0)),
            ("5.10-custom", (5, 10, 0)),
        ] {
            let (major, minor, patch) = expected;
            assert_eq!(
                KernelVersion::parse(release),
                Some(KernelVersion::new(major, minor, patch)),
                "{release:?}"
            );
        }
    }

    #[test]
    fn releases_without_a_leading_version_do_not_parse() {
        for release in [
            "",
            "garbage",
            "5",
            "5.",
            "5-10",
            ".5.10",
            "v5.10.0",
            " 5.10.0",
            "99999999999.1.0",
        ] {
            assert_eq!(KernelVersion::parse(release), None, "{release:?}");
        }
    }

    #[test]
    fn memlock_charging_ends_with_5_11() {
        let charges = |release| {
            KernelVersion::parse(release)
                .unwrap()
                .charges_bpf_to_memlock()
        };
        assert!(charges("4.18.0-513.el8.x86_64"));
        assert!(charges("5.8.0"));
        assert!(charges("5.10.0-1057-aws"));
        assert!(charges("5.10.250"));
        assert!(!charges("5.11.0"));
        assert!(!charges("5.15.0-100-generic"));
        assert!(!charges("6.18.44-fc-v657"));
        // Compared as numbers, not as text.
        assert!(!charges("10.0.0"));
        assert!(charges("5.9.0"));
    }

    #[test]
    fn versions_print_as_major_minor_patch() {
        assert_eq!(
            KernelVersion::parse("5.10-custom").unwrap().to_string(),
            "5.10.0"
        );
        assert_eq!(MEMCG_BPF_ACCOUNTING.to_string(), "5.11.0");
        assert_eq!(MEMCG_BPF_ACCOUNTING.major_minor(), "5.11");
    }
}
