//! Names of Linux errno values, for the ERR column and the JSON `error`.

/// Linux errno names by number, in the generic numbering that x86, arm,
/// arm64, riscv and loongarch share (mips, sparc, alpha and parisc number
/// many of them differently, and are not supported by the node).
const NAMES: &[(i32, &str)] = &[
    (1, "EPERM"),
    (2, "ENOENT"),
    (3, "ESRCH"),
    (4, "EINTR"),
    (5, "EIO"),
    (6, "ENXIO"),
    (7, "E2BIG"),
    (8, "ENOEXEC"),
    (9, "EBADF"),
    (10, "ECHILD"),
    (11, "EAGAIN"),
    (12, "ENOMEM"),
    (13, "EACCES"),
    (14, "EFAULT"),
    (15, "ENOTBLK"),
    (16, "EBUSY"),
    (17, "EEXIST"),
    (18, "EXDEV"),
    (19, "ENODEV"),
    (20, "ENOTDIR"),
    (21, "EISDIR"),
    (22, "EINVAL"),
    (23, "ENFILE"),
    (24, "EMFILE"),
    (25, "ENOTTY"),
    (26, "ETXTBSY"),
    (27, "EFBIG"),
    (28, "ENOSPC"),
    (29, "ESPIPE"),
    (30, "EROFS"),
    (31, "EMLINK"),
    (32, "EPIPE"),
    (33, "EDOM"),
    (34, "ERANGE"),
    (35, "EDEADLK"),
    (36, "ENAMETOOLONG"),
    (37, "ENOLCK"),
    (38, "ENOSYS"),
    (39, "ENOTEMPTY"),
    (40, "ELOOP"),
    (61, "ENODATA"),
    (75, "EOVERFLOW"),
    (77, "EBADFD"),
    (84, "EILSEQ"),
    (88, "ENOTSOCK"),
    (95, "EOPNOTSUPP"),
    (110, "ETIMEDOUT"),
    (111, "ECONNREFUSED"),
    (116, "ESTALE"),
    (122, "EDQUOT"),
    (123, "ENOMEDIUM"),
    (125, "ECANCELED"),
    (126, "ENOKEY"),
    (129, "EKEYREJECTED"),
];

/// The name of a (positive) errno value, e.g. `ENOENT` for 2, or `None`
/// when it is not one of the common ones this table knows; callers then
/// show the number.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    NAMES
        .binary_search_by_key(&errno, |&(number, _)| number)
        .ok()
        .map(|i| NAMES[i].1)
}

/// Writes the errno's name, or its number when the name is not known.
pub(crate) fn write_errno(out: &mut Vec<u8>, errno: i32) {
    match errno_name(errno) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => super::write_number(out, &errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(NAMES.windows(2).all(|pair| pair[0].0 < pair[1].0));
    }

    #[test]
    fn common_errnos_have_names() {
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_name(13), Some("EACCES"));
        assert_eq!(errno_name(36), Some("ENAMETOOLONG"));
        assert_eq!(errno_name(40), Some("ELOOP"));
        assert_eq!(errno_name(0), None);
        assert_eq!(errno_name(-2), None);
    }

    #[test]
    fn unknown_errno_falls_back_to_its_number() {
        let mut out = Vec::new();
        write_errno(&mut out, 2);
        out.push(b' ');
        write_errno(&mut out, 4095);
        assert_eq!(out, b"ENOENT 4095");
    }
}
