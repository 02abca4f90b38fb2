//! The layout of what crosses from the kernel programs to userspace, as the
//! host C compiler lays it out, and the check that ties a Rust mirror to it.
//!
//! The build script generates a C program from every header's
//! `<NAME>_LAYOUT(STRUCT, FIELD, CONST)` list, compiles it for the host with
//! the same headers the kernel programs include, and keeps what it prints:
//! [`C_LAYOUT`]. Each mirror's unit test compares itself with it through
//! [`assert_layout!`](crate::assert_layout).

/// The dump, one line per entry: `struct 0 size` for a struct,
/// `struct.field offset size` for each of its fields and `const.NAME value 0`
/// for a constant.
pub const C_LAYOUT: &str = include_str!(concat!(env!("OUT_DIR"), "/c_layout.txt"));

/// The dump's lines as (name, offset or value, size).
fn entries() -> impl Iterator<Item = (&'static str, i64, usize)> {
    C_LAYOUT.lines().map(|line| {
        let mut parts = line.split_whitespace();
        let mut next = || {
            parts
                .next()
                .unwrap_or_else(|| panic!("short line {line:?}"))
        };
        let name = next();
        let value = next()
            .parse()
            .unwrap_or_else(|_| panic!("bad line {line:?}"));
        let size = next()
            .parse()
            .unwrap_or_else(|_| panic!("bad line {line:?}"));
        (name, value, size)
    })
}

fn entry(name: &str) -> Option<(i64, usize)> {
    entries()
        .find(|(entry, _, _)| *entry == name)
        .map(|(_, value, size)| (value, size))
}

/// `sizeof(struct c_struct)`, if its header lists it.
pub fn struct_size(c_struct: &str) -> Option<usize> {
    entry(c_struct).map(|(_, size)| size)
}

/// The offset and size of `c_struct.field`, if its header lists it.
pub fn field(c_struct: &str, field: &str) -> Option<(usize, usize)> {
    let (offset, size) = entry(&format!("{c_struct}.{field}"))?;
    Some((offset as usize, size))
}

/// The fields of `c_struct` its header lists, as (name, offset, size), in
/// the header's order.
pub fn fields(c_struct: &str) -> Vec<(&'static str, usize, usize)> {
    entries()
        .filter_map(|(name, offset, size)| {
            let field = name.strip_prefix(c_struct)?.strip_prefix('.')?;
            Some((field, offset as usize, size))
        })
        .collect()
}

/// The value of the constant `name` (a `#define`), if a header lists it.
pub fn constant(name: &str) -> Option<i64> {
    entry(&format!("const.{name}")).map(|(value, _)| value)
}

/// Asserts that each constant (a `#define` a header lists) has the value
/// its Rust mirror gives it.
///
/// # Panics
/// On the first constant that differs or is not in the dump.
#[track_caller]
pub fn assert_constants(constants: &[(&str, i64)]) {
    for &(name, value) in constants {
        assert_eq!(constant(name), Some(value), "constant {name}");
    }
}

/// The size of the field `field` picks out; lets [`assert_layout!`]
/// name a field's type without spelling it.
///
/// [`assert_layout!`]: crate::assert_layout
pub fn size_of_field<T, F>(_field: impl Fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// Checks a Rust mirror (its size and its fields as (name, offset, size))
/// against `struct c_struct`; usually called through
/// [`assert_layout!`](crate::assert_layout).
///
/// The C struct's listed fields must cover it without gaps (padding is
/// explicit, and a field left out of its header's list is caught here),
/// each Rust field must have the C field's offset and size, and every C
/// field must be compared. `tail` names the C field the mirror stops before
/// (the variable part of a record cut to its used length): it must start
/// where the mirror ends. Without one, the sizes must be equal.
///
/// # Panics
/// On the first difference, naming it.
#[track_caller]
pub fn assert_mirror(
    c_struct: &str,
    rust_size: usize,
    rust_fields: &[(&str, usize, usize)],
    tail: Option<&str>,
) {
    let c_size = struct_size(c_struct).unwrap_or_else(|| {
        panic!("struct {c_struct} is not in the C layout dump: list it in its header's *_LAYOUT")
    });
    let mut c_fields = fields(c_struct);
    c_fields.sort_by_key(|&(_, offset, _)| offset);
    let mut end = 0;
    for &(name, offset, size) in &c_fields {
        assert_eq!(
            offset, end,
            "{c_struct}.{name}: a gap before it (implicit padding or a field missing from the \
             header's *_LAYOUT)"
        );
        end = offset + size;
    }
    assert_eq!(
        end, c_size,
        "{c_struct}: its fields end before the struct does (implicit padding or a field \
         missing from the header's *_LAYOUT)"
    );

    for &(name, offset, size) in rust_fields {
        let (c_offset, c_size) = field(c_struct, name)
            .unwrap_or_else(|| panic!("{c_struct}.{name} is missing from the C layout dump"));
        assert_eq!(offset, c_offset, "offset of {c_struct}.{name}");
        assert_eq!(size, c_size, "size of {c_struct}.{name}");
    }
    match tail {
        Some(name) => {
            let (c_offset, _) = field(c_struct, name)
                .unwrap_or_else(|| panic!("{c_struct}.{name} is missing from the C layout dump"));
            assert_eq!(
                c_offset, rust_size,
                "{c_struct}.{name}: the variable part must start where the Rust mirror ends"
            );
        }
        None => assert_eq!(rust_size, c_size, "size of struct {c_struct}"),
    }

    let unchecked: Vec<&str> = c_fields
        .iter()
        .map(|&(name, _, _)| name)
        .filter(|name| Some(*name) != tail && !rust_fields.iter().any(|f| f.0 == *name))
        .collect();
    assert!(
        unchecked.is_empty(),
        "{c_struct}: fields in the C dump that the Rust mirror does not compare: {unchecked:?}"
    );
}

/// Asserts that the `#[repr(C)]` struct `$rust` mirrors the C struct named
/// `$c_struct`: every listed field at the C field's offset with its size,
/// no C field left unchecked, and either the same size or, with
/// `tail = field`, the C struct's variable part starting where `$rust` ends.
/// See [`layout::assert_mirror`](crate::layout::assert_mirror).
///
/// # Examples
///
/// ```
/// gadget_ebpf::assert_layout!(
///     gadget_ebpf::ProcessRecord,
///     "process_record",
///     [boot_ns, cgroup_id, mntns_id, pid, tid, ppid, uid, gid, _pad, comm]
/// );
/// ```
///
/// A record cut after its used length, mirrored up to its variable part:
///
/// ```ignore
/// gadget_ebpf::assert_layout!(
///     OpenEventHeader,
///     "open_event",
///     [proc, flags, ret, mode, dirfd, syscall, path_len, path_truncated],
///     tail = path
/// );
/// ```
#[macro_export]
macro_rules! assert_layout {
    ($rust:ty, $c_struct:expr, [$($field:ident),* $(,)?] $(, tail = $tail:ident)? $(,)?) => {
        $crate::layout::assert_mirror(
            $c_struct,
            ::core::mem::size_of::<$rust>(),
            &[$((
                ::core::stringify!($field),
                ::core::mem::offset_of!($rust, $field),
                $crate::layout::size_of_field(|mirror: &$rust| &mirror.$field),
            )),*],
            ::core::option::Option::<&str>::None
                $(.or(::core::option::Option::Some(::core::stringify!($tail))))?,
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_has_three_columns() {
        assert!(C_LAYOUT.lines().count() > 0);
        assert_eq!(entries().count(), C_LAYOUT.lines().count());
    }

    #[test]
    fn unknown_names_are_none() {
        assert_eq!(struct_size("no_such_struct"), None);
        assert_eq!(field("process_record", "no_such_field"), None);
        assert_eq!(constant("NO_SUCH_CONSTANT"), None);
        assert!(fields("no_such_struct").is_empty());
    }

    #[test]
    #[should_panic(expected = "fields in the C dump that the Rust mirror does not compare")]
    fn a_field_left_unchecked_fails() {
        #[allow(dead_code)]
        #[repr(C)]
        struct Partial {
            boot_ns: u64,
        }
        assert_layout!(Partial, "process_record", [boot_ns], tail = cgroup_id);
    }

    #[test]
    #[should_panic(expected = "offset of process_record.cgroup_id")]
    fn a_wrong_offset_fails() {
        #[allow(dead_code)]
        #[repr(C)]
        struct Shifted {
            boot_ns: u64,
            gap: u64,
            cgroup_id: u64,
        }
        assert_layout!(Shifted, "process_record", [boot_ns, cgroup_id]);
    }
}
