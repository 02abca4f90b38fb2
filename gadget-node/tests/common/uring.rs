//! The kernel's io_uring ABI (include/uapi/linux/io_uring.h), only what one
//! write or one open needs, through raw syscalls: fit for a forked child.

#[repr(C)]
#[derive(Default)]
pub struct SqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub flags: u32,
    pub dropped: u32,
    pub array: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct CqOffsets {
    pub head: u32,
    pub tail: u32,
    pub ring_mask: u32,
    pub ring_entries: u32,
    pub overflow: u32,
    pub cqes: u32,
    pub flags: u32,
    pub resv1: u32,
    pub user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
pub struct Params {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub sq_thread_cpu: u32,
    pub sq_thread_idle: u32,
    pub features: u32,
    pub wq_fd: u32,
    pub resv: [u32; 3],
    pub sq_off: SqOffsets,
    pub cq_off: CqOffsets,
}

#[repr(C)]
pub struct Sqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    pub off: u64,
    pub addr: u64,
    pub len: u32,
    pub rw_flags: u32,
    pub user_data: u64,
    pub pad: [u64; 3],
}

#[repr(C)]
pub struct Cqe {
    pub user_data: u64,
    pub res: i32,
    pub flags: u32,
}

pub const OP_OPENAT: u8 = 18;
pub const OP_WRITE: u8 = 23;
pub const OFF_SQ_RING: i64 = 0;
pub const OFF_CQ_RING: i64 = 0x800_0000;
pub const OFF_SQES: i64 = 0x1000_0000;
pub const ENTER_GETEVENTS: u32 = 1;

/// Writes `data` at offset 0 of `fd` through a new ring; the write's
/// result, or a step number at or below -1000 when the ring could not be
/// used.
///
/// # Safety
/// Raw syscalls on memory of its own; fit for a forked child.
pub unsafe fn write(fd: i32, data: &[u8]) -> i32 {
    submit(Sqe {
        opcode: OP_WRITE,
        flags: 0,
        ioprio: 0,
        fd,
        off: 0,
        addr: data.as_ptr() as u64,
        len: data.len() as u32,
        rw_flags: 0,
        user_data: 7,
        pad: [0; 3],
    })
}

/// Opens `path` (`openat(AT_FDCWD, path, flags)`) through a new ring; the
/// descriptor or -errno, or a step number at or below -1000 when the ring
/// could not be used.
///
/// # Safety
/// Raw syscalls on memory of its own; fit for a forked child. `path` must
/// be NUL-terminated.
pub unsafe fn openat(path: &[u8], flags: i32) -> i32 {
    submit(Sqe {
        opcode: OP_OPENAT,
        flags: 0,
        ioprio: 0,
        fd: libc::AT_FDCWD,
        off: 0,
        addr: path.as_ptr() as u64,
        len: 0,
        rw_flags: flags as u32,
        user_data: 8,
        pad: [0; 3],
    })
}

/// Runs one request on a new ring and returns its result.
///
/// # Safety
/// Raw syscalls; the memory `sqe` points to must outlive the call.
unsafe fn submit(request: Sqe) -> i32 {
    let mut params = Params::default();
    let ring = libc::syscall(libc::SYS_io_uring_setup, 1, &mut params as *mut Params) as i32;
    if ring < 0 {
        return -1000 - super::errno() as i32;
    }
    let map = |len: usize, offset: i64| {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            ring,
            offset,
        )
    };
    let sq_len = params.sq_off.array as usize + params.sq_entries as usize * 4;
    let cq_len =
        params.cq_off.cqes as usize + params.cq_entries as usize * std::mem::size_of::<Cqe>();
    let sq = map(sq_len, OFF_SQ_RING);
    let cq = map(cq_len, OFF_CQ_RING);
    let sqes = map(
        params.sq_entries as usize * std::mem::size_of::<Sqe>(),
        OFF_SQES,
    );
    if [sq, cq, sqes].contains(&libc::MAP_FAILED) {
        return -2000;
    }
    let at = |base: *mut libc::c_void, offset: u32| base.cast::<u8>().add(offset as usize);
    let sqe = sqes.cast::<Sqe>();
    sqe.write(request);
    let tail = at(sq, params.sq_off.tail).cast::<std::sync::atomic::AtomicU32>();
    let mask = *at(sq, params.sq_off.ring_mask).cast::<u32>();
    let index = (*tail).load(std::sync::atomic::Ordering::Acquire);
    *at(sq, params.sq_off.array)
        .cast::<u32>()
        .add((index & mask) as usize) = 0;
    (*tail).store(index + 1, std::sync::atomic::Ordering::Release);
    let entered = libc::syscall(
        libc::SYS_io_uring_enter,
        ring,
        1,
        1,
        ENTER_GETEVENTS,
        std::ptr::null::<libc::c_void>(),
        0,
    );
    if entered < 0 {
        return -3000;
    }
    let cq_head = *at(cq, params.cq_off.head).cast::<u32>();
    let cq_mask = *at(cq, params.cq_off.ring_mask).cast::<u32>();
    let cqe = at(cq, params.cq_off.cqes)
        .cast::<Cqe>()
        .add((cq_head & cq_mask) as usize);
    (*cqe).res
}
