//! The `io_uring` disk: `O_DIRECT` reads and writes through one `io_uring` ring, and an explicit
//! barrier (`fdatasync`) issued only after every earlier request finished.
//!
//! Buffers: each request's [`AlignedBuf`] is the I/O buffer itself (sector-aligned, as
//! `O_DIRECT` needs), so nothing is copied. The disk owns it in a [`Slab`] from submission
//! until its CQE is reaped; the slab index is the SQE's `user_data`.
//!
//! Queueing: at most [`RING_DEPTH`] requests are in the ring at once. More wait in a FIFO
//! backlog in submission order. A barrier waits in user space until every request submitted
//! before it has completed, then enters the ring; requests submitted after it go ahead and
//! overlap the `fdatasync` (with `IO_DRAIN` they could not). The completion queue has room for twice
//! that, so it never overflows and no completion is dropped, on any kernel.
//!
//! System calls: `submit_read` and `submit_write` only fill the submission queue. A barrier
//! closes a burst of writes, so `submit_barrier` hands the burst to the kernel at once with one
//! `io_uring_enter`: the disk starts on it while the caller goes on with its own work, instead
//! of at its next `poll` or `wait`. `poll` and `wait` also submit whatever is queued, including
//! what their own reaping released (a barrier whose writes finished, backlog requests).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chronon_engine::disk::{AlignedBuf, Completion, DiskError, IoKind, VirtualDisk, check_io};
use io_uring::{IoUring, opcode, squeue, types};

use crate::DiskOpenError;
use crate::file::data_file_size;
use crate::memlock::{memlock_required_bytes, memlock_soft_limit};
use crate::slab::Slab;

/// Requests in the ring at once (SQ entries). 256 covers the 16-64 writes in flight at which
/// this machine's disk peaks (DESIGN §7) with room for reads alongside, and keeps the ring's
/// locked memory at 32 KiB. Deeper queues wait in the backlog, in order.
pub(crate) const RING_DEPTH: u32 = 256;
/// Completion queue entries: the kernel's default of twice the SQ. Since at most `RING_DEPTH`
/// requests are ever in the ring, their completions always fit.
pub(crate) const CQ_DEPTH: u32 = 2 * RING_DEPTH;
/// The largest read or write: Linux's `MAX_RW_COUNT`. The kernel silently shortens larger
/// transfers, which for a write would be an error here.
const IO_BYTES_MAX: usize = 0x7fff_f000;

const _: () = assert!(RING_DEPTH.is_power_of_two());
const _: () = assert!(CQ_DEPTH >= RING_DEPTH);
const _: () = assert!(IO_BYTES_MAX <= u32::MAX as usize);

/// A disk on one data file, opened with `O_DIRECT`, driven through one `io_uring` ring.
pub struct IoUringDisk {
    ring: IoUring,
    file: File,
    size: u64,
    /// Every request submitted and not yet handed back, owning its buffer.
    requests: Slab<Request>,
    /// Reads and writes waiting for room in the ring, in submission order.
    backlog: VecDeque<u32>,
    /// Barriers waiting for every read and write submitted before them to complete, with their
    /// sequence numbers, in order.
    barriers: VecDeque<(u64, u32)>,
    /// Sequence numbers of the reads and writes submitted and not yet completed.
    outstanding: BTreeSet<u64>,
    next_sequence: u64,
    /// Requests pushed into the ring whose CQE has not been reaped.
    issued: u32,
}

/// One request the disk owns until its completion is handed back.
#[derive(Debug)]
struct Request {
    token: u64,
    op: Op,
    /// Submission order, for ordering barriers after the requests before them.
    sequence: u64,
}

#[derive(Debug)]
enum Op {
    Read { offset: u64, buf: AlignedBuf },
    Write { offset: u64, buf: AlignedBuf },
    Barrier,
}

impl IoUringDisk {
    /// Has the kernel signal the eventfd `fd` whenever it posts a completion, so that a reactor
    /// can sleep in its own poll (epoll) and still wake when the disk finishes.
    pub fn register_eventfd(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        self.ring.submitter().register_eventfd(fd)
    }

    /// Opens an existing data file (see [`crate::create_data_file`]) with `O_DIRECT` and sets up
    /// its ring. Each environment that rules `io_uring` out gets its own error, which
    /// [`crate::open`] turns into a fallback to the sync disk.
    pub fn open(path: &Path) -> Result<IoUringDisk, DiskOpenError> {
        let file = open_direct(path)?;
        let size = data_file_size(&file, path)?;
        if is_tmpfs(&file) {
            return Err(DiskOpenError::DirectIoUnsupported {
                path: path.to_owned(),
            });
        }
        check_memlock()?;
        let ring = build_ring(path)?;
        Ok(IoUringDisk {
            ring,
            file,
            size,
            requests: Slab::with_capacity(RING_DEPTH as usize),
            backlog: VecDeque::with_capacity(RING_DEPTH as usize),
            barriers: VecDeque::new(),
            outstanding: BTreeSet::new(),
            next_sequence: 0,
            issued: 0,
        })
    }

    fn enqueue(&mut self, token: u64, op: Op) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let barrier = matches!(op, Op::Barrier);
        let index = self.requests.insert(Request {
            token,
            op,
            sequence,
        });
        if barrier {
            self.barriers.push_back((sequence, index));
        } else {
            self.outstanding.insert(sequence);
            self.backlog.push_back(index);
        }
        self.push_backlog();
    }

    /// The next barrier, if every request submitted before it has completed. The barrier is
    /// ordered here, in user space, rather than with `IO_DRAIN`: `IO_DRAIN` would also hold back
    /// every request submitted after the barrier until the `fdatasync` finished, so the next
    /// batch's writes could not overlap it.
    fn ready_barrier(
        barriers: &mut VecDeque<(u64, u32)>,
        outstanding: &BTreeSet<u64>,
    ) -> Option<u32> {
        let &(sequence, index) = barriers.front()?;
        let earlier_done = outstanding.first().is_none_or(|&first| first > sequence);
        earlier_done.then(|| {
            barriers.pop_front();
            index
        })
    }

    /// Moves backlog requests into the submission queue while the ring has room.
    #[allow(unsafe_code)]
    fn push_backlog(&mut self) {
        let fd = types::Fd(self.file.as_raw_fd());
        let mut sq = self.ring.submission();
        while self.issued < RING_DEPTH {
            let barrier = Self::ready_barrier(&mut self.barriers, &self.outstanding);
            let Some(index) = barrier.or_else(|| self.backlog.pop_front()) else {
                break;
            };
            let entry = sqe(fd, self.requests.get_mut(index), index);
            // SAFETY: the entry names a buffer and a descriptor that stay valid until its CQE is
            // reaped, as the kernel may use them until then:
            // - The buffer is the heap allocation of an `AlignedBuf` owned by `self.requests`.
            //   It leaves the slab only in `reap`, after this entry's CQE, or is freed in `Drop`
            //   only after every issued CQE arrived (and is leaked if that wait fails).
            // - Moving the `AlignedBuf` (when the slab's `Vec` grows) does not move its heap
            //   memory, and nothing resizes or reads it while it is in the slab.
            // - The length is the buffer's own, so the kernel stays inside it. A read is the only
            //   writer of its buffer until the CQE; a write's buffer is only read.
            // - `self.file` is closed after `Drop` has waited, so the descriptor outlives the
            //   entry too.
            let pushed = unsafe { sq.push(&entry) };
            pushed.expect("invariant: the SQ has room while fewer than RING_DEPTH are issued");
            self.issued += 1;
        }
    }

    /// Hands the kernel any SQEs it has not seen yet, without waiting.
    fn submit_pending(&mut self) {
        if !self.ring.submission().is_empty() {
            self.enter(0);
        }
    }

    /// One `io_uring_enter`: submits pending SQEs and waits for `want` completions. Transient
    /// refusals leave the SQEs queued for the next call; anything else means the ring itself is
    /// broken, which is a bug.
    fn enter(&mut self, want: usize) {
        match self.ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(error) if is_transient(&error) => {}
            Err(error) => panic!("io_uring_enter failed: {error}; the ring is unusable"),
        }
    }

    /// Takes every CQE out of the ring, hands its request back, and refills the ring from the
    /// backlog.
    fn reap(&mut self, out: &mut Vec<Completion>) {
        for cqe in self.ring.completion() {
            assert!(
                self.issued > 0,
                "invariant: a CQE answers an issued request"
            );
            self.issued -= 1;
            let index =
                u32::try_from(cqe.user_data()).expect("invariant: user_data is a slab index");
            let request = self.requests.remove(index);
            self.outstanding.remove(&request.sequence);
            out.push(completion(request, cqe.result()));
        }
        self.push_backlog();
    }
}

impl VirtualDisk for IoUringDisk {
    fn size(&self) -> u64 {
        self.size
    }

    fn submit_read(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_transfer(self.size, offset, buf.len());
        self.enqueue(token, Op::Read { offset, buf });
    }

    fn submit_write(&mut self, offset: u64, buf: AlignedBuf, token: u64) {
        check_transfer(self.size, offset, buf.len());
        self.enqueue(token, Op::Write { offset, buf });
    }

    fn submit_barrier(&mut self, token: u64) {
        self.enqueue(token, Op::Barrier);
        self.submit_pending();
    }

    fn poll(&mut self, out: &mut Vec<Completion>) {
        self.submit_pending();
        self.reap(out);
        // Reaping may have released a barrier or backlog requests into the submission queue.
        self.submit_pending();
    }

    /// Blocks in the kernel without spinning first: this is for tools, tests and recovery; the
    /// shard reactor, which owns the spin-then-block policy (DESIGN §7), uses `poll`.
    fn wait(&mut self, out: &mut Vec<Completion>) {
        let before = out.len();
        self.poll(out);
        // An interrupted wait returns with nothing reaped; block again.
        while out.len() == before && self.in_flight() > 0 {
            assert!(
                self.issued > 0,
                "invariant: the backlog drains into an idle ring"
            );
            self.enter(1);
            self.reap(out);
        }
        self.submit_pending();
    }

    fn in_flight(&self) -> usize {
        self.requests.len()
    }
}

impl Drop for IoUringDisk {
    /// Waits for the kernel to finish with every buffer in the ring before they are freed:
    /// freeing first would let an in-flight read write into memory the allocator reused.
    fn drop(&mut self) {
        while self.issued > 0 {
            if let Err(error) = self.ring.submit_and_wait(1)
                && !is_transient(&error)
            {
                // The kernel may still own the buffers: leak them rather than free them.
                std::mem::forget(std::mem::replace(
                    &mut self.requests,
                    Slab::with_capacity(0),
                ));
                return;
            }
            let reaped = self.ring.completion().count();
            self.issued -= u32::try_from(reaped).expect("invariant: a CQ holds < 2^32 entries");
        }
    }
}

impl fmt::Debug for IoUringDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IoUringDisk")
            .field("size", &self.size)
            .field("in_flight", &self.requests.len())
            .field("issued", &self.issued)
            .field("backlog", &self.backlog.len())
            .finish_non_exhaustive()
    }
}

/// The contract's alignment rules, plus the kernel's cap on one transfer.
fn check_transfer(disk_size: u64, offset: u64, len: usize) {
    check_io(disk_size, offset, len);
    assert!(
        len <= IO_BYTES_MAX,
        "I/O of {len} bytes exceeds the kernel's {IO_BYTES_MAX}"
    );
}

/// The SQE for `request`, tagged with its slab index.
fn sqe(fd: types::Fd, request: &mut Request, index: u32) -> squeue::Entry {
    let entry = match &mut request.op {
        Op::Read { offset, buf } => {
            let len = u32::try_from(buf.len()).expect("invariant: checked by check_transfer");
            opcode::Read::new(fd, buf.as_mut_slice().as_mut_ptr(), len)
                .offset(*offset)
                .build()
        }
        Op::Write { offset, buf } => {
            let len = u32::try_from(buf.len()).expect("invariant: checked by check_transfer");
            opcode::Write::new(fd, buf.as_slice().as_ptr(), len)
                .offset(*offset)
                .build()
        }
        // Issued only once every earlier request completed (see `ready_barrier`), so the
        // fdatasync covers those writes and its CQE comes after theirs.
        Op::Barrier => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
    };
    entry.user_data(u64::from(index))
}

/// The completion of a finished request, whose last CQE carried `res`.
fn completion(request: Request, res: i32) -> Completion {
    let Request { token, op, .. } = request;
    match op {
        Op::Read { offset, buf } => {
            let len = buf.len();
            let result = read_result(res, len).map_err(|reason| DiskError::Read {
                offset,
                len,
                reason,
            });
            Completion {
                token,
                kind: IoKind::Read,
                result,
                buf: Some(buf),
            }
        }
        Op::Write { offset, buf } => {
            let len = buf.len();
            let result = write_result(res, len).map_err(|reason| DiskError::Write {
                offset,
                len,
                reason,
            });
            Completion {
                token,
                kind: IoKind::Write,
                result,
                buf: Some(buf),
            }
        }
        Op::Barrier => {
            let result = errno_result(res)
                .map(|_| ())
                .map_err(|reason| DiskError::Barrier { reason });
            Completion {
                token,
                kind: IoKind::Barrier,
                result,
                buf: None,
            }
        }
    }
}

/// A read's outcome. The kernel already retries a short read of a regular file until it has
/// everything or reaches the end of the file, so a short count here means the file ended
/// early: it is an error, never resubmitted (that would only read nothing again).
fn read_result(res: i32, len: usize) -> Result<(), String> {
    let moved = errno_result(res)?;
    if moved < len {
        return Err(format!(
            "short read: end of file after {moved} of {len} bytes; the data file was \
             truncated after it was opened"
        ));
    }
    assert_eq!(moved, len, "the kernel read more than the buffer holds");
    Ok(())
}

/// A write's outcome. As with reads, the kernel retries a short write of a regular file
/// itself, so a short count here means it could not go on (the device is full). It is an
/// error, never resubmitted: a barrier submitted after the write may already be running, and
/// it would not cover the rest.
fn write_result(res: i32, len: usize) -> Result<(), String> {
    let moved = errno_result(res)?;
    if moved < len {
        return Err(format!(
            "short write: {moved} of {len} bytes written; the disk may be full"
        ));
    }
    assert_eq!(moved, len, "the kernel wrote more than the buffer holds");
    Ok(())
}

/// A CQE result: bytes moved, or the errno's text.
fn errno_result(res: i32) -> Result<usize, String> {
    usize::try_from(res).map_err(|_| io::Error::from_raw_os_error(-res).to_string())
}

/// `io_uring_enter` refusals that leave the queue intact and succeed on retry.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Opens the data file for direct I/O. `EINVAL` here means the filesystem has no direct I/O.
fn open_direct(path: &Path) -> Result<File, DiskOpenError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::EINVAL) {
                DiskOpenError::DirectIoUnsupported {
                    path: path.to_owned(),
                }
            } else {
                DiskOpenError::Io {
                    action: "open",
                    path: path.to_owned(),
                    source,
                }
            }
        })
}

/// Whether `file` is on tmpfs. Before Linux 6.6 tmpfs refuses `O_DIRECT` (the `EINVAL` above);
/// since then it accepts the flag but serves it from the page cache, so there is no direct
/// I/O to gain. Treating both the same keeps the choice of disk independent of the kernel.
#[allow(unsafe_code)]
fn is_tmpfs(file: &File) -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the descriptor is open for the whole call (borrowed from `file`), and `stat`
    // points to writable memory of the size fstatfs fills.
    let status = unsafe { libc::fstatfs(file.as_raw_fd(), stat.as_mut_ptr()) };
    if status != 0 {
        return false;
    }
    // SAFETY: fstatfs succeeded, so it initialised `stat`; it was zeroed before in any case,
    // and every field is an integer, for which zero is valid.
    let stat = unsafe { stat.assume_init() };
    stat.f_type == libc::TMPFS_MAGIC
}

/// Fails with [`DiskOpenError::MemlockTooLow`] if the soft `RLIMIT_MEMLOCK` is below what the
/// ring needs, before `io_uring_setup` would fail with a bare `ENOMEM`.
fn check_memlock() -> Result<(), DiskOpenError> {
    let required = memlock_required_bytes();
    match memlock_soft_limit() {
        Some(limit) if limit < required => Err(DiskOpenError::MemlockTooLow { limit, required }),
        _ => Ok(()),
    }
}

fn build_ring(path: &Path) -> Result<IoUring, DiskOpenError> {
    let ring = IoUring::new(RING_DEPTH).map_err(|error| setup_error(error, path))?;
    let cq_entries = ring.params().cq_entries();
    if cq_entries < RING_DEPTH {
        return Err(DiskOpenError::IoUringUnavailable {
            reason: format!("the kernel gave a completion queue of only {cq_entries} entries"),
        });
    }
    Ok(ring)
}

/// Names the cause of an `io_uring_setup` failure.
fn setup_error(error: io::Error, path: &Path) -> DiskOpenError {
    match error.raw_os_error() {
        // ENOMEM is how the kernel reports the ring's pages going over the locked-memory limit
        // (which counts every ring of this user, so it can happen above our own requirement).
        Some(libc::ENOMEM) if let Some(limit) = memlock_soft_limit() => {
            DiskOpenError::MemlockTooLow {
                limit,
                required: memlock_required_bytes(),
            }
        }
        // ENOSYS: no io_uring in this kernel. EPERM/EACCES: seccomp, kernel.io_uring_disabled
        // or an LSM. EINVAL: a kernel too old for these parameters. ENOMEM with no memlock
        // limit: the kernel is short of memory itself.
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL | libc::ENOMEM) => {
            DiskOpenError::IoUringUnavailable {
                reason: unavailable_reason(&error),
            }
        }
        _ => DiskOpenError::Io {
            action: "set up io_uring for",
            path: path.to_owned(),
            source: error,
        },
    }
}

/// The errno text, plus the `kernel.io_uring_disabled` setting when it is what blocked us.
fn unavailable_reason(error: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|setting| setting != "0");
    match disabled {
        Some(setting) => format!("io_uring_setup: {error}; kernel.io_uring_disabled = {setting}"),
        None => format!("io_uring_setup: {error}"),
    }
}
