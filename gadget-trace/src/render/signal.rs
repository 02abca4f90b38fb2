//! Names of Linux signals, for how a process ended (trace file's exit
//! events).

/// Linux signal names by number, index 1 to 31, in the numbering x86, arm,
/// arm64 and riscv share (mips, sparc, alpha and parisc differ, and are not
/// supported by the node). Real-time signals (32 and up) have no fixed name.
const NAMES: [&str; 32] = [
    "",
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The name of a signal, e.g. `SIGKILL` for 9, or `None` for 0, a
/// real-time signal or a number that is no signal; callers then show the
/// number.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    usize::try_from(signal)
        .ok()
        .and_then(|index| NAMES.get(index))
        .copied()
        .filter(|name| !name.is_empty())
}

/// Writes the signal's name, or its number when the name is not known.
pub(crate) fn write_signal(out: &mut Vec<u8>, signal: i32) {
    match signal_name(signal) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => super::write_number(out, &signal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_have_their_linux_names() {
        assert_eq!(signal_name(1), Some("SIGHUP"));
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(11), Some("SIGSEGV"));
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(17), Some("SIGCHLD"));
        assert_eq!(signal_name(31), Some("SIGSYS"));
    }

    #[test]
    fn no_signal_and_real_time_signals_have_no_name() {
        for signal in [0, 32, 34, 64, -9, i32::MAX] {
            assert_eq!(signal_name(signal), None, "{signal}");
        }
        let mut out = Vec::new();
        write_signal(&mut out, 9);
        out.push(b' ');
        write_signal(&mut out, 35);
        assert_eq!(out, b"SIGKILL 35");
    }
}
