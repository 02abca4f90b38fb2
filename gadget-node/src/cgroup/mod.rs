//! Container identity from cgroup v2: where the cgroup2 filesystem is mounted
//! ([`find_cgroup2_mount`]), what the kubelet's cgroup paths say about pods
//! and containers ([`parse_kubelet_cgroup`]), and a resolver from the
//! kernel's cgroup id to the container it belongs to ([`CgroupResolver`]).
//!
//! `bpf_get_current_cgroup_id()` returns the id of the kernfs node of the
//! task's cgroup v2 directory, which is also that directory's inode number, so
//! walking the cgroup2 tree and reading inode numbers maps kernel ids to paths
//! without any help from the container runtime.

use std::io;
use std::path::PathBuf;

mod kubelet;
mod mountinfo;
mod resolver;

pub use kubelet::{parse_kubelet_cgroup, ContainerCgroup};
pub use mountinfo::{cgroup2_mount, find_cgroup2_mount};
pub use resolver::{CgroupResolver, CgroupResolverConfig, Lookup};

/// Errors finding or reading the cgroup v2 hierarchy.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The mount table could not be read.
    #[error("cannot read the mount table {path}")]
    ReadMountInfo {
        /// The file that was read.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: io::Error,
    },
    /// No cgroup2 filesystem is mounted where this process can see it.
    #[error(
        "no cgroup2 filesystem in {path}; cgroup v2 is needed to tell containers apart \
         (on a node agent, mount the host's /sys/fs/cgroup)"
    )]
    NoCgroup2Mount {
        /// The mount table that was searched.
        path: PathBuf,
    },
    /// The root of the cgroup2 hierarchy could not be listed.
    #[error("cannot list the cgroup2 root {path}")]
    ReadRoot {
        /// The cgroup2 root directory.
        path: PathBuf,
        /// Why listing failed.
        #[source]
        source: io::Error,
    },
}
