//! A test-owned subtree of the real cgroup v2 hierarchy, laid out like the
//! kubelet's, with real processes in it; removed when dropped.
//!
//! Tests move only their own children into it, never the test runner.
//! Shared with the end-to-end suite (`e2e/src/lib.rs` includes this file).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gadget_node::cgroup::find_cgroup2_mount;

/// A test-owned subtree of the real cgroup2 hierarchy and the processes
/// placed in it; removes both when dropped.
pub struct CgroupTree {
    pub mount: PathBuf,
    /// Path of the top directory relative to the mount, with a leading `/`.
    pub top: String,
    /// Directories created, in creation order (parents first).
    created: Vec<PathBuf>,
    children: Vec<(PathBuf, Child)>,
}

/// A process placed in a cgroup of a [`CgroupTree`].
pub struct Placed {
    pub pid: u32,
    /// The cgroup's inode number, which is what `bpf_get_current_cgroup_id()`
    /// returns for the process.
    pub cgroup_id: u64,
}

impl CgroupTree {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let mount = find_cgroup2_mount().expect("cgroup2 must be mounted for these tests");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let top = format!("/gadget-test-{}-{n}", std::process::id());
        let mut tree = Self {
            mount,
            top: top.clone(),
            created: Vec::new(),
            children: Vec::new(),
        };
        tree.mkdirs("");
        tree
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.mount
            .join(format!("{}{relative}", self.top).trim_start_matches('/'))
    }

    /// Creates `relative` (below the top directory) and its missing parents.
    pub fn mkdirs(&mut self, relative: &str) -> PathBuf {
        let mut path = self.path("");
        let components = std::iter::once("").chain(relative.split('/').filter(|c| !c.is_empty()));
        for component in components {
            if !component.is_empty() {
                path.push(component);
            }
            match std::fs::create_dir(&path) {
                Ok(()) => self.created.push(path.clone()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create cgroup {}: {e}", path.display()),
            }
        }
        path
    }

    /// Starts `sleep` and moves it (only it) into the cgroup `relative`, which
    /// must be a leaf: cgroup v2 keeps processes out of inner nodes that
    /// delegate controllers.
    pub fn place(&mut self, relative: &str) -> Placed {
        let leaf = self.mkdirs(relative);
        let mut command = Command::new("sleep");
        command.arg("600").stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; the child dies with its parent
        // thread, so a crashed test leaves no sleeper holding the cgroup.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().expect("cannot start sleep");
        let pid = child.id();
        self.children.push((leaf.clone(), child));
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move pid {pid} into {}: {e}", leaf.display()));

        // Cross-check: the kernel's view of the process' cgroup is this
        // directory, and the directory's inode is its kernfs id.
        let expected = format!("{}{relative}", self.top);
        assert_eq!(cgroup_of(pid), expected, "pid {pid}");
        let cgroup_id = std::fs::metadata(&leaf).unwrap().ino();
        assert_eq!(
            kernfs_id(&leaf),
            cgroup_id,
            "inode vs file handle of {}",
            leaf.display()
        );
        Placed { pid, cgroup_id }
    }

    /// Runs `command` to completion inside the leaf cgroup `relative`: the
    /// child joins it between fork and exec, so everything it execs (the
    /// exec itself included) happens in the cgroup.
    pub fn run_in(&mut self, relative: &str, command: &mut Command) -> io::Result<Output> {
        let procs = CString::new(
            self.mkdirs(relative)
                .join("cgroup.procs")
                .as_os_str()
                .as_bytes(),
        )
        .expect("a cgroup path has no NUL byte");
        // SAFETY: between fork and exec the child only makes raw syscalls on
        // memory prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written == 1 {
                    Ok(())
                } else {
                    Err(err)
                }
            });
        }
        command.stdin(Stdio::null()).output()
    }

    /// Moves an existing process (a paused test child) into the leaf cgroup
    /// `relative`; returns the cgroup id its events will carry.
    pub fn move_into(&mut self, relative: &str, pid: u32) -> u64 {
        let leaf = self.mkdirs(relative);
        std::fs::write(leaf.join("cgroup.procs"), pid.to_string())
            .unwrap_or_else(|e| panic!("cannot move pid {pid} into {}: {e}", leaf.display()));
        assert_eq!(cgroup_of(pid), format!("{}{relative}", self.top));
        std::fs::metadata(&leaf).unwrap().ino()
    }

    /// Kills the processes in `relative` and removes that directory.
    pub fn remove(&mut self, relative: &str) {
        let leaf = self.path(relative);
        let (inside, rest): (Vec<_>, Vec<_>) =
            self.children.drain(..).partition(|(path, _)| *path == leaf);
        self.children = rest;
        for (_, child) in inside {
            reap(child);
        }
        rmdir(&leaf).unwrap_or_else(|e| panic!("cannot remove {}: {e}", leaf.display()));
        self.created.retain(|path| *path != leaf);
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        for (_, child) in self.children.drain(..) {
            reap(child);
        }
        for path in self.created.iter().rev() {
            if let Err(e) = rmdir(path) {
                eprintln!("cannot clean up cgroup {}: {e}", path.display());
            }
        }
    }
}

pub fn reap(mut child: Child) {
    let _ = child.kill();
    // A cgroup can be removed only once its processes are gone for good.
    let _ = child.wait();
}

/// Removes an empty cgroup, retrying while the kernel still counts an exited
/// process in it.
pub fn rmdir(path: &Path) -> io::Result<()> {
    for _ in 0..200 {
        match std::fs::remove_dir(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
    std::fs::remove_dir(path)
}

/// The cgroup v2 path of `pid`, from the `0::` line of `/proc/<pid>/cgroup`.
pub fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("0::"))
        .expect("a cgroup v2 line")
        .to_string()
}

/// The kernfs node id of a cgroup directory, from `name_to_handle_at`: the
/// file handle of a kernfs node is its 64-bit id, the same number
/// `bpf_get_current_cgroup_id()` returns (libbpf's selftests read it so).
pub fn kernfs_id(path: &Path) -> u64 {
    #[repr(C)]
    struct FileHandle {
        handle_bytes: u32,
        handle_type: i32,
        f_handle: [u8; 8],
    }
    let mut handle = FileHandle {
        handle_bytes: 8,
        handle_type: 0,
        f_handle: [0; 8],
    };
    let mut mount_id: libc::c_int = 0;
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: the pointers are valid for the call and the handle has room for
    // the 8 bytes announced in handle_bytes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            &mut handle as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    };
    assert_eq!(rc, 0, "name_to_handle_at: {}", io::Error::last_os_error());
    u64::from_ne_bytes(handle.f_handle)
}

/// A container id of 64 hex digits, distinct per `seed`.
pub fn container_id(seed: u64) -> String {
    format!("{seed:016x}").repeat(4)
}

/// A pod UID, distinct per `seed`, written with `separator`.
pub fn pod_uid(seed: u32, separator: char) -> String {
    format!("{seed:08x}-1111-2222-3333-444455556666").replace('-', &separator.to_string())
}
