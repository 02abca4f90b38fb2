/* SPDX-License-Identifier: GPL-2.0 */
/*
 * trace_open's event. Mirrored by gadget-node's gadgets::trace_open::record,
 * tied to it by its layout test.
 */
#ifndef GADGET_TRACE_OPEN_H
#define GADGET_TRACE_OPEN_H

#include "gadget_event.h"

/* PATH_MAX: the kernel refuses longer paths, so this cuts only what fails. */
#define OPEN_PATH_MAX 4096
#define OPEN_PREFIXES_MAX 8
#define OPEN_PREFIX_LEN_MAX 256

#define OPEN_SYSCALL_OPEN 1
#define OPEN_SYSCALL_OPENAT 2
#define OPEN_SYSCALL_OPENAT2 3

/*
 * The record in the ring buffer is this struct cut after path_len bytes of
 * path: paths are short, the ring buffer is not wasted on PATH_MAX each.
 */
struct open_event {
	struct process_record proc;
	__u64 flags;
	__s32 ret;            /* the fd, or -errno */
	__u32 mode;
	__s32 dirfd;          /* AT_FDCWD unless openat/openat2 got a real fd */
	__u32 syscall;        /* OPEN_SYSCALL_* */
	__u32 path_len;       /* bytes of path that follow, no NUL */
	__u32 path_truncated; /* the path went on beyond OPEN_PATH_MAX - 1 bytes */
	char path[OPEN_PATH_MAX];
};

/* What crosses to userspace, for the layout dump (see gadget_event.h). */
#define TRACE_OPEN_LAYOUT(STRUCT, FIELD, CONST) \
	STRUCT(open_event)                      \
	FIELD(open_event, proc)                 \
	FIELD(open_event, flags)                \
	FIELD(open_event, ret)                  \
	FIELD(open_event, mode)                 \
	FIELD(open_event, dirfd)                \
	FIELD(open_event, syscall)              \
	FIELD(open_event, path_len)             \
	FIELD(open_event, path_truncated)       \
	FIELD(open_event, path)                 \
	CONST(OPEN_PATH_MAX)                    \
	CONST(OPEN_PREFIXES_MAX)                \
	CONST(OPEN_PREFIX_LEN_MAX)              \
	CONST(OPEN_SYSCALL_OPEN)                \
	CONST(OPEN_SYSCALL_OPENAT)              \
	CONST(OPEN_SYSCALL_OPENAT2)

#endif
