//! The end-to-end cluster of `--port-forward`: the local control plane
//! with the real node on this host (see [`crate::e2e::RealNodeCluster`]),
//! gadget-node deployed there by `kubectl-gadget deploy --wait`, so that a
//! trace goes client → API server → the kubelet's port-forward → the gadget
//! pod, as on a user's cluster. The bench's workloads run on this host,
//! outside any pod: the gadget pod traces them with `--host`.

use std::fs::File;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::io::{AsRawFd as _, FromRawFd as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::e2e::RealNodeCluster;
use crate::util::run_checked;

/// The lock that every run of the end-to-end cluster holds while its
/// cluster is up: runs share fixed names, paths, the `cni0` bridge and
/// `/run/containerd`. Run them under `flock /tmp/kgadget-e2e.lock`; the
/// bench takes it itself, or keeps the descriptor `flock` passed it.
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
    /// the pod on this host, one of each of [`RELAYS`].
    pub relay_pids: [u32; RELAYS.len()],
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
fn relay_processes() -> Result<[u32; RELAYS.len()]> {
    let mut pids = [0; RELAYS.len()];
    for (name, slot) in RELAYS.into_iter().zip(&mut pids) {
        let found: Vec<u32> = processes()?
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
            .collect();
        match found[..] {
            [pid] => *slot = pid,
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
    _file: File,
}

impl E2eLock {
    /// Waits for the lock on `path`, saying so every minute. When this
    /// process already holds it through a descriptor it inherited (the
    /// bench run under `flock PATH cargo xtask bench`), that one is kept
    /// open instead, so the lock lasts as long as this process even if
    /// `flock` is interrupted first.
    fn take(path: &Path) -> Result<E2eLock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut said = None::<Instant>;
        loop {
            if try_lock(&file) {
                return Ok(E2eLock { _file: file });
            }
            if let Some(held) = other_descriptor(&file)?.filter(try_lock) {
                return Ok(E2eLock { _file: held });
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

/// Takes an exclusive `flock` on `file`'s open file description without
/// waiting; whether it has it (also when that description already had it).
fn try_lock(file: &File) -> bool {
    // SAFETY: flock takes the descriptor of an open file; no pointers.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// A duplicate (close-on-exec) of another descriptor of this process that
/// is open on the same file as `file`.
fn other_descriptor(file: &File) -> Result<Option<File>> {
    let this = file.metadata()?;
    for entry in std::fs::read_dir("/proc/self/fd").context("cannot list /proc/self/fd")? {
        let entry = entry?;
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        // The directory's own descriptor is gone by now: skip what fails.
        let Ok(other) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if fd == file.as_raw_fd() || (other.dev(), other.ino()) != (this.dev(), this.ino()) {
            continue;
        }
        // SAFETY: fcntl takes a descriptor number and an integer; on
        // success the new descriptor is this function's alone.
        let duplicate = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        if duplicate >= 0 {
            // SAFETY: `duplicate` is an open descriptor nothing else owns.
            return Ok(Some(unsafe { File::from_raw_fd(duplicate) }));
        }
    }
    Ok(None)
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
    fn a_lock_held_elsewhere_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let mut holder = Command::new("flock")
            .arg(&path)
            .args(["sleep", "1.5"])
            .spawn()
            .unwrap();
        // Until flock has it.
        while !std::fs::read_to_string("/proc/locks")
            .unwrap()
            .contains(&format!(" {} ", holder.id()))
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let asked = Instant::now();
        let lock = E2eLock::take(&path).unwrap();
        assert!(
            asked.elapsed() >= Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        assert!(holder.wait().unwrap().success());
        drop(lock);
    }

    #[test]
    fn a_lock_this_process_holds_already_is_kept_not_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        // As `flock PATH cargo xtask bench` leaves it: a descriptor of the
        // file, locked, that this process has from elsewhere.
        let inherited = File::create(&path).unwrap();
        assert!(try_lock(&inherited));
        let (sender, receiver) = std::sync::mpsc::channel();
        let taker = path.clone();
        std::thread::spawn(move || sender.send(E2eLock::take(&taker).map(|_| ())));
        receiver
            .recv_timeout(Duration::from_secs(10))
            .expect("take waited for a lock this process holds")
            .unwrap();
    }
}
