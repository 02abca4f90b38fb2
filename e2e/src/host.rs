//! What the suite reads on this host about a real node that runs here (see
//! `e2e/node.sh`): the processes of its containers, as the kernel sees
//! them, and the BPF programs loaded.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The capability numbers of `linux/capability.h` for the names a pod spec
/// may add (without the `CAP_` prefix). Only those the DaemonSet may add.
const CAPABILITY_BITS: [(&str, u32); 3] = [("SYS_RESOURCE", 24), ("PERFMON", 38), ("BPF", 39)];

/// The mask of capability sets (as `/proc/PID/status` prints them) that
/// holds exactly `names`.
pub fn capability_mask<S: AsRef<str>>(names: &[S]) -> Result<u64> {
    let mut mask = 0;
    for name in names {
        let name = name.as_ref();
        let (_, bit) = CAPABILITY_BITS
            .iter()
            .find(|(known, _)| *known == name)
            .with_context(|| format!("capability {name} is not one the DaemonSet may add"))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// What the kernel holds about a process's privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessPrivileges {
    /// `CapEff`.
    pub effective: u64,
    /// `CapPrm`.
    pub permitted: u64,
    /// `CapBnd`.
    pub bounding: u64,
    /// `CapAmb`.
    pub ambient: u64,
    /// `NoNewPrivs`.
    pub no_new_privs: bool,
    /// `Seccomp`: 0 none, 1 strict, 2 filter.
    pub seccomp: u32,
    /// Whether the process's `/` is mounted read-only.
    pub read_only_root: bool,
}

impl ProcessPrivileges {
    /// Reads them from `/proc/<pid>`.
    pub fn of(pid: u32) -> Result<ProcessPrivileges> {
        let proc = Path::new("/proc").join(pid.to_string());
        let status = std::fs::read_to_string(proc.join("status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        let mountinfo = std::fs::read_to_string(proc.join("mountinfo"))
            .with_context(|| format!("cannot read /proc/{pid}/mountinfo"))?;
        ProcessPrivileges::parse(&status, &mountinfo)
            .with_context(|| format!("cannot read the privileges of process {pid}"))
    }

    fn parse(status: &str, mountinfo: &str) -> Result<ProcessPrivileges> {
        let field = |name: &str| -> Result<&str> {
            status_field(status, name).with_context(|| format!("no {name} in the status"))
        };
        let hex = |name: &str| -> Result<u64> {
            u64::from_str_radix(field(name)?, 16).with_context(|| format!("{name} is not hex"))
        };
        let number = |name: &str| -> Result<u32> {
            field(name)?
                .parse()
                .with_context(|| format!("{name} is not a number"))
        };
        // mountinfo: id parent major:minor root mount-point options ...; the
        // last mount on "/" is the one the process sees.
        let root_options = mountinfo
            .lines()
            .rev()
            .find_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                (fields.get(4) == Some(&"/")).then(|| fields.get(5).copied())?
            })
            .context("no mount on / in the mountinfo")?;
        Ok(ProcessPrivileges {
            effective: hex("CapEff")?,
            permitted: hex("CapPrm")?,
            bounding: hex("CapBnd")?,
            ambient: hex("CapAmb")?,
            no_new_privs: number("NoNewPrivs")? == 1,
            seccomp: number("Seccomp")?,
            read_only_root: root_options.split(',').any(|option| option == "ro"),
        })
    }
}

/// The value of field `name` in the text of a `/proc/<pid>/status`,
/// trimmed.
fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `RssAnon`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status_field(&status, field)
        .and_then(|value| value.strip_suffix(" kB")?.parse().ok())
        .with_context(|| format!("no {field} in kB in /proc/{pid}/status"))
}

/// The host pid of the process of container `id` (a pod status's
/// `containerd://<id>`, or the bare id) whose command name is `comm` and
/// whose first argument is `arg`: the kubelet's cgroupfs layout puts a
/// container in a cgroup named by its id. The argument tells a server from
/// the probes the kubelet runs beside it (`gadget-node serve` from
/// `gadget-node health`).
pub fn container_process(id: &str, comm: &str, arg: &str) -> Result<u32> {
    let id = id.rsplit("://").next().unwrap_or(id);
    let suffix = format!("/{id}");
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let proc = Path::new("/proc").join(pid.to_string());
        // A process may end while the list is read.
        let (Ok(cgroups), Ok(name), Ok(cmdline)) = (
            std::fs::read_to_string(proc.join("cgroup")),
            std::fs::read_to_string(proc.join("comm")),
            std::fs::read(proc.join("cmdline")),
        ) else {
            continue;
        };
        if name.trim_end() == comm
            && cmdline.split(|&b| b == 0).nth(1) == Some(arg.as_bytes())
            && cgroups.lines().any(|line| line.ends_with(&suffix))
        {
            return Ok(pid);
        }
    }
    bail!("no process {comm} {arg} in the cgroup of container {id} on this host")
}

/// The BPF programs loaded on this host, id to name (`bpftool prog show`).
pub fn loaded_programs() -> Result<BTreeMap<u32, String>> {
    let output = Command::new("bpftool")
        .args(["--json", "prog", "show"])
        .output()
        .context("cannot run bpftool (Debian: apt-get install bpftool)")?;
    if !output.status.success() {
        bail!(
            "bpftool prog show failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_programs(&output.stdout)
}

fn parse_programs(json: &[u8]) -> Result<BTreeMap<u32, String>> {
    #[derive(serde::Deserialize)]
    struct Program {
        id: u32,
        #[serde(default)]
        name: String,
    }
    let programs: Vec<Program> =
        serde_json::from_slice(json).context("bpftool's output is not a list of programs")?;
    Ok(programs.into_iter().map(|p| (p.id, p.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bits are the kernel's (its UAPI header), for exactly the
    /// capabilities deploy may add.
    #[test]
    fn the_bits_are_the_kernel_headers_for_what_deploy_may_add() {
        let header = "/usr/include/linux/capability.h";
        let text = std::fs::read_to_string(header)
            .unwrap_or_else(|e| panic!("{header} (linux-libc-dev): {e}"));
        for (name, bit) in CAPABILITY_BITS {
            let defined = text.lines().find_map(|line| {
                let mut words = line.split_whitespace();
                let define = (words.next(), words.next())
                    == (Some("#define"), Some(&*format!("CAP_{name}")));
                define.then(|| words.next()?.parse::<u32>().ok()).flatten()
            });
            assert_eq!(defined, Some(bit), "CAP_{name} in {header}");
        }
        let mut ours: Vec<&str> = CAPABILITY_BITS.iter().map(|(name, _)| *name).collect();
        let mut allowed = kubectl_gadget::manifests::ALLOWED_CAPABILITIES.to_vec();
        ours.sort_unstable();
        allowed.sort_unstable();
        assert_eq!(ours, allowed);
    }

    #[test]
    fn a_container_process_is_found_by_cgroup_command_and_first_argument() {
        // This test's own cgroup stands for a container's: its last
        // component for the id. A child inherits it.
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let unified = cgroups
            .lines()
            .find(|line| line.starts_with("0::"))
            .unwrap();
        let id = unified.rsplit('/').next().unwrap();
        let mut child = Command::new("sleep").arg("1000017").spawn().unwrap();
        let found = (0..50).find_map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            container_process(&format!("containerd://{id}"), "sleep", "1000017").ok()
        });
        let other_argument = container_process(id, "sleep", "1000018");
        let other_command = container_process(id, "sleeps", "1000017");
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, Some(child.id()));
        assert!(other_argument.is_err());
        assert!(other_command.is_err());
    }

    #[test]
    fn status_fields_in_kib_are_read_and_others_refused() {
        let pid = std::process::id();
        let resident = status_kib(pid, "VmRSS").unwrap();
        let heap = status_kib(pid, "RssAnon").unwrap();
        assert!(
            heap > 0 && heap <= resident,
            "RssAnon {heap}, VmRSS {resident}"
        );
        // Not a size, and not a field.
        assert!(status_kib(pid, "Threads").is_err());
        assert!(status_kib(pid, "Vm").is_err());
    }

    #[test]
    fn masks_are_the_kernel_bits() {
        assert_eq!(
            capability_mask(&["BPF", "PERFMON"]).unwrap(),
            0xc0_0000_0000
        );
        assert_eq!(capability_mask(&["SYS_RESOURCE"]).unwrap(), 0x100_0000);
        assert_eq!(capability_mask::<&str>(&[]).unwrap(), 0);
        assert!(capability_mask(&["SYS_ADMIN"]).is_err());
    }

    #[test]
    fn privileges_come_from_status_and_the_root_mount() {
        let status = "Name:\tgadget-node\nCapInh:\t0000000000000000\nCapPrm:\t000000c000000000\n\
                      CapEff:\t000000c000000000\nCapBnd:\t000000c000000000\nCapAmb:\t0000000000000000\n\
                      NoNewPrivs:\t1\nSeccomp:\t0\nSeccomp_filters:\t0\n";
        let mountinfo = "1 0 0:1 / / rw,relatime - overlay overlay rw\n\
                         2 1 0:2 / / ro,relatime - overlay overlay rw\n\
                         3 2 0:3 / /proc rw - proc proc rw\n";
        let privileges = ProcessPrivileges::parse(status, mountinfo).unwrap();
        assert_eq!(
            privileges,
            ProcessPrivileges {
                effective: 0xc0_0000_0000,
                permitted: 0xc0_0000_0000,
                bounding: 0xc0_0000_0000,
                ambient: 0,
                no_new_privs: true,
                seccomp: 0,
                read_only_root: true,
            }
        );
        assert!(ProcessPrivileges::parse("CapEff:\t0\n", mountinfo).is_err());
    }

    #[test]
    fn programs_are_read_from_bpftool_json() {
        let json = br#"[{"id":7,"type":"tracepoint","name":"tracepoint__syscalls__sys_enter_openat","tag":"x"},{"id":9,"type":"cgroup_skb"}]"#;
        let programs = parse_programs(json).unwrap();
        assert_eq!(
            programs,
            BTreeMap::from([
                (7, "tracepoint__syscalls__sys_enter_openat".to_string()),
                (9, String::new())
            ])
        );
        assert!(parse_programs(b"{}").is_err());
    }
}
