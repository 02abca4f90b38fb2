//! The gadgets this node can run, and what every gadget provides.
//!
//! A gadget `<name>` lives in:
//! - `gadget-ebpf/src/bpf/<name>.bpf.c`, its kernel program, and
//!   `gadget-ebpf/src/bpf/<name>.h`, only what crosses to userspace (the
//!   event struct, its sizes and flags) with the list of it in
//!   `<NAME>_LAYOUT(STRUCT, FIELD, CONST)`. gadget-ebpf compiles every program
//!   and dumps the layout of every list without being told about either.
//! - one module here, `src/gadgets/<name>.rs`: its `record` section mirrors
//!   the event (`#[repr(C)]` header, constants, a `parse` that checks every
//!   record before trusting it) and ties the mirror to the C struct in a unit
//!   test ([`gadget_ebpf::assert_layout!`]); the rest validates the
//!   parameters, sets the gadget's per-trace constants and loads its object
//!   (`object`), names the hooks it attaches to ([`AttachPoint`]), and turns
//!   its ring-buffer records into events.
//! - a line in [`GADGETS`].
//!
//! The rest (loading, attaching, the common filters, the ring buffer,
//! identity, loss accounting) is shared by the trace runtime; the process
//! part every event starts with is [`gadget_ebpf::ProcessRecord`].

use aya::{Ebpf, EbpfError, EbpfLoader};
use bytes::Bytes;
use gadget_ebpf::MalformedRecord;
use gadget_proto::v1;

use crate::features::Feature;

pub mod trace_exec;
pub mod trace_file;
pub mod trace_open;

/// Every gadget this node knows, by name.
pub static GADGETS: &[&dyn KernelGadget] = &[
    &trace_open::TraceOpen,
    &trace_exec::TraceExec,
    &trace_file::TraceFile,
];

/// The gadget called `name`.
pub fn find(name: &str) -> Option<&'static dyn KernelGadget> {
    GADGETS.iter().copied().find(|g| g.name() == name)
}

/// Names of all gadgets, for error messages.
pub fn names() -> Vec<&'static str> {
    GADGETS.iter().map(|g| g.name()).collect()
}

/// A request's parameters that a gadget cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidParams(pub String);

/// A kind of gadget.
pub trait KernelGadget: Send + Sync {
    /// The name clients ask for (`trace_open`).
    fn name(&self) -> &'static str;
    /// Checks the request's parameters; nothing touches the kernel yet.
    fn prepare(
        &self,
        params: Option<&v1::run_gadget_request::Params>,
    ) -> Result<Box<dyn PreparedGadget>, InvalidParams>;
    /// What the kernel must offer beyond what every gadget needs (ring
    /// buffer, BTF); a node without it reports the gadget unavailable.
    fn required_features(&self) -> &'static [Feature] {
        &[]
    }
}

/// A program of a gadget and the hook it attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachPoint {
    /// Program (function) name in the object.
    pub program: &'static str,
    /// Where it attaches.
    pub target: AttachTarget,
    /// A missing optional hook (`sys_enter_open` does not exist on arm64) is
    /// a warning; a missing required one fails the trace.
    pub required: bool,
}

/// A hook a program attaches to; the program's section in the C file must
/// be of the same kind.
///
/// Displayed the way libbpf section names write it
/// (`syscalls/sys_enter_openat`, `raw_tp/sched_switch`,
/// `tp_btf/sched_switch`, `uprobe//usr/lib/libc.so.6:getpid`), the
/// tracepoint without its `tracepoint/` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachTarget {
    /// A tracepoint (`SEC("tracepoint/<category>/<name>")`): its arguments
    /// in the layout tracefs describes.
    Tracepoint {
        /// Tracepoint category (`syscalls`, `sched`).
        category: &'static str,
        /// Tracepoint name.
        name: &'static str,
    },
    /// A raw tracepoint (`SEC("raw_tp/<name>")`): the tracepoint's arguments
    /// as the kernel passes them, untyped (Linux 4.17).
    RawTracepoint {
        /// Tracepoint name, without category (`sched_switch`, `sys_enter`).
        name: &'static str,
    },
    /// A BTF-typed raw tracepoint (`SEC("tp_btf/<name>")`): the same
    /// arguments, typed and readable directly (Linux 5.5). Its type is found
    /// in the kernel's BTF when it is loaded.
    BtfTracepoint {
        /// Tracepoint name, without category.
        name: &'static str,
    },
    /// The entry of a function in an ELF file (`SEC("uprobe")`), in every
    /// process that maps the file.
    Uprobe {
        /// The file: an absolute path, or a library name (`libc`) looked up
        /// in the dynamic linker's cache.
        binary: &'static str,
        /// The function's symbol.
        symbol: &'static str,
    },
}

impl AttachTarget {
    /// Whether the hook is a syscall's exit: the `sys_exit_<name>`
    /// tracepoint, or the raw `sys_exit` that every syscall passes.
    pub fn is_syscall_exit(&self) -> bool {
        match self {
            AttachTarget::Tracepoint { category, name } => {
                *category == "syscalls" && name.starts_with("sys_exit_")
            }
            AttachTarget::RawTracepoint { name } | AttachTarget::BtfTracepoint { name } => {
                *name == "sys_exit"
            }
            AttachTarget::Uprobe { .. } => false,
        }
    }
}

impl std::fmt::Display for AttachTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttachTarget::Tracepoint { category, name } => write!(f, "{category}/{name}"),
            AttachTarget::RawTracepoint { name } => write!(f, "raw_tp/{name}"),
            AttachTarget::BtfTracepoint { name } => write!(f, "tp_btf/{name}"),
            AttachTarget::Uprobe { binary, symbol } => write!(f, "uprobe/{binary}:{symbol}"),
        }
    }
}

/// A gadget with validated parameters, ready to load.
pub trait PreparedGadget: Send + Sync {
    /// The gadget's name.
    fn name(&self) -> &'static str;
    /// Sets the gadget's own constants on a loader that has the common ones,
    /// and loads its object.
    fn load<'a>(&'a self, loader: &mut EbpfLoader<'a>) -> Result<Ebpf, EbpfError>;
    /// Where its programs attach.
    fn attach_points(&self) -> &'static [AttachPoint];
    /// Decodes one record (a slice of the batch buffer: byte fields of the
    /// event are slices of it, not copies) into `event`'s process and kind.
    /// The timestamp is left in boot-time nanoseconds for the caller.
    fn decode(&self, record: &Bytes, event: &mut v1::Event) -> Result<(), MalformedRecord>;
    /// The gadget's own loss counters, beside the common `lost_events`
    /// (which counts records a full ring buffer refused).
    fn loss_counters(&self) -> &'static [LossCounter] {
        &[]
    }
}

/// A gadget's per-CPU counter (a `BPF_MAP_TYPE_PERCPU_ARRAY` of one `u64`)
/// of what it could not do, such as a map insert that failed because the
/// map was full; the trace reports its growth as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossCounter {
    /// The map's name in the object.
    pub map: &'static str,
    /// What it counts, for the warning (`file operations not followed: a
    /// kernel map was full`).
    pub what: &'static str,
}

/// The compiled program of the gadget called `name`
/// (`gadget-ebpf/src/bpf/<name>.bpf.c`).
///
/// # Panics
/// If there is no such program; `every_gadget_has_its_program` checks that
/// each gadget in [`GADGETS`] has one.
pub(crate) fn object(name: &str) -> &'static [u8] {
    gadget_ebpf::object(name).unwrap_or_else(|| panic!("gadget-ebpf has no program {name}.bpf.c"))
}

/// The process part every record starts with (`struct process_record` at
/// offset 0).
pub(crate) fn process_from(record: &Bytes, p: &gadget_ebpf::ProcessRecord) -> v1::Process {
    v1::Process {
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        comm: kernel_string_at(
            record,
            std::mem::offset_of!(gadget_ebpf::ProcessRecord, comm),
            &p.comm,
        ),
        mntns_id: p.mntns_id,
        cgroup_id: p.cgroup_id,
    }
}

/// The NUL-padded string `field` (a copy of the record's bytes at `offset`)
/// as a slice of the record: no allocation per event.
pub(crate) fn kernel_string_at(record: &Bytes, offset: usize, field: &[u8]) -> Bytes {
    let len = gadget_ebpf::trim_nul(field).len();
    record.slice(offset..offset + len)
}

/// Declares the program attached to `syscalls/<name>`, named after its hook.
macro_rules! syscall_tracepoint {
    ($name:literal, required = $required:expr) => {
        $crate::gadgets::AttachPoint {
            program: concat!("tracepoint__syscalls__", $name),
            target: $crate::gadgets::AttachTarget::Tracepoint {
                category: "syscalls",
                name: $name,
            },
            required: $required,
        }
    };
}
pub(crate) use syscall_tracepoint;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gadget_has_its_program() {
        for gadget in GADGETS {
            assert!(
                gadget_ebpf::object(gadget.name()).is_some(),
                "no gadget-ebpf/src/bpf/{}.bpf.c",
                gadget.name()
            );
        }
    }
}
