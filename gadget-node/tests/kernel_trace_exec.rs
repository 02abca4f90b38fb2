//! trace_exec on the real kernel: a forked child execs known programs with
//! known arguments and the events must say exactly that.

mod common;

use std::ffi::CString;
use std::sync::Arc;

use common::{collect_settled, cstr, fork_paused, host_request, wait_started};
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;

fn exec_params(
    ignore_failed: bool,
    max_args: u32,
    max_args_bytes: u32,
) -> Option<v1::run_gadget_request::Params> {
    Some(v1::run_gadget_request::Params::Exec(v1::ExecParams {
        ignore_failed,
        max_args,
        max_args_bytes,
    }))
}

/// argv prepared before the fork: the strings and the NULL-ended array.
struct Argv {
    _strings: Vec<CString>,
    pointers: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into _strings, which live as long as Argv and
// are never written after it is built, so moving it to another thread is sound.
unsafe impl Send for Argv {}

impl Argv {
    fn new(args: &[&[u8]]) -> Argv {
        let strings: Vec<CString> = args
            .iter()
            .map(|a| CString::new(a.to_vec()).unwrap())
            .collect();
        let mut pointers: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(std::ptr::null());
        Argv {
            _strings: strings,
            pointers,
        }
    }
}

/// Traces a child that execs `program` with `args`; returns the exec events.
async fn trace_exec_of(
    params: Option<v1::run_gadget_request::Params>,
    program: &str,
    args: &[&[u8]],
) -> (common::Collected, u32) {
    let program = cstr(program);
    let argv = Argv::new(args);
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    trace_child_execs(params, || unsafe {
        libc::execve(program.as_ptr(), argv.pointers.as_ptr(), env.as_ptr());
        // Only reached when the exec failed.
        0
    })
    .await
}

/// Traces a child that runs `workload` (raw syscalls only); returns the
/// exec events and the child's pid.
async fn trace_child_execs(
    params: Option<v1::run_gadget_request::Params>,
    workload: impl FnOnce() -> i32,
) -> (common::Collected, u32) {
    let mut child = fork_paused(workload);
    let pid = child.pid;
    let request =
        TracePlan::from_proto(&host_request(gadget_proto::TRACE_EXEC, params, Some(pid))).unwrap();
    let mut trace = trace::start(request, Arc::new(common::local_identity())).unwrap();
    wait_started(&mut trace.events).await;
    child.release();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let got = collect_settled(&mut trace.events, |c| !c.execs().is_empty()).await;
    (got, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_exec_has_argv_exe_and_process() {
    let long = vec![b'x'; 1000];
    let args: Vec<&[u8]> = vec![b"true", b"first", b"", b"with space", &long, b"last"];
    let (got, pid) = trace_exec_of(None, "/bin/true", &args).await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(exec.ret, 0);
    assert_eq!(&exec.exe[..], b"/bin/true");
    let got_args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(got_args, args, "every argument, the empty one included");
    assert!(!exec.args_truncated);
    let process = event.process.as_ref().unwrap();
    assert_eq!(process.pid, pid);
    assert_eq!(process.tid, pid);
    assert_eq!(process.ppid, std::process::id());
    assert_eq!(&process.comm[..], b"true", "the new program's comm");
    assert!(!exec.parent_comm.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_exec_reports_the_errno() {
    let (got, pid) = trace_exec_of(None, "/nonexistent/program", &[b"program", b"arg"]).await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(exec.ret, -libc::ENOENT);
    assert_eq!(&exec.exe[..], b"/nonexistent/program");
    let got_args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(got_args, [&b"program"[..], b"arg"]);
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_failed_drops_failed_execs() {
    let (got, _) = trace_exec_of(
        exec_params(true, 0, 0),
        "/nonexistent/program",
        &[b"program"],
    )
    .await;
    assert!(got.execs().is_empty(), "{:#?}", got.events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_arguments_than_the_default_are_cut_and_marked() {
    let owned: Vec<Vec<u8>> = (0..100).map(|i| format!("arg{i}").into_bytes()).collect();
    let args: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    let (got, _) = trace_exec_of(None, "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    assert_eq!(exec.args.len(), 64, "the default keeps 64 arguments");
    assert!(exec.args_truncated);
    let kept: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(kept, args[..64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_bound_keeps_every_argument() {
    let owned: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("argument-{i}").into_bytes())
        .collect();
    let args: Vec<&[u8]> = owned.iter().map(|a| &a[..]).collect();
    let (got, _) = trace_exec_of(exec_params(false, 1024, 32768), "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    let kept: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(kept, args);
    assert!(!exec.args_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_argument_bytes_than_the_bound_are_cut_and_marked() {
    let big = vec![b'y'; 6000];
    let args: Vec<&[u8]> = vec![b"true", b"small", &big, b"after"];
    let (got, _) = trace_exec_of(None, "/bin/true", &args).await;
    let (_, exec) = got.execs()[0];
    assert!(exec.args_truncated);
    assert_eq!(&exec.args[0][..], b"true");
    assert_eq!(&exec.args[1][..], b"small");
    // What fits of the 6000-byte argument within 4096 bytes in all.
    let room = 4096 - "true\0small\0".len() - 1;
    assert_eq!(exec.args.len(), 3);
    assert_eq!(&exec.args[2][..], &big[..room]);
}

/// Regression: `execveat(fd, "", AT_EMPTY_PATH)` of a memfd (a fileless
/// exec) was reported with an empty program name, and compact output then
/// showed `argv[0]`, which the caller chooses. The name is the kernel's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fileless_exec_is_named_by_the_kernel_not_by_argv0() {
    let program = std::fs::read("/bin/true").unwrap();
    // SAFETY: plain syscalls on valid pointers and our own descriptor.
    let memfd = unsafe {
        let fd = libc::memfd_create(c"payload".as_ptr(), 0);
        assert!(fd >= 0);
        assert_eq!(
            libc::write(fd, program.as_ptr().cast(), program.len()),
            program.len() as isize
        );
        fd
    };
    let argv = Argv::new(&[b"/usr/sbin/sshd", b"-D"]);
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the closure runs in the forked child; its libc calls get
    // pointers that outlive them.
    let (got, pid) = trace_child_execs(None, || unsafe {
        libc::execveat(
            memfd,
            c"".as_ptr(),
            argv.pointers.as_ptr().cast(),
            env.as_ptr().cast(),
            libc::AT_EMPTY_PATH,
        );
        3
    })
    .await;
    // SAFETY: our own descriptor.
    unsafe { libc::close(memfd) };
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (event, exec) = execs[0];
    assert_eq!(exec.ret, 0);
    assert_eq!(event.process.as_ref().unwrap().pid, pid);
    assert_eq!(
        String::from_utf8_lossy(&exec.exe),
        format!("/dev/fd/{memfd}"),
        "the name the kernel ran it by"
    );
    assert!(!exec.exe_truncated && !exec.exe_unreadable);
    let args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"/usr/sbin/sshd"[..], b"-D"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_longer_than_the_kernel_keeps_is_marked_truncated() {
    let long = format!("/{}", "a".repeat(5000));
    let (got, _) = trace_exec_of(None, &long, &[b"x"]).await;
    let (_, exec) = got.execs()[0];
    assert_eq!(exec.ret, -libc::ENAMETOOLONG);
    assert!(exec.exe_truncated);
    assert!(!exec.exe_unreadable);
    assert_eq!(&exec.exe[..], &long.as_bytes()[..4095]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_name_is_marked_not_empty() {
    let argv = Argv::new(&[b"x"]);
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the closure runs in the forked child; the bad pointer is the
    // point: the kernel refuses it with EFAULT.
    let (got, _) = trace_child_execs(None, || unsafe {
        libc::execve(
            8 as *const libc::c_char,
            argv.pointers.as_ptr(),
            env.as_ptr(),
        );
        0
    })
    .await;
    let (_, exec) = got.execs()[0];
    assert_eq!(exec.ret, -libc::EFAULT);
    assert!(exec.exe_unreadable);
    assert!(exec.exe.is_empty());
    let args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"x"[..]]);
}

/// A successful exec's arguments are the ones the kernel copied for the new
/// program: a script's interpreter comes first, then the script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_is_reported_with_its_interpreter() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/bin/true -i\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = script.to_str().unwrap();
    let (got, _) = trace_exec_of(None, script, &[b"name", b"arg"]).await;
    let (_, exec) = got.execs()[0];
    assert_eq!(exec.ret, 0);
    assert_eq!(&exec.exe[..], script.as_bytes());
    let args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"/bin/true"[..], b"-i", script.as_bytes(), b"arg"]);
}

/// `struct uffdio_api` and `struct uffdio_register` (linux/userfaultfd.h).
const UFFD_API: u64 = 0xaa;
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;

/// Regression: an exec whose entry could not be stored (the kernel map
/// was full) went uncounted. One exec held in flight fills a map of one
/// entry: its argument is on a page a userfaultfd never fills, so the
/// kernel's copy of it waits. Another process of the same user then execs
/// twice: a failure (which needs the map, so it is counted and not
/// reported) and a success (reported all the same: it needs no map entry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_the_full_map_cannot_follow_is_counted() {
    const UID: u32 = 54_002;
    let set_user = || {
        // SAFETY: a raw syscall in the forked child.
        unsafe { libc::setresuid(UID, UID, UID) == 0 }
    };
    let program = cstr("/bin/true");
    let missing = cstr("/nonexistent/program");
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let argv = Argv::new(&[b"true", b"after-failure"]);
    // SAFETY: the closure runs in the forked child and makes raw syscalls
    // on memory of its own.
    let mut holder = fork_paused(|| unsafe {
        let uffd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) as libc::c_int;
        let mut api = [UFFD_API, 0, 0];
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        let mut register = [page as u64, 4096, UFFDIO_REGISTER_MODE_MISSING, 0];
        if uffd < 0
            || libc::ioctl(uffd, UFFDIO_API, api.as_mut_ptr()) != 0
            || page == libc::MAP_FAILED
            || libc::ioctl(uffd, UFFDIO_REGISTER, register.as_mut_ptr()) != 0
            || !set_user()
        {
            return 2;
        }
        let held_argv: [*const libc::c_char; 2] = [page.cast(), std::ptr::null()];
        libc::execve(program.as_ptr(), held_argv.as_ptr(), env.as_ptr());
        3
    });
    // SAFETY: as above.
    let mut execer = fork_paused(|| unsafe {
        if !set_user() {
            return 2;
        }
        libc::execve(missing.as_ptr(), argv.pointers.as_ptr(), env.as_ptr());
        libc::execve(program.as_ptr(), argv.pointers.as_ptr(), env.as_ptr());
        3
    });
    let mut trace = common::start_with_one_entry_map(
        gadget_proto::TRACE_EXEC,
        UID,
        gadget_node::gadgets::trace_exec::EXEC_STARTS_MAP,
    )
    .await;

    holder.release();
    common::wait_in_syscall(holder.pid, libc::SYS_execve);
    execer.release();
    let execer_pid = execer.pid;
    assert_eq!(
        tokio::task::spawn_blocking(move || execer.wait())
            .await
            .unwrap(),
        0,
        "/bin/true ran"
    );
    // SAFETY: our own child.
    unsafe { libc::kill(holder.pid as i32, libc::SIGKILL) };
    tokio::task::spawn_blocking(move || holder.wait_status())
        .await
        .unwrap();

    let got = collect_settled(&mut trace.events, |c| {
        !c.execs().is_empty() && !c.warnings.is_empty()
    })
    .await;
    let execer_execs: Vec<&v1::ExecEvent> = got
        .execs()
        .into_iter()
        .filter(|(e, _)| e.process.as_ref().unwrap().pid == execer_pid)
        .map(|(_, exec)| exec)
        .collect();
    assert_eq!(execer_execs.len(), 1, "{:#?}", got.events);
    assert_eq!(execer_execs[0].ret, 0, "the failure could not be followed");
    let args: Vec<&[u8]> = execer_execs[0].args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"true"[..], b"after-failure"]);
    assert_eq!(
        got.warnings.last().map(String::as_str),
        Some("execs not followed because a kernel map was full (a failed one goes unreported): 2 so far"),
        "{:?}",
        got.status
    );
}

/// A 32-bit execve through `int 0x80` passes no syscall tracepoint (the
/// kernel emits none for compat syscalls), but its success passes
/// sched_process_exec, where the program and its arguments are the kernel's:
/// it is reported. (Its failure would not be.)
#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_bit_exec_that_succeeds_is_reported() {
    // i386 execve (arch/x86/entry/syscalls/syscall_32.tbl).
    const EXECVE_32: u32 = 11;
    // SAFETY: the closure runs in the forked child and makes raw syscalls
    // on memory of its own.
    let (got, _) = trace_child_execs(None, || unsafe {
        // Everything a 32-bit pointer reaches: below 4 GiB.
        let low = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        );
        if low == libc::MAP_FAILED {
            return 2;
        }
        let low = low.cast::<u8>();
        let strings: [&[u8]; 2] = [b"/bin/true\0", b"compat-arg\0"];
        let (path, arg) = (low.add(256), low.add(512));
        std::ptr::copy_nonoverlapping(strings[0].as_ptr(), path, strings[0].len());
        std::ptr::copy_nonoverlapping(strings[1].as_ptr(), arg, strings[1].len());
        // argv and envp: arrays of 32-bit pointers, NULL-ended.
        let argv = low.cast::<u32>();
        argv.write(path as u32);
        argv.add(1).write(arg as u32);
        argv.add(2).write(0);
        let envp = argv.add(3);
        envp.write(0);
        common::int80(EXECVE_32, path as u32, argv as u32, envp as u32);
        3
    })
    .await;
    let execs = got.execs();
    assert_eq!(execs.len(), 1, "{:#?}", got.events);
    let (_, exec) = execs[0];
    assert_eq!(exec.ret, 0);
    assert_eq!(&exec.exe[..], b"/bin/true");
    let args: Vec<&[u8]> = exec.args.iter().map(|a| &a[..]).collect();
    assert_eq!(args, [&b"/bin/true"[..], b"compat-arg"]);
}
