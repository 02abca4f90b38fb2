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
        libc::dup2(log_fd, 20);
        libc::write(20, b"dup".as_ptr().cast(), 3);
        libc::close(20);
        // A forked child writes through the inherited fd.
        let pid = libc::fork();
        if pid == 0 {
            libc::write(log_fd, b"child".as_ptr().cast(), 5);
            libc::_exit(0);
        }
        libc::waitpid(pid, std::ptr::null_mut(), 0);
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
        .any(|r| (r.op, r.fd, r.ret) == (Op::Write, 20, 3)));

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
