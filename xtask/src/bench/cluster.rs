//! The end-to-end cluster of `--port-forward`: the local control plane
//! with the real node on this host (see [`crate::e2e::RealNodeCluster`]),
//! gadget-node deployed there by `kubectl-gadget deploy --wait`, so that a
//! trace goes client → API server → the kubelet's port-forward → the gadget
//! pod, as on a user's cluster. The bench's workloads run on this host,
//! outside any pod: the gadget pod traces them with `--host`.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::e2e::RealNodeCluster;
use crate::util::run_checked;

/// The lock that every run of the end-to-end cluster holds while its
/// cluster is up: runs share fixed names, paths, the `cni0` bridge and
/// `/run/containerd`. Run them under `flock /tmp/kgadget-e2e.lock`; the
/// bench takes it itself (and sees when an ancestor of it holds it).
pub const E2E_LOCK: &str = "/tmp/kgadget-e2e.lock";

/// How long `deploy --wait` may take.
const DEPLOY_TIMEOUT: &str = "5m";

/// The cluster, up, with gadget-node deployed; deleted when dropped (the
/// node, then the control plane), and the lock released after that.
pub struct Cluster {
    // Fields drop in declaration order: the cluster before the lock.
    cluster: RealNodeCluster,
    _lock: E2eLock,
    /// The pid, on this host, of the gadget pod's `gadget-node serve`.
    pub node_pid: u32,
    /// The processes that relay a trace's stream between the client and
    /// the pod on this host ([`RELAYS`]).
    pub relay_pids: Vec<u32>,
}

impl Cluster {
    /// Takes the lock, starts the cluster and the real node, and deploys
    /// gadget-node with `client`.
    pub fn up(client: &Path) -> Result<Cluster> {
        let lock = E2eLock::take(Path::new(E2E_LOCK))?;
        let started = Instant::now();
        let cluster = RealNodeCluster::up()?;
        run_checked(
            Command::new(client)
                .args(["deploy", "--wait", "--timeout", DEPLOY_TIMEOUT, "--image"])
                .arg(cluster.gadget_node_image())
                .arg("--kubeconfig")
                .arg(cluster.kubeconfig()),
        )
        .context("cannot deploy gadget-node to the end-to-end cluster")?;
        let node_pid = gadget_pod_process()?;
        let relay_pids = relay_processes()?;
        eprintln!(
            "bench: gadget-node deployed to {} (pid {node_pid} on this host) {:.0} s after the lock",
            cluster.node_name(),
            started.elapsed().as_secs_f64()
        );
        Ok(Cluster {
            cluster,
            _lock: lock,
            node_pid,
            relay_pids,
        })
    }

    /// The cluster admin's kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.cluster.kubeconfig().to_path_buf()
    }
}

/// The command names of the processes a port-forward's stream goes
/// through on this host: the API server, the kubelet, and containerd, whose
/// CRI streaming server enters the pod's network namespace.
pub const RELAYS: [&str; 3] = ["kube-apiserver", "kubelet", "containerd"];

/// One process of each of [`RELAYS`].
fn relay_processes() -> Result<Vec<u32>> {
    let mut pids = Vec::new();
    for name in RELAYS {
        let found: Vec<u32> = processes()?
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
            .collect();
        match found[..] {
            [pid] => pids.push(pid),
            _ => bail!("expected one {name} process on this host, found {found:?}"),
        }
    }
    Ok(pids)
}

/// The pids in `/proc`.
fn processes() -> Result<impl Iterator<Item = u32>> {
    Ok(std::fs::read_dir("/proc")
        .context("cannot list /proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok()))
}

/// The gadget pod's `gadget-node serve` on this host: the process of that
/// command line in a cgroup of the kubelet's (`kubepods`). The pod's exec
/// probes (`gadget-node health`) run in the same cgroup, briefly.
fn gadget_pod_process() -> Result<u32> {
    let mut found = Vec::new();
    for pid in processes()? {
        let proc = Path::new("/proc").join(pid.to_string());
        // A process may end while the list is read.
        let (Ok(cmdline), Ok(cgroups)) = (
            std::fs::read(proc.join("cmdline")),
            std::fs::read_to_string(proc.join("cgroup")),
        ) else {
            continue;
        };
        if is_gadget_pod_server(&cmdline, &cgroups) {
            found.push(pid);
        }
    }
    match found[..] {
        [pid] => Ok(pid),
        [] => bail!("no gadget-node serve of a pod on this host"),
        _ => bail!("more than one gadget-node serve of a pod on this host: {found:?}"),
    }
}

/// Whether a process's `/proc/PID/cmdline` and `/proc/PID/cgroup` are
/// those of the gadget pod's server.
fn is_gadget_pod_server(cmdline: &[u8], cgroups: &str) -> bool {
    let mut args = cmdline.split(|&b| b == 0);
    let program = args.next().unwrap_or_default();
    program.ends_with(b"gadget-node")
        && args.next() == Some(b"serve".as_slice())
        && cgroups.contains("kubepods")
}

/// [`E2E_LOCK`], held until dropped.
struct E2eLock {
    /// `None` when an ancestor of this process holds the lock (the bench
    /// run under `flock`), which then covers this run.
    _file: Option<File>,
}

impl E2eLock {
    /// Waits for the lock on `path`, saying so every minute.
    fn take(path: &Path) -> Result<E2eLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let inode = file.metadata()?.ino();
        let mut said = None::<Instant>;
        loop {
            // SAFETY: flock takes the descriptor of a file this function
            // owns; no pointers.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(E2eLock { _file: Some(file) });
            }
            let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
            if lock_holders(&locks, inode).into_iter().any(is_ancestor) {
                return Ok(E2eLock { _file: None });
            }
            if said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                eprintln!(
                    "bench: waiting for {}: another run of the end-to-end cluster holds it",
                    path.display()
                );
                said = Some(Instant::now());
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The pids holding a `flock` on the file of inode `inode`, from
/// `/proc/locks` (`1: FLOCK  ADVISORY  WRITE 4242 00:1f:1234 0 EOF`; the
/// lines of waiters have `->` after the number).
fn lock_holders(locks: &str, inode: u64) -> Vec<u32> {
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [_, "FLOCK", _, _, pid, device_inode, ..] => {
                    let (_, lock_inode) = device_inode.rsplit_once(':')?;
                    (lock_inode.parse() == Ok(inode)).then(|| pid.parse().ok())?
                }
                _ => None,
            }
        })
        .collect()
}

/// Whether `pid` is this process's parent, or its parent's, and so on.
fn is_ancestor(pid: u32) -> bool {
    let mut current = std::process::id();
    while current > 1 {
        let Some(parent) = std::fs::read_to_string(format!("/proc/{current}/stat"))
            .ok()
            .and_then(|stat| parent_pid(&stat))
        else {
            return false;
        };
        if parent == pid {
            return true;
        }
        current = parent;
    }
    false
}

/// The parent pid (field 4) of a `/proc/PID/stat` line, counted from the
/// command name's closing parenthesis (the name may hold spaces).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gadget_pods_server_is_told_from_its_probes_and_the_benchs_own() {
        let pod = "0::/kubepods/besteffort/pod1234/abcdef\n";
        assert!(is_gadget_pod_server(
            b"/usr/bin/gadget-node\0serve\0--listen\0tcp://127.0.0.1:7100\0",
            pod
        ));
        // The readiness probe, in the same cgroup.
        assert!(!is_gadget_pod_server(
            b"/usr/bin/gadget-node\0health\0",
            pod
        ));
        // The bench's own `gadget-node serve`, outside any pod.
        assert!(!is_gadget_pod_server(
            b"/work/target/release/gadget-node\0serve\0--no-kubernetes\0",
            "0::/user.slice/session-1.scope\n"
        ));
        assert!(!is_gadget_pod_server(b"sleep\0serve\0", pod));
    }

    #[test]
    fn lock_holders_of_one_inode_without_waiters() {
        let locks = "\
1: FLOCK  ADVISORY  WRITE 4242 00:1f:1234 0 EOF
1: -> FLOCK  ADVISORY  WRITE 5151 00:1f:1234 0 EOF
2: POSIX  ADVISORY  WRITE 777 00:1f:1234 0 EOF
3: FLOCK  ADVISORY  WRITE 999 00:1f:98765 0 EOF
";
        assert_eq!(lock_holders(locks, 1234), [4242]);
        assert_eq!(lock_holders(locks, 98765), [999]);
        assert!(lock_holders(locks, 1).is_empty());
    }

    #[test]
    fn ancestors_are_found_through_proc() {
        let me = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
        let parent = parent_pid(&stat).unwrap();
        assert!(is_ancestor(parent));
        assert!(!is_ancestor(me));
        assert_eq!(parent_pid("42 (a) b) S 7 42 42"), Some(7));
    }

    #[test]
    fn the_lock_is_taken_and_seen_held_by_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let lock = E2eLock::take(&dir.path().join("lock")).unwrap();
        let file = lock._file.as_ref().expect("taken, not inherited");
        let locks = std::fs::read_to_string("/proc/locks").unwrap();
        let inode = file.metadata().unwrap().ino();
        assert!(lock_holders(&locks, inode).contains(&std::process::id()));
    }
}
