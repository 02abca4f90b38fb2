// SPDX-License-Identifier: GPL-2.0
/*
 * Prints the layout of every struct that crosses from the kernel programs to
 * userspace, as the C compiler sees it. Built for the host by build.rs; the
 * layout test compares each line with the Rust mirror.
 */
#include <stddef.h>
#include <stdio.h>
#include <linux/types.h>
#include "trace_open.h"
#include "trace_exec.h"

#define FIELD(s, f) printf("%s.%s %zu %zu\n", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))
#define SIZE(s) printf("%s %zu %zu\n", #s, (size_t)0, sizeof(struct s))
#define CONST(c) printf("const.%s %lld 0\n", #c, (long long)(c))

int main(void)
{
	SIZE(process_record);
	FIELD(process_record, boot_ns);
	FIELD(process_record, cgroup_id);
	FIELD(process_record, mntns_id);
	FIELD(process_record, pid);
	FIELD(process_record, tid);
	FIELD(process_record, ppid);
	FIELD(process_record, uid);
	FIELD(process_record, gid);
	FIELD(process_record, _pad);
	FIELD(process_record, comm);

	FIELD(open_event, proc);
	FIELD(open_event, flags);
	FIELD(open_event, ret);
	FIELD(open_event, mode);
	FIELD(open_event, dirfd);
	FIELD(open_event, syscall);
	FIELD(open_event, path_len);
	FIELD(open_event, path_truncated);
	FIELD(open_event, path);
	CONST(OPEN_PATH_MAX);
	CONST(OPEN_PREFIXES_MAX);
	CONST(OPEN_PREFIX_LEN_MAX);
	CONST(OPEN_SYSCALL_OPEN);
	CONST(OPEN_SYSCALL_OPENAT);
	CONST(OPEN_SYSCALL_OPENAT2);

	FIELD(exec_event, proc);
	FIELD(exec_event, parent_comm);
	FIELD(exec_event, ret);
	FIELD(exec_event, exe_len);
	FIELD(exec_event, args_count);
	FIELD(exec_event, args_size);
	FIELD(exec_event, truncated);
	FIELD(exec_event, _pad);
	FIELD(exec_event, data);
	CONST(EXEC_EXE_MAX);
	CONST(EXEC_ARGS_COUNT_CAP);
	CONST(EXEC_ARGS_BYTES_CAP);
	CONST(EXEC_ARGS_COUNT_DEFAULT);
	CONST(EXEC_ARGS_BYTES_DEFAULT);
	CONST(EXEC_ARGS_TRUNCATED);
	CONST(EXEC_EXE_TRUNCATED);
	return 0;
}
