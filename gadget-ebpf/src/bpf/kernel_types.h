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

struct task_struct {
	int pid;
	int tgid;
	struct task_struct *real_parent;
	struct nsproxy *nsproxy;
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
