/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every gadget shares in the kernel: the per-trace filters, the cgroup
 * verdict map, the ring buffer and its loss counter.
 *
 * Included once by each gadget's .bpf.c: each gadget is its own object with
 * its own maps, so two traces never share state.
 */
#ifndef GADGET_COMMON_H
#define GADGET_COMMON_H

#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "gadget_event.h"

/*
 * Per-trace filters, rodata set by the loader before load. Each filter has
 * its own on/off flag: a zero value must never silently mean "only uid 0".
 * u32 rather than bool: a fixed width, so the loader can set it exactly.
 */
const volatile __u32 targ_filter_pid = 0;
const volatile __u32 targ_pid = 0;
const volatile __u32 targ_filter_uid = 0;
const volatile __u32 targ_uid = 0;
/* When set, a task is traced only if its cgroup's verdict says so. */
const volatile __u32 targ_filter_cgroup = 0;
/* Wake the reader once this many bytes wait in the ring buffer; below it,
 * records are submitted without a wakeup and the reader drains on a timer. */
const volatile __u64 targ_wakeup_bytes = 65536;

/*
 * Verdict per cgroup id: 1 traced, 0 not, for every container and host
 * cgroup userspace knows. Userspace keeps it up to date while the trace
 * runs, as containers come and go.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u32);
} cgroup_verdicts SEC(".maps");

/* Sized by the loader (set_max_entries) per trace. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

/* Records that did not fit into the ring buffer, per CPU: no atomics. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_events SEC(".maps");

/*
 * The one place where a trace decides whether the current task matters.
 * Called at syscall entry, before anything is stored or reserved, so tasks
 * outside the selection cost one map lookup at most.
 */
static __always_inline int should_trace(__u64 cgroup_id, __u32 pid, __u32 uid)
{
	if (targ_filter_pid && pid != targ_pid)
		return 0;
	if (targ_filter_uid && uid != targ_uid)
		return 0;
	if (targ_filter_cgroup) {
		__u32 *verdict = bpf_map_lookup_elem(&cgroup_verdicts, &cgroup_id);

		/* A cgroup userspace has not judged yet (created since its
		 * last look: often a container that just started) goes to
		 * userspace, which judges it, drops what is not selected and
		 * puts the verdict here; a new container's first exec is
		 * not lost to the wait for a rescan. */
		return verdict ? *verdict : 1;
	}
	return 1;
}

/*
 * Whether the kernel may act against the current task (enforcement), not
 * just report it: only when its cgroup has a verdict userspace gave and it
 * says "selected" (or the trace selects every cgroup). A cgroup without a
 * verdict yet passes should_trace() so that userspace can judge its events,
 * but it may belong to a pod the trace does not select: acting on it would
 * touch a process outside the selection. Call after should_trace_current().
 */
static __always_inline int may_enforce_current(void)
{
	__u64 cgroup_id;
	__u32 *verdict;

	if (!targ_filter_cgroup)
		return 1;
	cgroup_id = bpf_get_current_cgroup_id();
	verdict = bpf_map_lookup_elem(&cgroup_verdicts, &cgroup_id);
	return verdict && *verdict;
}

static __always_inline int should_trace_current(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();

	return should_trace(bpf_get_current_cgroup_id(), pid_tgid >> 32,
			    (__u32)bpf_get_current_uid_gid());
}

/* Fills the process part of an event from the current task. */
static __always_inline void fill_process(struct process_record *p)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();

	p->boot_ns = bpf_ktime_get_boot_ns();
	p->cgroup_id = bpf_get_current_cgroup_id();
	p->mntns_id = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);
	p->pid = pid_tgid >> 32;
	p->tid = (__u32)pid_tgid;
	p->ppid = BPF_CORE_READ(task, real_parent, tgid);
	p->uid = (__u32)uid_gid;
	p->gid = uid_gid >> 32;
	p->_pad = 0;
	bpf_get_current_comm(p->comm, sizeof(p->comm));
}

/*
 * Copies a finished event into the ring buffer. Without a wakeup unless the
 * buffer is filling up: a wakeup per event makes the traced workload pay a
 * reader context switch per syscall. A full buffer is counted, never silent.
 */
static __always_inline void emit_event(void *event, __u64 size)
{
	__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= targ_wakeup_bytes
			      ? BPF_RB_FORCE_WAKEUP
			      : BPF_RB_NO_WAKEUP;

	if (bpf_ringbuf_output(&events, event, size, flags)) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);

		if (lost)
			*lost += 1;
	}
}

#endif
