//! Names of `open` flags, e.g. `O_RDONLY|O_CLOEXEC`.
//!
//! `OpenEvent.flags` carries the generic Linux encoding (the one x86 and
//! riscv use) whatever the node's architecture (see
//! `gadget_proto::open_flags`), so one table names them.

const O_ACCMODE: u64 = 0o3;
const O_DSYNC: u64 = 0o10000;
const O_DIRECTORY: u64 = 0o200000;
const SYNC_BIT: u64 = 0o4000000;
const TMPFILE_BIT: u64 = 0o20000000;

/// Flag names by bit in the generic encoding, in the order they are shown.
/// `O_SYNC` and `O_TMPFILE` span two bits and are handled before these.
const FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (O_DSYNC, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (O_DIRECTORY, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o10000000, "O_PATH"),
];

/// `FLAGS` by bit number.
const NAME_BY_BIT: [Option<&str>; 64] = {
    let mut names = [None; 64];
    let mut i = 0;
    while i < FLAGS.len() {
        let (bit, name) = FLAGS[i];
        assert!(bit.is_power_of_two(), "one bit per name");
        names[bit.trailing_zeros() as usize] = Some(name);
        i += 1;
    }
    names
};

/// One part of decoded open flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFlag {
    /// A flag (or the access mode) with a name.
    Named(&'static str),
    /// The bits left without a name.
    Unknown(u64),
}

/// Calls `each` with the access mode, then every flag set, then the bits
/// left without a name, if any.
pub(crate) fn for_each_open_flag(flags: u64, mut each: impl FnMut(OpenFlag)) {
    let access = match flags & O_ACCMODE {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    each(OpenFlag::Named(access));
    let mut rest = flags & !O_ACCMODE;
    // O_SYNC is __O_SYNC|O_DSYNC and O_TMPFILE is __O_TMPFILE|O_DIRECTORY:
    // name the pair, not its halves.
    for (pair, name) in [
        (SYNC_BIT | O_DSYNC, "O_SYNC"),
        (TMPFILE_BIT | O_DIRECTORY, "O_TMPFILE"),
    ] {
        if rest & pair == pair {
            each(OpenFlag::Named(name));
            rest &= !pair;
        }
    }
    // Only the bits set are looked at, lowest first, which is the order of
    // `FLAGS` (walking all of `FLAGS` was 3% of a JSON row's instructions).
    let mut unnamed = 0;
    while rest != 0 {
        let bit = rest & rest.wrapping_neg();
        rest &= !bit;
        match NAME_BY_BIT[bit.trailing_zeros() as usize] {
            Some(name) => each(OpenFlag::Named(name)),
            None => unnamed |= bit,
        }
    }
    let rest = unnamed;
    if rest != 0 {
        each(OpenFlag::Unknown(rest));
    }
}

/// Writes the flags as names joined by `|`, e.g. `O_RDONLY|O_CLOEXEC`;
/// bits without a name are written last, in hex.
pub(crate) fn write_open_flags(out: &mut Vec<u8>, flags: u64) {
    let mut first = true;
    for_each_open_flag(flags, |flag| {
        if !first {
            out.push(b'|');
        }
        first = false;
        write_open_flag(out, flag);
    });
}

/// Writes one part of decoded open flags.
pub(crate) fn write_open_flag(out: &mut Vec<u8>, flag: OpenFlag) {
    match flag {
        OpenFlag::Named(name) => out.extend_from_slice(name.as_bytes()),
        OpenFlag::Unknown(bits) => crate::render::write_hex(out, bits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(flags: u64) -> String {
        let mut out = Vec::new();
        write_open_flags(&mut out, flags);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn access_mode_comes_first() {
        assert_eq!(decoded(0), "O_RDONLY");
        assert_eq!(decoded(0o1), "O_WRONLY");
        assert_eq!(decoded(0o2), "O_RDWR");
        assert_eq!(decoded(0o3), "O_ACCMODE");
    }

    #[test]
    fn common_combinations() {
        assert_eq!(decoded(0o2000000), "O_RDONLY|O_CLOEXEC");
        assert_eq!(
            decoded(0o1 | 0o100 | 0o1000 | 0o2000000),
            "O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC"
        );
        assert_eq!(
            decoded(0o200000 | 0o4000 | 0o2000000),
            "O_RDONLY|O_NONBLOCK|O_DIRECTORY|O_CLOEXEC"
        );
        assert_eq!(decoded(0o10000000 | 0o400000), "O_RDONLY|O_NOFOLLOW|O_PATH");
    }

    #[test]
    fn two_bit_flags_are_named_as_one() {
        assert_eq!(decoded(0o1 | 0o4010000), "O_WRONLY|O_SYNC");
        assert_eq!(decoded(0o1 | 0o10000), "O_WRONLY|O_DSYNC");
        assert_eq!(decoded(0o2 | 0o20200000), "O_RDWR|O_TMPFILE");
    }

    #[test]
    fn set_bits_are_named_in_the_order_of_the_table() {
        // The names looked up by bit against a walk of the whole table, in
        // its order, for every bit alone and with every other bit.
        let walk = |flags: u64| {
            let mut names = Vec::new();
            let mut rest = flags;
            for &(bit, name) in FLAGS {
                if rest & bit != 0 {
                    names.push(OpenFlag::Named(name));
                    rest &= !bit;
                }
            }
            (names, rest)
        };
        let looked_up = |flags: u64| {
            let mut names = Vec::new();
            for_each_open_flag(flags, |flag| names.push(flag));
            names
        };
        // Bits 0-1 are the access mode and the two-bit flags are taken
        // first: both are left out here, as they are of `FLAGS`.
        let special = O_ACCMODE | SYNC_BIT | TMPFILE_BIT;
        for a in 0..64 {
            for b in a..64 {
                let flags = (1u64 << a | 1u64 << b) & !special;
                let (mut expected, rest) = walk(flags);
                expected.insert(0, OpenFlag::Named("O_RDONLY"));
                if rest != 0 {
                    expected.push(OpenFlag::Unknown(rest));
                }
                assert_eq!(looked_up(flags), expected, "{flags:#o}");
            }
        }
    }

    #[test]
    fn unknown_bits_are_shown_in_hex() {
        assert_eq!(
            decoded(0o2000000 | 1 << 40),
            "O_RDONLY|O_CLOEXEC|0x10000000000"
        );
        assert_eq!(decoded(SYNC_BIT), "O_RDONLY|0x100000");
    }
}
