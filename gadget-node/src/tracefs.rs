//! tracefs, through which tracepoints are found by name.
//!
//! Tracepoint ids are read from `/sys/kernel/tracing` (or the older
//! `/sys/kernel/debug/tracing`). Minimal hosts and containers often have it
//! unmounted; the node mounts it once when it can (it needs CAP_SYS_ADMIN,
//! which it has for loading programs anyway), and otherwise says what to do.

use std::path::Path;
use std::sync::OnceLock;

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Makes sure tracefs is reachable; the error says how to fix it.
pub fn ensure_mounted() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(mount_if_missing).clone()
}

fn is_tracefs(path: &str) -> bool {
    Path::new(path).join("events").is_dir()
}

fn mount_if_missing() -> Result<(), String> {
    if is_tracefs(TRACEFS) || is_tracefs(DEBUGFS_TRACING) {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: static NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 && is_tracefs(TRACEFS) {
        return Ok(());
    }
    Err(format!(
        "tracefs is not mounted and could not be mounted at {TRACEFS} ({}); \
         run `mount -t tracefs tracefs {TRACEFS}` as root, or give the node pod \
         the host's {TRACEFS}",
        std::io::Error::last_os_error()
    ))
}
