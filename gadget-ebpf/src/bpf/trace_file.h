/* SPDX-License-Identifier: GPL-2.0 */
/*
 * trace_file's event. Mirrored by gadget-node's gadgets::trace_file::record,
 * tied to it by its layout test.
 */
#ifndef GADGET_TRACE_FILE_H
#define GADGET_TRACE_FILE_H

#include "gadget_event.h"

/* Paths and prefixes one trace follows, in all, and the longest of them. */
#define FILE_PATTERNS_MAX 8
#define FILE_PATTERN_LEN_MAX 256
/* A resolved path is at most FILE_PATH_MAX - 1 bytes (PATH_MAX, no NUL). */
#define FILE_PATH_MAX 4096
/* Dentries and mount crossings one path walk visits at most. */
#define FILE_PATH_DEPTH_MAX 2048
/* The executable's resolved path: its last FILE_EXE_MAX - 1 bytes. */
#define FILE_EXE_MAX 1024
/* An exec's arguments: their first FILE_ARGS_MAX - 1 bytes. */
#define FILE_ARGS_MAX 4096
/* The path and the path as passed (or the arguments), then exe. */
#define FILE_DATA_SIZE (FILE_EXE_MAX + 2 * FILE_PATH_MAX)

/* kind */
#define FILE_EVENT_ACCESS 1
#define FILE_EVENT_EXEC 2
#define FILE_EVENT_EXIT 3

/* operation: the values of the protocol's FileOperation. */
#define FILE_OP_OPEN 1
#define FILE_OP_READ 2
#define FILE_OP_WRITE 3
#define FILE_OP_CLOSE 4

/* truncated bits */
#define FILE_PATH_TRUNCATED 1 /* the walk hit a bound: the path's start is missing */
#define FILE_EXE_TRUNCATED 2  /* the executable's path's start is missing */
#define FILE_ARGS_TRUNCATED 4 /* more argument bytes than FILE_ARGS_MAX - 1 */

/*
 * The record in the ring buffer is this struct cut after the used part of
 * data: for an access, path_len bytes of resolved path and passed_len bytes
 * of the path as passed to open; for an exec, args_len bytes of arguments,
 * each ended by a NUL (the last one's NUL is missing when they were cut);
 * then, for every kind, exe_len bytes of the executable's path. No NULs end
 * the paths.
 */
struct file_event {
	struct process_record proc;
	__u32 kind;        /* FILE_EVENT_* */
	__u32 operation;   /* FILE_OP_* of an access; 0 otherwise */
	__s64 ret;         /* access: fd (open), bytes (read, write), 0 (close), or -errno */
	__s32 fd;          /* access: the fd the process used */
	__u32 killed;      /* access: SIGKILL was sent to the process at it */
	__s32 exit_status; /* exit: the wait status a parent sees (code << 8 | signal) */
	__u32 _pad;
	__u32 truncated;   /* FILE_*_TRUNCATED bits */
	__u32 exe_len;
	__u32 path_len;
	__u32 passed_len;
	__u32 args_len;
	__u32 _pad2;
	char data[FILE_DATA_SIZE];
};

/* What crosses to userspace, for the layout dump (see gadget_event.h). */
#define TRACE_FILE_LAYOUT(STRUCT, FIELD, CONST) \
	STRUCT(file_event)                      \
	FIELD(file_event, proc)                 \
	FIELD(file_event, kind)                 \
	FIELD(file_event, operation)            \
	FIELD(file_event, ret)                  \
	FIELD(file_event, fd)                   \
	FIELD(file_event, killed)               \
	FIELD(file_event, exit_status)          \
	FIELD(file_event, _pad)                 \
	FIELD(file_event, truncated)            \
	FIELD(file_event, exe_len)              \
	FIELD(file_event, path_len)             \
	FIELD(file_event, passed_len)           \
	FIELD(file_event, args_len)             \
	FIELD(file_event, _pad2)                \
	FIELD(file_event, data)                 \
	CONST(FILE_PATTERNS_MAX)                \
	CONST(FILE_PATTERN_LEN_MAX)             \
	CONST(FILE_PATH_MAX)                    \
	CONST(FILE_PATH_DEPTH_MAX)              \
	CONST(FILE_EXE_MAX)                     \
	CONST(FILE_ARGS_MAX)                    \
	CONST(FILE_EVENT_ACCESS)                \
	CONST(FILE_EVENT_EXEC)                  \
	CONST(FILE_EVENT_EXIT)                  \
	CONST(FILE_OP_OPEN)                     \
	CONST(FILE_OP_READ)                     \
	CONST(FILE_OP_WRITE)                    \
	CONST(FILE_OP_CLOSE)                    \
	CONST(FILE_PATH_TRUNCATED)              \
	CONST(FILE_EXE_TRUNCATED)               \
	CONST(FILE_ARGS_TRUNCATED)

#endif
