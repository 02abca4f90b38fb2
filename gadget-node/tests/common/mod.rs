//! Shared by the kernel tests: workloads in forked children that wait until
//! the trace is attached, and collecting a trace's events.
//!
//! The test process has many threads, so a forked child may only make raw
//! syscalls (no allocation, no locks): everything it needs is prepared
//! before the fork.

#![allow(dead_code)]

pub mod cgroups;
pub mod pods;
pub mod uring;

use std::ffi::CString;
use std::time::{Duration, Instant};

use gadget_proto::v1;
use tokio::sync::mpsc;

/// A forked child that waits for `release` before running its workload.
pub struct PausedChild {
    pub pid: u32,
    go_write: libc::c_int,
    reaped: bool,
}

/// Forks a child that blocks until released, then runs `workload` (which
/// must only make raw syscalls) and exits with what it returns.
pub fn fork_paused(workload: impl FnOnce() -> i32) -> PausedChild {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls on valid pointers.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            libc::close(fds[1]);
            let mut byte = 0u8;
            libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
            libc::close(fds[0]);
            let code = workload();
            libc::_exit(code);
        }
        libc::close(fds[0]);
        PausedChild {
            pid: pid as u32,
            go_write: fds[1],
            reaped: false,
        }
    }
}

impl PausedChild {
    /// Lets the workload run.
    pub fn release(&self) {
        // SAFETY: writing one byte to our pipe end.
        unsafe {
            assert_eq!(libc::write(self.go_write, b"g".as_ptr().cast(), 1), 1);
        }
    }

    /// Waits for the child and returns its exit code.
    pub fn wait(&mut self) -> i32 {
        let status = self.wait_status();
        assert!(
            libc::WIFEXITED(status),
            "child did not exit normally: {status:#x}"
        );
        libc::WEXITSTATUS(status)
    }

    /// Waits for the child and returns its wait status, however it ended.
    pub fn wait_status(&mut self) -> i32 {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
        assert_eq!(rc, self.pid as i32, "waitpid");
        self.reaped = true;
        status
    }
}

impl Drop for PausedChild {
    fn drop(&mut self) {
        // SAFETY: our pipe end; our child.
        unsafe {
            libc::close(self.go_write);
            if !self.reaped {
                libc::kill(self.pid as i32, libc::SIGKILL);
                libc::waitpid(self.pid as i32, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// A C string for the child, prepared before the fork.
pub fn cstr(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Everything a trace sent until `done` says enough arrived or `limit`
/// passed: events (with the batch's workloads resolved) and the last status.
#[derive(Default, Debug)]
pub struct Collected {
    pub events: Vec<(v1::Event, Option<v1::Workload>)>,
    pub status: v1::TraceStatus,
    pub warnings: Vec<String>,
}

impl Collected {
    pub fn opens(&self) -> Vec<&v1::OpenEvent> {
        self.events
            .iter()
            .filter_map(|(e, _)| match &e.kind {
                Some(v1::event::Kind::Open(open)) => Some(open),
                _ => None,
            })
            .collect()
    }

    pub fn execs(&self) -> Vec<(&v1::Event, &v1::ExecEvent)> {
        self.events
            .iter()
            .filter_map(|(e, _)| match &e.kind {
                Some(v1::event::Kind::Exec(exec)) => Some((e, exec)),
                _ => None,
            })
            .collect()
    }
}

pub async fn collect(
    rx: &mut mpsc::Receiver<v1::RunGadgetResponse>,
    limit: Duration,
    done: impl Fn(&Collected) -> bool,
) -> Collected {
    let mut got = Collected::default();
    let deadline = Instant::now() + limit;
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(message)) => absorb(&mut got, message),
            Ok(None) | Err(_) => break,
        }
    }
    got
}

/// Waits for the first status (the gadget is attached).
pub async fn wait_started(rx: &mut mpsc::Receiver<v1::RunGadgetResponse>) -> Collected {
    let got = collect(rx, Duration::from_secs(10), |c| c.status.started).await;
    assert!(got.status.started, "trace did not report started");
    got
}

pub fn absorb(got: &mut Collected, message: v1::RunGadgetResponse) {
    match message.kind {
        Some(v1::run_gadget_response::Kind::Events(batch)) => {
            for event in batch.events {
                let workload = match event.workload {
                    0 => None,
                    n => Some(batch.workloads[n as usize - 1].clone()),
                };
                got.events.push((event, workload));
            }
        }
        Some(v1::run_gadget_response::Kind::Status(status)) => {
            got.warnings.extend(status.warnings.iter().cloned());
            let started = got.status.started || status.started;
            got.status = status;
            got.status.started = started;
        }
        None => {}
    }
}

/// Whether a kernel program with this id is still loaded.
pub fn program_loaded(id: u32) -> bool {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .any(|info| info.id() == id)
}

/// Waits (at most 5 s) until none of `ids` is loaded. The kernel frees a
/// program after its last reference goes, and a tracepoint's perf event
/// drops its reference asynchronously, so "unloaded" is polled for.
pub async fn wait_unloaded<'a>(ids: impl IntoIterator<Item = &'a u32>) {
    let ids: Vec<u32> = ids.into_iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = ids
            .iter()
            .copied()
            .filter(|id| program_loaded(*id))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} are still loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request for `gadget` on the host's processes (no container selection),
/// limited to one pid unless `pid` is None.
pub fn host_request(
    gadget: &str,
    params: Option<v1::run_gadget_request::Params>,
    pid: Option<u32>,
) -> v1::RunGadgetRequest {
    v1::RunGadgetRequest {
        protocol_version: gadget_proto::PROTOCOL_VERSION,
        gadget: gadget.to_string(),
        selector: Some(v1::ContainerSelector {
            include_host: true,
            ..Default::default()
        }),
        filter: Some(v1::ProcessFilter { pid, uid: None }),
        params,
        timeout_seconds: 0,
        ring_buffer_bytes: 0,
    }
}

/// A pipe the child writes its results into (raw i64s), read by the test.
pub struct ResultPipe {
    read: libc::c_int,
    pub write: libc::c_int,
}

impl ResultPipe {
    pub fn new() -> Self {
        let mut fds = [0; 2];
        // SAFETY: valid pointer.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        ResultPipe {
            read: fds[0],
            write: fds[1],
        }
    }

    /// In the child: sends one value.
    pub fn send(write: libc::c_int, value: i64) {
        // SAFETY: a raw write of 8 bytes from the stack.
        unsafe { libc::write(write, (&value as *const i64).cast(), 8) };
    }

    /// In the parent, after the child exited: every value it sent.
    pub fn values(self) -> Vec<i64> {
        // SAFETY: our fds.
        unsafe { libc::close(self.write) };
        let mut out = Vec::new();
        loop {
            let mut value = 0i64;
            // SAFETY: reading 8 bytes into the stack.
            let n = unsafe { libc::read(self.read, (&mut value as *mut i64).cast(), 8) };
            if n != 8 {
                break;
            }
            out.push(value);
        }
        // SAFETY: our fd.
        unsafe { libc::close(self.read) };
        out
    }
}

/// The value of errno after a failed raw syscall, in the child.
pub fn errno() -> i64 {
    // SAFETY: thread-local errno location.
    unsafe { *libc::__errno_location() as i64 }
}

/// Collects until `done` (at most 5 s), then for a short while more, so that
/// an event that should not be there has the time to show up: the reader
/// drains the ring buffer every DRAIN_INTERVAL.
pub async fn collect_settled(
    rx: &mut mpsc::Receiver<v1::RunGadgetResponse>,
    done: impl Fn(&Collected) -> bool,
) -> Collected {
    let mut got = collect(rx, Duration::from_secs(5), done).await;
    let settle = gadget_node::trace::DRAIN_INTERVAL * 6;
    let more = collect(rx, settle, |_| false).await;
    got.events.extend(more.events);
    got.warnings.extend(more.warnings);
    got.status.lost_kernel = got.status.lost_kernel.max(more.status.lost_kernel);
    got.status.lost_node = got.status.lost_node.max(more.status.lost_node);
    got.status.malformed = got.status.malformed.max(more.status.malformed);
    got
}

/// Identity from this host's cgroups, without an API server.
pub fn local_identity() -> gadget_node::identity::IdentityResolver {
    let root = gadget_node::cgroup::find_cgroup2_mount().expect("cgroup v2 is mounted");
    gadget_node::identity::IdentityResolver::new(
        gadget_node::cgroup::CgroupResolver::new(root),
        None,
    )
}

/// A gadget whose map `map` holds at most `entries` entries: how the tests
/// fill a kernel map to see that a failed insert is counted.
pub struct SmallMap {
    pub inner: Box<dyn gadget_node::gadgets::PreparedGadget>,
    pub map: &'static str,
    pub entries: u32,
}

impl gadget_node::gadgets::PreparedGadget for SmallMap {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn load<'a>(&'a self, loader: &mut aya::EbpfLoader<'a>) -> Result<aya::Ebpf, aya::EbpfError> {
        loader.set_max_entries(self.map, self.entries);
        self.inner.load(loader)
    }

    fn attach_points(&self) -> &'static [gadget_node::gadgets::AttachPoint] {
        self.inner.attach_points()
    }

    fn decode(
        &self,
        record: &bytes::Bytes,
        event: &mut v1::Event,
    ) -> Result<(), gadget_ebpf::MalformedRecord> {
        self.inner.decode(record, event)
    }

    fn loss_counters(&self) -> &'static [gadget_node::gadgets::LossCounter] {
        self.inner.loss_counters()
    }
}

/// Starts a host trace of `gadget` for processes of `uid`, with the
/// gadget's map `map` cut to one entry (see [`SmallMap`]), once its start
/// status arrived.
pub async fn start_with_one_entry_map(
    gadget: &str,
    uid: u32,
    map: &'static str,
) -> gadget_node::trace::Trace {
    let mut request = host_request(gadget, None, None);
    request.filter.as_mut().unwrap().uid = Some(uid);
    let mut plan = gadget_node::trace::TracePlan::from_proto(&request).unwrap();
    plan.gadget = Box::new(SmallMap {
        inner: plan.gadget,
        map,
        entries: 1,
    });
    let mut trace = gadget_node::trace::start(plan, std::sync::Arc::new(local_identity())).unwrap();
    wait_started(&mut trace.events).await;
    trace
}

/// Waits (at most 10 s) until `pid` is blocked in syscall `nr`, as
/// `/proc/<pid>/syscall` shows.
pub fn wait_in_syscall(pid: u32, nr: libc::c_long) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if now.split(' ').next() == Some(nr.to_string().as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked in syscall {nr}: {now}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A 32-bit syscall through `int 0x80`: the compat entry of a 64-bit
/// kernel. Its arguments are 32-bit, so pointers must be below 4 GiB.
///
/// # Safety
/// A raw syscall; the kernel zeroes r8-r15 on the way back.
#[cfg(target_arch = "x86_64")]
pub unsafe fn int80(nr: u32, a: u32, b: u32, c: u32) -> i32 {
    let ret: i32;
    // rbx is reserved by LLVM: swap the first argument in and out.
    std::arch::asm!(
        "xchg {a}, rbx",
        "int 0x80",
        "xchg {a}, rbx",
        a = inout(reg) u64::from(a) => _,
        inlateout("eax") nr => ret,
        in("ecx") b,
        in("edx") c,
        out("r8") _, out("r9") _, out("r10") _, out("r11") _,
        out("r12") _, out("r13") _, out("r14") _, out("r15") _,
    );
    ret
}
