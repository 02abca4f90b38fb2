//! The local harness's node agents: for each gadget pod the DaemonSet
//! controller created, a real `gadget-node` on this host, started with the
//! command, arguments and environment of the pod's spec, and a KWOK
//! `PortForward` that sends the pod's gadget port to it.
//!
//! Only what must differ on a shared host is rewritten: the image's binary
//! path becomes the built binary, the pod's loopback port a free port of
//! this host (three "nodes" cannot all listen on 7100), `--kubeconfig` is
//! added (there is no service account token to find), and the downward API
//! is resolved as the kubelet would. Everything else comes from the spec, so
//! a manifest whose command line does not work fails the suite.
//!
//! Each agent runs in a mount namespace of its own where the cgroup2 mount
//! shows only its node's subtree of the suite's cgroup tree, as a real node
//! only has its own pods' cgroups: the simulated nodes share one kernel, and
//! otherwise every node would see every node's containers.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::process::{display, run};
use crate::wait::{poll, Poll};

/// Where the image installs gadget-node (the DaemonSet's command).
pub const IMAGE_BINARY: &str = "/usr/bin/gadget-node";

/// The address form the node listens on in its pod: the pod's loopback.
const LOOPBACK: &str = "tcp://127.0.0.1:";

/// The PATH of the agent's environment: the image sets no other.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How a gadget pod's container is run on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCommand {
    /// The node of the pod.
    pub node: String,
    /// The pod.
    pub pod: String,
    /// The port the spec listens on in the pod (what a port-forward asks for).
    pub pod_port: u16,
    /// The port it listens on here instead.
    pub host_port: u16,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// The readiness probe's command, rewritten alike.
    pub probe: Vec<String>,
}

/// Rewrites the gadget pod's container into a command for this host; see
/// the module docs for what changes.
pub fn agent_command(
    pod: &Pod,
    binary: &Path,
    host_port: u16,
    kubeconfig: &Path,
) -> Result<AgentCommand> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().context("the gadget pod has no spec")?;
    let node = spec
        .node_name
        .clone()
        .with_context(|| format!("gadget pod {name} is not scheduled"))?;
    let [container] = spec.containers.as_slice() else {
        bail!(
            "gadget pod {name} has {} containers; the harness runs one",
            spec.containers.len()
        );
    };
    let mut words: Vec<String> = container.command.clone().unwrap_or_default();
    words.extend(container.args.clone().unwrap_or_default());
    let pod_port = listen_port(&words).with_context(|| {
        format!("gadget pod {name} runs {words:?}, with no --listen {LOOPBACK}PORT")
    })?;
    let rewrite = |words: &[String]| -> Result<Vec<String>> {
        match words.first() {
            Some(program) if program == IMAGE_BINARY => {}
            other => bail!("gadget pod {name} runs {other:?}, not {IMAGE_BINARY} (where the image installs gadget-node)"),
        }
        let pod_address = format!("{LOOPBACK}{pod_port}");
        Ok(std::iter::once(binary.display().to_string())
            .chain(words[1..].iter().map(|word| {
                if *word == pod_address {
                    format!("{LOOPBACK}{host_port}")
                } else {
                    word.clone()
                }
            }))
            .collect())
    };
    let mut argv = rewrite(&words)?;
    argv.push("--kubeconfig".into());
    argv.push(kubeconfig.display().to_string());
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|probe| probe.exec.as_ref())
        .and_then(|exec| exec.command.clone())
        .with_context(|| format!("gadget pod {name} has no exec readiness probe to wait on"))?;
    let probe = rewrite(&probe)?;
    let mut env = vec![("PATH".to_string(), IMAGE_PATH.to_string())];
    env.extend(environment(pod, container)?);
    Ok(AgentCommand {
        node,
        pod: name,
        pod_port,
        host_port,
        argv,
        env,
        probe,
    })
}

/// The port of the `--listen tcp://127.0.0.1:PORT` (or `--listen=...`) word.
fn listen_port(words: &[String]) -> Option<u16> {
    let address = words.iter().enumerate().find_map(|(i, word)| {
        if word == "--listen" {
            words.get(i + 1).map(String::as_str)
        } else {
            word.strip_prefix("--listen=")
        }
    })?;
    address.strip_prefix(LOOPBACK)?.parse().ok()
}

/// The container's environment as the kubelet sets it: plain values, and
/// the downward API fields the manifests use.
fn environment(pod: &Pod, container: &Container) -> Result<Vec<(String, String)>> {
    let mut env = Vec::new();
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => value.clone(),
            (None, None) => String::new(),
            (None, Some(source)) => {
                let field = source
                    .field_ref
                    .as_ref()
                    .map(|field| field.field_path.as_str());
                let value = match field {
                    Some("spec.nodeName") => pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                    Some("metadata.name") => pod.metadata.name.clone(),
                    Some("metadata.namespace") => pod.metadata.namespace.clone(),
                    _ => bail!(
                        "the gadget pod's env {} comes from {source:?}, which the harness does not resolve",
                        var.name
                    ),
                };
                value.with_context(|| {
                    format!(
                        "the gadget pod has no {} for env {}",
                        field.unwrap_or(""),
                        var.name
                    )
                })?
            }
        };
        env.push((var.name.clone(), value));
    }
    Ok(env)
}

/// A free TCP port on 127.0.0.1 (free when asked; agents bind it right
/// after).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

/// What the cgroup2 mount shows an agent: `subtree` (a directory of the
/// mount at `mount`), bound over `mount` through the empty directory
/// `staging`.
#[derive(Debug, Clone)]
pub struct CgroupView {
    /// The cgroup2 mount point.
    pub mount: PathBuf,
    /// The node's directory below it.
    pub subtree: PathBuf,
    /// An empty directory outside it, for the move.
    pub staging: PathBuf,
}

impl CgroupView {
    /// Makes `command` enter a mount namespace of its own, not propagating
    /// back, in which the cgroup2 mount is `subtree`.
    fn apply(&self, command: &mut Command) -> Result<()> {
        let c_path = |path: &Path| {
            CString::new(path.as_os_str().as_bytes())
                .with_context(|| format!("{} has a NUL byte", path.display()))
        };
        let (mount, subtree, staging) = (
            c_path(&self.mount)?,
            c_path(&self.subtree)?,
            c_path(&self.staging)?,
        );
        std::fs::create_dir_all(&self.staging)?;
        let check = |result: libc::c_int| {
            if result == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: between fork and exec the child only makes raw syscalls
        // with strings prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let none = std::ptr::null();
                let no_data = std::ptr::null();
                check(libc::unshare(libc::CLONE_NEWNS))?;
                let private = libc::MS_REC | libc::MS_PRIVATE;
                check(libc::mount(none, c"/".as_ptr(), none, private, no_data))?;
                let (from, to) = (subtree.as_ptr(), staging.as_ptr());
                check(libc::mount(from, to, none, libc::MS_BIND, no_data))?;
                // The whole hierarchy goes; only the node's subtree comes back.
                check(libc::umount2(mount.as_ptr(), libc::MNT_DETACH))?;
                let (from, to) = (staging.as_ptr(), mount.as_ptr());
                check(libc::mount(from, to, none, libc::MS_MOVE, no_data))
            });
        }
        Ok(())
    }
}

/// A running gadget-node; killed when dropped.
pub struct NodeAgent {
    /// How it was started.
    pub command: AgentCommand,
    /// Its stdout and stderr.
    pub log: PathBuf,
    child: Option<Child>,
}

impl NodeAgent {
    /// Starts the agent, seeing the cgroups of `view`, logging to
    /// `log_dir/<node>.log`, and waits until its readiness probe passes.
    pub fn start(
        command: AgentCommand,
        view: &CgroupView,
        log_dir: &Path,
        timeout: Duration,
    ) -> Result<NodeAgent> {
        let log = log_dir.join(format!("{}.log", command.node));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut process = Command::new(&command.argv[0]);
        process
            .args(&command.argv[1..])
            .env_clear()
            .envs(command.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe. The agent dies with the suite
        // even when the suite is killed before its guards run.
        unsafe {
            process.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        view.apply(&mut process)?;
        let line = display(&process);
        let child = process
            .spawn()
            .with_context(|| format!("cannot start {line}"))?;
        let mut agent = NodeAgent {
            command,
            log,
            child: Some(child),
        };
        let what = format!(
            "gadget-node of {} to pass its readiness probe",
            agent.command.node
        );
        poll(&what, timeout, || {
            if let Some(status) = agent.child.as_mut().and_then(|c| c.try_wait().transpose()) {
                bail!("{line} exited ({}):\n{}", status?, agent.log_tail(20));
            }
            let mut probe = Command::new(&agent.command.probe[0]);
            probe.args(&agent.command.probe[1..]);
            let finished = run(&mut probe, Duration::from_secs(10))?;
            Ok(if finished.status.success() {
                Poll::Ready(())
            } else {
                Poll::Pending(finished.stderr.trim().to_string())
            })
        })?;
        Ok(agent)
    }

    /// Kills it with SIGKILL, as a crash or an OOM kill would end it.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill gadget-node")?;
            child.wait()?;
        }
        Ok(())
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubectl_gadget::manifests::{self, RenderOptions};

    /// A pod as the DaemonSet controller makes it from the rendered
    /// DaemonSet: its template, scheduled on `node`.
    fn gadget_pod(node: &str) -> Pod {
        let manifests = manifests::build(&RenderOptions::default()).unwrap();
        let template = manifests.daemon_set.spec.unwrap().template;
        let mut spec = template.spec.unwrap();
        spec.node_name = Some(node.into());
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("gadget-node-abcde".into()),
                namespace: Some(manifests::NAMESPACE.into()),
                ..template.metadata.unwrap_or_default()
            },
            spec: Some(spec),
            status: None,
        }
    }

    #[test]
    fn the_deployed_command_line_runs_here_with_a_port_of_its_own() {
        let command = agent_command(
            &gadget_pod("node-1"),
            Path::new("/w/target/debug/gadget-node"),
            41234,
            Path::new("/k/config"),
        )
        .unwrap();
        assert_eq!(
            command,
            AgentCommand {
                node: "node-1".into(),
                pod: "gadget-node-abcde".into(),
                pod_port: manifests::GRPC_PORT,
                host_port: 41234,
                argv: [
                    "/w/target/debug/gadget-node",
                    "serve",
                    "--listen",
                    "tcp://127.0.0.1:41234",
                    "--kubeconfig",
                    "/k/config"
                ]
                .map(String::from)
                .to_vec(),
                env: vec![
                    ("PATH".into(), IMAGE_PATH.into()),
                    ("NODE_NAME".into(), "node-1".into())
                ],
                probe: [
                    "/w/target/debug/gadget-node",
                    "health",
                    "--listen",
                    "tcp://127.0.0.1:41234"
                ]
                .map(String::from)
                .to_vec(),
            }
        );
    }

    #[test]
    fn a_command_line_the_harness_cannot_map_is_an_error() {
        let mut pod = gadget_pod("node-1");
        let container = &mut pod.spec.as_mut().unwrap().containers[0];
        container.args = Some(vec!["serve".into()]);
        let err = agent_command(&pod, Path::new("/b"), 1, Path::new("/k")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "gadget pod gadget-node-abcde runs [\"/usr/bin/gadget-node\", \"serve\"], with no --listen tcp://127.0.0.1:PORT"
        );

        let mut pod = gadget_pod("node-1");
        pod.spec.as_mut().unwrap().containers[0].command = Some(vec!["/gadget-node".into()]);
        let err = agent_command(&pod, Path::new("/b"), 1, Path::new("/k")).unwrap_err();
        assert!(
            err.to_string()
                .contains("runs Some(\"/gadget-node\"), not /usr/bin/gadget-node"),
            "{err}"
        );
    }

    #[test]
    fn listen_flag_in_either_form() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            listen_port(&words(&["serve", "--listen", "tcp://127.0.0.1:7100"])),
            Some(7100)
        );
        assert_eq!(
            listen_port(&words(&["serve", "--listen=tcp://127.0.0.1:9"])),
            Some(9)
        );
        assert_eq!(
            listen_port(&words(&["serve", "--listen", "unix:///run/g.sock"])),
            None
        );
    }
}
