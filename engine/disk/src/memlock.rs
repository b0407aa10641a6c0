//! How much locked memory the `io_uring` disk's rings need, and what the process may lock.
//!
//! Kernels before 5.12 charge an unprivileged ring's memory (the SQ and CQ rings and the SQE
//! array) to `RLIMIT_MEMLOCK`, and fail `io_uring_setup` with a bare `ENOMEM` when it does not
//! fit. Checking first turns that into an error that names the limit and the fix.

use crate::uring::{CQ_DEPTH, LANES, RING_DEPTH};

/// Bytes of one submission queue entry (`struct io_uring_sqe`, without `IORING_SETUP_SQE128`).
const SQE_BYTES: u64 = 64;
/// Bytes of one completion queue entry (`struct io_uring_cqe`, without `IORING_SETUP_CQE32`).
const CQE_BYTES: u64 = 16;
/// Bytes of one slot of the SQ index array, a `u32` per SQE.
const SQ_ARRAY_ENTRY_BYTES: u64 = 4;
/// Bytes of `struct io_rings` before its CQE array. On the kernels that charge the ring to the
/// limit (before 5.12) the head and tail of each queue sit on their own cache lines, then come
/// the masks, counts and flags: 320 bytes with 64-byte cache lines (kernels since pack it into
/// 64, as `cq_off.cqes` shows). 512 also covers 128-byte cache lines, so the estimate errs high
/// rather than low.
const RINGS_HEADER_BYTES: u64 = 512;
/// The kernel aligns the SQ index array to a cache line after the CQEs; 128 covers 64- and
/// 128-byte lines.
const CACHE_LINE_BYTES: u64 = 128;
/// Page size assumed when the system does not report one.
const PAGE_BYTES_DEFAULT: u64 = 4096;

/// Bytes of locked memory the `io_uring` disk's rings (one per lane) need: what a kernel before
/// 5.12 charges to `RLIMIT_MEMLOCK` for them (`ring_pages()` in `io_uring.c`). Each of a ring's
/// two mappings, the rings with the SQ index array and the SQE array, is rounded up to a
/// power-of-two number of pages, as the kernel allocates them.
#[must_use]
pub fn memlock_required_bytes() -> u64 {
    LANES as u64 * ring_memlock_bytes(u64::from(RING_DEPTH), u64::from(CQ_DEPTH), page_bytes())
}

/// The pure part of [`memlock_required_bytes`], for any ring geometry.
fn ring_memlock_bytes(sq_entries: u64, cq_entries: u64, page_bytes: u64) -> u64 {
    let rings = (RINGS_HEADER_BYTES + cq_entries * CQE_BYTES).next_multiple_of(CACHE_LINE_BYTES)
        + sq_entries * SQ_ARRAY_ENTRY_BYTES;
    let sqes = sq_entries * SQE_BYTES;
    power_of_two_pages(rings, page_bytes) + power_of_two_pages(sqes, page_bytes)
}

/// `bytes` rounded up to whole pages, then to a power of two of them (the kernel's
/// `get_order`).
fn power_of_two_pages(bytes: u64, page_bytes: u64) -> u64 {
    bytes.div_ceil(page_bytes).next_power_of_two() * page_bytes
}

#[allow(unsafe_code)]
fn page_bytes() -> u64 {
    // SAFETY: sysconf takes an integer name and returns an integer; it reads no memory of ours.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page)
        .ok()
        .filter(|&page| page > 0)
        .unwrap_or(PAGE_BYTES_DEFAULT)
}

/// The soft `RLIMIT_MEMLOCK` in bytes, or `None` when it is unlimited (or cannot be read, in
/// which case `io_uring_setup` itself reports a shortfall).
#[allow(unsafe_code)]
pub(crate) fn memlock_soft_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call, which only fills it.
    let status = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &raw mut limit) };
    if status != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The estimate follows the kernel's arithmetic; this pins it for the ring this crate builds
    // (256 SQEs, 512 CQEs on 4 KiB pages: 16 KiB of rings, 16 KiB of SQEs) and checks that it
    // only grows with the ring, so a deeper ring can never be under-estimated.
    #[test]
    fn estimate_follows_the_kernel_rounding() {
        assert_eq!(ring_memlock_bytes(256, 512, 4096), 32 * 1024);
        assert_eq!(ring_memlock_bytes(1, 2, 4096), 2 * 4096);
        let mut previous = 0;
        for depth in (0..=12).map(|shift| 1u64 << shift) {
            let bytes = ring_memlock_bytes(depth, 2 * depth, 4096);
            assert!(bytes >= previous, "estimate shrank at depth {depth}");
            assert_eq!(bytes % 4096, 0);
            assert!(bytes >= depth * (SQE_BYTES + 2 * CQE_BYTES + SQ_ARRAY_ENTRY_BYTES));
            previous = bytes;
        }
    }
}
