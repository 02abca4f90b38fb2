//! Loading a gadget's programs and attaching them to their hooks, whatever
//! the kind of hook.

use aya::programs::{BtfTracePoint, Program, ProgramError, RawTracePoint, TracePoint, UProbe};
use aya::{Btf, Ebpf};

use crate::gadgets::{AttachPoint, AttachTarget};

/// A program could not be loaded, or could not be attached to a hook the
/// trace needs.
#[derive(Debug, thiserror::Error)]
pub struct AttachError {
    /// The program.
    pub program: &'static str,
    /// Its hook.
    pub target: AttachTarget,
    /// What aya said, verifier log included (boxed: aya's errors are large
    /// and every `Result` in the load path would carry them).
    #[source]
    pub source: Box<ProgramError>,
}

impl std::fmt::Display for AttachError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "attaching {} to {}: ", self.program, self.target)?;
        match &*self.source {
            // Refused before the verifier ran (EPERM for a missing
            // capability, EACCES from an LSM): aya's "Verifier output: "
            // would end on nothing; the call and its errno say it all.
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } if verifier_log.to_string().trim().is_empty() => {
                write!(f, "bpf(BPF_PROG_LOAD): {io_error}")
            }
            source => write!(f, "{source}"),
        }
    }
}

/// Loads each program of `points` from `ebpf` and attaches it to its hook;
/// returns the kernel ids of the programs attached.
///
/// A hook this kernel lacks (or, for a uprobe, a file or symbol this node
/// lacks) fails only a required point; for an optional one a warning is
/// pushed to `warnings` and the program stays detached. A program the
/// kernel refuses (the verifier, a section of another kind than its
/// target) is an error either way. Kernel BTF is read once per call, and
/// only for BTF tracepoints.
///
/// The links live as long as `ebpf`: dropping it detaches everything.
///
/// # Examples
///
/// ```no_run
/// use gadget_node::gadgets::{AttachPoint, AttachTarget};
/// use gadget_node::trace::attach_programs;
///
/// // In the C file: SEC("raw_tp/sched_switch") int raw_tp__sched_switch(...)
/// const POINTS: &[AttachPoint] = &[AttachPoint {
///     program: "raw_tp__sched_switch",
///     target: AttachTarget::RawTracepoint { name: "sched_switch" },
///     required: true,
/// }];
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut ebpf = aya::Ebpf::load_file("switches.bpf.o")?;
/// let mut warnings = Vec::new();
/// let program_ids = attach_programs(&mut ebpf, POINTS, &mut warnings)?;
/// # Ok(())
/// # }
/// ```
pub fn attach_programs(
    ebpf: &mut Ebpf,
    points: &[AttachPoint],
    warnings: &mut Vec<String>,
) -> Result<Vec<u32>, AttachError> {
    let mut btf = None;
    let mut ids = Vec::new();
    for point in in_attach_order(points) {
        let fail = |source| AttachError {
            program: point.program,
            target: point.target,
            source: Box::new(source),
        };
        let program = ebpf
            .program_mut(point.program)
            .ok_or_else(|| fail(ProgramError::NotLoaded))?;
        match load_and_attach(program, point.target, &mut btf) {
            Ok(()) => {}
            Err(Refused::Program(err)) => return Err(fail(err)),
            Err(Refused::Hook(err)) if point.required => return Err(fail(err)),
            Err(Refused::Hook(_)) => {
                warnings.push(unavailable(&point.target));
                continue;
            }
        }
        if let Ok(info) = program.info() {
            ids.push(info.id());
        }
    }
    Ok(ids)
}

/// `points`, the syscall exits first. A gadget keeps a syscall's
/// arguments from its entry to its exit, by thread; an entry that fired
/// before its exit's program was attached would leave its arguments there
/// for the thread's next exit of that syscall, and a next entry that the
/// kernel filters out does not overwrite them: that exit would report the
/// old arguments with the new result. With every exit attached first, each
/// entry recorded has its exit.
fn in_attach_order(points: &[AttachPoint]) -> impl Iterator<Item = &AttachPoint> {
    let (exits, others): (Vec<_>, Vec<_>) = points
        .iter()
        .partition(|point| point.target.is_syscall_exit());
    exits.into_iter().chain(others)
}

/// The warning for an optional hook that cannot be found.
fn unavailable(target: &AttachTarget) -> String {
    let place = match target {
        AttachTarget::Uprobe { .. } => "node",
        _ => "kernel",
    };
    format!("{target} is not available on this {place}, its events are not traced")
}

/// Why one program is not attached.
enum Refused {
    /// The program itself: fatal whether its point is required or not.
    Program(ProgramError),
    /// Its hook is missing, or would not take it.
    Hook(ProgramError),
}

/// Loads `program` as the kind `target` needs and attaches it there.
/// `btf` is the kernel's BTF, read on first need.
fn load_and_attach(
    program: &mut Program,
    target: AttachTarget,
    btf: &mut Option<Btf>,
) -> Result<(), Refused> {
    match target {
        AttachTarget::Tracepoint { category, name } => {
            let program: &mut TracePoint = program.try_into().map_err(Refused::Program)?;
            program.load().map_err(Refused::Program)?;
            program.attach(category, name).map_err(Refused::Hook)?;
        }
        AttachTarget::RawTracepoint { name } => {
            let program: &mut RawTracePoint = program.try_into().map_err(Refused::Program)?;
            program.load().map_err(Refused::Program)?;
            program.attach(name).map_err(Refused::Hook)?;
        }
        AttachTarget::BtfTracepoint { name } => {
            let program: &mut BtfTracePoint = program.try_into().map_err(Refused::Program)?;
            let btf = match btf {
                Some(btf) => btf,
                slot @ None => {
                    let read = Btf::from_sys_fs().map_err(|err| Refused::Hook(err.into()))?;
                    slot.insert(read)
                }
            };
            // The hook's type is looked up in the kernel's BTF at load: a
            // tracepoint this kernel lacks fails here, not at attach.
            program.load(name, btf).map_err(|err| match err {
                ProgramError::Btf(_) => Refused::Hook(err),
                err => Refused::Program(err),
            })?;
            program.attach().map_err(Refused::Hook)?;
        }
        AttachTarget::Uprobe { binary, symbol } => {
            let program: &mut UProbe = program.try_into().map_err(Refused::Program)?;
            program.load().map_err(Refused::Program)?;
            // Every process that maps the file, from the symbol's first
            // instruction.
            program
                .attach(Some(symbol), 0, binary, None)
                .map_err(Refused::Hook)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gadgets::syscall_tracepoint;

    #[test]
    fn syscall_exits_are_attached_before_anything_else() {
        let sched = AttachPoint {
            program: "tracepoint__sched__sched_process_exit",
            target: AttachTarget::Tracepoint {
                category: "sched",
                name: "sched_process_exit",
            },
            required: true,
        };
        let points = [
            syscall_tracepoint!("sys_enter_openat", required = true),
            syscall_tracepoint!("sys_exit_openat", required = true),
            sched,
            syscall_tracepoint!("sys_enter_read", required = true),
            syscall_tracepoint!("sys_exit_read", required = true),
        ];
        let order: Vec<&str> = in_attach_order(&points)
            .map(|point| point.program)
            .collect();
        assert_eq!(
            order,
            [
                "tracepoint__syscalls__sys_exit_openat",
                "tracepoint__syscalls__sys_exit_read",
                "tracepoint__syscalls__sys_enter_openat",
                "tracepoint__sched__sched_process_exit",
                "tracepoint__syscalls__sys_enter_read",
            ]
        );
    }

    fn load_error(errno: i32, log: &str) -> AttachError {
        AttachError {
            program: "tracepoint__syscalls__sys_enter_openat",
            target: AttachTarget::Tracepoint {
                category: "syscalls",
                name: "sys_enter_openat",
            },
            source: Box::new(ProgramError::LoadError {
                io_error: std::io::Error::from_raw_os_error(errno),
                verifier_log: aya_obj::VerifierLog::new(log.to_string()),
            }),
        }
    }

    #[test]
    fn a_load_refused_before_the_verifier_names_the_call_and_errno() {
        let message = load_error(libc::EPERM, "").to_string();
        assert_eq!(
            message,
            "attaching tracepoint__syscalls__sys_enter_openat to syscalls/sys_enter_openat: \
             bpf(BPF_PROG_LOAD): Operation not permitted (os error 1)"
        );
    }

    #[test]
    fn a_load_the_verifier_refused_keeps_its_log() {
        let message = load_error(libc::EACCES, "R1 invalid mem access 'scalar'\n").to_string();
        assert!(
            message.contains("R1 invalid mem access 'scalar'"),
            "{message}"
        );
    }
}
