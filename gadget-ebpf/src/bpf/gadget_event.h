/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every gadget's event starts with. Crosses to userspace: mirrored by
 * gadget_ebpf::ProcessRecord and tied to it by its layout test.
 */
#ifndef GADGET_EVENT_H
#define GADGET_EVENT_H

#define TASK_COMM_LEN 16

struct process_record {
	__u64 boot_ns;   /* bpf_ktime_get_boot_ns(): counts suspend, like CLOCK_BOOTTIME */
	__u64 cgroup_id; /* inode of the task's cgroup v2 directory */
	__u64 mntns_id;
	__u32 pid;       /* thread group id, what userspace calls the pid */
	__u32 tid;
	__u32 ppid;
	__u32 uid;
	__u32 gid;
	__u32 _pad;
	char comm[TASK_COMM_LEN];
};

/*
 * What crosses to userspace, for the layout dump gadget-ebpf's build script
 * generates: every struct with all its fields, and the constants userspace
 * relies on. Each gadget's header lists its own the same way, in
 * <NAME>_LAYOUT after its file name.
 */
#define GADGET_EVENT_LAYOUT(STRUCT, FIELD, CONST) \
	STRUCT(process_record)                    \
	FIELD(process_record, boot_ns)            \
	FIELD(process_record, cgroup_id)          \
	FIELD(process_record, mntns_id)           \
	FIELD(process_record, pid)                \
	FIELD(process_record, tid)                \
	FIELD(process_record, ppid)               \
	FIELD(process_record, uid)                \
	FIELD(process_record, gid)                \
	FIELD(process_record, _pad)               \
	FIELD(process_record, comm)               \
	CONST(TASK_COMM_LEN)

#endif
