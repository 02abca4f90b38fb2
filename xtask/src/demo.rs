//! `cargo xtask demo`: the product on this host, no cluster needed.
//!
//! Starts `gadget-node serve` on a private unix socket and points
//! `kubectl-gadget` at it with `--node-address`, while a small workload runs
//! commands and opens files, so that real rows come out: first `trace exec`
//! in columns, then `trace open` in the compact one-line form.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{cargo, run_checked, workspace_root};

/// How long each trace runs.
const TRACE_SECONDS: &str = "4";

/// A shell loop that execs and opens known things while a trace runs.
const WORKLOAD: &str = "sleep 1; for i in 1 2 3; do \
    cat /etc/hostname >/dev/null; ls /etc/ssl >/dev/null 2>&1; \
    cat /etc/does-not-exist 2>/dev/null; sleep 0.5; done";

/// Kills the node (and its socket) when the demo ends, however it ends.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM: the node detaches its programs and removes its socket.
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

pub fn run(_args: &[String]) -> Result<()> {
    setup::ensure_build_tools()?;
    setup::require_kernel_access("the demo")?;
    run_checked(cargo().args([
        "build",
        "--quiet",
        "-p",
        "gadget-node",
        "-p",
        "kubectl-gadget",
    ]))?;
    let bin = workspace_root().join("target/debug");
    let dir = std::env::temp_dir().join(format!("gadget-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let address = format!("unix://{}", dir.join("gadget.sock").display());

    eprintln!("\n== starting gadget-node on {address}");
    let _node = Node(
        Command::new(bin.join("gadget-node"))
            .args(["serve", "--no-kubernetes", "--listen", &address])
            .env("RUST_LOG", "warn")
            .spawn()
            .context("cannot start gadget-node")?,
    );
    wait_healthy(&bin.join("gadget-node"), &address)?;

    for (gadget, extra) in [
        ("exec", vec![]),
        ("open", vec!["--prefix", "/etc/", "-o", "compact"]),
    ] {
        eprintln!(
            "\n== kubectl gadget trace {gadget} --host {} (while a workload runs)",
            extra.join(" ")
        );
        let workload = Command::new("sh")
            .args(["-c", WORKLOAD])
            .stdout(Stdio::null())
            .spawn()?;
        let mut trace = Command::new(bin.join("kubectl-gadget"));
        trace
            .args([
                "trace",
                gadget,
                "--node-address",
                &address,
                "--host",
                "-t",
                TRACE_SECONDS,
            ])
            .args(&extra);
        let result = run_checked(&mut trace);
        reap(workload);
        result?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn reap(mut child: Child) {
    let _ = child.wait();
}

/// Waits until the node answers its gRPC health check.
fn wait_healthy(node: &Path, address: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let healthy = Command::new(node)
            .args(["health", "--listen", address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if healthy {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("gadget-node did not become healthy on {address} within 20 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
