//! The suite's real node: a kubelet and containerd on this host (started by
//! `e2e/node.sh`), joined to a local control plane without KWOK nodes. The
//! gadget-node DaemonSet pod and the workload pods run there in real
//! containers, from images built here and imported into containerd, since
//! nothing may be pulled.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::last_line;
use crate::image::{self, Content, File};
use crate::setup::STATIC_BUSYBOX;
use crate::util::{run_checked, target_dir};

/// The gadget-node image deployed to the real node: the tag `cargo xtask
/// image` gives by default, which is also `kubectl gadget deploy`'s default
/// image. Imported, so the kubelet never pulls it (IfNotPresent).
pub fn gadget_node_image() -> String {
    format!(
        "ghcr.io/kubectl-gadget/gadget-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The workload pods' image. The registry does not exist, so a pull, which
/// must never happen, fails at once instead of reaching out.
pub const WORKLOAD_IMAGE: &str = "registry.invalid/gadget-e2e/workload:1";

/// The busybox applets the suite runs in workload containers (`sleep` to
/// keep them up, `cat`, `dd`, `sh` and `mkdir` for the traced commands),
/// each a link to `/bin/busybox`.
const WORKLOAD_APPLETS: [(&str, &str); 9] = [
    ("bin/dd", "busybox"),
    ("bin/sh", "busybox"),
    ("bin/sleep", "busybox"),
    ("bin/cat", "busybox"),
    ("bin/mkdir", "busybox"),
    ("bin/echo", "busybox"),
    ("bin/ls", "busybox"),
    ("bin/rm", "busybox"),
    ("bin/true", "busybox"),
];

/// The workload image's directories: `bin` for busybox, and the mount points
/// the runtime fills.
const WORKLOAD_DIRECTORIES: [(&str, u32); 7] = [
    ("bin/", 0o755),
    ("dev/", 0o755),
    ("etc/", 0o755),
    ("proc/", 0o555),
    ("sys/", 0o555),
    ("tmp/", 0o1777),
    ("var/", 0o755),
];

/// Builds the three image archives the real node imports, under
/// `target/e2e-images`: gadget-node (its static release build), the pod
/// sandbox (pause, from `bin`) and the workload (Debian's static busybox).
pub fn build_images(e2e_dir: &Path, bin: &Path) -> Result<Vec<PathBuf>> {
    let out = target_dir().join("e2e-images");
    let node_binary = image::build_static_node()?;
    let gadget_node = out.join("gadget-node.tar");
    image::write_image(
        image::Content::gadget_node(read(&node_binary)?),
        &gadget_node_image(),
        &gadget_node,
    )
    .context("cannot make the gadget-node image")?;

    let mut sandbox = Command::new(e2e_dir.join("node.sh"));
    sandbox.arg("sandbox-image");
    let sandbox_image = last_line(sandbox)?;
    let pause = out.join("pause.tar");
    image::write_image(
        Content {
            title: "pause",
            description: "the pod sandbox, built from Kubernetes' build/pause/linux/pause.c",
            directories: &[],
            files: vec![File {
                path: "pause",
                bytes: read(&bin.join("pause"))?,
                mode: 0o755,
            }],
            symlinks: Vec::new(),
            entrypoint: vec!["/pause"],
            cmd: Vec::new(),
        },
        &sandbox_image,
        &pause,
    )
    .context("cannot make the pause image")?;

    let workload = out.join("workload.tar");
    image::write_image(
        Content {
            title: "gadget-e2e-workload",
            description: "the end-to-end suite's workload containers: a static busybox",
            directories: &WORKLOAD_DIRECTORIES,
            files: vec![File {
                path: "bin/busybox",
                bytes: read(Path::new(STATIC_BUSYBOX))?,
                mode: 0o755,
            }],
            symlinks: WORKLOAD_APPLETS.to_vec(),
            entrypoint: Vec::new(),
            cmd: vec!["sh"],
        },
        WORKLOAD_IMAGE,
        &workload,
    )
    .context("cannot make the workload image")?;
    Ok(vec![pause, gadget_node, workload])
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The real node, up; `node.sh down` when dropped, which removes what it
/// left on this host.
pub struct RealNode {
    script: PathBuf,
    bin: PathBuf,
    /// Left running when dropped, for a look around.
    keep: bool,
    /// Its node name.
    pub name: String,
}

impl RealNode {
    /// Starts the node with `bin`'s kubelet and containerd, imports
    /// `images`, and waits until it is Ready; `keep` leaves it running when
    /// dropped.
    pub fn up(e2e_dir: &Path, bin: &Path, images: &[PathBuf], keep: bool) -> Result<RealNode> {
        let script = e2e_dir.join("node.sh");
        let mut command = Command::new(&script);
        command.arg("up").args(images).env("GADGET_E2E_BIN", bin);
        // node.sh removes what it started when `up` fails.
        let name = last_line(command).context("the real node did not start")?;
        Ok(RealNode {
            script,
            bin: bin.to_path_buf(),
            keep,
            name,
        })
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("e2e: the real node {} is kept", self.name);
            return;
        }
        let mut down = Command::new(&self.script);
        down.arg("down").env("GADGET_E2E_BIN", &self.bin);
        if let Err(err) = run_checked(&mut down) {
            eprintln!("e2e: {err:#}");
        }
    }
}
