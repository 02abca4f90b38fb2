/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types the gadgets read, instead of a generated vmlinux.h.
 *
 * Structs marked preserve_access_index are read with CO-RE: only the fields
 * named here matter, and the loader relocates their offsets against the
 * running kernel's BTF, so their order and the missing fields are irrelevant.
 * Tracepoint contexts are not relocated: their layout is the tracefs format,
 * which is ABI.
 */
#ifndef GADGET_KERNEL_TYPES_H
#define GADGET_KERNEL_TYPES_H

#include <linux/types.h>
#include <linux/bpf.h>

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct mnt_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} __attribute__((preserve_access_index));

/* Kernel-internal counters; only their kind matters to CO-RE, not the name. */
typedef struct {
	int counter;
} atomic_t;

typedef struct {
	long counter;
} atomic_long_t;

struct qstr {
	__u32 len; /* in an anonymous struct of a union in the kernel */
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent; /* itself at the root of its file system */
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

/* fs/mount.h: what a struct vfsmount is embedded in. */
struct mount {
	struct mount *mnt_parent; /* itself at the root of a mount namespace */
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct inode;

/* Linux 6.13: the reference count became a file_ref_t holding count - 1. */
typedef struct {
	atomic_long_t refcnt;
} file_ref_t;

struct file {
	struct path f_path;
	struct inode *f_inode;
	file_ref_t f_ref;
} __attribute__((preserve_access_index));

/* struct file before Linux 6.13. */
struct file___f_count {
	atomic_long_t f_count;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	struct file *exe_file;
} __attribute__((preserve_access_index));

/* include/linux/sched/signal.h; not in BTF, unchanged since Linux 4.11. */
#define SIGNAL_GROUP_EXIT 0x00000004

struct signal_struct {
	atomic_t live; /* threads not yet past do_exit()'s group_dead check */
	int group_exit_code;
	unsigned int flags;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	int exit_code;
	__u64 start_time;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct nsproxy *nsproxy;
	struct files_struct *files;
	struct fs_struct *fs;
	struct mm_struct *mm;
	struct signal_struct *signal;
	char comm[16];
} __attribute__((preserve_access_index));

/* Common header of every tracepoint record. */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

/* syscalls/sys_enter_*: the syscall number, then each argument in 8 bytes. */
struct syscall_enter_ctx {
	struct trace_entry ent;
	long id;
	unsigned long args[6];
};

/* syscalls/sys_exit_*. */
struct syscall_exit_ctx {
	struct trace_entry ent;
	long id;
	long ret;
};

/* sched/sched_process_exec. */
struct sched_process_exec_ctx {
	struct trace_entry ent;
	unsigned int filename_loc; /* __data_loc: offset in the low 16 bits */
	int pid;
	int old_pid; /* the tid that called execve, before de_thread() */
};

/* openat2(2)'s argument, read from user memory (uapi, so no CO-RE). */
struct open_how {
	__u64 flags;
	__u64 mode;
	__u64 resolve;
};

#define AT_FDCWD -100

#endif
