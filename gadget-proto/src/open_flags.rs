//! The open flags on the wire.
//!
//! `OpenEvent.flags` carries the generic Linux encoding (the one x86 and
//! riscv use) whatever the node's architecture, so that a client on any
//! architecture decodes them alike: a node converts what its kernel
//! recorded with [`to_generic`].

/// Converts open flags as the running kernel encodes them to the generic
/// encoding `OpenEvent.flags` carries.
///
/// Arm and arm64 swap four bits: their `O_DIRECTORY`, `O_NOFOLLOW`,
/// `O_DIRECT` and `O_LARGEFILE` are the generic `O_DIRECT`, `O_LARGEFILE`,
/// `O_DIRECTORY` and `O_NOFOLLOW`. Other supported architectures already
/// use the generic encoding.
pub fn to_generic(native: u64) -> u64 {
    if cfg!(any(target_arch = "arm", target_arch = "aarch64")) {
        arm_to_generic(native)
    } else {
        native
    }
}

fn arm_to_generic(arm: u64) -> u64 {
    // (arm bit, generic bit) for O_DIRECTORY, O_NOFOLLOW, O_DIRECT, O_LARGEFILE.
    const MOVED: [(u64, u64); 4] = [
        (0o40000, 0o200000),
        (0o100000, 0o400000),
        (0o200000, 0o40000),
        (0o400000, 0o100000),
    ];
    let all_moved = MOVED.iter().fold(0, |mask, &(bit, _)| mask | bit);
    MOVED
        .iter()
        .fold(arm & !all_moved, |generic, &(arm_bit, generic_bit)| {
            if arm & arm_bit != 0 {
                generic | generic_bit
            } else {
                generic
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_flags_are_converted_to_the_generic_encoding() {
        // arm64 O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC as seen in a trace.
        let arm = 0o40000 | 0o100000 | 0o2000000;
        assert_eq!(arm_to_generic(arm), 0o200000 | 0o400000 | 0o2000000);
        assert_eq!(arm_to_generic(0o200000), 0o40000); // O_DIRECT
        assert_eq!(arm_to_generic(0o400000), 0o100000); // O_LARGEFILE
        assert_eq!(arm_to_generic(0o1101), 0o1101);
    }
}
