//! Finding the cgroup2 filesystem in the mount table.

use std::path::PathBuf;

use super::CgroupError;

/// Where the mount table of the calling process is read from.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Finds the cgroup2 mount point in the text of a `/proc/<pid>/mountinfo`.
///
/// A mount whose root is `/` (the whole hierarchy) is preferred over a bind
/// mount of a subtree, since only the whole hierarchy maps every cgroup id.
pub fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    let mut subtree = None;
    for line in mountinfo.lines() {
        // Fields before " - " are: id, parent id, major:minor, root, mount
        // point, options, then optional fields; after it: fstype, source,
        // super options. Optional fields make the separator the only anchor.
        let Some((before, after)) = line.split_once(" - ") else {
            continue;
        };
        if after.split(' ').next() != Some("cgroup2") {
            continue;
        }
        let mut fields = before.split(' ');
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if root == "/" {
            return Some(mount_point);
        }
        subtree.get_or_insert(mount_point);
    }
    subtree
}

/// Undoes the octal escapes the kernel writes in mountinfo for space, tab,
/// newline and backslash (`\040`, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Finds the cgroup2 mount point of this process from `/proc/self/mountinfo`.
pub fn find_cgroup2_mount() -> Result<PathBuf, CgroupError> {
    let path = PathBuf::from(MOUNTINFO);
    let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::ReadMountInfo {
        path: path.clone(),
        source,
    })?;
    cgroup2_mount(&text).ok_or(CgroupError::NoCgroup2Mount { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_finds_cgroup2() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate
";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn mountinfo_unescapes_mount_points() {
        let text = "41 31 0:38 / /mnt/my\\040cgroup\\011x\\134y rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/mnt/my cgroup\tx\\y"))
        );
    }

    #[test]
    fn mountinfo_prefers_the_whole_hierarchy() {
        let text = "\
50 40 0:38 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw
51 40 0:38 / /host/sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(text),
            Some(PathBuf::from("/host/sys/fs/cgroup"))
        );
        let only_subtree = "50 40 0:38 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(only_subtree),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn mountinfo_without_cgroup2() {
        let text = "\
31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/cgroup2 rw - cgroup cgroup rw,cpu
garbage line
";
        assert_eq!(cgroup2_mount(text), None);
        assert_eq!(cgroup2_mount(""), None);
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape_mountinfo("a\\b"), "a\\b");
        assert_eq!(unescape_mountinfo("a\\04"), "a\\04");
        assert_eq!(unescape_mountinfo("a\\999"), "a\\999");
        assert_eq!(unescape_mountinfo("\\040"), " ");
    }

    #[test]
    fn this_host_has_cgroup2() {
        let mount = find_cgroup2_mount().expect("cgroup2 is mounted on test hosts");
        assert!(mount.join("cgroup.procs").exists());
    }
}
