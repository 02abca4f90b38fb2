// SPDX-License-Identifier: GPL-2.0
/*
 * trace_open: open(2), openat(2) and openat2(2), with their result.
 *
 * Arguments are kept at entry (per thread) and the event is built at exit,
 * when the result is known. The path is read at exit too: the kernel has just
 * copied it, so the page is resident, and a failed-only or prefix filter
 * drops the event before any ring-buffer space is used.
 *
 * With a prefix filter the path is first read at entry, just before the
 * kernel copies it: an open whose path matches no prefix there is dropped
 * before it costs a map update, lookup and delete (the common case of a
 * filter: it cost 0.35 us per open more than dropping a process not
 * selected). A path that cannot be read at entry (its page not faulted in
 * yet) is judged at exit, as is every path that matches.
 */
#include "gadget_common.h"
#include "trace_open.h"

char LICENSE[] SEC("license") = "GPL";

/* Only opens that failed. */
const volatile __u32 targ_failed_only = 0;
/* Path prefixes; an event passes if its path starts with one of them. */
const volatile __u32 targ_prefix_count = 0;
const volatile __u32 targ_prefix_lens[OPEN_PREFIXES_MAX] = {};
const volatile char targ_prefixes[OPEN_PREFIXES_MAX][OPEN_PREFIX_LEN_MAX] = {};

struct open_args {
	const char *path;
	__u64 flags;
	__u32 mode;
	__s32 dirfd;
	__u32 syscall;
	__u32 _pad;
};

/* Arguments of the opens in flight, by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct open_args);
} open_args_by_tid SEC(".maps");

/*
 * Opens not followed because an insert into open_args_by_tid failed (the
 * map is full), per CPU. Reported by the node as a warning.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_opens SEC(".maps");

/* Where an event is built: too large for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct open_event);
} open_event_scratch SEC(".maps");

static __always_inline int path_has_prefix(const struct open_event *e)
{
	for (__u32 p = 0; p < OPEN_PREFIXES_MAX; p++) {
		if (p >= targ_prefix_count)
			break;
		__u32 len = targ_prefix_lens[p];
		int matched = 1;

		if (len > e->path_len)
			continue;
		for (__u32 i = 0; i < OPEN_PREFIX_LEN_MAX; i++) {
			if (i >= len)
				break;
			if (e->path[i] != targ_prefixes[p][i]) {
				matched = 0;
				break;
			}
		}
		if (matched)
			return 1;
	}
	return 0;
}

/*
 * Whether the path, read at entry, matches no prefix. 0 when it cannot be
 * read: exit judges it then.
 */
static __always_inline int prefix_rejects_at_entry(const char *path)
{
	__u32 zero = 0;
	struct open_event *e = bpf_map_lookup_elem(&open_event_scratch, &zero);
	long len;

	if (!e)
		return 0;
	len = bpf_probe_read_user_str(e->path, sizeof(e->path), path);
	if (len <= 0)
		return 0;
	e->path_len = len - 1;
	return !path_has_prefix(e);
}

static __always_inline int enter_open(const char *path, __u64 flags, __u32 mode, __s32 dirfd,
				      __u32 syscall)
{
	struct open_args args = {
		.path = path, .flags = flags, .mode = mode, .dirfd = dirfd, .syscall = syscall,
	};
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!should_trace_current())
		return 0;
	if (targ_prefix_count && prefix_rejects_at_entry(path))
		return 0;
	if (bpf_map_update_elem(&open_args_by_tid, &tid, &args, BPF_ANY)) {
		__u32 zero = 0;
		__u64 *lost = bpf_map_lookup_elem(&lost_opens, &zero);

		if (lost)
			*lost += 1;
	}
	return 0;
}

static __always_inline int exit_open(struct syscall_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u32 zero = 0;
	struct open_args *args;
	struct open_event *e;
	long len;

	args = bpf_map_lookup_elem(&open_args_by_tid, &tid);
	if (!args)
		return 0;
	if (targ_failed_only && ctx->ret >= 0)
		goto cleanup;
	e = bpf_map_lookup_elem(&open_event_scratch, &zero);
	if (!e)
		goto cleanup;

	len = bpf_probe_read_user_str(e->path, sizeof(e->path), args->path);
	if (len <= 0) {
		len = 0;
		e->path_truncated = 0;
	} else {
		len -= 1; /* the NUL */
		/* A full buffer ends the string early only if a byte follows. */
		char next = 0;

		e->path_truncated = len == OPEN_PATH_MAX - 1 &&
				    !bpf_probe_read_user(&next, 1, args->path + len) && next;
	}
	e->path_len = len;
	if (targ_prefix_count && !path_has_prefix(e))
		goto cleanup;

	fill_process(&e->proc);
	e->flags = args->flags;
	e->ret = ctx->ret;
	e->mode = args->mode;
	e->dirfd = args->dirfd;
	e->syscall = args->syscall;
	emit_event(e, offsetof(struct open_event, path) + (len & (OPEN_PATH_MAX - 1)));
cleanup:
	bpf_map_delete_elem(&open_args_by_tid, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int tracepoint__syscalls__sys_enter_open(struct syscall_enter_ctx *ctx)
{
	return enter_open((const char *)ctx->args[0], ctx->args[1], ctx->args[2], AT_FDCWD,
			  OPEN_SYSCALL_OPEN);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct syscall_enter_ctx *ctx)
{
	return enter_open((const char *)ctx->args[1], ctx->args[2], ctx->args[3], ctx->args[0],
			  OPEN_SYSCALL_OPENAT);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int tracepoint__syscalls__sys_enter_openat2(struct syscall_enter_ctx *ctx)
{
	struct open_how how = {};

	/* Unreadable: the syscall fails with EFAULT and we still report it. */
	bpf_probe_read_user(&how, sizeof(how), (const void *)ctx->args[2]);
	return enter_open((const char *)ctx->args[1], how.flags, how.mode, ctx->args[0],
			  OPEN_SYSCALL_OPENAT2);
}

SEC("tracepoint/syscalls/sys_exit_open")
int tracepoint__syscalls__sys_exit_open(struct syscall_exit_ctx *ctx)
{
	return exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct syscall_exit_ctx *ctx)
{
	return exit_open(ctx);
}

SEC("tracepoint/syscalls/sys_exit_openat2")
int tracepoint__syscalls__sys_exit_openat2(struct syscall_exit_ctx *ctx)
{
	return exit_open(ctx);
}
