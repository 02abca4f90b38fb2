//! Property tests of what every record's parser starts with: the fixed
//! part is read from any bytes (aligned or not) exactly when they are long
//! enough, as the bytes say field by field; a kernel string ends at its
//! first NUL.

use proptest::prelude::*;

use super::*;

/// The native-endian integer of `N` bytes at `offset`.
fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    bytes[offset..offset + N].try_into().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// `split_header` refuses a record shorter than the header, naming
    /// both lengths; otherwise it returns the header as its bytes lay it
    /// out and exactly the bytes after it, at any alignment.
    #[test]
    fn the_header_is_read_from_any_bytes_as_they_lay_it_out(
        bytes in proptest::collection::vec(any::<u8>(), 0..100),
        misalign in 0usize..8,
    ) {
        let need = std::mem::size_of::<ProcessRecord>();
        // The same bytes at every offset from an 8-byte boundary.
        let mut buffer = vec![0u8; misalign];
        buffer.extend_from_slice(&bytes);
        let record = &buffer[misalign..];
        match split_header::<ProcessRecord>(record) {
            Err(err) => {
                prop_assert!(record.len() < need);
                prop_assert_eq!(err, MalformedRecord::Short { len: record.len(), need });
            }
            Ok((header, rest)) => {
                prop_assert!(record.len() >= need);
                prop_assert_eq!(rest, &record[need..]);
                macro_rules! at {
                    ($field:ident, $int:ty) => {
                        <$int>::from_ne_bytes(field(record, std::mem::offset_of!(ProcessRecord, $field)))
                    };
                }
                prop_assert_eq!(header.boot_ns, at!(boot_ns, u64));
                prop_assert_eq!(header.cgroup_id, at!(cgroup_id, u64));
                prop_assert_eq!(header.mntns_id, at!(mntns_id, u64));
                prop_assert_eq!(header.pid, at!(pid, u32));
                prop_assert_eq!(header.tid, at!(tid, u32));
                prop_assert_eq!(header.ppid, at!(ppid, u32));
                prop_assert_eq!(header.uid, at!(uid, u32));
                prop_assert_eq!(header.gid, at!(gid, u32));
                let comm = std::mem::offset_of!(ProcessRecord, comm);
                prop_assert_eq!(&header.comm[..], &record[comm..comm + TASK_COMM_LEN]);
            }
        }
    }

    /// `trim_nul` keeps exactly the bytes before the first NUL, all of
    /// them when there is none.
    #[test]
    fn a_kernel_string_ends_at_its_first_nul(
        bytes in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..40),
    ) {
        let string = trim_nul(&bytes);
        prop_assert!(bytes.starts_with(string));
        prop_assert!(!string.contains(&0));
        prop_assert!(string.len() == bytes.len() || bytes[string.len()] == 0);
    }
}
