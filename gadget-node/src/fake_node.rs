//! What unit tests use in place of a node: a cgroup tree laid out like the
//! kubelet's in a temporary directory, and pods as the API server reports
//! them.
//!
//! A plain directory is enough for the cgroup resolver: it reads only names
//! and inode numbers, and the inode number of a cgroup2 directory is the
//! cgroup id the kernel reports, so the inode numbers of temporary
//! directories stand in for cgroup ids.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::cgroup::{CgroupResolver, CgroupResolverConfig};

#[path = "../tests/common/pods.rs"]
mod pods;

pub(crate) use pods::pod;

/// A container id as the runtime writes it: 64 lower-case hex digits.
pub(crate) const CONTAINER_ID: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A pod UID as in `metadata.uid`.
pub(crate) const POD_UID: &str = "8f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b";

/// A cgroup tree in a temporary directory, removed when dropped.
pub(crate) struct FakeTree {
    dir: tempfile::TempDir,
}

impl FakeTree {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The root of the tree, where a cgroup2 mount would be.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates `relative` and its missing parents; returns its cgroup id.
    pub(crate) fn mkdir(&self, relative: &str) -> u64 {
        let path = self.dir.path().join(relative.trim_start_matches('/'));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::metadata(&path).unwrap().ino()
    }

    /// Removes the empty directory `relative`, as the kubelet does when a
    /// container is gone.
    pub(crate) fn rmdir(&self, relative: &str) {
        std::fs::remove_dir(self.dir.path().join(relative.trim_start_matches('/'))).unwrap();
    }

    /// A resolver walking this tree.
    pub(crate) fn resolver(&self, config: CgroupResolverConfig) -> CgroupResolver {
        CgroupResolver::with_config(self.dir.path(), config)
    }
}

/// The cgroup of container `id` of pod `uid` (cgroupfs driver, burstable).
pub(crate) fn container_path(uid: &str, id: &str) -> String {
    format!("/kubepods/burstable/pod{uid}/{id}")
}
