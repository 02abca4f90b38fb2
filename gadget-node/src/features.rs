//! What the running kernel can do for gadgets, found once at startup by
//! trying it (creating a map, loading a probe program, parsing BTF) rather
//! than by reading the kernel version, which distributions backport around.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};

/// A kernel eBPF feature a gadget may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    /// Loading a tracepoint program (`BPF_PROG_TYPE_TRACEPOINT`, a kernel
    /// with `CONFIG_BPF_EVENTS`): every gadget's programs are tracepoint
    /// programs. Besides CAP_BPF it needs CAP_PERFMON, which creating a map
    /// does not: without this probe a pod lacking CAP_PERFMON would look
    /// able to trace and fail at every load.
    TracepointPrograms,
    /// `BPF_MAP_TYPE_RINGBUF` (Linux 5.8): every gadget sends its events
    /// through one.
    RingBuf,
    /// Kernel BTF at `/sys/kernel/btf/vmlinux` (Linux 5.4 with
    /// `CONFIG_DEBUG_INFO_BTF`): the gadgets' CO-RE reads of kernel structs
    /// are relocated against it at load time.
    Btf,
    /// The `bpf_loop` helper (Linux 5.17): bounded loops the verifier checks
    /// once instead of unrolled.
    BpfLoop,
    /// The BPF LSM is active (`bpf` in `/sys/kernel/security/lsm`), so LSM
    /// programs could attach. No gadget needs it yet.
    BpfLsm,
}

impl Feature {
    /// Every feature the node looks for, in the order they are reported.
    pub const ALL: [Feature; 5] = [
        Feature::TracepointPrograms,
        Feature::RingBuf,
        Feature::Btf,
        Feature::BpfLoop,
        Feature::BpfLsm,
    ];

    /// The feature's name in `NodeInfoResponse.features`.
    pub fn name(self) -> &'static str {
        match self {
            Feature::TracepointPrograms => "tracepoint_prog",
            Feature::RingBuf => "ringbuf",
            Feature::Btf => "btf",
            Feature::BpfLoop => "bpf_loop",
            Feature::BpfLsm => "lsm",
        }
    }

    /// What a kernel needs to have the feature, for people reading why a
    /// gadget is unavailable.
    pub fn requirement(self) -> &'static str {
        match self {
            Feature::TracepointPrograms => "a kernel built with CONFIG_BPF_EVENTS",
            Feature::RingBuf => "Linux 5.8 or later",
            Feature::Btf => "a kernel built with CONFIG_DEBUG_INFO_BTF (/sys/kernel/btf/vmlinux)",
            Feature::BpfLoop => "Linux 5.17 or later",
            Feature::BpfLsm => "CONFIG_BPF_LSM and `bpf` in the lsm= boot parameter",
        }
    }
}

impl std::fmt::Display for Feature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Features every gadget needs because the trace runtime does: tracepoint
/// programs, the events ring buffer, and CO-RE relocation of the shared
/// process record.
const RUNTIME_NEEDS: &[Feature] = &[Feature::TracepointPrograms, Feature::RingBuf, Feature::Btf];

/// What probing one feature found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    /// The kernel has it.
    Present,
    /// The kernel does not have it.
    Missing,
    /// The probe was refused with EPERM or EACCES: whether the kernel has
    /// the feature is unknown, and gadgets cannot use it either way.
    Denied {
        /// The call that was refused, e.g. `bpf(BPF_MAP_CREATE)`.
        call: &'static str,
        /// The error, e.g. `Operation not permitted (os error 1)`.
        error: String,
    },
}

impl Support {
    /// The outcome of a probe that made `call`: a permission error is
    /// [`Support::Denied`], any other error [`Support::Missing`].
    pub fn from_probe(call: &'static str, result: std::io::Result<bool>) -> Support {
        match result {
            Ok(true) => Support::Present,
            Ok(false) => Support::Missing,
            Err(err) if is_permission_error(&err) => Support::Denied {
                call,
                error: err.to_string(),
            },
            Err(err) => {
                tracing::debug!(call, error = %err, "probe failed");
                Support::Missing
            }
        }
    }
}

/// EPERM (capabilities, seccomp, lockdown) or EACCES (SELinux, AppArmor,
/// file modes): the kernel refused the caller, not the request.
fn is_permission_error(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
        || err.kind() == std::io::ErrorKind::PermissionDenied
}

/// The features of the running kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFeatures {
    supported: BTreeMap<Feature, Support>,
}

impl KernelFeatures {
    /// Probes the running kernel. Needs the privileges of loading gadgets
    /// (root, or CAP_BPF with CAP_PERFMON); a probe the kernel refuses for
    /// lack of them reports the feature as [`Support::Denied`], not missing.
    ///
    /// Takes some tens of milliseconds (it parses the kernel's BTF): call it
    /// once, at startup.
    pub fn detect() -> Self {
        let supported = Feature::ALL
            .into_iter()
            .map(|feature| {
                let support = match feature {
                    Feature::TracepointPrograms => {
                        Support::from_probe("bpf(BPF_PROG_LOAD)", probe_tracepoint_program())
                    }
                    Feature::RingBuf => Support::from_probe("bpf(BPF_MAP_CREATE)", probe_ringbuf()),
                    Feature::Btf => {
                        Support::from_probe("open(/sys/kernel/btf/vmlinux)", probe_btf())
                    }
                    Feature::BpfLoop => {
                        Support::from_probe("bpf(BPF_PROG_LOAD)", probe_helper(BPF_FUNC_LOOP))
                    }
                    Feature::BpfLsm => {
                        Support::from_probe("open(/sys/kernel/security/lsm)", bpf_lsm_active())
                    }
                };
                (feature, support)
            })
            .collect();
        KernelFeatures { supported }
    }

    /// A kernel with exactly `present` (for tests and for callers that know
    /// better than the probes).
    pub fn with(present: &[Feature]) -> Self {
        KernelFeatures::with_support(Feature::ALL.into_iter().map(|feature| {
            let support = if present.contains(&feature) {
                Support::Present
            } else {
                Support::Missing
            };
            (feature, support)
        }))
    }

    /// A kernel whose probes found `support` (features not named are
    /// missing).
    pub fn with_support(support: impl IntoIterator<Item = (Feature, Support)>) -> Self {
        let mut supported: BTreeMap<Feature, Support> = Feature::ALL
            .into_iter()
            .map(|feature| (feature, Support::Missing))
            .collect();
        supported.extend(support);
        KernelFeatures { supported }
    }

    /// Whether the kernel has `feature`.
    pub fn supports(&self, feature: Feature) -> bool {
        self.supported.get(&feature) == Some(&Support::Present)
    }

    /// Every feature with whether the kernel has it, in [`Feature::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Feature, bool)> + '_ {
        self.supported
            .iter()
            .map(|(f, support)| (*f, *support == Support::Present))
    }

    /// Whether at least one gadget can run here.
    pub fn any_gadget_available(&self) -> bool {
        crate::gadgets::names()
            .into_iter()
            .any(|gadget| self.gadget_availability(gadget).is_ok())
    }

    /// Whether the gadget called `gadget` can run here; the error says why
    /// not, naming each missing feature and what would provide it.
    pub fn gadget_availability(&self, gadget: &str) -> Result<(), String> {
        let needs: Vec<Feature> = RUNTIME_NEEDS
            .iter()
            .chain(crate::gadgets::find(gadget).map_or(&[][..], |g| g.required_features()))
            .copied()
            .collect();
        // A refused probe first: it is the pod's setup, not the kernel, and
        // the missing features may only look missing because of it.
        let denied: Vec<String> = needs
            .iter()
            .filter_map(|feature| match self.supported.get(feature) {
                Some(Support::Denied { call, error }) => {
                    Some(format!("{feature}: {call}: {error}"))
                }
                _ => None,
            })
            .collect();
        if !denied.is_empty() {
            return Err(format!(
                "permission denied probing what {gadget} needs ({}); the node pod's \
                 capabilities (CAP_BPF, CAP_PERFMON), seccomp profile, SELinux or AppArmor \
                 policy may deny it",
                denied.join(", ")
            ));
        }
        let missing: Vec<String> = needs
            .iter()
            .filter(|feature| self.supported.get(feature) != Some(&Support::Present))
            .map(|feature| format!("{feature} ({})", feature.requirement()))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "this kernel lacks what {gadget} needs: {}",
                missing.join(", ")
            ))
        }
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> std::io::Result<String> {
    // SAFETY: utsname is plain data; uname fills it.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a utsname.
    if unsafe { libc::uname(&mut names) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: uname NUL-terminates every field.
    let release = unsafe { CStr::from_ptr(names.release.as_ptr()) };
    Ok(release.to_string_lossy().into_owned())
}

// From the kernel's uapi <linux/bpf.h>; libc does not carry them.
const BPF_MAP_CREATE: libc::c_int = 0;
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_PROG_TYPE_TRACEPOINT: u32 = 5;
const BPF_FUNC_LOOP: i32 = 181;

/// The leading fields of `union bpf_attr` for `BPF_MAP_CREATE`; the kernel
/// zero-fills the fields past the size it is given.
#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

/// One `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// `bpf(cmd, attr, sizeof(attr))`; the fd it returns, if any.
fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a live repr(C) prefix of union bpf_attr and the size
    // passed is its own; pointers inside it outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            (attr as *mut T).cast::<libc::c_void>(),
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// Creates (and closes) the smallest ring buffer: one page.
fn probe_ringbuf() -> std::io::Result<bool> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let mut attr = MapCreateAttr {
        map_type: BPF_MAP_TYPE_RINGBUF,
        // A ring buffer has no key or value; its size must be a power of two
        // multiple of the page size.
        max_entries: page as u32,
        ..Default::default()
    };
    match bpf(BPF_MAP_CREATE, &mut attr) {
        Ok(_fd) => Ok(true),
        Err(err) if is_permission_error(&err) => Err(err),
        Err(err) => {
            tracing::debug!(error = %err, "ring buffer probe failed");
            Ok(false)
        }
    }
}

/// Whether the kernel's BTF is there and parses. Opened first so that a
/// permission error is told apart from a kernel without BTF.
fn probe_btf() -> std::io::Result<bool> {
    match std::fs::File::open("/sys/kernel/btf/vmlinux") {
        Ok(_) => Ok(aya::Btf::from_sys_fs().is_ok()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Whether a tracepoint program may call helper `helper`.
///
/// Loads `call helper; r0 = 0; exit` with no arguments set up. A kernel that
/// knows the helper rejects it for its arguments; one that does not rejects
/// it at the call with one of the messages below, which is what is checked.
fn probe_helper(helper: i32) -> std::io::Result<bool> {
    let program = [
        // BPF_JMP | BPF_CALL
        Insn {
            code: 0x85,
            regs: 0,
            off: 0,
            imm: helper,
        },
        RETURN_ZERO[0],
        RETURN_ZERO[1],
    ];
    let (err, log) = match load_tracepoint_program(&program) {
        Ok(_fd) => return Ok(true),
        Err(refused) => refused,
    };
    // The verifier rejects with EACCES too, after writing its log; an LSM
    // (SELinux, AppArmor) refuses with EACCES before it runs, and missing
    // capabilities with EPERM.
    if err.raw_os_error() == Some(libc::EPERM) || (is_permission_error(&err) && log.is_empty()) {
        return Err(err);
    }
    // An empty log means the kernel refused before the verifier ran: unknown.
    Ok(!log.is_empty() && !helper_unknown_to_verifier(&log))
}

/// `r0 = 0; exit`: the smallest program the verifier accepts.
const RETURN_ZERO: [Insn; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K, r0 = 0
    Insn {
        code: 0xb7,
        regs: 0,
        off: 0,
        imm: 0,
    },
    // BPF_JMP | BPF_EXIT
    Insn {
        code: 0x95,
        regs: 0,
        off: 0,
        imm: 0,
    },
];

/// Loads (and closes) a tracepoint program that only returns: what every
/// gadget does first. A permission error is the caller's (CAP_PERFMON
/// missing, seccomp, an LSM); any other refusal means the kernel cannot
/// run tracepoint programs.
fn probe_tracepoint_program() -> std::io::Result<bool> {
    match load_tracepoint_program(&RETURN_ZERO) {
        Ok(_fd) => Ok(true),
        Err((err, _)) if is_permission_error(&err) => Err(err),
        Err((err, log)) => {
            tracing::debug!(error = %err, log, "tracepoint program probe failed");
            Ok(false)
        }
    }
}

/// `BPF_PROG_LOAD` of `program` as a GPL tracepoint program; the error and
/// the verifier's log when refused.
fn load_tracepoint_program(program: &[Insn]) -> Result<OwnedFd, (std::io::Error, String)> {
    let license = c"GPL";
    let mut log = vec![0u8; 4096];
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_TRACEPOINT,
        insn_cnt: program.len() as u32,
        insns: program.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_PROG_LOAD, &mut attr).map_err(|err| {
        let log = CStr::from_bytes_until_nul(&log).map_or(&[][..], |s| s.to_bytes());
        (err, String::from_utf8_lossy(log).into_owned())
    })
}

/// The verifier's words for a call to a helper it does not offer: an id past
/// the kernel's list ("invalid func"), or one the program type may not call
/// ("unknown func" before Linux 5.15, "cannot use helper" since).
fn helper_unknown_to_verifier(log: &str) -> bool {
    log.contains("invalid func ")
        || log.contains("unknown func ")
        || log.contains("program of this type cannot use helper ")
}

/// Whether `bpf` is among the active LSMs.
fn bpf_lsm_active() -> std::io::Result<bool> {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) => Ok(list.trim().split(',').any(|lsm| lsm == "bpf")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_exec_needs_bpf_loop_and_says_so() {
        let features =
            KernelFeatures::with(&[Feature::TracepointPrograms, Feature::RingBuf, Feature::Btf]);
        assert_eq!(
            features.gadget_availability(gadget_proto::TRACE_OPEN),
            Ok(())
        );
        let reason = features
            .gadget_availability(gadget_proto::TRACE_EXEC)
            .unwrap_err();
        assert!(reason.contains("bpf_loop"), "{reason}");
        assert!(reason.contains("5.17"), "{reason}");
    }

    #[test]
    fn every_gadget_needs_a_ring_buffer() {
        let features =
            KernelFeatures::with(&[Feature::TracepointPrograms, Feature::Btf, Feature::BpfLoop]);
        for gadget in crate::gadgets::names() {
            let reason = features.gadget_availability(gadget).unwrap_err();
            assert!(reason.contains("ringbuf"), "{gadget}: {reason}");
        }
    }

    #[test]
    fn permission_errors_are_denied_not_missing() {
        for errno in [libc::EPERM, libc::EACCES] {
            let support = Support::from_probe(
                "bpf(BPF_MAP_CREATE)",
                Err(std::io::Error::from_raw_os_error(errno)),
            );
            let Support::Denied { call, error } = &support else {
                panic!("errno {errno}: {support:?}");
            };
            assert_eq!(*call, "bpf(BPF_MAP_CREATE)");
            assert!(error.contains(&format!("os error {errno}")), "{error}");
        }
        let other = Support::from_probe(
            "bpf(BPF_MAP_CREATE)",
            Err(std::io::Error::from_raw_os_error(libc::EINVAL)),
        );
        assert_eq!(other, Support::Missing);
        assert_eq!(Support::from_probe("x", Ok(true)), Support::Present);
        assert_eq!(Support::from_probe("x", Ok(false)), Support::Missing);
    }

    #[test]
    fn a_denied_probe_is_reported_as_a_permission_error() {
        let features = KernelFeatures::with_support([
            (
                Feature::RingBuf,
                Support::from_probe(
                    "bpf(BPF_MAP_CREATE)",
                    Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                ),
            ),
            (Feature::TracepointPrograms, Support::Present),
            (Feature::Btf, Support::Present),
            (Feature::BpfLoop, Support::Present),
        ]);
        assert!(!features.supports(Feature::RingBuf));
        assert!(!features.any_gadget_available());
        let reason = features
            .gadget_availability(gadget_proto::TRACE_OPEN)
            .unwrap_err();
        assert!(reason.starts_with("permission denied"), "{reason}");
        assert!(reason.contains("bpf(BPF_MAP_CREATE)"), "{reason}");
        assert!(reason.contains("Operation not permitted"), "{reason}");
        assert!(reason.contains("SELinux or AppArmor"), "{reason}");
        assert!(!reason.contains("lacks"), "{reason}");
    }

    /// A pod with CAP_BPF but not CAP_PERFMON creates maps but may not load
    /// tracepoint programs: no gadget is available, and the reason is the
    /// refused load, so the pod is not Ready instead of failing every trace.
    #[test]
    fn a_refused_tracepoint_program_makes_every_gadget_unavailable() {
        let features = KernelFeatures::with_support([
            (
                Feature::TracepointPrograms,
                Support::from_probe(
                    "bpf(BPF_PROG_LOAD)",
                    Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                ),
            ),
            (Feature::RingBuf, Support::Present),
            (Feature::Btf, Support::Present),
            (Feature::BpfLoop, Support::Present),
        ]);
        assert!(!features.any_gadget_available());
        for gadget in crate::gadgets::names() {
            let reason = features.gadget_availability(gadget).unwrap_err();
            assert!(reason.starts_with("permission denied"), "{reason}");
            assert!(
                reason.contains("tracepoint_prog: bpf(BPF_PROG_LOAD)"),
                "{reason}"
            );
        }
    }

    #[test]
    fn every_feature_is_reported() {
        let features = KernelFeatures::with(&[]);
        let names: Vec<&str> = features.iter().map(|(f, _)| f.name()).collect();
        assert_eq!(
            names,
            ["tracepoint_prog", "ringbuf", "btf", "bpf_loop", "lsm"]
        );
    }

    #[test]
    fn verifier_messages_for_missing_helpers() {
        assert!(helper_unknown_to_verifier(
            "0: (85) call unknown#181\ninvalid func unknown#181\n"
        ));
        assert!(helper_unknown_to_verifier("unknown func bpf_loop#181\n"));
        assert!(!helper_unknown_to_verifier(
            "0: (85) call bpf_loop#181\nR1 !read_ok\n"
        ));
    }

    #[test]
    fn kernel_release_is_uname_r() {
        let release = kernel_release().unwrap();
        let proc = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(release, proc.trim());
    }

    // The probes against the real kernel (CI runs as root on Linux 5.17+,
    // where every probed gadget feature exists).
    #[test]
    fn probes_find_tracepoint_programs_ringbuf_btf_and_bpf_loop() {
        let features = KernelFeatures::detect();
        assert!(
            features.supports(Feature::TracepointPrograms),
            "{features:?}"
        );
        assert!(features.supports(Feature::RingBuf), "{features:?}");
        assert!(features.supports(Feature::Btf), "{features:?}");
        assert!(features.supports(Feature::BpfLoop), "{features:?}");
    }

    #[test]
    fn helper_probe_refuses_a_helper_that_does_not_exist() {
        // Sanity check of the probe itself: an id far past any kernel's list.
        assert!(!probe_helper(100_000).unwrap());
        // bpf_get_current_pid_tgid (14) exists on every kernel with BPF.
        assert!(probe_helper(14).unwrap());
        // bpf_skb_store_bytes (9) exists, but not for tracepoint programs.
        assert!(!probe_helper(9).unwrap());
    }
}
