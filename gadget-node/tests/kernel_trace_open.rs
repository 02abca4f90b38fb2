//! trace_open on the real kernel: a forked child opens known files and the
//! events must say exactly what it did.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{collect, cstr, errno, fork_paused, host_request, wait_started, ResultPipe};
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;

fn open_params(failed_only: bool, prefixes: &[&str]) -> Option<v1::run_gadget_request::Params> {
    Some(v1::run_gadget_request::Params::Open(v1::OpenParams {
        failed_only,
        path_prefixes: prefixes
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect(),
    }))
}

fn start(request: v1::RunGadgetRequest) -> trace::Trace {
    let request = TracePlan::from_proto(&request).expect("valid request");
    trace::start(request, Arc::new(common::local_identity())).expect("trace starts")
}

/// Starts a trace limited to a paused child, releases it, and collects
/// until `want` opens arrived.
async fn trace_child(
    params: Option<v1::run_gadget_request::Params>,
    workload: impl FnOnce() -> i32,
    want: usize,
) -> (common::Collected, i32) {
    let mut child = fork_paused(workload);
    let mut trace = start(host_request(
        gadget_proto::TRACE_OPEN,
        params,
        Some(child.pid),
    ));
    wait_started(&mut trace.events).await;
    child.release();
    let code = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap();
    let got = common::collect_settled(&mut trace.events, |c| c.opens().len() >= want).await;
    (got, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_fd_errno_flags_mode_and_dirfd_of_each_open_syscall() {
    let dir = tempfile::tempdir().unwrap();
    let created = cstr(&dir.path().join("created").to_string_lossy());
    let hostname = cstr("/etc/hostname");
    let missing = cstr("/nonexistent/gadget-test");
    let etc = cstr("/etc");
    let relative = cstr("hostname");
    let results = ResultPipe::new();
    let out = results.write;

    let (got, code) = trace_child(
        None,
        // SAFETY: libc calls in the forked child, with C strings that outlive them.
        || unsafe {
            let fd = libc::openat(
                libc::AT_FDCWD,
                hostname.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            ResultPipe::send(out, fd as i64);
            let r = libc::syscall(libc::SYS_open, missing.as_ptr(), libc::O_RDONLY);
            ResultPipe::send(out, if r < 0 { -errno() } else { r });
            let dfd = libc::openat(
                libc::AT_FDCWD,
                etc.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY,
            );
            ResultPipe::send(out, dfd as i64);
            let fd2 = libc::openat(dfd, relative.as_ptr(), libc::O_RDONLY);
            ResultPipe::send(out, fd2 as i64);
            // struct open_how { u64 flags, mode, resolve }
            let how: [u64; 3] = [(libc::O_RDONLY | libc::O_NOFOLLOW) as u64, 0, 0];
            let fd3 = libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                hostname.as_ptr(),
                how.as_ptr(),
                std::mem::size_of_val(&how),
            );
            ResultPipe::send(out, fd3);
            let fd4 = libc::openat(
                libc::AT_FDCWD,
                created.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o640,
            );
            ResultPipe::send(out, fd4 as i64);
            0
        },
        6,
    )
    .await;
    assert_eq!(code, 0);
    let values = results.values();
    assert_eq!(values.len(), 6, "child results: {values:?}");
    let [fd, missing_errno, dfd, fd2, fd3, fd4] = values[..] else {
        unreachable!()
    };
    assert!(
        fd >= 0 && dfd >= 0 && fd2 >= 0 && fd3 >= 0 && fd4 >= 0,
        "{values:?}"
    );
    assert_eq!(missing_errno, -(libc::ENOENT as i64));

    let opens = got.opens();
    assert_eq!(opens.len(), 6, "events: {:#?}", got.events);
    let syscall = |s: v1::OpenSyscall| s as i32;

    assert_eq!(&opens[0].path[..], b"/etc/hostname");
    assert_eq!(opens[0].fd as i64, fd);
    assert_eq!(opens[0].error, 0);
    assert_eq!(opens[0].flags, (libc::O_RDONLY | libc::O_CLOEXEC) as u64);
    assert_eq!(opens[0].dirfd, None);
    assert_eq!(opens[0].syscall, syscall(v1::OpenSyscall::Openat));

    assert_eq!(&opens[1].path[..], b"/nonexistent/gadget-test");
    assert_eq!(opens[1].fd, -1);
    assert_eq!(opens[1].error, libc::ENOENT);
    assert_eq!(opens[1].syscall, syscall(v1::OpenSyscall::Open));

    assert_eq!(&opens[2].path[..], b"/etc");
    assert_eq!(opens[2].fd as i64, dfd);

    assert_eq!(&opens[3].path[..], b"hostname");
    assert_eq!(opens[3].dirfd, Some(dfd as i32));
    assert_eq!(opens[3].fd as i64, fd2);

    assert_eq!(&opens[4].path[..], b"/etc/hostname");
    assert_eq!(opens[4].syscall, syscall(v1::OpenSyscall::Openat2));
    assert_eq!(opens[4].flags, (libc::O_RDONLY | libc::O_NOFOLLOW) as u64);
    assert_eq!(opens[4].fd as i64, fd3);

    assert_eq!(opens[5].fd as i64, fd4);
    assert_eq!(opens[5].mode, 0o640);
    assert_eq!(opens[5].flags, (libc::O_CREAT | libc::O_WRONLY) as u64);
    assert_eq!(&opens[5].path[..], created.as_bytes());

    for (event, workload) in &got.events {
        let process = event.process.as_ref().unwrap();
        assert_eq!(process.pid, process.tid);
        assert_eq!(process.ppid, std::process::id());
        assert_eq!(process.uid, 0);
        assert!(process.mntns_id != 0 && process.cgroup_id != 0);
        assert!(workload.is_none(), "a host process has no workload");
    }
    // Wall-clock timestamps, in order, close to now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let stamps: Vec<u64> = got.events.iter().map(|(e, _)| e.timestamp_ns).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(
        stamps.iter().all(|&t| now.abs_diff(t) < 30_000_000_000),
        "{stamps:?} vs {now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_eacces_for_a_non_root_user() {
    let dir = tempfile::tempdir().unwrap();
    let secret_path = dir.path().join("secret");
    std::fs::write(&secret_path, "root only").unwrap();
    std::fs::set_permissions(
        &secret_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    // The directory must be searchable by nobody to get EACCES on the file.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let secret = cstr(&secret_path.to_string_lossy());

    let (got, code) = trace_child(
        None,
        // SAFETY: libc calls in the forked child, with C strings that outlive them.
        || unsafe {
            if libc::setresgid(65534, 65534, 65534) != 0
                || libc::setresuid(65534, 65534, 65534) != 0
            {
                return 2;
            }
            let fd = libc::openat(libc::AT_FDCWD, secret.as_ptr(), libc::O_RDONLY);
            if fd >= 0 || errno() != libc::EACCES as i64 {
                return 3;
            }
            0
        },
        1,
    )
    .await;
    assert_eq!(code, 0, "child could not reproduce EACCES");
    let opens = got.opens();
    assert_eq!(opens.len(), 1, "{:#?}", got.events);
    assert_eq!(opens[0].error, libc::EACCES);
    assert_eq!(opens[0].fd, -1);
    assert_eq!(&opens[0].path[..], secret.as_bytes());
    let process = got.events[0].0.process.as_ref().unwrap();
    assert_eq!((process.uid, process.gid), (65534, 65534));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_only_keeps_just_the_failures() {
    let hostname = cstr("/etc/hostname");
    let missing = cstr("/nonexistent/failed-only");
    let (got, _) = trace_child(
        open_params(true, &[]),
        // SAFETY: libc calls in the forked child, with C strings that outlive them.
        || unsafe {
            libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
            libc::openat(libc::AT_FDCWD, missing.as_ptr(), libc::O_RDONLY);
            libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
            0
        },
        1,
    )
    .await;
    let opens = got.opens();
    assert_eq!(opens.len(), 1, "{:#?}", got.events);
    assert_eq!(&opens[0].path[..], b"/nonexistent/failed-only");
    assert_eq!(opens[0].error, libc::ENOENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_only_matching_paths() {
    let paths = [
        "/etc/hostname",
        "/etc/passwd",
        "/proc/self/status",
        "/proc/self/stat",
        "/etc/hosts",
    ]
    .map(cstr);
    let (got, _) = trace_child(
        open_params(false, &["/etc/host", "/proc/self/stat"]),
        // SAFETY: libc calls in the forked child, with C strings that outlive them.
        || unsafe {
            for path in &paths {
                let fd = libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            0
        },
        4,
    )
    .await;
    let got_paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(
        got_paths,
        [
            &b"/etc/hostname"[..],
            b"/proc/self/status",
            b"/proc/self/stat",
            b"/etc/hosts"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_paths_are_cut_and_marked() {
    // 4095 bytes fit exactly (PATH_MAX with the NUL); 5000 do not.
    let exact = format!("/{}", "a".repeat(4094));
    let long = format!("/{}", "b".repeat(4999));
    let (exact_c, long_c) = (cstr(&exact), cstr(&long));
    let (got, _) = trace_child(
        None,
        // SAFETY: libc calls in the forked child, with C strings that outlive them.
        || unsafe {
            libc::openat(libc::AT_FDCWD, exact_c.as_ptr(), libc::O_RDONLY);
            libc::openat(libc::AT_FDCWD, long_c.as_ptr(), libc::O_RDONLY);
            0
        },
        2,
    )
    .await;
    let opens = got.opens();
    assert_eq!(opens.len(), 2, "{} events", got.events.len());
    assert_eq!(&opens[0].path[..], exact.as_bytes());
    assert!(!opens[0].path_truncated);
    assert_eq!(&opens[1].path[..], &long.as_bytes()[..4095]);
    assert!(opens[1].path_truncated);
    assert_eq!(opens[1].error, libc::ENAMETOOLONG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_filter_keeps_one_user() {
    let hostname = cstr("/etc/hostname");
    let passwd = cstr("/etc/passwd");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
        if libc::setresuid(65534, 65534, 65534) != 0 {
            return 2;
        }
        libc::openat(libc::AT_FDCWD, passwd.as_ptr(), libc::O_RDONLY);
        0
    });
    let mut request = host_request(gadget_proto::TRACE_OPEN, None, Some(child.pid));
    request.filter.as_mut().unwrap().uid = Some(65534);
    let mut trace = start(request);
    wait_started(&mut trace.events).await;
    child.release();
    assert_eq!(
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap(),
        0
    );
    let got = common::collect_settled(&mut trace.events, |c| c.opens().len() > 1).await;
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(paths, [&b"/etc/passwd"[..]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_ring_buffer_counts_every_lost_event() {
    const OPENS: usize = 20_000;
    let missing = cstr("/nonexistent/burst");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        for _ in 0..OPENS {
            libc::openat(libc::AT_FDCWD, missing.as_ptr(), libc::O_RDONLY);
        }
        0
    });
    let mut request = host_request(gadget_proto::TRACE_OPEN, None, Some(child.pid));
    request.ring_buffer_bytes = 4096;
    let mut trace = start(request);
    wait_started(&mut trace.events).await;
    child.release();
    assert_eq!(
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap(),
        0
    );
    let accounted =
        |c: &common::Collected| c.opens().len() as u64 + c.status.lost_kernel + c.status.lost_node;
    let got = collect(&mut trace.events, Duration::from_secs(10), |c| {
        accounted(c) >= OPENS as u64
    })
    .await;
    assert!(
        got.status.lost_kernel > 0,
        "a 4 KiB ring buffer cannot hold {OPENS} opens"
    );
    // Nobody read the queue while the child ran, so the node may drop too.
    assert_eq!(
        accounted(&got),
        OPENS as u64,
        "every open is delivered, or counted as lost in the kernel or the node: {:?}",
        got.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ending_a_trace_detaches_its_programs() {
    let mut trace = start(host_request(gadget_proto::TRACE_OPEN, None, Some(1)));
    wait_started(&mut trace.events).await;
    assert!(!trace.program_ids.is_empty());
    assert!(trace
        .program_ids
        .iter()
        .all(|&id| common::program_loaded(id)));
    drop(trace.events);
    tokio::time::timeout(Duration::from_secs(5), trace.task)
        .await
        .expect("trace task ends when its receiver is dropped")
        .unwrap();
    common::wait_unloaded(&trace.program_ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_traces_at_once_do_not_disturb_each_other() {
    let hostname = cstr("/etc/hostname");
    let missing = cstr("/nonexistent/two-traces");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let mut child = fork_paused(|| unsafe {
        libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
        libc::openat(libc::AT_FDCWD, missing.as_ptr(), libc::O_RDONLY);
        0
    });
    let mut all = start(host_request(
        gadget_proto::TRACE_OPEN,
        None,
        Some(child.pid),
    ));
    let mut failed = start(host_request(
        gadget_proto::TRACE_OPEN,
        open_params(true, &[]),
        Some(child.pid),
    ));
    wait_started(&mut all.events).await;
    wait_started(&mut failed.events).await;
    child.release();
    assert_eq!(
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap(),
        0
    );
    let got_all = common::collect_settled(&mut all.events, |c| c.opens().len() >= 2).await;
    let got_failed = common::collect_settled(&mut failed.events, |c| c.opens().len() >= 2).await;
    assert_eq!(got_all.opens().len(), 2);
    assert_eq!(got_failed.opens().len(), 1);
    assert_eq!(&got_failed.opens()[0].path[..], b"/nonexistent/two-traces");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_ends_the_trace_with_a_last_status() {
    let mut request = host_request(gadget_proto::TRACE_OPEN, None, Some(1));
    request.timeout_seconds = 1;
    let mut trace = start(request);
    let got = collect(&mut trace.events, Duration::from_secs(5), |_| false).await;
    assert!(got.status.started, "the trace reported its start");
    assert!(got.events.is_empty(), "pid 1 opened nothing we asked for");
    tokio::time::timeout(Duration::from_secs(1), trace.task)
        .await
        .expect("trace ended at its timeout")
        .unwrap();
    common::wait_unloaded(&trace.program_ids).await;
}

/// Regression: a failed insert into `open_args_by_tid` (the map is full)
/// dropped the open without a word. One open held in flight (a FIFO with no
/// writer) fills a map of one entry; the next open of the same user cannot
/// be followed and must be counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_the_full_map_cannot_follow_is_counted() {
    const UID: u32 = 54_001;
    let dir = tempfile::tempdir().unwrap();
    let fifo_path = dir.path().join("fifo");
    let fifo = cstr(fifo_path.to_str().unwrap());
    let hostname = cstr("/etc/hostname");
    // SAFETY: plain syscalls on C strings that outlive them.
    unsafe {
        assert_eq!(libc::mkfifo(fifo.as_ptr(), 0o666), 0);
        assert_eq!(libc::chmod(fifo.as_ptr(), 0o666), 0);
        assert_eq!(
            libc::chmod(dir.path().to_str().map(cstr).unwrap().as_ptr(), 0o755),
            0
        );
    }
    let as_user = || {
        // SAFETY: a raw syscall in the forked child.
        unsafe { libc::setresuid(UID, UID, UID) == 0 }
    };
    // SAFETY: the closures run in forked children; their libc calls get C
    // strings that outlive them.
    let mut holder = fork_paused(|| unsafe {
        if !as_user() {
            return 2;
        }
        // Blocks until a writer opens the FIFO.
        let fd = libc::openat(libc::AT_FDCWD, fifo.as_ptr(), libc::O_RDONLY);
        i32::from(fd < 0)
    });
    // SAFETY: as above.
    let mut opener = fork_paused(|| unsafe {
        if !as_user() {
            return 2;
        }
        i32::from(libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY) < 0)
    });
    let mut trace = common::start_with_one_entry_map(
        gadget_proto::TRACE_OPEN,
        UID,
        gadget_node::gadgets::trace_open::OPEN_ARGS_MAP,
    )
    .await;

    holder.release();
    common::wait_in_syscall(holder.pid, libc::SYS_openat);
    opener.release();
    assert_eq!(
        tokio::task::spawn_blocking(move || opener.wait())
            .await
            .unwrap(),
        0
    );
    // Let the holder go: a writer that does not wait.
    // SAFETY: a plain syscall on a C string that outlives it.
    let writer = unsafe { libc::open(fifo.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
    assert!(writer >= 0, "the holder waits on the FIFO");
    assert_eq!(
        tokio::task::spawn_blocking(move || holder.wait())
            .await
            .unwrap(),
        0
    );
    // SAFETY: our own descriptor.
    unsafe { libc::close(writer) };

    let got = common::collect_settled(&mut trace.events, |c| {
        !c.opens().is_empty() && !c.warnings.is_empty()
    })
    .await;
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(
        paths,
        [fifo_path.to_str().unwrap().as_bytes()],
        "the held open is reported, the one the full map refused is not"
    );
    assert_eq!(
        got.warnings,
        ["opens not followed because a kernel map was full: 1 so far"],
        "{:?}",
        got.status
    );
}

/// What the README says trace_open cannot see, shown: an open through
/// io_uring (done by the ring, which passes no syscall tracepoint) and, on
/// x86_64, a 32-bit open through `int 0x80` (the kernel emits no syscall
/// tracepoints for compat syscalls). Both succeed; only the plain openat
/// beside them is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_and_compat_32_bit_opens_are_not_reported() {
    // i386 open (arch/x86/entry/syscalls/syscall_32.tbl).
    #[cfg(target_arch = "x86_64")]
    const OPEN_32: u32 = 5;
    let seen = cstr("/etc/hostname");
    let by_uring = cstr("/etc/passwd");
    #[cfg(target_arch = "x86_64")]
    let by_compat = cstr("/etc/group");
    let results = ResultPipe::new();
    let out = results.write;
    // SAFETY: the closure runs in the forked child; its raw syscalls get C
    // strings and memory that outlive them.
    let (got, code) = trace_child(
        None,
        move || unsafe {
            ResultPipe::send(
                out,
                libc::openat(libc::AT_FDCWD, seen.as_ptr(), libc::O_RDONLY).into(),
            );
            ResultPipe::send(
                out,
                common::uring::openat(by_uring.as_bytes_with_nul(), libc::O_RDONLY).into(),
            );
            #[cfg(target_arch = "x86_64")]
            {
                // A 32-bit pointer must reach the path: memory below 4 GiB.
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
                let path = by_compat.as_bytes_with_nul();
                std::ptr::copy_nonoverlapping(path.as_ptr(), low.cast::<u8>(), path.len());
                let fd = common::int80(OPEN_32, low as u32, libc::O_RDONLY as u32, 0);
                ResultPipe::send(out, fd.into());
            }
            0
        },
        1,
    )
    .await;
    assert_eq!(code, 0);
    let fds = results.values();
    assert!(
        fds.iter().all(|&fd| fd >= 0),
        "every open succeeded: {fds:?}"
    );
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(paths, [&b"/etc/hostname"[..]]);
}

/// `--prefix` compares the path as the process passed it, so `cd /etc && cat
/// passwd` is not matched by `--prefix /etc`: a convenience filter, not a
/// security boundary. `trace file` matches the path the kernel resolved:
/// kernel_trace_file.rs `opens_reads_writes_and_closes_match_strace_whatever_the_path_passed`
/// opens `shadow` after `chdir` into the followed directory and sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_compares_the_path_as_passed_not_the_resolved_one() {
    let etc = cstr("/etc");
    let relative = cstr("passwd");
    let absolute = cstr("/etc/hostname");
    // SAFETY: the closure runs in the forked child; its libc calls get C strings that outlive them.
    let (got, code) = trace_child(
        open_params(false, &["/etc"]),
        || unsafe {
            if libc::chdir(etc.as_ptr()) != 0
                || libc::openat(libc::AT_FDCWD, relative.as_ptr(), libc::O_RDONLY) < 0
                || libc::openat(libc::AT_FDCWD, absolute.as_ptr(), libc::O_RDONLY) < 0
            {
                return 1;
            }
            0
        },
        1,
    )
    .await;
    assert_eq!(code, 0);
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(
        paths,
        [&b"/etc/hostname"[..]],
        "passwd, opened as passed, is not under /etc"
    );
}

/// What the README says of paths read from the caller's memory, shown: the
/// path is read when the open returns, so memory changed while the open
/// runs (by another thread, or here another process sharing the page) is
/// what the event says, not what was opened. The open waits on a FIFO while
/// the test rewrites the path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_changed_while_the_open_runs_is_reported_as_changed() {
    assert_eq!(
        open_while_the_path_is_swapped(&[]).await,
        [&b"/etc/shadow"[..], b"/etc/hostname"],
        "what the memory said at the open's return"
    );
}

/// A prefix filter judges the path it reads at entry, just before the
/// kernel copies it: the FIFO's path matches no `/etc/` prefix, so that
/// open is dropped there, though the memory says `/etc/shadow` when it
/// returns. A path changed between the entry and the kernel's copy can
/// still fool it: `--prefix` is a filter on what the caller passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_judges_the_path_at_entry_not_as_changed_later() {
    assert_eq!(
        open_while_the_path_is_swapped(&["/etc/"]).await,
        [&b"/etc/hostname"[..]]
    );
}

/// With a prefix, a path the program cannot read at entry, as its page is
/// not faulted in yet (a file mapping nothing has touched), is judged at
/// exit, once the kernel's copy has faulted it in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_judges_a_path_unreadable_at_entry_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let holder = dir.path().join("path");
    std::fs::write(&holder, b"/etc/hostname\0").unwrap();
    let holder = cstr(holder.to_str().unwrap());
    let (got, code) = trace_child(
        open_params(false, &["/etc/host"]),
        // SAFETY: libc calls in the forked child, with a C string that
        // outlives them and a mapping of the file's first page.
        move || unsafe {
            let fd = libc::open(holder.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return 2;
            }
            let page = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                fd,
                0,
            );
            if page == libc::MAP_FAILED {
                return 3;
            }
            let opened = libc::openat(libc::AT_FDCWD, page.cast(), libc::O_RDONLY);
            i32::from(opened < 0)
        },
        1,
    )
    .await;
    assert_eq!(code, 0);
    let paths: Vec<&[u8]> = got.opens().iter().map(|o| &o.path[..]).collect();
    assert_eq!(paths, [&b"/etc/hostname"[..]]);
}

/// Traces a child that opens a FIFO whose path the test rewrites to
/// `/etc/shadow` while the open waits, then opens `/etc/hostname`; returns
/// the paths reported.
async fn open_while_the_path_is_swapped(prefixes: &[&str]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let fifo = format!("{}/fifo", dir.path().to_str().unwrap());
    let fifo_c = cstr(&fifo);
    let hostname = cstr("/etc/hostname");
    // SAFETY: plain syscalls; the page is shared with the child by fork.
    let page = unsafe {
        assert_eq!(libc::mkfifo(fifo_c.as_ptr(), 0o600), 0);
        let page = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(page, libc::MAP_FAILED);
        let path = fifo_c.as_bytes_with_nul();
        std::ptr::copy_nonoverlapping(path.as_ptr(), page.cast::<u8>(), path.len());
        page.cast::<u8>()
    };
    let shared = page as usize;
    // SAFETY: the closure runs in the forked child; the path is in the
    // shared page, and the second one a C string that outlives the call.
    let mut child = fork_paused(move || unsafe {
        // fork does not copy a shared mapping's page table entries: touch
        // the page, or the program could not read the path at entry.
        std::ptr::read_volatile(shared as *const u8);
        let fd = libc::openat(
            libc::AT_FDCWD,
            shared as *const libc::c_char,
            libc::O_RDONLY,
        );
        let marker = libc::openat(libc::AT_FDCWD, hostname.as_ptr(), libc::O_RDONLY);
        i32::from(fd < 0 || marker < 0)
    });
    let mut trace = start(host_request(
        gadget_proto::TRACE_OPEN,
        open_params(false, prefixes),
        Some(child.pid),
    ));
    wait_started(&mut trace.events).await;
    child.release();
    common::wait_in_syscall(child.pid, libc::SYS_openat);
    // The kernel has copied the path; rewrite it, then let the open finish.
    let swapped = b"/etc/shadow\0";
    // SAFETY: the shared page, of 4096 bytes; the FIFO path outlives the call.
    let writer = unsafe {
        std::ptr::copy_nonoverlapping(swapped.as_ptr(), page, swapped.len());
        libc::open(fifo_c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK)
    };
    assert!(writer >= 0);
    assert_eq!(
        tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap(),
        0,
        "the FIFO and /etc/hostname were opened"
    );
    // SAFETY: our descriptor and mapping.
    unsafe {
        libc::close(writer);
        libc::munmap(page.cast(), 4096);
    }
    let got = common::collect_settled(&mut trace.events, |c| {
        c.opens().iter().any(|o| &o.path[..] == b"/etc/hostname")
    })
    .await;
    got.opens().iter().map(|o| o.path.to_vec()).collect()
}
