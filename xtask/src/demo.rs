//! `cargo xtask demo`: the product on this host, no cluster needed.
//!
//! While a small workload runs commands and opens files, so that real rows
//! come out: first local mode, `gadget-node trace exec` (the gadget runs in
//! that process, no server, no cluster), in columns; then the client path,
//! `gadget-node serve` on a private unix socket and `kubectl-gadget trace
//! open --node-address` talking gRPC to it, in the compact one-line form.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::setup;
use crate::util::{cargo, run_checked, target_dir};

/// How long each trace runs.
const TRACE_SECONDS: &str = "4";

/// A shell loop that execs and opens known things while a trace runs.
const WORKLOAD: &str = "sleep 1; for i in 1 2 3; do \
    cat /etc/hostname >/dev/null; ls /etc/ssl >/dev/null 2>&1; \
    cat /etc/does-not-exist 2>/dev/null; sleep 0.5; done";

/// Kills the node (and its socket) when the demo (or the bench) ends,
/// however it ends.
pub(crate) struct Node(pub(crate) Child);

impl Drop for Node {
    fn drop(&mut self) {
        // SIGTERM: the node detaches its programs and removes its socket.
        // SAFETY: kill(2) takes no pointers, so it cannot break memory
        // safety; the child is not waited for yet, so its pid is still ours.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Builds gadget-node and kubectl-gadget, then runs the local-mode trace and
/// the client against `gadget-node serve`. Any arguments are ignored.
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
    let bin = target_dir().join("debug");

    eprintln!(
        "\n== local mode: gadget-node trace exec --host -t {TRACE_SECONDS} (while a workload runs)"
    );
    with_workload(Command::new(bin.join("gadget-node")).args([
        "trace",
        "exec",
        "--host",
        "-t",
        TRACE_SECONDS,
    ]))?;

    let dir = std::env::temp_dir().join(format!("gadget-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let address = format!("unix://{}", dir.join("gadget.sock").display());
    eprintln!("\n== starting gadget-node serve on {address}");
    let _node = Node(
        Command::new(bin.join("gadget-node"))
            .args(["serve", "--no-kubernetes", "--listen", &address])
            .env("RUST_LOG", "warn")
            .spawn()
            .context("cannot start gadget-node")?,
    );
    wait_healthy(&bin.join("gadget-node"), &address)?;
    eprintln!(
        "\n== kubectl gadget trace open --node-address {address} --host --prefix /etc/ -o compact -t {TRACE_SECONDS}"
    );
    with_workload(Command::new(bin.join("kubectl-gadget")).args([
        "trace",
        "open",
        "--node-address",
        &address,
        "--host",
        "--prefix",
        "/etc/",
        "-o",
        "compact",
        "-t",
        TRACE_SECONDS,
    ]))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Runs `trace` while the workload runs.
fn with_workload(trace: &mut Command) -> Result<()> {
    let mut workload = Command::new("sh")
        .args(["-c", WORKLOAD])
        .stdout(Stdio::null())
        .spawn()?;
    let result = run_checked(trace);
    let _ = workload.wait();
    result
}

/// Waits until the node answers its gRPC health check.
pub(crate) fn wait_healthy(node: &Path, address: &str) -> Result<()> {
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
