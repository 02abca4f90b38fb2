//! Waiting for things with a deadline, and stopping cleanly on Ctrl-C.
//!
//! Every wait of the suite goes through [`poll`]: it fails with what it was
//! waiting for and the last thing it saw, never sleeps as an assertion, and
//! ends early when the run is interrupted, so that the suite unwinds through
//! its guards (processes killed, cgroups removed) instead of dying in place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn note_interrupt(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Turns SIGINT and SIGTERM into a flag that [`poll`] and [`check_interrupted`]
/// report as an error.
pub fn stop_on_interrupt() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            libc::signal(signal, note_interrupt as *const () as libc::sighandler_t);
        }
    }
}

/// Fails once SIGINT or SIGTERM has arrived.
pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// One look at what is awaited.
pub enum Poll<T> {
    /// It is there.
    Ready(T),
    /// Not yet; what was seen instead, for the timeout message.
    Pending(String),
}

/// How often [`poll`] looks by default.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Calls `check` every `POLL_INTERVAL` until it is ready, fails, or
/// `timeout` passes; the timeout error names `what` and the last thing seen.
pub fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Poll<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        check_interrupted()?;
        let seen = match check()? {
            Poll::Ready(value) => return Ok(value),
            Poll::Pending(seen) => seen,
        };
        if Instant::now() >= deadline {
            if seen.is_empty() {
                bail!("timed out after {} waiting for {what}", secs(timeout));
            }
            bail!(
                "timed out after {} waiting for {what}; last seen: {seen}",
                secs(timeout)
            );
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// A duration as `12.3s`, for messages.
pub fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_value_is_returned() {
        let mut calls = 0;
        let value = poll("the third call", Duration::from_secs(5), || {
            calls += 1;
            Ok(if calls == 3 {
                Poll::Ready(calls)
            } else {
                Poll::Pending(format!("call {calls}"))
            })
        })
        .unwrap();
        assert_eq!(value, 3);
    }

    #[test]
    fn timeout_names_what_was_awaited_and_what_was_seen() {
        let err = poll::<()>("the pods", Duration::ZERO, || {
            Ok(Poll::Pending("2 of 3 ready".into()))
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "timed out after 0.0s waiting for the pods; last seen: 2 of 3 ready"
        );
    }

    #[test]
    fn errors_end_the_wait() {
        let err = poll::<()>("anything", Duration::from_secs(5), || bail!("gone")).unwrap_err();
        assert_eq!(err.to_string(), "gone");
    }
}
