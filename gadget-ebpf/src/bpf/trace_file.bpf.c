// SPDX-License-Identifier: GPL-2.0
/*
 * trace_file: opens, reads, writes and closes of followed files, and the
 * execs and exits of the selected processes, optionally killing a process
 * at an operation on a followed file.
 *
 * A file is followed when an open(2), openat(2) or openat2(2) of a selected
 * process succeeds and the kernel's path of the new file, as seen from the
 * process's root, matches one of the trace's paths or prefixes. The path is
 * the kernel's, walked from the open file (struct file's f_path) through its
 * dentries and mounts: symlinks, "..", "//", "/./", dirfds, the working
 * directory and /proc/self/root are already resolved, so what the process
 * passed does not matter. The walk is bounded by FILE_PATH_DEPTH_MAX steps
 * (a name or a mount crossing each) and FILE_PATH_MAX - 1 bytes; a path it
 * cuts never matches, its start being unknown. A file outside the process's
 * root (after chroot) is shown from the mount namespace's root.
 *
 * What is followed is the open file (struct file), not the descriptor: the
 * followed_files map is keyed by the struct file pointer that the fd table
 * holds at the entry of each read, write and close, and a hit is checked
 * against the file's current dentry, mount and inode, so a freed and reused
 * struct file of another file is not taken for a followed one. Every
 * descriptor that shares the open file is therefore followed with no
 * bookkeeping: dup(2), dup2(2), dup3(2), fcntl(F_DUPFD*), descriptors a
 * child inherits at fork, threads, descriptors passed over a unix socket,
 * and descriptors that survive an exec (no O_CLOEXEC; with O_CLOEXEC the
 * exec closes them and nothing is reported for that close).
 *
 * Followed: read, write, pread64, pwrite64, readv, writev, preadv, pwritev,
 * preadv2 and pwritev2, reported at syscall exit with the bytes transferred
 * or the error, and close(2). Not followed, because no syscall tracepoint
 * sees the transfer: writes through a shared mmap of the file (plain memory
 * stores), io_uring requests (run by the ring, not by read/write),
 * sendfile(2), splice(2), tee(2), copy_file_range(2) and vmsplice(2) (other
 * syscalls, which this gadget does not hook), close_range(2), a dup2(2) or
 * dup3(2) onto a followed fd, and the closes done by exec (O_CLOEXEC) and
 * exit (none is a close(2)), and 32-bit compat syscalls on a 64-bit
 * kernel (x86 does not emit syscall tracepoints for them at all, so their
 * opens are not seen either). Failed opens are not reported: there is no
 * file whose path the kernel resolved. gadget-node's
 * tests/kernel_trace_file.rs shows each of these.
 *
 * An entry is deleted when a close drops the file's last reference. Files
 * whose last reference goes another way (exit, exec, close_range, munmap of
 * a mapping that outlived the fd) stay until the LRU map evicts them; a
 * trace that follows more open files at once than FOLLOWED_MAX forgets the
 * least recently used ones.
 *
 * Enforcement (targ_kill_on) sends SIGKILL to the process with
 * bpf_send_signal() at the entry of a read or write on a followed file, so
 * the signal is pending before the syscall runs: filemap_read() and
 * generic_perform_write() stop before copying anything when a fatal signal
 * is pending (regular files of page-cache file systems; O_DIRECT and other
 * file types are not covered). For an open, at its exit, once the file
 * matched: the fd exists but the process never returns to use it (O_CREAT
 * and O_TRUNC have taken effect). Only processes that pass
 * should_trace_current() and whose cgroup userspace has judged selected
 * (may_enforce_current()) are ever killed, and only while the programs are
 * attached: a cgroup created since userspace last looked is reported (and
 * judged by the node) but not acted on until it has a verdict.
 */
#include "gadget_common.h"
#include "trace_file.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
/* A dentry name is at most NAME_MAX (255) bytes. */
#define FILE_NAME_MAX 256
#define FOLLOWED_MAX 32768

/*
 * The followed paths (exact) and prefixes, together in one list: a path
 * matches pattern p if it starts with its targ_pattern_lens[p] bytes and,
 * when targ_pattern_exact[p], has no more.
 */
const volatile __u32 targ_pattern_count = 0;
const volatile __u32 targ_pattern_lens[FILE_PATTERNS_MAX] = {};
const volatile __u32 targ_pattern_exact[FILE_PATTERNS_MAX] = {};
const volatile char targ_patterns[FILE_PATTERNS_MAX][FILE_PATTERN_LEN_MAX] = {};
/* Operations reported: bits 1 << FILE_OP_*. */
const volatile __u32 targ_operations = 0;
/* SIGKILL the process at this FILE_OP_* on a followed file; 0 never. */
const volatile __u32 targ_kill_on = 0;

/* What a followed file was when its open matched. */
struct followed {
	__u64 dentry;
	__u64 mnt;
	__u64 inode;
};

/* Followed open files, by struct file pointer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FOLLOWED_MAX);
	__type(key, __u64);
	__type(value, struct followed);
} followed_files SEC(".maps");

/* A syscall in flight, between its entry and its exit. */
struct call {
	__u64 ptr;        /* open: the user's path; others: the struct file */
	__s32 fd;
	__u32 op;         /* FILE_OP_* */
	__u32 killed;
	__u32 last_ref;   /* close: the file's last reference goes */
};

/* Syscalls in flight, by thread id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u32);
	__type(value, struct call);
} calls SEC(".maps");

/*
 * Close events built at the entry (the file may be freed by the exit),
 * emitted at the exit with the result. Not preallocated: an entry is large
 * and closes of followed files are few.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct file_event);
} closes SEC(".maps");

/* Source for new entries of closes: a map value is too large for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_event);
} event_template SEC(".maps");

/* Where an event is built: too large for the 512-byte BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct file_event);
} event_scratch SEC(".maps");

/*
 * A path is built backwards, from the file up: it ends at FILE_PATH_MAX and
 * starts at walk.pos. The tail is room for a name written at the masked
 * offset the verifier checks, whatever its length.
 */
struct path_buf {
	char buf[FILE_PATH_MAX + FILE_NAME_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_buf);
} path_scratch SEC(".maps");

/* An executable's resolved path: its last len bytes. */
struct exe_path {
	__u32 len;
	__u32 truncated;
	char path[FILE_EXE_MAX];
};

/*
 * Executable paths by tgid, so that a read or write does not walk the
 * executable's path. Replaced at exec, deleted at exit (pids are reused).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct exe_path);
} exe_paths SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exe_path);
} exe_scratch SEC(".maps");

/* A process, across pid reuse: its tgid and its leader's start time. */
struct process_key {
	__u32 tgid;
	__u32 _pad;
	__u64 start_ns;
};

/*
 * Processes whose exit was reported: threads that exit together can each
 * see signal->live at 0, and only the first reports.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct process_key);
	__type(value, __u32);
} exits_reported SEC(".maps");

/*
 * Inserts into calls, closes and followed_files that failed, per CPU: each
 * is a followed operation (or file) whose events are missing. Reported by
 * the node as a warning.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost_follows SEC(".maps");

static __always_inline void count_lost_follow(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&lost_follows, &zero);

	if (lost)
		*lost += 1;
}

static __always_inline int reports(__u32 op)
{
	return targ_operations & (1U << op);
}

/* Whether reads, writes or closes of matched files matter to this trace. */
static __always_inline int follows(void)
{
	return reports(FILE_OP_READ) || reports(FILE_OP_WRITE) || reports(FILE_OP_CLOSE) ||
	       targ_kill_on == FILE_OP_READ || targ_kill_on == FILE_OP_WRITE;
}

/* The open file behind fd in the current task's fd table, or NULL. */
static __always_inline struct file *fd_file(__u32 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *file = NULL;

	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

/* References to the open file: fd table entries, mappings, in-flight uses. */
static __always_inline long file_refs(struct file *file)
{
	if (bpf_core_field_exists(struct file___f_count, f_count))
		return BPF_CORE_READ((struct file___f_count *)file, f_count.counter);
	/* file_ref_t holds count - 1; released and dead values are negative. */
	return BPF_CORE_READ(file, f_ref.refcnt.counter) + 1;
}

/* Whether file is followed: its entry exists and still describes it. */
static __always_inline int is_followed(struct file *file)
{
	__u64 key = (__u64)file;
	struct followed *f = bpf_map_lookup_elem(&followed_files, &key);

	if (!f)
		return 0;
	if (f->dentry != (__u64)BPF_CORE_READ(file, f_path.dentry) ||
	    f->mnt != (__u64)BPF_CORE_READ(file, f_path.mnt) ||
	    f->inode != (__u64)BPF_CORE_READ(file, f_inode)) {
		/* The struct file was freed and reused for another file. */
		bpf_map_delete_elem(&followed_files, &key);
		return 0;
	}
	return 1;
}

static __always_inline void follow(struct file *file)
{
	__u64 key = (__u64)file;
	struct followed f = {
		.dentry = (__u64)BPF_CORE_READ(file, f_path.dentry),
		.mnt = (__u64)BPF_CORE_READ(file, f_path.mnt),
		.inode = (__u64)BPF_CORE_READ(file, f_inode),
	};

	if (bpf_map_update_elem(&followed_files, &key, &f, BPF_ANY))
		count_lost_follow();
}

/* Path walk */

#define WALK_GOING 0
#define WALK_DONE 1     /* reached the process's root or the namespace's */
#define WALK_CUT 2      /* a bound stopped it: the path's start is missing */
#define WALK_DETACHED 3 /* no path from a root: pipes, sockets, memfd, anon files */

struct walk {
	struct dentry *dentry;
	struct vfsmount *vfsmnt;
	struct mount *mnt;
	struct dentry *root_dentry;
	struct vfsmount *root_mnt;
	struct path_buf *pb;
	__u32 pos;   /* the path is pb->buf[pos, FILE_PATH_MAX) */
	__u32 state; /* WALK_* */
};

/* Prepends "/" and the dentry's name, or "name" alone; 0 if it did not fit. */
static __always_inline int prepend_name(struct walk *w, struct dentry *dentry, int slash)
{
	__u32 len = BPF_CORE_READ(dentry, d_name.len);
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	__u32 need = len + (slash ? 1 : 0);
	__u32 pos;

	/* pos stays >= 1: the path is at most FILE_PATH_MAX - 1 bytes. */
	if (len >= FILE_NAME_MAX || need >= w->pos)
		return 0;
	pos = w->pos - need;
	if (slash)
		w->pb->buf[pos & (FILE_PATH_MAX - 1)] = '/';
	bpf_probe_read_kernel(&w->pb->buf[(pos + need - len) & (FILE_PATH_MAX - 1)],
			      len & (FILE_NAME_MAX - 1), name);
	w->pos = pos;
	return 1;
}

/*
 * One step up, run by bpf_loop: a name, or a crossing from the root of a
 * mount to where it is mounted. As the kernel's d_path() does, without its
 * locks: a concurrent rename or mount may show a mixed path, never an
 * unsafe read. Returns 1 to stop.
 */
static long walk_step(__u32 i, struct walk *w)
{
	/* Copied out of w: inside BPF_CORE_READ(), w->x would be a CO-RE
	 * access of struct walk, which the kernel does not have. */
	struct dentry *dentry = w->dentry;
	struct vfsmount *vfsmnt = w->vfsmnt;
	struct mount *mnt = w->mnt;
	struct dentry *mnt_root, *parent;
	struct mount *mnt_parent;

	if (dentry == w->root_dentry && vfsmnt == w->root_mnt) {
		w->state = WALK_DONE;
		return 1;
	}
	mnt_root = BPF_CORE_READ(vfsmnt, mnt_root);
	parent = BPF_CORE_READ(dentry, d_parent);
	if (dentry == mnt_root || dentry == parent) {
		if (dentry != mnt_root) {
			/* A dentry of no directory tree (d_alloc_pseudo()). */
			prepend_name(w, dentry, 0);
			w->state = WALK_DETACHED;
			return 1;
		}
		mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt_parent == mnt) {
			/* The namespace's root: the file is outside the
			 * process's root (chroot), shown from the namespace's. */
			w->state = WALK_DONE;
			return 1;
		}
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mnt_parent;
		w->vfsmnt = (void *)mnt_parent + bpf_core_field_offset(struct mount, mnt);
		return 0;
	}
	if (!prepend_name(w, dentry, 1)) {
		w->state = WALK_CUT;
		return 1;
	}
	w->dentry = parent;
	return 0;
}

/* How a path walk ended, beyond where the path starts. */
struct resolved {
	__u32 pos;       /* the path is pb->buf[pos, FILE_PATH_MAX) */
	__u32 truncated; /* a bound stopped the walk */
	__u32 detached;  /* no path from a root: only the file's own name */
};

/*
 * Resolves file's path as seen from the current process's root into the
 * per-CPU path buffer. Returns the buffer, or NULL if it is missing.
 */
static __always_inline struct path_buf *resolve_path(struct file *file, struct resolved *r)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct vfsmount *vfsmnt = BPF_CORE_READ(file, f_path.mnt);
	__u32 zero = 0;
	struct walk w = {
		.dentry = BPF_CORE_READ(file, f_path.dentry),
		.vfsmnt = vfsmnt,
		.mnt = (void *)vfsmnt - bpf_core_field_offset(struct mount, mnt),
		.root_dentry = BPF_CORE_READ(task, fs, root.dentry),
		.root_mnt = BPF_CORE_READ(task, fs, root.mnt),
		.pos = FILE_PATH_MAX,
		.state = WALK_GOING,
	};

	w.pb = bpf_map_lookup_elem(&path_scratch, &zero);
	if (!w.pb || !w.dentry || !vfsmnt)
		return NULL;
	bpf_loop(FILE_PATH_DEPTH_MAX, walk_step, &w, 0);
	if (w.state == WALK_GOING)
		w.state = WALK_CUT;
	/* Nothing prepended: the file is the root itself. */
	if (w.pos == FILE_PATH_MAX && w.state != WALK_DETACHED) {
		w.pos = FILE_PATH_MAX - 1;
		w.pb->buf[FILE_PATH_MAX - 1] = '/';
	}
	r->pos = w.pos;
	r->truncated = w.state == WALK_CUT;
	r->detached = w.state == WALK_DETACHED;
	return w.pb;
}

/*
 * Whether a resolved path is one the trace follows. A cut path is not: its
 * start, which the patterns are about, is unknown.
 */
static __always_inline int path_matches(const struct path_buf *pb, const struct resolved *r)
{
	__u32 pos = r->pos;
	__u32 len = FILE_PATH_MAX - pos;

	if (r->truncated || r->detached)
		return 0;

	for (__u32 p = 0; p < FILE_PATTERNS_MAX; p++) {
		if (p >= targ_pattern_count)
			break;
		__u32 plen = targ_pattern_lens[p];
		int matched = 1;

		if (plen > len || (targ_pattern_exact[p] && plen != len))
			continue;
		for (__u32 i = 0; i < FILE_PATTERN_LEN_MAX; i++) {
			if (i >= plen)
				break;
			if (pb->buf[(pos + i) & (FILE_PATH_MAX - 1)] != targ_patterns[p][i]) {
				matched = 0;
				break;
			}
		}
		if (matched)
			return 1;
	}
	return 0;
}

/* The executable's resolved path */

/*
 * Resolves the current process's executable (mm->exe_file, the file the
 * kernel exec'd, after symlinks) into the per-CPU exe buffer and caches it.
 * Uses the path buffer. NULL when the process has no mm (exit has released
 * it) or the buffers are missing.
 */
static __always_inline struct exe_path *resolve_exe(__u32 tgid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *exe_file = BPF_CORE_READ(task, mm, exe_file);
	struct resolved r = {};
	struct exe_path *exe;
	struct path_buf *pb;
	__u32 zero = 0, len;

	if (!exe_file)
		return NULL;
	exe = bpf_map_lookup_elem(&exe_scratch, &zero);
	if (!exe)
		return NULL;
	/* A detached executable (a memfd) keeps its name alone. */
	pb = resolve_path(exe_file, &r);
	if (!pb)
		return NULL;
	len = FILE_PATH_MAX - r.pos;
	/* Keep the end, which names the program. */
	if (len > FILE_EXE_MAX - 1) {
		r.pos += len - (FILE_EXE_MAX - 1);
		len = FILE_EXE_MAX - 1;
		r.truncated = 1;
	}
	/* The verifier must see the bound in the register passed; the
	 * barrier keeps clang from folding the mask away. */
	barrier_var(len);
	len &= FILE_EXE_MAX - 1;
	bpf_probe_read_kernel(exe->path, len, &pb->buf[r.pos & (FILE_PATH_MAX - 1)]);
	exe->len = len;
	exe->truncated = r.truncated;
	/* A failed insert costs a walk next time, nothing more. */
	bpf_map_update_elem(&exe_paths, &tgid, exe, BPF_ANY);
	return exe;
}

/* Appends the executable's path at e->data[off] and sets exe_len. */
static __always_inline void fill_exe(struct file_event *e, __u32 off)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct exe_path *exe = bpf_map_lookup_elem(&exe_paths, &tgid);
	__u32 len;

	if (!exe)
		exe = resolve_exe(tgid);
	if (!exe) {
		e->exe_len = 0;
		return;
	}
	len = exe->len & (FILE_EXE_MAX - 1);
	barrier_var(off);
	if (off > 2 * FILE_PATH_MAX)
		return;
	bpf_probe_read_kernel(&e->data[off], len, exe->path);
	e->exe_len = len;
	if (exe->truncated)
		e->truncated |= FILE_EXE_TRUNCATED;
}

/* Events */

static __always_inline void init_event(struct file_event *e, __u32 kind)
{
	fill_process(&e->proc);
	e->kind = kind;
	e->operation = 0;
	e->ret = 0;
	e->fd = -1;
	e->killed = 0;
	e->exit_status = 0;
	e->_pad = 0;
	e->truncated = 0;
	e->exe_len = 0;
	e->path_len = 0;
	e->passed_len = 0;
	e->args_len = 0;
	e->_pad2 = 0;
}

/*
 * Fills an access to a file whose path resolve_path() left in pb: the path,
 * the path as passed for an open, then the executable (which may reuse pb).
 * ret is set by the caller.
 */
static __always_inline void fill_access(struct file_event *e, const struct path_buf *pb,
					const struct resolved *r, __u32 op, __s32 fd, __u32 killed,
					const char *passed)
{
	__u32 len, off;
	long n;

	init_event(e, FILE_EVENT_ACCESS);
	e->operation = op;
	e->fd = fd;
	e->killed = killed;
	len = (FILE_PATH_MAX - r->pos) & (FILE_PATH_MAX - 1);
	bpf_probe_read_kernel(e->data, len, &pb->buf[r->pos & (FILE_PATH_MAX - 1)]);
	e->path_len = len;
	if (r->truncated)
		e->truncated |= FILE_PATH_TRUNCATED;
	off = len;
	if (passed) {
		n = bpf_probe_read_user_str(&e->data[off], FILE_PATH_MAX, passed);
		/* The open succeeded, so the path fitted PATH_MAX. */
		if (n > 0) {
			e->passed_len = (n - 1) & (FILE_PATH_MAX - 1);
			off += e->passed_len;
		}
	}
	fill_exe(e, off);
}

/* Resolves file's path and fills an access to it; 0 if it cannot. */
static __always_inline int resolve_access(struct file_event *e, struct file *file, __u32 op,
					  __s32 fd, __u32 killed)
{
	struct resolved r = {};
	struct path_buf *pb = resolve_path(file, &r);

	if (!pb)
		return 0;
	fill_access(e, pb, &r, op, fd, killed, NULL);
	return 1;
}

static __always_inline void emit_file_event(struct file_event *e)
{
	__u64 size = offsetof(struct file_event, data) + (__u64)e->path_len + e->passed_len +
		     e->args_len + e->exe_len;

	if (size > sizeof(*e))
		return;
	emit_event(e, size);
}

static __always_inline struct file_event *scratch_event(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&event_scratch, &zero);
}

/* Opens */

static __always_inline int enter_open(const char *path)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct call c = { .ptr = (__u64)path, .op = FILE_OP_OPEN };

	if (!should_trace_current())
		return 0;
	if (bpf_map_update_elem(&calls, &tid, &c, BPF_ANY))
		count_lost_follow();
	return 0;
}

static __always_inline int exit_open(struct syscall_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct resolved r = {};
	__u32 killed = 0;
	struct path_buf *pb;
	struct file_event *e;
	struct file *file;
	struct call *c;
	long fd = ctx->ret;

	c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return 0;
	if (c->op != FILE_OP_OPEN || fd < 0)
		goto cleanup;
	file = fd_file(fd);
	if (!file)
		goto cleanup;
	/* Matched before anything is stored or sent: the common case. */
	pb = resolve_path(file, &r);
	if (!pb || !path_matches(pb, &r))
		goto cleanup;

	if (targ_kill_on == FILE_OP_OPEN && may_enforce_current())
		killed = bpf_send_signal(SIGKILL) == 0;
	else if (follows())
		follow(file);
	if (!reports(FILE_OP_OPEN) && !killed)
		goto cleanup;
	e = scratch_event();
	if (!e)
		goto cleanup;
	/* pb still holds the path: nothing walked since. */
	fill_access(e, pb, &r, FILE_OP_OPEN, fd, killed, (const char *)c->ptr);
	e->ret = fd;
	emit_file_event(e);
cleanup:
	bpf_map_delete_elem(&calls, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int tracepoint__syscalls__sys_enter_open(struct syscall_enter_ctx *ctx)
{
	return enter_open((const char *)ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct syscall_enter_ctx *ctx)
{
	return enter_open((const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int tracepoint__syscalls__sys_enter_openat2(struct syscall_enter_ctx *ctx)
{
	return enter_open((const char *)ctx->args[1]);
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

/* Reads and writes: every one of these syscalls takes the fd first. */

static __always_inline int enter_rw(struct syscall_enter_ctx *ctx, __u32 op)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 fd = (__s32)ctx->args[0];
	struct call c = { .fd = fd, .op = op };
	struct file *file;

	if (!should_trace_current())
		return 0;
	file = fd_file(fd);
	if (!file || !is_followed(file))
		return 0;
	/* Before the syscall runs: a pending SIGKILL stops the copy. */
	if (targ_kill_on == op && may_enforce_current())
		c.killed = bpf_send_signal(SIGKILL) == 0;
	if (!reports(op) && !c.killed)
		return 0;
	c.ptr = (__u64)file;
	if (bpf_map_update_elem(&calls, &tid, &c, BPF_ANY))
		count_lost_follow();
	return 0;
}

static __always_inline int exit_rw(struct syscall_exit_ctx *ctx, __u32 op)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct file_event *e;
	struct call *c;

	c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return 0;
	if (c->op != op)
		goto cleanup;
	e = scratch_event();
	/* The fd table still holds the file unless another thread closed it
	 * meanwhile; the walk's reads are safe either way. */
	if (!e || !resolve_access(e, (struct file *)c->ptr, op, c->fd, c->killed))
		goto cleanup;
	e->ret = ctx->ret;
	emit_file_event(e);
cleanup:
	bpf_map_delete_elem(&calls, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int tracepoint__syscalls__sys_enter_read(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_exit_read")
int tracepoint__syscalls__sys_exit_read(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_pread64")
int tracepoint__syscalls__sys_enter_pread64(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_exit_pread64")
int tracepoint__syscalls__sys_exit_pread64(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int tracepoint__syscalls__sys_enter_readv(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int tracepoint__syscalls__sys_exit_readv(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_preadv")
int tracepoint__syscalls__sys_enter_preadv(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_exit_preadv")
int tracepoint__syscalls__sys_exit_preadv(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_preadv2")
int tracepoint__syscalls__sys_enter_preadv2(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_exit_preadv2")
int tracepoint__syscalls__sys_exit_preadv2(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_READ);
}

SEC("tracepoint/syscalls/sys_enter_write")
int tracepoint__syscalls__sys_enter_write(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_write")
int tracepoint__syscalls__sys_exit_write(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_pwrite64")
int tracepoint__syscalls__sys_enter_pwrite64(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_pwrite64")
int tracepoint__syscalls__sys_exit_pwrite64(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int tracepoint__syscalls__sys_enter_writev(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int tracepoint__syscalls__sys_exit_writev(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_pwritev")
int tracepoint__syscalls__sys_enter_pwritev(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_pwritev")
int tracepoint__syscalls__sys_exit_pwritev(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_enter_pwritev2")
int tracepoint__syscalls__sys_enter_pwritev2(struct syscall_enter_ctx *ctx)
{
	return enter_rw(ctx, FILE_OP_WRITE);
}

SEC("tracepoint/syscalls/sys_exit_pwritev2")
int tracepoint__syscalls__sys_exit_pwritev2(struct syscall_exit_ctx *ctx)
{
	return exit_rw(ctx, FILE_OP_WRITE);
}

/* Closes */

SEC("tracepoint/syscalls/sys_enter_close")
int tracepoint__syscalls__sys_enter_close(struct syscall_enter_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__s32 fd = (__s32)ctx->args[0];
	struct call c = { .fd = fd, .op = FILE_OP_CLOSE };
	struct file_event *template, *e;
	struct file *file;
	__u32 zero = 0;

	if (!follows() || !should_trace_current())
		return 0;
	file = fd_file(fd);
	if (!file || !is_followed(file))
		return 0;
	c.ptr = (__u64)file;
	/* The fd table's reference is the only one: nothing else (another
	 * fd, a fork's fd table, a mapping) keeps the file open. */
	c.last_ref = file_refs(file) <= 1;
	if (bpf_map_update_elem(&calls, &tid, &c, BPF_ANY)) {
		count_lost_follow();
		return 0;
	}
	if (!reports(FILE_OP_CLOSE))
		return 0;
	/* The event is built now: by the exit, the file may be freed. */
	template = bpf_map_lookup_elem(&event_template, &zero);
	if (!template)
		return 0;
	if (bpf_map_update_elem(&closes, &tid, template, BPF_ANY)) {
		count_lost_follow();
		return 0;
	}
	e = bpf_map_lookup_elem(&closes, &tid);
	if (e && !resolve_access(e, file, FILE_OP_CLOSE, fd, 0))
		bpf_map_delete_elem(&closes, &tid);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_close")
int tracepoint__syscalls__sys_exit_close(struct syscall_exit_ctx *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct file_event *e;
	struct call *c;

	c = bpf_map_lookup_elem(&calls, &tid);
	if (!c)
		return 0;
	if (c->op != FILE_OP_CLOSE)
		goto cleanup;
	e = bpf_map_lookup_elem(&closes, &tid);
	if (e) {
		e->ret = ctx->ret;
		emit_file_event(e);
		bpf_map_delete_elem(&closes, &tid);
	}
	/* close(2) releases the fd even when it reports an error. */
	if (c->last_ref)
		bpf_map_delete_elem(&followed_files, &c->ptr);
cleanup:
	bpf_map_delete_elem(&calls, &tid);
	return 0;
}

/* Processes */

/* The new program runs: its executable and arguments are in the new mm. */
SEC("tracepoint/sched/sched_process_exec")
int tracepoint__sched__sched_process_exec(struct sched_process_exec_ctx *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	unsigned long start, end;
	struct file_event *e;
	__u64 len;

	/* The old program's path is stale, selected or not. */
	bpf_map_delete_elem(&exe_paths, &tgid);
	if (!should_trace_current())
		return 0;
	e = scratch_event();
	if (!e)
		return 0;
	init_event(e, FILE_EVENT_EXEC);
	/* The kernel copied the arguments to the new stack: resident. */
	start = BPF_CORE_READ(task, mm, arg_start);
	end = BPF_CORE_READ(task, mm, arg_end);
	len = end > start ? end - start : 0;
	if (len > FILE_ARGS_MAX - 1) {
		len = FILE_ARGS_MAX - 1;
		e->truncated |= FILE_ARGS_TRUNCATED;
	}
	len &= FILE_ARGS_MAX - 1;
	if (bpf_probe_read_user(e->data, len, (const void *)start)) {
		len = 0;
		e->truncated |= FILE_ARGS_TRUNCATED;
	}
	e->args_len = len;
	fill_exe(e, len);
	emit_file_event(e);
	return 0;
}

/*
 * A thread exits; the process ends with its last thread, the one that sees
 * signal->live at 0 (do_exit() decrements it before this tracepoint).
 */
SEC("tracepoint/sched/sched_process_exit")
int tracepoint__sched__sched_process_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct process_key key = { .tgid = tgid };
	struct signal_struct *signal;
	struct file_event *e;
	__u32 one = 1;

	signal = BPF_CORE_READ(task, signal);
	if (BPF_CORE_READ(signal, live.counter) != 0)
		return 0;
	if (!should_trace_current())
		goto forget;
	key.start_ns = BPF_CORE_READ(task, group_leader, start_time);
	if (bpf_map_update_elem(&exits_reported, &key, &one, BPF_NOEXIST))
		goto forget;
	e = scratch_event();
	if (!e)
		goto forget;
	init_event(e, FILE_EVENT_EXIT);
	/* What wait() reports: the group's code after exit_group() or a fatal
	 * signal, else the leader's own. */
	if (BPF_CORE_READ(signal, flags) & SIGNAL_GROUP_EXIT)
		e->exit_status = BPF_CORE_READ(signal, group_exit_code);
	else
		e->exit_status = BPF_CORE_READ(task, group_leader, exit_code);
	fill_exe(e, 0);
	emit_file_event(e);
forget:
	/* The pid may be reused for another program. */
	bpf_map_delete_elem(&exe_paths, &tgid);
	return 0;
}
