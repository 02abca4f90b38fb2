// SPDX-License-Identifier: GPL-2.0
/*
 * trace_exec: execve(2) and execveat(2).
 *
 * A successful exec is reported from sched_process_exec (the new comm, the
 * pid after de_thread()), in the kernel's terms: the program is the name the
 * kernel resolved the exec by (bprm->filename: the path as copied, or
 * /dev/fd/N for an exec of a file descriptor) and the arguments are the ones
 * the kernel copied into the new program's stack (mm->arg_start..arg_end),
 * which no other thread of the caller can change any more.
 *
 * A failed exec leaves no new program: it is reported from the syscall's
 * exit with the name and arguments read from the caller's memory, through
 * the pointers kept at entry. The task may sleep in between, so those are
 * kept per thread (exec_starts), not per CPU.
 *
 * The event is built in a per-CPU scratch record at the point of emission:
 * nothing large is allocated per exec.
 */
#include "gadget_common.h"
#include "trace_exec.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader within EXEC_ARGS_*_CAP. */
const volatile __u32 targ_max_args = EXEC_ARGS_COUNT_DEFAULT;
const volatile __u32 targ_max_args_bytes = EXEC_ARGS_BYTES_DEFAULT;
const volatile __u32 targ_ignore_failed = 0;

/* What the syscall's exit needs to report a failed exec. */
struct exec_start {
	const char *filename;
	const char *const *argv;
};

/*
 * Execs in flight, by the tid that called execve. Preallocated, so that an
 * insert never allocates; one that fails (the map is full) is counted in
 * lost_execs.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct exec_start);
} exec_starts SEC(".maps");

/*
 * Where an event is built, one per CPU, indexed by CPU: a per-CPU map's
 * value is limited to 32 KiB and an event is larger. The loader sets
 * max_entries to the number of possible CPUs. Programs on tracepoints do not
 * nest on one CPU, so an entry has one user at a time.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} exec_event_scratch SEC(".maps");

/*
 * Execs that could not be followed, per CPU: an insert into exec_starts
 * that failed (a failure of that exec goes unreported), or no scratch
 * record. Reported by the node as a warning.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_execs SEC(".maps");

static __always_inline void count_lost_exec(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_execs, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline struct exec_event *scratch_event(void)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct exec_event *e = bpf_map_lookup_elem(&exec_event_scratch, &cpu);

	if (!e) {
		count_lost_exec();
		return NULL;
	}
	e->truncated = 0;
	e->args_count = 0;
	e->args_size = 0;
	e->exe_len = 0;
	return e;
}

/*
 * Where the arguments are read from: an argv array of pointers (the
 * caller's), or the NUL-separated strings the kernel copied for the new
 * program, from next up to end.
 */
struct read_args_ctx {
	struct exec_event *event;
	const char *const *argv; /* NULL when reading next..end */
	const char *next;
	const char *end;
	__u32 off;  /* where the next argument goes in event->data */
	__u32 used; /* argument bytes so far */
};

/*
 * One argument per call, run by bpf_loop: the verifier checks the body once
 * instead of once per possible argument, which for 1024 arguments exceeds its
 * budget. Returns 1 to stop.
 */
static long read_one_arg(__u32 i, struct read_args_ctx *c)
{
	struct exec_event *e = c->event;
	const char *arg = NULL;
	__u32 room, off;
	long n;

	if (c->argv) {
		if (bpf_probe_read_user(&arg, sizeof(arg), &c->argv[i]) || !arg)
			return 1;
	} else {
		if (c->next >= c->end)
			return 1;
		arg = c->next;
	}
	if (i >= targ_max_args || c->used >= targ_max_args_bytes) {
		e->truncated |= EXEC_ARGS_TRUNCATED;
		return 1;
	}
	/*
	 * The verifier must see both bounds in the registers passed to the
	 * helper; the barriers keep clang from folding the masks away.
	 */
	room = targ_max_args_bytes - c->used;
	if (room > EXEC_ARGS_BYTES_CAP - 1)
		room = EXEC_ARGS_BYTES_CAP - 1;
	barrier_var(room);
	room &= EXEC_ARGS_BYTES_CAP - 1;
	off = c->off;
	barrier_var(off);
	if (off > EXEC_EXE_MAX + EXEC_ARGS_BYTES_CAP)
		return 1;
	n = bpf_probe_read_user_str(&e->data[off], room, arg);
	if (n <= 0) {
		/* Unreadable (paged out): say so rather than report fewer args. */
		e->truncated |= EXEC_ARGS_TRUNCATED;
		return 1;
	}
	c->off += n;
	c->used += n;
	c->next = arg + n;
	e->args_count++;
	/* A full room ends the copy early only if the argument went on. */
	if (n == room) {
		char next = 0;

		if (!bpf_probe_read_user(&next, 1, arg + n - 1) && next) {
			e->truncated |= EXEC_ARGS_TRUNCATED;
			return 1;
		}
	}
	return 0;
}

/* Reads the arguments after the name; e->exe_len must be set. */
static __always_inline void read_args(struct exec_event *e, struct read_args_ctx *c)
{
	c->event = e;
	c->off = e->exe_len + 1;
	c->used = 0;
	/* One more than the cap, to notice an argument beyond it. */
	bpf_loop(EXEC_ARGS_COUNT_CAP + 1, read_one_arg, c, 0);
	e->args_size = c->used;
}

/* Sets exe_len and the flags after n = what a *_str helper returned. */
static __always_inline void set_exe_len(struct exec_event *e, long n)
{
	if (n <= 0) {
		n = 1;
		e->data[0] = 0;
		e->truncated |= EXEC_EXE_UNREADABLE;
	} else if (n == EXEC_EXE_MAX) {
		e->truncated |= EXEC_EXE_TRUNCATED;
	}
	e->exe_len = (n - 1) & (EXEC_EXE_MAX - 1);
}

static __always_inline void emit_exec(struct exec_event *e, __s32 ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 size;

	fill_process(&e->proc);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, task, real_parent, comm);
	e->ret = ret;
	e->_pad = 0;
	size = offsetof(struct exec_event, data) + e->exe_len + 1 + e->args_size;
	if (size > sizeof(*e))
		return;
	emit_event(e, size);
}

static __always_inline int enter_exec(const char *filename, const char *const *argv)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct exec_start start = { .filename = filename, .argv = argv };

	/* Only a failure needs what the caller passed. */
	if (targ_ignore_failed || !should_trace_current())
		return 0;
	if (bpf_map_update_elem(&exec_starts, &tid, &start, BPF_ANY))
		count_lost_exec();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_execve")
int tracepoint__syscalls__sys_enter_execve(struct syscall_enter_ctx *ctx)
{
	return enter_exec((const char *)ctx->args[0], (const char *const *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_execveat")
int tracepoint__syscalls__sys_enter_execveat(struct syscall_enter_ctx *ctx)
{
	return enter_exec((const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

/* The point of no return has passed: the exec succeeded. */
SEC("tracepoint/sched/sched_process_exec")
int tracepoint__sched__sched_process_exec(struct sched_process_exec_ctx *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct read_args_ctx args = {};
	__u32 old_tid = ctx->old_pid;
	struct exec_event *e;
	long n;

	bpf_map_delete_elem(&exec_starts, &old_tid);
	if (!should_trace_current())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	n = bpf_probe_read_kernel_str(e->data, EXEC_EXE_MAX,
				      (void *)ctx + (ctx->filename_loc & 0xffff));
	set_exe_len(e, n);
	args.next = (const char *)BPF_CORE_READ(task, mm, arg_start);
	args.end = (const char *)BPF_CORE_READ(task, mm, arg_end);
	read_args(e, &args);
	emit_exec(e, 0);
	return 0;
}

static __always_inline int exit_exec(struct syscall_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct exec_start *start = bpf_map_lookup_elem(&exec_starts, &tid);
	struct read_args_ctx args = {};
	struct exec_event *e;

	if (!start)
		return 0;
	if (ctx->ret >= 0)
		goto cleanup;
	e = scratch_event();
	if (!e)
		goto cleanup;
	set_exe_len(e, bpf_probe_read_user_str(e->data, EXEC_EXE_MAX, start->filename));
	args.argv = start->argv;
	read_args(e, &args);
	emit_exec(e, ctx->ret);
cleanup:
	bpf_map_delete_elem(&exec_starts, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_execve")
int tracepoint__syscalls__sys_exit_execve(struct syscall_exit_ctx *ctx)
{
	return exit_exec(ctx);
}

SEC("tracepoint/syscalls/sys_exit_execveat")
int tracepoint__syscalls__sys_exit_execveat(struct syscall_exit_ctx *ctx)
{
	return exit_exec(ctx);
}
