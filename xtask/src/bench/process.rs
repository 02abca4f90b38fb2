//! What a process cost, from the kernel's own accounting: CPU time and
//! peak memory of a child when it is reaped (wait4's resource usage), and
//! of a process still running (`/proc/PID/stat` and `/proc/PID/status`).

use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::process::{Child, ExitStatus};

use anyhow::{Context, Result};

/// CPU time and peak resident memory of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// The most memory it had resident at once, in KiB.
    pub peak_rss_kib: u64,
}

/// Waits for `child` and returns its exit status and what it used
/// (wait4(2)). The child is reaped here, so it must not be waited for or
/// signalled through `Child` afterwards: it is consumed.
pub fn wait_with_usage(child: Child) -> Result<(ExitStatus, Usage)> {
    let reaped = reap(&child, 0)?.context("wait4 returned without the child")?;
    drop(child);
    Ok(reaped)
}

/// Like [`wait_with_usage`], but returns `Ok(None)` at once when the
/// child still runs; when it returns `Some`, the child is reaped and must
/// be dropped without waiting for or signalling it.
pub fn try_wait_with_usage(child: &Child) -> Result<Option<(ExitStatus, Usage)>> {
    reap(child, libc::WNOHANG)
}

fn reap(child: &Child, options: libc::c_int) -> Result<Option<(ExitStatus, Usage)>> {
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    let mut status = 0;
    // SAFETY: rusage is plain integers, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: both pointers are to live locals of the right types, and
        // `pid` is an unreaped child of this process (`child` owns it).
        let reaped = unsafe { libc::wait4(pid, &mut status, options, &mut usage) };
        if reaped == pid {
            break;
        }
        if reaped == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    Ok(Some((
        ExitStatus::from_raw(status),
        Usage {
            cpu_seconds: seconds(usage.ru_utime) + seconds(usage.ru_stime),
            // ru_maxrss is in KiB on Linux.
            peak_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        },
    )))
}

/// CPU seconds (user plus system) that running process `pid` has used.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = cpu_ticks(&text).with_context(|| format!("cannot parse {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok(ticks as f64 / per_second.max(1) as f64)
}

/// utime + stime, in clock ticks, of a `/proc/PID/stat` line. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from its closing parenthesis, the last one on the line.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Fields 3 (state) onwards; utime and stime are fields 14 and 15.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Resets this process's peak resident size (VmHWM) to its current size
/// (`/proc/self/clear_refs`, Linux 4.0). A child spawned with
/// `posix_spawn`, as `Command` does, execs from this process's memory, and
/// the kernel starts the child's peak (wait4's `ru_maxrss`) at this
/// process's peak: without the reset, every tracer's peak RSS would be at
/// least the bench's own, which building the real node's images in memory
/// raises to about 50 MiB.
pub fn reset_own_peak_rss() -> Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("cannot reset the bench's peak RSS")
}

/// A `kB` line of `/proc/PID/status`, e.g. `VmRSS` (resident now) or
/// `VmHWM` (the peak), in KiB.
pub fn status_kib(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    status_field_kib(&text, key).with_context(|| format!("no {key} in {path}"))
}

fn status_field_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_count_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis in it.
        let stat = "4242 (gadget) node) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 37 0 0 20 0 9 0 12345 100000 2000 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(287));
        assert_eq!(cpu_ticks("4242 (x) S 1"), None);
        assert_eq!(cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn status_fields_in_kib() {
        let status =
            "Name:\tgadget-node\nVmPeak:\t  900000 kB\nVmHWM:\t   31337 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(status_field_kib(status, "VmHWM"), Some(31_337));
        assert_eq!(status_field_kib(status, "VmRSS"), Some(10_240));
        // A key is matched whole, not as the start of another.
        assert_eq!(status_field_kib(status, "Vm"), None);
        assert_eq!(status_field_kib(status, "VmSwap"), None);
    }

    #[test]
    fn a_reaped_child_reports_its_cpu_time_and_memory() {
        // A shell that spins for a moment: some CPU time, some memory.
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 3",
            ])
            .spawn()
            .unwrap();
        assert!(
            try_wait_with_usage(&child).unwrap().is_none(),
            "it still spins"
        );
        let (status, usage) = wait_with_usage(child).unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(usage.cpu_seconds > 0.0, "{usage:?}");
        assert!(usage.peak_rss_kib > 100, "{usage:?}");
    }

    #[test]
    fn a_child_s_peak_rss_is_its_own_once_the_parent_s_is_reset() {
        // 256 MiB touched and freed (mmapped, so given back): this
        // process's peak, not its current size.
        let big = vec![1_u8; 256 << 20];
        assert_eq!(big[12345], 1);
        drop(big);
        reset_own_peak_rss().unwrap();
        let child = std::process::Command::new("true").spawn().unwrap();
        let (_, usage) = wait_with_usage(child).unwrap();
        // Whatever the tests running beside this one hold, not 256 MiB.
        assert!(usage.peak_rss_kib < 128 << 10, "{usage:?}");
    }

    #[test]
    fn this_process_has_cpu_time_and_a_resident_size() {
        let me = std::process::id();
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        let rss = status_kib(me, "VmRSS").unwrap();
        assert!(rss > 0 && rss <= status_kib(me, "VmHWM").unwrap());
    }
}
