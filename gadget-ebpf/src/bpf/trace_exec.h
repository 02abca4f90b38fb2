/* SPDX-License-Identifier: GPL-2.0 */
/*
 * trace_exec's event. Mirrored by gadget-node's gadgets::trace_exec::record,
 * tied to it by its layout test.
 */
#ifndef GADGET_TRACE_EXEC_H
#define GADGET_TRACE_EXEC_H

#include "gadget_event.h"

/* The program's name: PATH_MAX with its NUL. */
#define EXEC_EXE_MAX 4096
/* The most arguments and argument bytes a trace may ask for. */
#define EXEC_ARGS_COUNT_CAP 1024
#define EXEC_ARGS_BYTES_CAP 32768
/* Defaults when the trace does not ask. */
#define EXEC_ARGS_COUNT_DEFAULT 64
#define EXEC_ARGS_BYTES_DEFAULT 4096
/*
 * exe, then the arguments, then room for one more argument read: the
 * verifier bounds each read by its own maximum, not by what is left.
 */
#define EXEC_DATA_SIZE (EXEC_EXE_MAX + 2 * EXEC_ARGS_BYTES_CAP)

#define EXEC_ARGS_TRUNCATED 1 /* more arguments or bytes than the trace keeps */
#define EXEC_EXE_TRUNCATED 2
#define EXEC_EXE_UNREADABLE 4 /* the name could not be read: exe is empty */

/*
 * The record in the ring buffer is this struct cut after the used part of
 * data: exe_len bytes of exe and its NUL, then args_size bytes holding
 * args_count NUL-terminated arguments (empty ones included).
 */
struct exec_event {
	struct process_record proc; /* after a successful exec: the new program */
	char parent_comm[TASK_COMM_LEN];
	__s32 ret;                  /* 0, or -errno of a failed exec */
	__u32 exe_len;
	__u32 args_count;
	__u32 args_size;
	__u32 truncated;            /* EXEC_*_TRUNCATED bits */
	__u32 _pad;
	char data[EXEC_DATA_SIZE];
};

/* What crosses to userspace, for the layout dump (see gadget_event.h). */
#define TRACE_EXEC_LAYOUT(STRUCT, FIELD, CONST) \
	STRUCT(exec_event)                      \
	FIELD(exec_event, proc)                 \
	FIELD(exec_event, parent_comm)          \
	FIELD(exec_event, ret)                  \
	FIELD(exec_event, exe_len)              \
	FIELD(exec_event, args_count)           \
	FIELD(exec_event, args_size)            \
	FIELD(exec_event, truncated)            \
	FIELD(exec_event, _pad)                 \
	FIELD(exec_event, data)                 \
	CONST(EXEC_EXE_MAX)                     \
	CONST(EXEC_ARGS_COUNT_CAP)              \
	CONST(EXEC_ARGS_BYTES_CAP)              \
	CONST(EXEC_ARGS_COUNT_DEFAULT)          \
	CONST(EXEC_ARGS_BYTES_DEFAULT)          \
	CONST(EXEC_ARGS_TRUNCATED)              \
	CONST(EXEC_EXE_TRUNCATED)               \
	CONST(EXEC_EXE_UNREADABLE)

#endif
