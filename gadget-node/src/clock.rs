//! Kernel boot-time timestamps to wall-clock time.
//!
//! Events carry `bpf_ktime_get_boot_ns()`, which counts suspend and never
//! jumps. The client merges nodes on wall-clock time, so each node converts
//! with the current distance between the two clocks, taken once per batch.

/// Nanoseconds on `clock` now.
fn now_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime({clock}) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Converts boot-time nanoseconds to nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy)]
pub struct BootToWall {
    offset_ns: u64,
}

impl BootToWall {
    /// The offset between the clocks now.
    pub fn now() -> Self {
        let boot = now_ns(libc::CLOCK_BOOTTIME);
        let wall = now_ns(libc::CLOCK_REALTIME);
        BootToWall {
            offset_ns: wall.saturating_sub(boot),
        }
    }

    /// Wall-clock nanoseconds of a boot-time timestamp.
    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        // Saturating: the timestamp comes from a record's bytes.
        boot_ns.saturating_add(self.offset_ns)
    }

    /// Boot-time nanoseconds now, for tests that compare with events.
    pub fn boot_now_ns() -> u64 {
        now_ns(libc::CLOCK_BOOTTIME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converted_now_is_close_to_system_time() {
        let conv = BootToWall::now();
        let wall = conv.wall_ns(BootToWall::boot_now_ns());
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        assert!(wall.abs_diff(system) < 1_000_000_000, "{wall} vs {system}");
    }

    /// Found by the batch's property tests: a record's boot time near the
    /// end of u64 made the conversion panic (addition overflow) in debug
    /// builds.
    #[test]
    fn a_boot_time_near_the_end_of_u64_does_not_overflow() {
        let conv = BootToWall { offset_ns: 10 };
        assert_eq!(conv.wall_ns(u64::MAX - 3), u64::MAX);
        assert_eq!(conv.wall_ns(5), 15);
    }
}
