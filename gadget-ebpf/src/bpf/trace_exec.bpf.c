// SPDX-License-Identifier: GPL-2.0
/*
 * trace_exec: execve(2) and execveat(2).
 *
 * argv lives in the memory of the program being replaced: once the exec
 * succeeds the pointers are gone, so the name and the arguments are copied at
 * syscall entry. A successful exec is reported from sched_process_exec (new
 * comm, the pid after de_thread()), a failed one from the syscall's exit.
 */
#include "gadget_common.h"
#include "trace_exec.h"

char LICENSE[] SEC("license") = "GPL";

/* Set by the loader within EXEC_ARGS_*_CAP. */
const volatile __u32 targ_max_args = EXEC_ARGS_COUNT_DEFAULT;
const volatile __u32 targ_max_args_bytes = EXEC_ARGS_BYTES_DEFAULT;
const volatile __u32 targ_ignore_failed = 0;

/*
 * Execs in flight, by the tid that called execve. Not preallocated: an entry
 * is large and few execs are in flight at once.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct exec_event);
} execs SEC(".maps");

/* Source for new entries of execs: a map value is too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_event);
} exec_event_template SEC(".maps");

struct read_args_ctx {
	struct exec_event *event;
	const char *const *argv;
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

	if (bpf_probe_read_user(&arg, sizeof(arg), &c->argv[i]) || !arg)
		return 1;
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

static __always_inline void read_args(struct exec_event *e, const char *const *argv)
{
	struct read_args_ctx c = { .event = e, .argv = argv, .off = e->exe_len + 1 };

	/* One more than the cap, to notice an argument beyond it. */
	bpf_loop(EXEC_ARGS_COUNT_CAP + 1, read_one_arg, &c, 0);
	e->args_size = c.used;
}

static __always_inline int enter_exec(const char *filename, const char *const *argv)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 zero = 0;
	struct exec_event *template, *e;
	long n;

	if (!should_trace_current())
		return 0;
	template = bpf_map_lookup_elem(&exec_event_template, &zero);
	if (!template)
		return 0;
	if (bpf_map_update_elem(&execs, &tid, template, BPF_ANY))
		return 0;
	e = bpf_map_lookup_elem(&execs, &tid);
	if (!e)
		return 0;

	e->truncated = 0;
	e->args_count = 0;
	n = bpf_probe_read_user_str(e->data, EXEC_EXE_MAX, filename);
	if (n <= 0) {
		n = 1;
		e->data[0] = 0;
	} else if (n == EXEC_EXE_MAX) {
		e->truncated |= EXEC_EXE_TRUNCATED;
	}
	e->exe_len = (n - 1) & (EXEC_EXE_MAX - 1);
	read_args(e, argv);
	return 0;
}

static __always_inline void emit_exec(struct exec_event *e, __s32 ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 size;

	fill_process(&e->proc);
	BPF_CORE_READ_STR_INTO(&e->parent_comm, task, real_parent, comm);
	e->ret = ret;
	size = offsetof(struct exec_event, data) + e->exe_len + 1 + e->args_size;
	if (size > sizeof(*e))
		return;
	emit_event(e, size);
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
	__u32 old_tid = ctx->old_pid;
	struct exec_event *e = bpf_map_lookup_elem(&execs, &old_tid);

	if (!e)
		return 0;
	emit_exec(e, 0);
	bpf_map_delete_elem(&execs, &old_tid);
	return 0;
}

static __always_inline int exit_exec(struct syscall_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct exec_event *e = bpf_map_lookup_elem(&execs, &tid);

	if (!e)
		return 0;
	if (ctx->ret < 0 && !targ_ignore_failed)
		emit_exec(e, ctx->ret);
	bpf_map_delete_elem(&execs, &tid);
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
