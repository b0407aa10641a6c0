//! The `io_uring` disk: `O_DIRECT` reads and writes through `io_uring`, and an explicit barrier
//! (`fdatasync`) that the kernel starts only after every earlier request finished.
//!
//! Buffers: each request's [`AlignedBuf`] is the I/O buffer itself (sector-aligned, as
//! `O_DIRECT` needs), so nothing is copied. The disk owns it in a [`Slab`] from submission
//! until its CQE is reaped; the slab index is the SQE's `user_data`.
//!
//! Barriers and lanes: the disk has two rings (*lanes*) and a barrier closes an *epoch*. Every
//! request goes to the lane of the current epoch; a barrier goes there too, with
//! `IOSQE_IO_DRAIN` when requests of its lane are still in flight, and the next epoch uses the
//! other lane. So the kernel starts the `fdatasync` the moment the epoch's last request
//! completes, from that completion, whatever the caller is doing, and requests submitted after
//! the barrier (the next batch's entry write) go to the other lane, which the drain does not
//! hold back: the disk writes them while the `fdatasync` runs. A barrier must also cover the
//! requests of earlier epochs on the other lane; when some of those are still in flight (the
//! previous barrier has not completed), it waits in user space until they have been reaped.
//! The journal submits a round's barrier only after the previous round's completed, so on its
//! hot path that wait never happens.
//!
//! Why: with one ring, ordering the barrier in user space (hold it until `poll` or `wait` reaps
//! the earlier completions) left the disk idle until the caller's next call, 166 µs per round at
//! the p50 in the log bench, whose caller was busy appending the next batch. `IO_DRAIN` on one
//! ring starts the `fdatasync` promptly but also holds back every later request until it
//! completes, so the next batch's write and the `fdatasync` take turns; this machine's disk
//! serves a write while a flush runs (see `docs/BENCHMARKS.md`).
//!
//! Queueing: at most [`RING_DEPTH`] requests are in each lane's ring at once. More wait in the
//! lane's FIFO backlog in submission order. The completion queue has room for twice that, so it
//! never overflows and no completion is dropped, on any kernel.
//!
//! System calls: `submit_read` and `submit_write` only fill a submission queue. A barrier
//! closes a burst of writes, so `submit_barrier` hands the burst to the kernel at once with one
//! `io_uring_enter`: the disk starts on it while the caller goes on with its own work, instead
//! of at its next `poll` or `wait`. `poll` and `wait` also submit whatever is queued, including
//! what their own reaping released (a held barrier, backlog requests).

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

/// Requests in one lane's ring at once (SQ entries). 256 covers the 16-64 writes in flight at
/// which this machine's disk peaks (DESIGN §7) with room for reads alongside, and keeps each
/// ring's locked memory at 32 KiB. Deeper queues wait in the backlog, in order.
pub(crate) const RING_DEPTH: u32 = 256;
/// Completion queue entries: the kernel's default of twice the SQ. Since at most `RING_DEPTH`
/// requests are ever in the ring, their completions always fit.
pub(crate) const CQ_DEPTH: u32 = 2 * RING_DEPTH;
/// Rings the disk alternates between, one per barrier epoch (see the module documentation).
/// Two suffice: the journal has at most one round's barrier in flight while the next round's
/// requests are submitted.
pub(crate) const LANES: usize = 2;
/// The largest read or write: Linux's `MAX_RW_COUNT`. The kernel silently shortens larger
/// transfers, which for a write would be an error here.
const IO_BYTES_MAX: usize = 0x7fff_f000;

const _: () = assert!(RING_DEPTH.is_power_of_two());
const _: () = assert!(CQ_DEPTH >= RING_DEPTH);
const _: () = assert!(
    LANES == 2,
    "a barrier's epoch and the next alternate between two lanes"
);
const _: () = assert!(IO_BYTES_MAX <= u32::MAX as usize);

/// A disk on one data file, opened with `O_DIRECT`, driven through two `io_uring` rings.
pub struct IoUringDisk {
    lanes: [Lane; LANES],
    /// The lane of the current epoch: requests submitted now go there.
    current: usize,
    file: File,
    size: u64,
    /// Every request submitted and not yet handed back, owning its buffer.
    requests: Slab<Request>,
    next_sequence: u64,
}

/// One ring and the requests waiting for room in it.
struct Lane {
    ring: IoUring,
    /// Requests waiting for room in the ring (or, for a barrier, for the other lane's earlier
    /// requests to finish), in submission order.
    backlog: VecDeque<u32>,
    /// Submission sequence numbers of this lane's requests not yet reaped, barriers included.
    unreaped: BTreeSet<u64>,
    /// Requests pushed into the ring whose CQE has not been reaped.
    issued: u32,
}

/// One request the disk owns until its completion is handed back.
#[derive(Debug)]
struct Request {
    token: u64,
    op: Op,
    /// Submission order across both lanes, for ordering barriers after the requests before them.
    sequence: u64,
}

#[derive(Debug)]
enum Op {
    Read { offset: u64, buf: AlignedBuf },
    Write { offset: u64, buf: AlignedBuf },
    Barrier,
}

impl IoUringDisk {
    /// Has the kernel signal the eventfd `fd` whenever it posts a completion on either lane, so
    /// that a reactor can sleep in its own poll (epoll) and still wake when the disk finishes.
    pub fn register_eventfd(&self, fd: std::os::fd::RawFd) -> io::Result<()> {
        for lane in &self.lanes {
            lane.ring.submitter().register_eventfd(fd)?;
        }
        Ok(())
    }

    /// Opens an existing data file (see [`crate::create_data_file`]) with `O_DIRECT` and sets up
    /// its rings. Each environment that rules `io_uring` out gets its own error, which
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
        let lanes = [Lane::new(path)?, Lane::new(path)?];
        Ok(IoUringDisk {
            lanes,
            current: 0,
            file,
            size,
            requests: Slab::with_capacity(RING_DEPTH as usize),
            next_sequence: 0,
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
        let lane = &mut self.lanes[self.current];
        lane.unreaped.insert(sequence);
        lane.backlog.push_back(index);
        if barrier {
            // Everything submitted from now on belongs to the next epoch.
            self.current = (self.current + 1) % LANES;
        }
        self.push_backlogs();
    }

    /// Moves backlog requests into both lanes' submission queues while there is room.
    fn push_backlogs(&mut self) {
        for lane in 0..LANES {
            self.push_backlog(lane);
        }
    }

    /// Moves `lane`'s backlog requests into its submission queue while the ring has room and
    /// the next one is not a barrier still waiting for the other lane.
    #[allow(unsafe_code)]
    fn push_backlog(&mut self, lane: usize) {
        let fd = types::Fd(self.file.as_raw_fd());
        let oldest_elsewhere = self.lanes[(lane + 1) % LANES].unreaped.first().copied();
        let this = &mut self.lanes[lane];
        let mut sq = this.ring.submission();
        while this.issued < RING_DEPTH {
            let Some(&index) = this.backlog.front() else {
                break;
            };
            let request = self.requests.get_mut(index);
            if matches!(request.op, Op::Barrier)
                && oldest_elsewhere.is_some_and(|oldest| oldest < request.sequence)
            {
                // An earlier request on the other lane is still in flight; the drain below would
                // not wait for it. Reaping it calls this again.
                break;
            }
            this.backlog.pop_front();
            // The backlog is in submission order, so every request submitted before this one on
            // this lane is in the ring already: `issued` of them have not been reaped, and a
            // barrier must wait for those that are still running.
            let entry = sqe(fd, request, index, this.issued > 0);
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
            this.issued += 1;
        }
    }

    /// Hands the kernel any SQEs it has not seen yet, on either lane, without waiting.
    fn submit_pending(&mut self) {
        for lane in 0..LANES {
            if !self.lanes[lane].ring.submission().is_empty() {
                self.enter(lane, 0);
            }
        }
    }

    /// One `io_uring_enter` on `lane`: submits its pending SQEs and waits for `want`
    /// completions. Transient refusals leave the SQEs queued for the next call; anything else
    /// means the ring itself is broken, which is a bug.
    fn enter(&mut self, lane: usize, want: usize) {
        match self.lanes[lane].ring.submit_and_wait(want) {
            Ok(_) => {}
            Err(error) if is_transient(&error) => {}
            Err(error) => panic!("io_uring_enter failed: {error}; the ring is unusable"),
        }
    }

    /// Takes every CQE out of both rings, hands its request back, and refills the rings from
    /// the backlogs. A lane's CQEs are taken in the order the kernel posted them, so a drained
    /// barrier's completion follows those of the requests before it on its lane; requests of
    /// earlier epochs on the other lane were reaped before the barrier entered its ring.
    fn reap(&mut self, out: &mut Vec<Completion>) {
        for lane in 0..LANES {
            let this = &mut self.lanes[lane];
            for cqe in this.ring.completion() {
                assert!(
                    this.issued > 0,
                    "invariant: a CQE answers an issued request"
                );
                this.issued -= 1;
                let index =
                    u32::try_from(cqe.user_data()).expect("invariant: user_data is a slab index");
                let request = self.requests.remove(index);
                let removed = this.unreaped.remove(&request.sequence);
                assert!(
                    removed,
                    "invariant: a request is reaped on its own lane, once"
                );
                out.push(completion(request, cqe.result()));
            }
        }
        self.push_backlogs();
    }

    /// The lane to block on in `wait`: the one whose oldest request in its ring is the oldest
    /// of all, as that request (or a barrier draining behind it) is the next thing a caller
    /// waits for. `None` when no lane has anything in its ring.
    fn lane_to_wait_on(&self) -> Option<usize> {
        (0..LANES)
            .filter(|&lane| self.lanes[lane].issued > 0)
            .min_by_key(|&lane| self.lanes[lane].unreaped.first().copied())
    }
}

impl Lane {
    fn new(path: &Path) -> Result<Lane, DiskOpenError> {
        Ok(Lane {
            ring: build_ring(path)?,
            backlog: VecDeque::with_capacity(RING_DEPTH as usize),
            unreaped: BTreeSet::new(),
            issued: 0,
        })
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
        // Reaping may have released a barrier or backlog requests into a submission queue.
        self.submit_pending();
    }

    /// Blocks in the kernel without spinning first: this is for tools, tests and recovery; the
    /// shard reactor, which owns the spin-then-block policy (DESIGN §7), uses `poll`.
    fn wait(&mut self, out: &mut Vec<Completion>) {
        let before = out.len();
        self.poll(out);
        // An interrupted wait returns with nothing reaped; block again.
        while out.len() == before && self.in_flight() > 0 {
            let lane = self
                .lane_to_wait_on()
                .expect("invariant: the backlogs drain into idle rings");
            self.enter(lane, 1);
            self.reap(out);
        }
        self.submit_pending();
    }

    fn in_flight(&self) -> usize {
        self.requests.len()
    }
}

impl Drop for IoUringDisk {
    /// Waits for the kernel to finish with every buffer in the rings before they are freed:
    /// freeing first would let an in-flight read write into memory the allocator reused.
    fn drop(&mut self) {
        for lane in &mut self.lanes {
            while lane.issued > 0 {
                if let Err(error) = lane.ring.submit_and_wait(1)
                    && !is_transient(&error)
                {
                    // The kernel may still own the buffers: leak them rather than free them.
                    std::mem::forget(std::mem::replace(
                        &mut self.requests,
                        Slab::with_capacity(0),
                    ));
                    return;
                }
                let reaped = lane.ring.completion().count();
                lane.issued -= u32::try_from(reaped).expect("invariant: a CQ holds < 2^32 entries");
            }
        }
    }
}

impl fmt::Debug for IoUringDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issued: Vec<u32> = self.lanes.iter().map(|lane| lane.issued).collect();
        let backlog: Vec<usize> = self.lanes.iter().map(|lane| lane.backlog.len()).collect();
        f.debug_struct("IoUringDisk")
            .field("size", &self.size)
            .field("in_flight", &self.requests.len())
            .field("current_lane", &self.current)
            .field("issued", &issued)
            .field("backlog", &backlog)
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

/// The SQE for `request`, tagged with its slab index. `behind` says whether requests submitted
/// before it on its lane may still be running.
fn sqe(fd: types::Fd, request: &mut Request, index: u32, behind: bool) -> squeue::Entry {
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
        // `IO_DRAIN`: the kernel starts the fdatasync only after every earlier request has
        // completed, so it covers those writes and its CQE comes after theirs. With nothing
        // earlier in the ring there is nothing to wait for, and the flag's bookkeeping is
        // skipped.
        Op::Barrier => {
            let entry = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build();
            if behind {
                entry.flags(squeue::Flags::IO_DRAIN)
            } else {
                entry
            }
        }
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
