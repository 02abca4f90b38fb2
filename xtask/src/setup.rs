//! `cargo xtask setup`: what building and testing need beyond Rust.
//!
//! The kernel programs are C compiled by clang with libbpf's helper headers
//! and the kernel's uapi headers; the kernel tests need root, BTF and a
//! kernel with ring buffers. The end-to-end suite builds its Kubernetes
//! control plane, kubelet and containerd with Go, runs its real node's
//! containers with Debian's runc and CNI plugins, and drives it all with
//! kubectl; the benchmark runs
//! bpftrace beside our gadgets. Installs the
//! Debian/Ubuntu packages when run as root, and otherwise (and for Go and
//! kubectl, which distributions ship too old) says exactly what is missing.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};

use crate::util::{is_root, on_path, run_checked};

/// A file or program and the Debian package that provides it.
struct Need {
    present: fn() -> bool,
    what: &'static str,
    package: &'static str,
}

const NEEDS: &[Need] = &[
    Need {
        present: || on_path("clang"),
        what: "clang (compiles the eBPF programs)",
        package: "clang",
    },
    Need {
        present: || Path::new("/usr/include/bpf/bpf_helpers.h").exists(),
        what: "libbpf headers (bpf_helpers.h, bpf_core_read.h)",
        package: "libbpf-dev",
    },
    Need {
        present: || Path::new("/usr/include/linux/bpf.h").exists(),
        what: "Linux uapi headers (linux/bpf.h)",
        package: "linux-libc-dev",
    },
    Need {
        present: || on_path("cc"),
        what: "a C compiler and linker for Rust build scripts",
        package: "build-essential",
    },
    Need {
        present: || on_path("strace"),
        what:
            "strace (the kernel tests compare trace_file's rows with strace's of the same workload)",
        package: "strace",
    },
    Need {
        present: || on_path("openssl"),
        what: "openssl (the end-to-end suite signs a certificate for a user without rights)",
        package: "openssl",
    },
];

/// What the end-to-end suite's real node needs beyond the control plane's
/// tools: the container runtime's parts that Debian ships (containerd and
/// the kubelet are built from Go modules) and the workload image's shell.
const REAL_NODE_NEEDS: &[Need] = &[
    Need {
        present: || on_path("runc"),
        what: "runc (containerd's runtime on the real node)",
        package: "runc",
    },
    Need {
        present: || {
            ["/usr/lib/cni", "/opt/cni/bin"]
                .iter()
                .any(|dir| Path::new(dir).join("bridge").exists())
        },
        what: "the CNI plugins bridge, host-local and loopback (the real node's pod network)",
        package: "containernetworking-plugins",
    },
    Need {
        present: || on_path("iptables"),
        what: "iptables (routes the kubernetes service to the API server for the real node's pods)",
        package: "iptables",
    },
    Need {
        present: || on_path("ip"),
        what: "ip (the real node's pod bridge)",
        package: "iproute2",
    },
    Need {
        present: || on_path("bpftool"),
        what: "bpftool (the suite checks that undeploy leaves no BPF program loaded)",
        package: "bpftool",
    },
    Need {
        present: || Path::new(STATIC_BUSYBOX).exists(),
        what: "a static busybox (the shell and tools of the real node's workload image)",
        package: "busybox-static",
    },
];

/// Where Debian's busybox-static puts its binary.
pub const STATIC_BUSYBOX: &str = "/bin/busybox";

/// The Go release `k8s.io/kubernetes` v1.36 needs (its go.mod says
/// `go 1.26.0`); see e2e/README.md.
const GO_NEEDED: (u32, u32) = (1, 26);

/// How to install kubectl, when it is missing.
pub const KUBECTL_MISSING: &str = "missing: kubectl (the end-to-end suite runs \"kubectl gadget\" \
    as users do); install it from https://kubernetes.io/docs/tasks/tools/ (any release from 1.30 on)";

/// Installs or reports what is missing; fails when something still is.
pub fn run(_args: &[String]) -> Result<()> {
    ensure_bench_tools()?;
    ensure_e2e_tools()?;
    report_kernel();
    Ok(())
}

/// What the end-to-end suite needs: the build tools, the real node's
/// packages, Go to build the control plane, containerd and the kubelet, and
/// kubectl.
pub fn ensure_e2e_tools() -> Result<()> {
    ensure_static_build_tools()?;
    ensure_packages(REAL_NODE_NEEDS)?;
    require_go()?;
    if !on_path("kubectl") {
        bail!("{KUBECTL_MISSING}");
    }
    Ok(())
}

/// Fails, saying how to install it, unless `go` on PATH is Go 1.26 or later.
fn require_go() -> Result<()> {
    let (major, minor) = GO_NEEDED;
    let install = format!(
        "install Go {major}.{minor} or later from https://go.dev/dl/ (distribution packages are \
         older), e.g. as root: curl -fsSL https://go.dev/dl/go{major}.{minor}.8.linux-amd64.tar.gz \
         | tar -C /usr/local -xz, then put /usr/local/go/bin on PATH"
    );
    let output = match Command::new("go").arg("version").output() {
        Ok(output) if output.status.success() => output,
        _ => bail!(
            "missing: Go (the end-to-end suite builds kube-apiserver v1.36 from source); {install}"
        ),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    match go_release(&text) {
        Some(found) if found >= GO_NEEDED => Ok(()),
        _ => bail!(
            "{} is too old: the end-to-end suite builds kube-apiserver v1.36, which needs \
             Go {major}.{minor}; {install}",
            text.trim()
        ),
    }
}

/// The (major, minor) of `go version` output like
/// `go version go1.26.8 linux/amd64` (or `go1.26rc1`).
fn go_release(version: &str) -> Option<(u32, u32)> {
    let release = version.split_whitespace().nth(2)?.strip_prefix("go")?;
    let mut parts = release.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// What `cargo xtask bench` needs beyond the build tools: bpftrace, the
/// tool it compares with, which also runs its floor.
const BENCH_NEEDS: &[Need] = &[Need {
    present: || on_path("bpftrace"),
    what: "bpftrace (the benchmark's floor and the tracer it compares with)",
    package: "bpftrace",
}];

/// The build-time part, also run first by `demo` and `test`.
pub fn ensure_build_tools() -> Result<()> {
    ensure_rust_components()?;
    ensure_packages(NEEDS)
}

/// What a static (musl) gadget-node needs beyond the build tools: a C
/// compiler for musl, as ring (under kube's rustls) and mimalloc (the
/// static build's allocator) compile C for the target.
const STATIC_BUILD_NEEDS: &[Need] = &[Need {
    present: || {
        on_path("musl-gcc") || on_path(&format!("{}-linux-musl-gcc", std::env::consts::ARCH))
    },
    what: "musl-gcc (compiles the C of a static gadget-node: the container image's)",
    package: "musl-tools",
}];

/// The build tools and a C compiler for musl: what the container image's
/// static gadget-node needs.
pub fn ensure_static_build_tools() -> Result<()> {
    ensure_build_tools()?;
    ensure_packages(STATIC_BUILD_NEEDS)
}

/// The build tools and what the benchmark runs.
pub fn ensure_bench_tools() -> Result<()> {
    ensure_build_tools()?;
    ensure_packages(BENCH_NEEDS)
}

/// Installs the packages of `needs` that are missing (as root, with
/// apt-get), or fails saying how to install them.
fn ensure_packages(needs: &[Need]) -> Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|need| !(need.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|need| need.package).collect();
    let list = missing
        .iter()
        .map(|need| format!("  {} (package {})", need.what, need.package))
        .collect::<Vec<_>>()
        .join("\n");
    if !is_root() || !on_path("apt-get") {
        bail!(
            "missing:\n{list}\ninstall them with: sudo apt-get install -y {}",
            packages.join(" ")
        );
    }
    eprintln!("installing {}", packages.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-qq"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    let still: Vec<&str> = needs
        .iter()
        .filter(|need| !(need.present)())
        .map(|need| need.what)
        .collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join(", "));
    }
    Ok(())
}

/// `cargo fmt` and `cargo clippy` are rustup components that minimal
/// toolchains leave out; `test` runs both.
fn ensure_rust_components() -> Result<()> {
    let have = |tool: &str| {
        crate::util::cargo()
            .args([tool, "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if have("fmt") && have("clippy") {
        return Ok(());
    }
    if !on_path("rustup") {
        bail!("missing: cargo fmt and cargo clippy (rustfmt and clippy components of the Rust toolchain); install them with your Rust distribution");
    }
    eprintln!("installing the rustfmt and clippy components");
    run_checked(Command::new("rustup").args(["component", "add", "rustfmt", "clippy"]))
}

/// What running gadgets needs from the kernel; reported, not installed.
fn report_kernel() {
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    eprintln!(
        "root: {}\nkernel BTF (/sys/kernel/btf/vmlinux): {}",
        if is_root() {
            "yes"
        } else {
            "no (gadgets and kernel tests need root)"
        },
        if btf {
            "present"
        } else {
            "absent (CO-RE needs a kernel built with CONFIG_DEBUG_INFO_BTF)"
        },
    );
}

/// Fails unless gadgets can run here: root and BTF.
pub fn require_kernel_access(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{what} loads eBPF programs and needs root: run it as root (sudo -E cargo xtask ...)"
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!("{what} needs kernel BTF (/sys/kernel/btf/vmlinux): the kernel lacks CONFIG_DEBUG_INFO_BTF");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_releases() {
        assert_eq!(
            go_release("go version go1.26.8 linux/amd64\n"),
            Some((1, 26))
        );
        assert_eq!(
            go_release("go version go1.27rc1 linux/arm64"),
            Some((1, 27))
        );
        assert_eq!(go_release("go version go1.9 linux/amd64"), Some((1, 9)));
        assert_eq!(go_release("go version devel +abc linux/amd64"), None);
        assert!(go_release("go version go1.25.3 linux/amd64").unwrap() < GO_NEEDED);
    }
}
