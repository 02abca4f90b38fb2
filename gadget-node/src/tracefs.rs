//! tracefs, through which tracepoints are found by name.
//!
//! Tracepoint ids are read from `/sys/kernel/tracing` (or the older
//! `/sys/kernel/debug/tracing`). Minimal hosts and containers often have it
//! unmounted; the node mounts it when it can (it needs CAP_SYS_ADMIN), and
//! otherwise says what to do. Success is remembered; a failure is not, so a
//! later trace tries again (e.g. once an operator mounted tracefs).

use std::path::Path;
use std::sync::Mutex;

const TRACEFS: &str = "/sys/kernel/tracing";
const DEBUGFS_TRACING: &str = "/sys/kernel/debug/tracing";

/// Makes sure tracefs is reachable; the error says how to fix it.
pub fn ensure_mounted() -> Result<(), String> {
    static MOUNTED: MountState = MountState::new();
    MOUNTED.ensure(mount_if_missing)
}

/// Whether an attempt to reach tracefs has succeeded yet.
struct MountState {
    /// Held across an attempt, so that concurrent traces do not mount twice.
    mounted: Mutex<bool>,
}

impl MountState {
    const fn new() -> Self {
        MountState {
            mounted: Mutex::new(false),
        }
    }

    /// Runs `attempt` unless one has already succeeded.
    fn ensure(&self, attempt: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        // A panic in an attempt leaves `false`, which is still true.
        let mut mounted = self.mounted.lock().unwrap_or_else(|e| e.into_inner());
        if !*mounted {
            attempt()?;
            *mounted = true;
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_attempt_is_retried_and_a_success_is_kept() {
        let state = MountState::new();
        let mut attempts = 0;
        let mut attempt = |ok: bool| {
            attempts += 1;
            if ok {
                Ok(())
            } else {
                Err("tracefs is not mounted".to_string())
            }
        };
        assert_eq!(
            state.ensure(|| attempt(false)),
            Err("tracefs is not mounted".to_string())
        );
        assert_eq!(state.ensure(|| attempt(true)), Ok(()));
        // Once reached, it is not tried again (nor failed).
        assert_eq!(state.ensure(|| attempt(false)), Ok(()));
        assert_eq!(attempts, 2);
    }
}
