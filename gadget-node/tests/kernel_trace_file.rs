//! trace_file on the real kernel: forked children in simulated pod cgroups
//! open, read, write, dup, fork, exec and die, and the events must say what
//! `strace` says of the same workload (paths, fds, byte counts, errors).
//!
//! The trace selects the pod `files/app-1`; a child of the test is moved
//! into its container cgroup (the test runner never is), so everything the
//! child forks is selected too. `other/app-2` is never selected.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::cgroups::{container_id, pod_uid, CgroupTree};
use common::{collect_settled, cstr, fork_paused, wait_started, Collected, PausedChild};
use gadget_node::cgroup::{CgroupResolver, CgroupResolverConfig};
use gadget_node::identity::IdentityResolver;
use gadget_node::pods::PodIndex;
use gadget_node::trace::{self, TracePlan};
use gadget_proto::v1;
use v1::FileOperation as Op;

/// Two pods on a fake node: `files/app-1`, which the traces select, and
/// `other/app-2`, which they do not.
struct Pods {
    tree: CgroupTree,
    pods: Arc<PodIndex>,
    selected: String,
    unselected: String,
}

impl Pods {
    /// `seed` keeps container ids apart between tests running at once.
    fn new(seed: u32) -> Self {
        let pods = Arc::new(PodIndex::new());
        let mut paths = Vec::new();
        for (i, namespace) in ["files", "other"].into_iter().enumerate() {
            let uid = pod_uid(seed + i as u32, '-');
            let id = container_id(u64::from(seed) + i as u64);
            let name = format!("app-{}", i + 1);
            pods.apply(&common::pods::pod(&uid, namespace, &name, &[], "app", &id));
            paths.push(format!(
                "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{id}.scope",
                uid.replace('-', "_")
            ));
        }
        Pods {
            tree: CgroupTree::new(),
            pods,
            selected: paths[0].clone(),
            unselected: paths[1].clone(),
        }
    }

    fn identity(&self) -> Arc<IdentityResolver> {
        let cgroups =
            CgroupResolver::with_config(&self.tree.mount, CgroupResolverConfig::default());
        Arc::new(IdentityResolver::new(cgroups, Some(Arc::clone(&self.pods))))
    }

    /// A paused child in the selected pod's container, or the other one's.
    fn child(&mut self, selected: bool, workload: impl FnOnce() -> i32) -> PausedChild {
        let child = fork_paused(workload);
        let cgroup = if selected {
            &self.selected
        } else {
            &self.unselected
        };
        self.tree.move_into(&cgroup.clone(), child.pid);
        child
    }

    /// A started trace of the pod `files/app-1`.
    async fn trace(&self, params: v1::FileParams) -> trace::Trace {
        let request = v1::RunGadgetRequest {
            protocol_version: gadget_proto::PROTOCOL_VERSION,
            gadget: gadget_proto::TRACE_FILE.to_string(),
            selector: Some(v1::ContainerSelector {
                namespaces: vec!["files".into()],
                ..Default::default()
            }),
            params: Some(v1::run_gadget_request::Params::File(params)),
            ..Default::default()
        };
        let plan = TracePlan::from_proto(&request).expect("valid request");
        let mut trace = trace::start(plan, self.identity()).expect("trace starts");
        wait_started(&mut trace.events).await;
        trace
    }
}

fn params(prefixes: &[&str], paths: &[&str]) -> v1::FileParams {
    let bytes = |list: &[&str]| {
        list.iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    };
    v1::FileParams {
        path_prefixes: bytes(prefixes),
        paths: bytes(paths),
        ..Default::default()
    }
}

fn kill_on(mut params: v1::FileParams, op: Op) -> v1::FileParams {
    params.kill_on = op as i32;
    params
}

/// Releases `child` and waits for its wait status off the async threads.
async fn run(mut child: PausedChild) -> i32 {
    child.release();
    tokio::task::spawn_blocking(move || child.wait_status())
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("utf-8 in the test's paths")
}

/// One operation on a file, as strace or the trace reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    pid: u32,
    op: Op,
    fd: i32,
    path: String,
    ret: i64,
}

fn file_events(got: &Collected) -> Vec<(&v1::Event, &v1::FileEvent)> {
    got.events
        .iter()
        .filter_map(|(e, _)| match &e.kind {
            Some(v1::event::Kind::File(file)) => Some((e, file)),
            _ => None,
        })
        .collect()
}

fn pid_of(event: &v1::Event) -> u32 {
    event.process.as_ref().unwrap().pid
}

/// The trace's accesses as rows, with their events.
fn accesses(got: &Collected) -> Vec<(Row, &v1::FileAccess, &v1::FileEvent)> {
    file_events(got)
        .into_iter()
        .filter_map(|(e, file)| match &file.what {
            Some(v1::file_event::What::Access(a)) => Some((
                Row {
                    pid: pid_of(e),
                    op: Op::try_from(a.operation).unwrap(),
                    fd: a.fd,
                    path: text(&a.path),
                    ret: a.ret,
                },
                a,
                file,
            )),
            _ => None,
        })
        .collect()
}

fn rows(got: &Collected) -> Vec<Row> {
    accesses(got).into_iter().map(|(row, _, _)| row).collect()
}

fn exits(got: &Collected) -> Vec<(u32, v1::ProcessExit, String)> {
    file_events(got)
        .into_iter()
        .filter_map(|(e, file)| match &file.what {
            Some(v1::file_event::What::Exit(exit)) => {
                Some((pid_of(e), exit.clone(), text(&file.exe)))
            }
            _ => None,
        })
        .collect()
}

fn execs(got: &Collected) -> Vec<(u32, Vec<String>, String)> {
    file_events(got)
        .into_iter()
        .filter_map(|(e, file)| match &file.what {
            Some(v1::file_event::What::Exec(exec)) => Some((
                pid_of(e),
                exec.args.iter().map(|a| text(a)).collect(),
                text(&file.exe),
            )),
            _ => None,
        })
        .collect()
}

fn by_pid(rows: impl IntoIterator<Item = Row>) -> BTreeMap<u32, Vec<Row>> {
    let mut map: BTreeMap<u32, Vec<Row>> = BTreeMap::new();
    for row in rows {
        map.entry(row.pid).or_default().push(row);
    }
    map
}

/// `strace -f -y` attached to a paused child: every open, read, write and
/// close of it and of what it forks, with the path the kernel gives each fd.
struct Strace {
    process: std::process::Child,
    out: PathBuf,
}

const STRACED: &str = "trace=open,openat,openat2,read,write,pread64,pwrite64,readv,writev,\
                       preadv,pwritev,preadv2,pwritev2,close,dup2";

impl Strace {
    fn attach(pid: u32, out: PathBuf) -> Strace {
        let process = Command::new("strace")
            .args(["-f", "-qq", "-y", "-s", "0", "-e", STRACED, "-o"])
            .arg(&out)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("strace runs (cargo xtask setup installs it)");
        // Attached once the kernel names a tracer; the child is blocked in
        // its read of the release pipe and runs nothing before it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tracer_of(pid) == 0 {
            assert!(Instant::now() < deadline, "strace did not attach to {pid}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Strace { process, out }
    }

    /// After the child exited: strace's rows.
    fn rows(mut self) -> Vec<Row> {
        assert!(self.process.wait().unwrap().success(), "strace failed");
        parse_strace(&std::fs::read_to_string(&self.out).unwrap())
    }
}

fn tracer_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// strace -f -y output: `PID name(FD</path>, ...) = RET`, with calls that
/// two processes interleave split into `<unfinished ...>` and `<... name
/// resumed>` lines.
fn parse_strace(output: &str) -> Vec<Row> {
    let mut unfinished: HashMap<u32, String> = HashMap::new();
    let mut rows = Vec::new();
    for line in output.lines() {
        let (pid, call) = line.split_once(' ').expect("strace -f prefixes the pid");
        let pid: u32 = pid.parse().expect("a pid");
        let call = call.trim_start();
        let call = if let Some(start) = call.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, start.to_string());
            continue;
        } else if call.starts_with("<... ") {
            let (_, rest) = call.split_once("resumed>").expect("a resumed call");
            format!("{}{rest}", unfinished.remove(&pid).expect("its start"))
        } else {
            call.to_string()
        };
        rows.extend(parse_call(pid, &call));
    }
    rows
}

fn parse_call(pid: u32, call: &str) -> Option<Row> {
    let (name, rest) = call.split_once('(')?;
    let (args, ret) = rest.rsplit_once(") = ")?;
    let op = match name {
        "open" | "openat" | "openat2" => Op::Open,
        "read" | "pread64" | "readv" | "preadv" | "preadv2" => Op::Read,
        "write" | "pwrite64" | "writev" | "pwritev" | "pwritev2" => Op::Write,
        "close" => Op::Close,
        _ => return None,
    };
    if op == Op::Open {
        // A failed open has no file to follow.
        let (fd, path) = fd_and_path(ret)?;
        return Some(Row {
            pid,
            op,
            fd,
            path,
            ret: fd.into(),
        });
    }
    let first = args.split(", ").next()?;
    let (fd, path) = fd_and_path(first)?;
    Some(Row {
        pid,
        op,
        fd,
        path,
        ret: strace_ret(ret),
    })
}

/// `3</tmp/x>` as strace -y writes an fd.
fn fd_and_path(fd: &str) -> Option<(i32, String)> {
    let (number, rest) = fd.split_once('<')?;
    Some((number.parse().ok()?, rest.strip_suffix('>')?.to_string()))
}

/// `5`, or `-1 EBADF (Bad file descriptor)` as -9.
fn strace_ret(ret: &str) -> i64 {
    if let Some(error) = ret.strip_prefix("-1 ") {
        let name = error.split_whitespace().next().unwrap();
        let errno = match name {
            "EBADF" => libc::EBADF,
            "EINTR" => libc::EINTR,
            "EINVAL" => libc::EINVAL,
            "EFAULT" => libc::EFAULT,
            "EISDIR" => libc::EISDIR,
            "ESPIPE" => libc::ESPIPE,
            other => panic!("add {other} to strace_ret"),
        };
        return -i64::from(errno);
    }
    ret.split_whitespace().next().unwrap().parse().unwrap()
}

/// The test binary, as the kernel resolves it.
fn this_exe() -> String {
    std::fs::canonicalize(std::env::current_exe().unwrap())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Where the workload dup2()s a followed fd.
const DUP_FD: i32 = 900;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_reads_writes_and_closes_match_strace_whatever_the_path_passed() {
    let dir = tempdir();
    let base = path_str(dir.path());
    std::fs::create_dir_all(dir.path().join("followed/sub")).unwrap();
    std::fs::create_dir_all(dir.path().join("unfollowed")).unwrap();
    std::fs::write(dir.path().join("followed/shadow"), "secret-content\n").unwrap();
    std::fs::write(dir.path().join("unfollowed/other"), "other").unwrap();
    std::os::unix::fs::symlink("followed/shadow", dir.path().join("link")).unwrap();
    let prefix = format!("{base}/followed/");
    let shadow = format!("{base}/followed/shadow");
    let log = format!("{base}/followed/log");

    // Every way of naming followed/shadow, as the child passes it.
    let passed = [
        shadow.clone(),
        format!("{base}/link"),
        format!("/{base}//followed/./shadow"),
        format!("/proc/self/root{base}/followed/shadow"),
    ];
    let passed_c = passed.clone().map(|p| cstr(&p));
    let sub = cstr(&format!("{base}/followed/sub"));
    let dotdot_log = cstr("../log");
    let dotdot_shadow = cstr("../shadow");
    let followed_dir = cstr(&format!("{base}/followed"));
    let shadow_name = cstr("shadow");
    let other = cstr(&format!("{base}/unfollowed/other"));

    let mut pods = Pods::new(0xf100);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        // No allocation in the child: fixed arrays only.
        let mut buf = [0u8; 64];
        let bufp = buf.as_mut_ptr();
        let read = |fd| libc::read(fd, bufp.cast(), 64);
        let mut fds = [-1i32; 8];
        let mut n = 0;
        let mut keep = |fd| {
            fds[n] = fd;
            n += 1;
        };
        // Absolute, through a symlink, with "//" and "/./", and through
        // /proc/self/root: each a read of the whole file.
        for path in &passed_c {
            let fd = libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY);
            read(fd);
            keep(fd);
        }
        let fd = libc::syscall(libc::SYS_open, passed_c[0].as_ptr(), libc::O_RDONLY) as i32;
        libc::pread64(fd, bufp.cast(), 4, 2);
        keep(fd);
        // Relative to the working directory, and with "..".
        libc::chdir(sub.as_ptr());
        let log_fd = libc::openat(
            libc::AT_FDCWD,
            dotdot_log.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o600,
        );
        libc::write(log_fd, b"hello".as_ptr().cast(), 5);
        let fd = libc::openat(libc::AT_FDCWD, dotdot_shadow.as_ptr(), libc::O_RDONLY);
        let iov = [
            libc::iovec {
                iov_base: bufp.cast(),
                iov_len: 3,
            },
            libc::iovec {
                iov_base: bufp.add(3).cast(),
                iov_len: 3,
            },
        ];
        libc::readv(fd, iov.as_ptr(), 2);
        keep(fd);
        // Relative to a directory fd (the directory itself is not followed:
        // the prefix ends with "/").
        let dfd = libc::openat(
            libc::AT_FDCWD,
            followed_dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY,
        );
        let fd = libc::openat(dfd, shadow_name.as_ptr(), libc::O_RDONLY);
        read(fd);
        keep(fd);
        keep(dfd);
        // Not followed: sends nothing.
        let ofd = libc::openat(libc::AT_FDCWD, other.as_ptr(), libc::O_RDWR);
        read(ofd);
        libc::write(ofd, b"x".as_ptr().cast(), 1);
        libc::close(ofd);
        // A failed read: the log is write-only.
        read(log_fd);
        // A dup: the same open file under another fd, closed while the
        // first fd still holds it.
        // (An fd above what the runner's threads leave open to the child.)
        libc::dup2(log_fd, DUP_FD);
        libc::write(DUP_FD, b"dup".as_ptr().cast(), 3);
        libc::close(DUP_FD);
        // A forked child writes through the inherited fd.
        // A raw fork: glibc's fork() takes locks that another thread of
        // the test runner may have held when this child was forked.
        let pid = libc::syscall(libc::SYS_fork) as libc::pid_t;
        if pid == 0 {
            let n = libc::write(log_fd, b"child".as_ptr().cast(), 5);
            libc::_exit(if n == 5 {
                0
            } else if n < 0 {
                100 + common::errno() as i32
            } else {
                99
            });
        }
        let mut status = 0;
        let mut waited = -1;
        // The runner's SIGCHLD handler, inherited, may interrupt the wait.
        while pid > 0 && waited < 0 {
            waited = libc::waitpid(pid, &mut status, 0);
            if waited < 0 && common::errno() != i64::from(libc::EINTR) {
                return 11;
            }
        }
        if pid < 0 {
            return 12;
        }
        if libc::WIFSIGNALED(status) {
            return 20 + libc::WTERMSIG(status);
        }
        if libc::WEXITSTATUS(status) != 0 {
            return 40 + libc::WEXITSTATUS(status);
        }
        let iov = [libc::iovec {
            iov_base: b"vec".as_ptr() as *mut _,
            iov_len: 3,
        }];
        libc::writev(log_fd, iov.as_ptr(), 1);
        libc::pwrite64(log_fd, b"H".as_ptr().cast(), 1, 0);
        libc::close(log_fd);
        for fd in fds {
            if fd >= 0 {
                libc::close(fd);
            }
        }
        0
    });
    let child_pid = child.pid;
    let strace = Strace::attach(child_pid, dir.path().join("strace.out"));
    let mut trace = pods.trace(params(&[&prefix], &[])).await;
    assert_eq!(run(child).await, 0);
    let want: Vec<Row> = strace
        .rows()
        .into_iter()
        .filter(|row| row.path.starts_with(&prefix))
        .collect();
    let got = collect_settled(&mut trace.events, |c| {
        rows(c).len() >= want.len() && exits(c).len() >= 2
    })
    .await;

    assert_eq!(
        by_pid(rows(&got)),
        by_pid(want.clone()),
        "{:#?}",
        got.events
    );
    // What strace shows, spelled out: 7 opens of shadow, 1 of the log.
    let opens: Vec<&Row> = want.iter().filter(|r| r.op == Op::Open).collect();
    assert_eq!(opens.len(), 8, "{want:#?}");
    assert!(opens.iter().all(|r| r.path == shadow || r.path == log));
    let grandchild: Vec<&Row> = want.iter().filter(|r| r.pid != child_pid).collect();
    assert_eq!(grandchild.len(), 1, "{want:#?}");
    assert_eq!(
        (
            grandchild[0].op,
            grandchild[0].path.as_str(),
            grandchild[0].ret
        ),
        (Op::Write, log.as_str(), 5)
    );
    assert!(want
        .iter()
        .any(|r| r.op == Op::Read && r.ret == -i64::from(libc::EBADF)));
    assert!(want
        .iter()
        .any(|r| (r.op, r.fd, r.ret) == (Op::Write, DUP_FD, 3)));

    // Opens also carry the path as passed; every row the executable.
    let mut as_passed: Vec<String> = accesses(&got)
        .iter()
        .filter(|(row, _, _)| row.op == Op::Open)
        .map(|(_, access, _)| text(&access.path_as_passed))
        .collect();
    as_passed.sort();
    let mut expected: Vec<String> = passed
        .iter()
        .cloned()
        .chain([
            passed[0].clone(),
            "../log".into(),
            "../shadow".into(),
            "shadow".into(),
        ])
        .collect();
    expected.sort();
    assert_eq!(as_passed, expected);
    let exe = this_exe();
    for (row, access, file) in accesses(&got) {
        assert_eq!(text(&file.exe), exe, "{row:?}");
        assert!(!file.exe_truncated && !access.path_truncated && !access.killed);
    }
    // Both processes ended, normally.
    let mut ended: Vec<(u32, i32, i32)> = exits(&got)
        .into_iter()
        .map(|(pid, exit, _)| (pid, exit.exit_code, exit.signal))
        .collect();
    ended.sort();
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(ended
        .iter()
        .all(|&(_, code, signal)| (code, signal) == (0, 0)));
    assert!(ended.iter().any(|&(pid, _, _)| pid == child_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_exit_rows_carry_the_kernel_resolved_executable() {
    let dir = tempdir();
    let link = dir.path().join("mytrue");
    std::os::unix::fs::symlink("/bin/true", &link).unwrap();
    let true_exe = path_str(&std::fs::canonicalize("/bin/true").unwrap());
    let sh_exe = path_str(&std::fs::canonicalize("/bin/sh").unwrap());
    let null = std::ptr::null::<libc::c_char>();

    let mut pods = Pods::new(0xf200);
    let (link_c, mytrue, a, empty) = (cstr(&path_str(&link)), cstr("mytrue"), cstr("a"), cstr(""));
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let via_symlink = pods.child(true, move || unsafe {
        let argv = [mytrue.as_ptr(), a.as_ptr(), empty.as_ptr(), null];
        libc::execve(link_c.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    let (usr_bin, dot_true) = (cstr("/usr/bin"), cstr("./true"));
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let relative = pods.child(true, move || unsafe {
        libc::chdir(usr_bin.as_ptr());
        let argv = [dot_true.as_ptr(), null];
        libc::execve(dot_true.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    let (sh, sh_name, dash_c, exit_3) = (cstr("/bin/sh"), cstr("sh"), cstr("-c"), cstr("exit 3"));
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let exits_3 = pods.child(true, move || unsafe {
        let argv = [sh_name.as_ptr(), dash_c.as_ptr(), exit_3.as_ptr(), null];
        libc::execve(sh.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let killed = pods.child(true, || unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
        0
    });
    let bin_true = cstr("/bin/true");
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let unselected = pods.child(false, move || unsafe {
        let argv = [bin_true.as_ptr(), null];
        libc::execve(bin_true.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    let pids = [via_symlink.pid, relative.pid, exits_3.pid, killed.pid];
    let unselected_pid = unselected.pid;

    let mut trace = pods.trace(v1::FileParams::default()).await;
    assert_eq!(run(via_symlink).await, 0);
    assert_eq!(run(relative).await, 0);
    assert_eq!(run(exits_3).await, 3 << 8);
    assert_eq!(run(killed).await, libc::SIGKILL);
    assert_eq!(run(unselected).await, 0);
    let got = collect_settled(&mut trace.events, |c| {
        execs(c).len() >= 3 && exits(c).len() >= 4
    })
    .await;

    let args = |list: &[&str]| list.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    assert_eq!(
        execs(&got),
        [
            (pids[0], args(&["mytrue", "a", ""]), true_exe.clone()),
            (pids[1], args(&["./true"]), true_exe.clone()),
            (pids[2], args(&["sh", "-c", "exit 3"]), sh_exe.clone()),
        ],
        "the executable is the file the kernel ran, not the name passed"
    );
    let ended: Vec<(u32, i32, i32, String, Vec<String>)> = exits(&got)
        .into_iter()
        .map(|(pid, exit, exe)| {
            let exit_args = exit.args.iter().map(|a| text(a)).collect();
            (pid, exit.exit_code, exit.signal, exe, exit_args)
        })
        .collect();
    assert_eq!(
        ended,
        [
            // The exit row names the arguments its exec row had; a process
            // that exec'd before the trace (the forked test) has none.
            (pids[0], 0, 0, true_exe.clone(), args(&["mytrue", "a", ""])),
            (pids[1], 0, 0, true_exe, args(&["./true"])),
            (pids[2], 3, 0, sh_exe, args(&["sh", "-c", "exit 3"])),
            (pids[3], 0, libc::SIGKILL, this_exe(), args(&[])),
        ]
    );
    assert!(
        file_events(&got)
            .iter()
            .all(|(e, _)| pid_of(e) != unselected_pid),
        "a process of another pod is not selected"
    );
}

/// A row's result, with a successful open's fd (which the child inherits
/// from the test runner's many) as 0.
fn open_ok(row: &Row) -> i64 {
    if row.op == Op::Open && row.ret >= 0 {
        assert_eq!(row.ret, i64::from(row.fd), "{row:?}");
        0
    } else {
        row.ret
    }
}

/// Opens `path` write-only (no truncation) and writes "INTRUDER" over its
/// start; exits 0 if that worked.
fn overwrite(path: &Path) -> impl FnOnce() -> i32 {
    let path = cstr(&path_str(path));
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    move || unsafe {
        let fd = libc::openat(libc::AT_FDCWD, path.as_ptr(), libc::O_WRONLY);
        if fd < 0 {
            return 2;
        }
        if libc::write(fd, b"INTRUDER".as_ptr().cast(), 8) != 8 {
            return 3;
        }
        libc::close(fd);
        0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_on_write_kills_before_the_write_lands_and_only_in_selected_pods() {
    let dir = tempdir();
    let guarded = dir.path().join("guarded");
    let free = dir.path().join("free");
    std::fs::write(&guarded, "original").unwrap();
    std::fs::write(&free, "original").unwrap();
    let mut pods = Pods::new(0xf300);
    let (free_write, guarded_write) = (overwrite(&free), overwrite(&guarded));
    let selected = pods.child(true, move || {
        // An unfollowed file first: untouched by the enforcement.
        match free_write() {
            0 => guarded_write(),
            failed => failed,
        }
    });
    let unselected = pods.child(false, overwrite(&guarded));
    let after_the_trace = pods.child(true, overwrite(&guarded));
    let (selected_pid, unselected_pid) = (selected.pid, unselected.pid);

    let guarded_str = path_str(&guarded);
    let mut trace = pods
        .trace(kill_on(params(&[], &[&guarded_str]), Op::Write))
        .await;
    let status = run(selected).await;
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
        "killed by SIGKILL: {status:#x}"
    );
    assert_eq!(std::fs::read(&free).unwrap(), b"INTRUDER");
    assert_eq!(
        std::fs::read(&guarded).unwrap(),
        b"original",
        "the write did not land"
    );
    // The same write from a pod the trace does not select.
    assert_eq!(run(unselected).await, 0);
    assert_eq!(std::fs::read(&guarded).unwrap(), b"INTRUDER");

    let got = collect_settled(&mut trace.events, |c| {
        rows(c).len() >= 2 && !exits(c).is_empty()
    })
    .await;
    let found: Vec<(Op, i64, bool)> = accesses(&got)
        .iter()
        .map(|(row, access, _)| {
            assert_eq!(row.pid, selected_pid);
            assert_eq!(row.path, guarded_str);
            (row.op, open_ok(row), access.killed)
        })
        .collect();
    assert_eq!(
        found,
        [
            (Op::Open, 0, false),
            (Op::Write, -i64::from(libc::EINTR), true)
        ],
        "the write was cut by the pending SIGKILL: {:#?}",
        got.events
    );
    let ended: Vec<(u32, i32)> = exits(&got)
        .iter()
        .map(|(pid, exit, _)| (*pid, exit.signal))
        .collect();
    assert_eq!(ended, [(selected_pid, libc::SIGKILL)]);
    assert!(file_events(&got)
        .iter()
        .all(|(e, _)| pid_of(e) != unselected_pid));

    // Enforcement lasts as long as the programs are attached.
    drop(trace.events);
    trace.task.await.unwrap();
    common::wait_unloaded(&trace.program_ids).await;
    std::fs::write(&guarded, "original").unwrap();
    assert_eq!(run(after_the_trace).await, 0);
    assert_eq!(std::fs::read(&guarded).unwrap(), b"INTRUDER");
}

/// Regression: a cgroup without a verdict yet (created since the node last
/// looked) passes the kernel filter so that the node can judge its events,
/// and the kernel used to kill there too, before the node could say the
/// container was not selected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_started_during_the_trace_is_not_killed_before_it_is_judged() {
    let dir = tempdir();
    let guarded = dir.path().join("guarded");
    std::fs::write(&guarded, "original").unwrap();
    let guarded_str = path_str(&guarded);
    let mut pods = Pods::new(0xf380);
    let mut trace = pods
        .trace(kill_on(params(&[], &[&guarded_str]), Op::Write))
        .await;
    // A container of a pod nobody selected, started after the trace: its
    // cgroup has no verdict when it writes.
    let late = format!(
        "/kubepods.slice/kubepods-pod{}.slice/cri-containerd-{}.scope",
        pod_uid(0xf3f0, '_'),
        container_id(0xf3f0)
    );
    let child = fork_paused(overwrite(&guarded));
    let late_pid = child.pid;
    pods.tree.move_into(&late, child.pid);
    assert_eq!(
        run(child).await,
        0,
        "a process outside the selection survives"
    );
    assert_eq!(std::fs::read(&guarded).unwrap(), b"INTRUDER");
    // And the node drops its events once it has judged the cgroup.
    let got = common::collect(&mut trace.events, Duration::from_millis(500), |_| false).await;
    assert!(
        file_events(&got).iter().all(|(e, _)| pid_of(e) != late_pid),
        "{:#?}",
        got.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_on_read_kills_before_anything_is_copied() {
    let dir = tempdir();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "the secret").unwrap();
    // Memory the child reads into and the test still sees after it died.
    // SAFETY: a fresh anonymous shared mapping.
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(shared, libc::MAP_FAILED);
    let shared_addr = shared as usize;
    let secret_c = cstr(&path_str(&secret));
    let mut pods = Pods::new(0xf400);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let fd = libc::openat(libc::AT_FDCWD, secret_c.as_ptr(), libc::O_RDONLY);
        libc::read(fd, shared_addr as *mut libc::c_void, 64);
        0
    });
    let pid = child.pid;
    let secret_str = path_str(&secret);
    let mut trace = pods
        .trace(kill_on(params(&[&secret_str], &[]), Op::Read))
        .await;
    let status = run(child).await;
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    // SAFETY: the mapping is ours and 4096 bytes long.
    let seen = unsafe { std::slice::from_raw_parts(shared as *const u8, 64) };
    assert!(seen.iter().all(|&b| b == 0), "nothing was copied: {seen:?}");
    // SAFETY: unmapping our own mapping.
    unsafe { libc::munmap(shared, 4096) };

    let got = collect_settled(&mut trace.events, |c| {
        rows(c).len() >= 2 && !exits(c).is_empty()
    })
    .await;
    let found: Vec<(u32, Op, i64, bool)> = accesses(&got)
        .iter()
        .map(|(row, access, _)| (row.pid, row.op, open_ok(row), access.killed))
        .collect();
    assert_eq!(
        found,
        [
            (pid, Op::Open, 0, false),
            (pid, Op::Read, -i64::from(libc::EINTR), true)
        ]
    );
    assert_eq!(exits(&got)[0].1.signal, libc::SIGKILL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_on_open_kills_before_the_fd_is_used() {
    let dir = tempdir();
    let guarded = dir.path().join("guarded");
    std::fs::write(&guarded, "original").unwrap();
    let mut pods = Pods::new(0xf500);
    let child = pods.child(true, overwrite(&guarded));
    let pid = child.pid;
    let dir_str = path_str(dir.path());
    let mut trace = pods
        .trace(kill_on(params(&[&format!("{dir_str}/")], &[]), Op::Open))
        .await;
    let status = run(child).await;
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    assert_eq!(std::fs::read(&guarded).unwrap(), b"original");
    let got = collect_settled(&mut trace.events, |c| !exits(c).is_empty()).await;
    let found: Vec<(u32, Op, i64, bool)> = accesses(&got)
        .iter()
        .map(|(row, access, _)| (row.pid, row.op, open_ok(row), access.killed))
        .collect();
    assert_eq!(found, [(pid, Op::Open, 0, true)]);
    assert_eq!(exits(&got)[0].1.signal, libc::SIGKILL);
}

// What is not followed. Each test traces with kill_on = WRITE: a write that
// is not seen is neither reported nor stopped, and its bytes land.

/// A trace of `prefix` that reports everything and kills on write; runs
/// `child` (which must exit 0) and returns the rows of its pid.
async fn unseen_writes(pods: &mut Pods, prefix: &str, child: PausedChild, want: usize) -> Vec<Row> {
    let pid = child.pid;
    let mut trace = pods.trace(kill_on(params(&[prefix], &[]), Op::Write)).await;
    assert_eq!(run(child).await, 0, "the process was not killed");
    let got = collect_settled(&mut trace.events, |c| {
        rows(c).len() >= want && !exits(c).is_empty()
    })
    .await;
    rows(&got).into_iter().filter(|r| r.pid == pid).collect()
}

fn ops(rows: &[Row]) -> Vec<Op> {
    rows.iter().map(|r| r.op).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_a_shared_mapping_are_not_seen() {
    let dir = tempdir();
    let file = dir.path().join("mapped");
    std::fs::write(&file, "original").unwrap();
    let file_c = cstr(&path_str(&file));
    let mut pods = Pods::new(0xf600);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let fd = libc::openat(libc::AT_FDCWD, file_c.as_ptr(), libc::O_RDWR);
        let map = libc::mmap(
            std::ptr::null_mut(),
            8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if map == libc::MAP_FAILED {
            return 2;
        }
        // Plain stores: no syscall carries them.
        std::ptr::copy_nonoverlapping(b"MAPPED!!".as_ptr(), map.cast(), 8);
        libc::msync(map, 8, libc::MS_SYNC);
        libc::munmap(map, 8);
        libc::close(fd);
        0
    });
    let rows = unseen_writes(&mut pods, &path_str(dir.path()), child, 2).await;
    assert_eq!(ops(&rows), [Op::Open, Op::Close]);
    assert_eq!(std::fs::read(&file).unwrap(), b"MAPPED!!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendfile_splice_and_copy_file_range_into_a_followed_file_are_not_seen() {
    let dir = tempdir();
    std::fs::create_dir(dir.path().join("followed")).unwrap();
    let source = dir.path().join("source");
    let target = dir.path().join("followed/target");
    std::fs::write(&source, "abcd").unwrap();
    std::fs::write(&target, "").unwrap();
    let (source_c, target_c) = (cstr(&path_str(&source)), cstr(&path_str(&target)));
    let mut pods = Pods::new(0xf700);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let src = libc::openat(libc::AT_FDCWD, source_c.as_ptr(), libc::O_RDONLY);
        let dst = libc::openat(libc::AT_FDCWD, target_c.as_ptr(), libc::O_WRONLY);
        if libc::sendfile(dst, src, std::ptr::null_mut(), 2) != 2 {
            return 2;
        }
        // From the source's file position (2) to the target's.
        let copied =
            libc::copy_file_range(src, std::ptr::null_mut(), dst, std::ptr::null_mut(), 2, 0);
        if copied != 2 {
            return 3;
        }
        let mut pipe = [0; 2];
        libc::pipe(pipe.as_mut_ptr());
        libc::write(pipe[1], b"xy".as_ptr().cast(), 2);
        let spliced = libc::splice(
            pipe[0],
            std::ptr::null_mut(),
            dst,
            std::ptr::null_mut(),
            2,
            0,
        );
        if spliced != 2 {
            return 4;
        }
        libc::close(dst);
        0
    });
    let prefix = format!("{}/followed/", path_str(dir.path()));
    let rows = unseen_writes(&mut pods, &prefix, child, 2).await;
    assert_eq!(ops(&rows), [Op::Open, Op::Close]);
    assert_eq!(std::fs::read(&target).unwrap(), b"abcdxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_uring_writes_are_not_seen() {
    // Kernels may refuse io_uring to everyone (io_uring_disabled = 2);
    // this one allows it, which the test checks rather than assumes.
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|_| "0".into());
    assert_eq!(disabled, "0", "io_uring is disabled on this kernel");
    let dir = tempdir();
    let file = dir.path().join("ring");
    std::fs::write(&file, "original").unwrap();
    let file_c = cstr(&path_str(&file));
    let mut pods = Pods::new(0xf800);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let fd = libc::openat(libc::AT_FDCWD, file_c.as_ptr(), libc::O_WRONLY);
        let written = common::uring::write(fd, b"URING!!!");
        libc::close(fd);
        if written == 8 {
            0
        } else {
            // Report why, in an exit code the assertion shows.
            (written.unsigned_abs() % 200) as i32 + 50
        }
    });
    let rows = unseen_writes(&mut pods, &path_str(dir.path()), child, 2).await;
    assert_eq!(ops(&rows), [Op::Open, Op::Close]);
    assert_eq!(std::fs::read(&file).unwrap(), b"URING!!!");
}

#[cfg(target_arch = "x86_64")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compat_32_bit_syscalls_are_not_seen() {
    // i386 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl).
    const WRITE_32: u32 = 4;
    const OPEN_32: u32 = 5;
    const CLOSE_32: u32 = 6;
    let dir = tempdir();
    let by_64 = dir.path().join("by-64");
    let by_32 = dir.path().join("by-32");
    std::fs::write(&by_64, "original").unwrap();
    std::fs::write(&by_32, "original").unwrap();
    let (by_64_c, by_32_c) = (cstr(&path_str(&by_64)), cstr(&path_str(&by_32)));
    let mut pods = Pods::new(0xf900);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        // Memory a 32-bit pointer reaches: the path and the data.
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
        let path = by_32_c.as_bytes_with_nul();
        std::ptr::copy_nonoverlapping(path.as_ptr(), low, path.len());
        let data = low.add(2048);
        std::ptr::copy_nonoverlapping(b"COMPAT!!".as_ptr(), data, 8);
        // A followed file opened by the 64-bit openat, written by the
        // 32-bit write, closed by the 64-bit close.
        let fd = libc::openat(libc::AT_FDCWD, by_64_c.as_ptr(), libc::O_WRONLY);
        if common::int80(WRITE_32, fd as u32, data as u32, 8) != 8 {
            return 3;
        }
        libc::close(fd);
        // Open, write and close all 32-bit: nothing is seen.
        let fd = common::int80(OPEN_32, low as u32, libc::O_WRONLY as u32, 0);
        if fd < 0 {
            return 4;
        }
        if common::int80(WRITE_32, fd as u32, data as u32, 8) != 8 {
            return 5;
        }
        common::int80(CLOSE_32, fd as u32, 0, 0);
        0
    });
    let rows = unseen_writes(&mut pods, &path_str(dir.path()), child, 2).await;
    let by_64_str = path_str(&by_64);
    let seen: Vec<(Op, &str)> = rows.iter().map(|r| (r.op, r.path.as_str())).collect();
    assert_eq!(
        seen,
        [(Op::Open, by_64_str.as_str()), (Op::Close, &by_64_str)]
    );
    assert_eq!(std::fs::read(&by_64).unwrap(), b"COMPAT!!");
    assert_eq!(std::fs::read(&by_32).unwrap(), b"COMPAT!!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fd_kept_across_exec_is_followed_and_one_closed_by_cloexec_is_not_reported() {
    let dir = tempdir();
    let file = dir.path().join("kept");
    std::fs::write(&file, "").unwrap();
    let file_c = cstr(&path_str(&file));
    // bash: dash redirects single-digit fds only.
    let (bash, bash_name, dash_c) = (cstr("/bin/bash"), cstr("bash"), cstr("-c"));
    let script = cstr(&format!("echo from-bash >&{DUP_FD}"));
    let null = std::ptr::null::<libc::c_char>();
    let mut pods = Pods::new(0xfa00);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let kept = libc::openat(libc::AT_FDCWD, file_c.as_ptr(), libc::O_WRONLY);
        libc::dup2(kept, DUP_FD);
        libc::close(kept);
        libc::openat(
            libc::AT_FDCWD,
            file_c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        let argv = [bash_name.as_ptr(), dash_c.as_ptr(), script.as_ptr(), null];
        libc::execve(bash.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    let pid = child.pid;
    let mut trace = pods.trace(params(&[&path_str(dir.path())], &[])).await;
    assert_eq!(run(child).await, 0);
    let got = collect_settled(&mut trace.events, |c| !exits(c).is_empty()).await;
    let seen: Vec<(Op, i32, i64, String)> = accesses(&got)
        .into_iter()
        .filter(|(row, _, _)| row.pid == pid)
        .map(|(row, _, file)| (row.op, row.fd, open_ok(&row), text(&file.exe)))
        .collect();
    let (test, bash_exe) = (
        this_exe(),
        path_str(&std::fs::canonicalize("/bin/bash").unwrap()),
    );
    let kept_fd = seen[0].1;
    let cloexec_fd = seen[2].1;
    assert_eq!(
        seen,
        [
            (Op::Open, kept_fd, 0, test.clone()),
            (Op::Close, kept_fd, 0, test.clone()),
            (Op::Open, cloexec_fd, 0, test),
            // bash writes through the fd it inherited, dup2()ed onto its
            // stdout: the same open file, followed under any fd. Exec
            // closed the O_CLOEXEC one without a close(2): no row.
            (Op::Write, 1, 10, bash_exe),
        ],
        "{:#?}",
        got.events
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"from-bash\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_cross_mounts_and_are_seen_from_the_process_root() {
    let dir = tempdir();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("mnt")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(root.join("data/file"), "data").unwrap();
    let (root_c, mnt_c) = (cstr(&path_str(&root)), cstr(&path_str(&root.join("mnt"))));
    let (slash, tmpfs) = (cstr("/"), cstr("tmpfs"));
    let (in_mnt, in_data) = (cstr("/mnt/new"), cstr("/data/file"));
    let null = std::ptr::null::<libc::c_char>();
    let mut pods = Pods::new(0xfb00);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        // A mount namespace of its own, like a container's: the tmpfs
        // mount and the chroot go away with the child.
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return 2;
        }
        let private = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(null, slash.as_ptr(), null, private, std::ptr::null()) != 0 {
            return 3;
        }
        if libc::mount(
            tmpfs.as_ptr(),
            mnt_c.as_ptr(),
            tmpfs.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return 4;
        }
        if libc::chroot(root_c.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
            return 5;
        }
        let flags = libc::O_WRONLY | libc::O_CREAT;
        let fd = libc::openat(libc::AT_FDCWD, in_mnt.as_ptr(), flags, 0o600);
        libc::write(fd, b"x".as_ptr().cast(), 1);
        libc::close(fd);
        let fd = libc::openat(libc::AT_FDCWD, in_data.as_ptr(), libc::O_RDONLY);
        let mut buf = [0u8; 8];
        libc::read(fd, buf.as_mut_ptr().cast(), 8);
        libc::close(fd);
        0
    });
    let pid = child.pid;
    let mut trace = pods.trace(params(&["/mnt/", "/data/"], &[])).await;
    assert_eq!(run(child).await, 0);
    let got = collect_settled(&mut trace.events, |c| rows(c).len() >= 6).await;
    let seen: Vec<(Op, String, i64)> = rows(&got)
        .into_iter()
        .filter(|r| r.pid == pid)
        .map(|r| (r.op, r.path.clone(), open_ok(&r)))
        .collect();
    let (new, file) = ("/mnt/new".to_string(), "/data/file".to_string());
    assert_eq!(
        seen,
        [
            (Op::Open, new.clone(), 0),
            (Op::Write, new.clone(), 1),
            (Op::Close, new, 0),
            (Op::Open, file.clone(), 0),
            (Op::Read, file.clone(), 4),
            (Op::Close, file, 0),
        ],
        "paths from the process's root, across the tmpfs mount"
    );
    let host_mntns = std::fs::metadata("/proc/self/ns/mnt").unwrap();
    for (event, file) in file_events(&got) {
        let process = event.process.as_ref().unwrap();
        assert_ne!(
            process.mntns_id,
            std::os::unix::fs::MetadataExt::ino(&host_mntns)
        );
        // The executable lies outside the chroot: shown from the mount
        // namespace's root, as the walk never meets the process's root.
        assert_eq!(text(&file.exe), this_exe());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_executable_path_keeps_its_end_and_is_marked() {
    let dir = tempdir();
    let mut deep = dir.path().to_path_buf();
    for i in 0..6 {
        deep.push(format!("{i}{}", "d".repeat(199)));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let program = deep.join("true");
    std::fs::copy("/usr/bin/true", &program).unwrap();
    let real = path_str(&std::fs::canonicalize(&program).unwrap());
    assert!(real.len() > 1100);
    let (program_c, name) = (cstr(&path_str(&program)), cstr("true"));
    let null = std::ptr::null::<libc::c_char>();
    let mut pods = Pods::new(0xfc00);
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let argv = [name.as_ptr(), null];
        libc::execve(program_c.as_ptr(), argv.as_ptr(), [null].as_ptr());
        1
    });
    let mut trace = pods.trace(v1::FileParams::default()).await;
    assert_eq!(run(child).await, 0);
    let got = collect_settled(&mut trace.events, |c| !exits(c).is_empty()).await;
    let files = file_events(&got);
    assert_eq!(files.len(), 2, "exec and exit: {:#?}", got.events);
    for (_, file) in files {
        // The kernel side keeps the last FILE_EXE_MAX - 1 = 1023 bytes.
        assert_eq!(text(&file.exe), real[real.len() - 1023..]);
        assert!(file.exe_truncated);
    }
}

/// Sends `fd` over the unix socket `socket` as SCM_RIGHTS.
///
/// # Safety
/// `socket` and `fd` must be open descriptors of the calling process.
unsafe fn send_fd(socket: i32, fd: i32) -> isize {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u8; 64];
    // SAFETY: a zeroed msghdr is valid; every pointer set below points into
    // this frame's buffers, which outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    message.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
    // SAFETY: msg_control points at a buffer of at least CMSG_SPACE(4)
    // bytes, so the first header and its 4 data bytes fit in it.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(4) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<i32>(), fd);
        libc::sendmsg(socket, &message, 0)
    }
}

/// Receives a descriptor sent by [`send_fd`]; -1 on failure.
///
/// # Safety
/// `socket` must be an open unix socket of the calling process.
unsafe fn receive_fd(socket: i32) -> i32 {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u8; 64];
    // SAFETY: as in send_fd.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = control.len();
    // SAFETY: the buffers outlive the call; the header is read only when
    // recvmsg filled one in.
    unsafe {
        if libc::recvmsg(socket, &mut message, 0) != 1 {
            return -1;
        }
        let header = libc::CMSG_FIRSTHDR(&message);
        if header.is_null() || (*header).cmsg_type != libc::SCM_RIGHTS {
            return -1;
        }
        std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<i32>())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_passed_over_a_unix_socket_is_still_followed() {
    let dir = tempdir();
    let file = dir.path().join("passed");
    std::fs::write(&file, "").unwrap();
    let file_c = cstr(&path_str(&file));
    let mut pods = Pods::new(0xfb00);
    // The sender opens the file after the fork, so the receiver gets the
    // open file only through the socket, under a descriptor of its own.
    // SAFETY: libc calls in the forked child, with C strings and buffers that outlive them.
    let child = pods.child(true, move || unsafe {
        let mut pair = [0; 2];
        if libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, pair.as_mut_ptr()) != 0 {
            return 2;
        }
        let receiver = libc::fork();
        if receiver == 0 {
            let fd = receive_fd(pair[1]);
            let written = libc::write(fd, b"passed".as_ptr().cast(), 6);
            libc::_exit(if written == 6 { 0 } else { 3 });
        }
        let fd = libc::openat(libc::AT_FDCWD, file_c.as_ptr(), libc::O_WRONLY);
        if send_fd(pair[0], fd) != 1 {
            return 4;
        }
        libc::close(fd);
        let mut status = 0;
        libc::waitpid(receiver, &mut status, 0);
        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
            0
        } else {
            5
        }
    });
    let sender = child.pid;
    let mut trace = pods.trace(params(&[&path_str(dir.path())], &[])).await;
    assert_eq!(run(child).await, 0);
    let got = collect_settled(&mut trace.events, |c| {
        exits(c).iter().any(|(pid, _, _)| *pid == sender)
    })
    .await;
    let path = path_str(&file);
    // The sender's close and the receiver's write race: compare in a
    // fixed order.
    let mut seen: Vec<(bool, i32, i64, String)> = rows(&got)
        .into_iter()
        .map(|row| (row.pid == sender, row.op as i32, open_ok(&row), row.path))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (false, Op::Write as i32, 6, path.clone()),
            (true, Op::Open as i32, 0, path.clone()),
            (true, Op::Close as i32, 0, path),
        ],
        "{:#?}",
        got.events
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"passed");
}
