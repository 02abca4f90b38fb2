// SPDX-License-Identifier: GPL-2.0
/*
 * One program per kind of hook a gadget can name (tracepoint, raw
 * tracepoint, BTF tracepoint, uprobe), each counting how often it ran for
 * the test process in its own slot of `hits`. Compiled and loaded by
 * tests/kernel_attach_kinds.rs; the slots are in the order of its SLOTS.
 *
 * Every hook fires on getpid(2): its syscall entry for the tracepoints,
 * libc's getpid() for the uprobe.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

enum hit_slot {
	SLOT_TRACEPOINT,
	SLOT_RAW_TRACEPOINT,
	SLOT_BTF_TRACEPOINT,
	SLOT_UPROBE,
	SLOTS,
};

/* The test process; set by the loader. Other processes make syscalls too. */
const volatile __u32 targ_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

static __always_inline int count_hit(__u32 slot)
{
	__u64 *hits_in_slot;

	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != targ_tgid)
		return 0;
	hits_in_slot = bpf_map_lookup_elem(&hits, &slot);
	if (hits_in_slot)
		__sync_fetch_and_add(hits_in_slot, 1);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int tracepoint__syscalls__sys_enter_getpid(void *ctx)
{
	return count_hit(SLOT_TRACEPOINT);
}

SEC("raw_tp/sys_enter")
int raw_tp__sys_enter(void *ctx)
{
	return count_hit(SLOT_RAW_TRACEPOINT);
}

/* tp_btf programs get the tracepoint's arguments as an array of u64. */
SEC("tp_btf/sys_enter")
int tp_btf__sys_enter(__u64 *ctx)
{
	return count_hit(SLOT_BTF_TRACEPOINT);
}

SEC("uprobe")
int uprobe__getpid(void *ctx)
{
	return count_hit(SLOT_UPROBE);
}

char LICENSE[] SEC("license") = "GPL";
