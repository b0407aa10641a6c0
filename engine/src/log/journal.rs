//! The journal: one shard's hash-chained log driven over a [`VirtualDisk`].
//!
//! Durability protocol (see `docs/internals/log-format.md`): an appended entry is written to
//! its slot at once. A *round* writes the header copies of every entry a previous barrier made
//! durable and then submits one barrier. When the barrier completes, the entries written before
//! it are durable, and so are the header copies: those ops are acknowledged. Rounds follow one
//! another while a flush is wanted, so a steady stream of appends costs one barrier per round
//! and an op is acknowledged within two.
//!
//! Nothing here blocks except the functions documented as blocking (open, format, read,
//! truncate, sync), which tools, tests and recovery use.

use std::collections::BTreeSet;

use crate::checksum::Checksum;
use crate::constants::{
    CHECKPOINT_COPIES, HEADER_SIZE, HEADERS_PER_SECTOR, RECOVERY_READS_MAX, SECTOR_SIZE,
    SUPERBLOCK_COPIES, WRITE_RUN_BYTES_MAX,
};
use crate::disk::{AlignedBuf, Completion, DiskError, IoKind, VirtualDisk};
use crate::ids::{ClusterId, CommitIndex, Op, ReplicaIndex, ShardId, View};
use crate::log::format::{EntryMeta, Header, HeaderState, Layout, LogConfig};
use crate::log::recovery::{self, Analysis, CopyState, SlotFinding};
use crate::log::superblock::{self, CheckpointRef, Superblock};

const TOKEN_KIND_SHIFT: u32 = 56;
const TOKEN_ENTRY: u64 = 1;
const TOKEN_COPY: u64 = 2;
const TOKEN_ROUND: u64 = 3;
const TOKEN_SUPERBLOCK_WRITE: u64 = 4;
const TOKEN_SUPERBLOCK_BARRIER: u64 = 5;
const TOKEN_READ: u64 = 6;
const TOKEN_ERASE: u64 = 7;
const TOKEN_SYNC: u64 = 8;
const TOKEN_CHECKPOINT: u64 = 9;

/// Free buffers the journal keeps for reuse.
const BUFFER_POOL_MAX: usize = 512;

/// Free run buffers (each `WRITE_RUN_BYTES_MAX`) the journal keeps for reuse.
const RUN_POOL_MAX: usize = 4;

/// Entries of adjacent slots gathered into one write, submitted at the next round (or when the
/// next entry is not adjacent, or the run is full).
#[derive(Debug)]
struct WriteRun {
    offset: u64,
    /// Kept at its full capacity while entries are added, so that adding one does not zero-fill
    /// bytes it is about to overwrite; cut to `len` when the run is submitted.
    buf: AlignedBuf,
    /// Bytes of `buf` the run's entries fill.
    len: usize,
    last_op: Op,
}

fn token(kind: u64, value: u64) -> u64 {
    assert!(
        value < 1 << TOKEN_KIND_SHIFT,
        "invariant: token value fits 56 bits"
    );
    (kind << TOKEN_KIND_SHIFT) | value
}

fn token_kind(token: u64) -> u64 {
    token >> TOKEN_KIND_SHIFT
}

fn token_value(token: u64) -> u64 {
    token & ((1 << TOKEN_KIND_SHIFT) - 1)
}

/// What `chronon format` records for a new replica of a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatParams {
    pub cluster: ClusterId,
    pub shard: ShardId,
    pub replica: ReplicaIndex,
    pub replica_count: u8,
    pub config: LogConfig,
}

/// An entry read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub header: Header,
    pub body: Vec<u8>,
}

/// What recovery found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub superblock: Superblock,
    pub analysis: Analysis,
    /// Per slot, the witnesses recovery read (for `chronon inspect` and tests).
    pub findings: Vec<SlotFinding>,
    /// Each superblock copy as read (`None`: unreadable, torn or misplaced).
    pub superblock_copies: Vec<Option<Superblock>>,
}

impl RecoveryReport {
    /// True when the log is whole: no faulty slot and an unbroken chain.
    #[must_use]
    pub fn is_clean(&self) -> bool {
        self.analysis.faulty.is_empty() && self.analysis.chain_break.is_none()
    }
}

/// Errors of the journal. Each says what happened and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    #[error(
        "the log stopped after a failed disk operation ({cause}); nothing is retried (an fsync \
         error can silently drop data). Entries acknowledged before it are on disk. Check the \
         disk (dmesg), then restart the replica so it recovers from what is durable"
    )]
    Poisoned { cause: DiskError },
    #[error(
        "no superblock found: the data file is not formatted. Run `chronon format` to create a \
         new replica"
    )]
    NotFormatted,
    #[error(
        "the superblock is corrupt: no two of its {SUPERBLOCK_COPIES} copies agree. The data \
         file is damaged; reformat this replica and let it catch up from its peers"
    )]
    SuperblockCorrupt,
    #[error(
        "the data file is {actual} bytes but its superblock describes {needed}; it was \
         truncated or belongs to another layout. Reformat this replica"
    )]
    DiskTooSmall { needed: u64, actual: u64 },
    #[error("invalid log configuration: {reason}")]
    BadConfig { reason: String },
    #[error("the log holds no entry at all, not even its root: reformat this replica")]
    Empty,
    #[error("entry of {size} bytes exceeds the slot size of {max} bytes")]
    EntryTooLarge { size: usize, max: usize },
    #[error("{in_flight} entries are not yet durable (limit {max}); wait for a flush to finish")]
    Backpressure { in_flight: u64, max: u64 },
    #[error("entry for op {op} does not extend the chain at head op {head} ({reason})")]
    ChainMismatch {
        op: Op,
        head: Op,
        reason: &'static str,
    },
    #[error("op {op} is not in the log, which holds ops {op_min}..={head} durably")]
    NotInLog { op: Op, op_min: Op, head: Op },
    #[error("op {op} is faulty on this replica and must be repaired from a peer")]
    Faulty { op: Op },
    #[error("reading op {op} failed ({cause}); the slot may need repair from a peer")]
    ReadFailed { op: Op, cause: DiskError },
    #[error(
        "the checkpoint is {size} bytes but each checkpoint copy holds {max}: the application \
         state outgrew the checkpoint zone. Nothing was written; reformat the replica with a \
         larger --checkpoint-size and let it catch up from its peers"
    )]
    CheckpointTooLarge { size: usize, max: usize },
}

/// Whether an entry's body was already hashed against its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BodyChecked {
    Yes,
    No,
}

#[derive(Clone, Copy, Debug)]
struct Round {
    entries_upto: Op,
    copies_upto: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SuperblockPhase {
    Idle,
    /// A barrier before the copies: every write submitted earlier (the log the new view state
    /// vouches for) must be durable before any copy can reach the disk.
    LogBarrier,
    /// Copies `0..QUORUM` written, waiting for their barrier.
    FirstHalf,
    /// Copies `QUORUM..COPIES` written, waiting for their barrier.
    SecondHalf,
}

/// One shard's log over a disk.
#[derive(Debug)]
pub struct Journal<D: VirtualDisk> {
    disk: D,
    layout: Layout,
    /// The newest superblock whose update has completed.
    superblock: Superblock,
    /// The superblock being written, and the one queued behind it.
    superblock_writing: Option<Superblock>,
    superblock_next: Option<Superblock>,
    superblock_phase: SuperblockPhase,
    /// The header of the op each slot holds (intact or faulty), as the journal knows it.
    headers: Vec<Option<Header>>,
    /// The header-zone image: what is on disk or about to be written.
    copies: Vec<[u8; HEADER_SIZE]>,
    faulty: Vec<bool>,
    dirty_sectors: BTreeSet<usize>,
    head: Header,
    op_min: Op,
    /// The header of the durable checkpoint's op: the log follows it, and ops up to it are no
    /// longer needed.
    anchor: Option<Header>,
    entries_durable: Op,
    durable: Op,
    round: Option<Round>,
    /// A round that was due when the last one completed, held back until the next `flush` or
    /// `wait` so that it can carry the caller's next entries too.
    round_owed: bool,
    flush_target: Option<Op>,
    pool: Vec<AlignedBuf>,
    run_pool: Vec<AlignedBuf>,
    run: Option<WriteRun>,
    completions: Vec<Completion>,
    reads: Vec<Completion>,
    syncs_done: u64,
    poisoned: Option<DiskError>,
}

impl<D: VirtualDisk> Journal<D> {
    /// Writes a new, empty log (superblock, root entry, zeroed header zone) to `disk`.
    /// Blocking.
    pub fn format(disk: &mut D, params: &FormatParams) -> Result<(), JournalError> {
        if let Some(reason) = params.config.problem() {
            return Err(JournalError::BadConfig { reason });
        }
        let layout = Layout::new(params.config);
        if disk.size() < layout.total_size() {
            return Err(JournalError::DiskTooSmall {
                needed: layout.total_size(),
                actual: disk.size(),
            });
        }
        let root = Header::root(params.cluster, params.shard);
        for slot in 0..params.config.slot_count as usize {
            let mut buf = AlignedBuf::zeroed(SECTOR_SIZE);
            if slot == 0 {
                buf.as_mut_slice()[..HEADER_SIZE].copy_from_slice(&root.encode());
            }
            disk.submit_write(
                layout.slot_offset(slot),
                buf,
                token(TOKEN_ERASE, slot as u64),
            );
            settle(disk, RECOVERY_READS_MAX)?;
        }
        for sector in 0..layout.header_sector_count() {
            let mut buf = AlignedBuf::zeroed(SECTOR_SIZE);
            if sector == 0 {
                buf.as_mut_slice()[..HEADER_SIZE].copy_from_slice(&root.encode());
            }
            disk.submit_write(
                layout.header_sector_offset(sector),
                buf,
                token(TOKEN_COPY, 0),
            );
            settle(disk, RECOVERY_READS_MAX)?;
        }
        barrier_blocking(disk)?;
        let superblock = Superblock {
            sequence: 1,
            cluster: params.cluster,
            shard: params.shard,
            replica: params.replica,
            replica_count: params.replica_count,
            view: View(0),
            log_view: View(0),
            commit: CommitIndex(Some(Op(0))),
            recovering_head: false,
            config: params.config,
            checkpoint: None,
        };
        for half in [
            0..SUPERBLOCK_COPIES / 2,
            SUPERBLOCK_COPIES / 2..SUPERBLOCK_COPIES,
        ] {
            for copy in half {
                disk.submit_write(
                    Layout::superblock_offset(copy),
                    sector_of(&superblock.encode(copy)),
                    0,
                );
            }
            barrier_blocking(disk)?;
        }
        Ok(())
    }

    /// Opens a formatted log and recovers it: torn unacknowledged writes are erased, header
    /// copies behind intact entries are rewritten, and faulty slots are reported for repair.
    /// Blocking.
    pub fn open(mut disk: D) -> Result<(Journal<D>, RecoveryReport), JournalError> {
        let report = scan(&mut disk)?;
        let mut journal = Journal::from_report(disk, &report)?;
        journal.repair_after_recovery(&report)?;
        Ok((journal, report))
    }

    /// Reads and analyses a log without writing anything. Blocking.
    pub fn inspect(disk: &mut D) -> Result<RecoveryReport, JournalError> {
        scan(disk)
    }

    /// Waits for the I/O in flight, then reads the whole log back from disk and analyses it
    /// as recovery would, without changing anything. Blocking.
    pub fn verify(&mut self) -> Result<RecoveryReport, JournalError> {
        while self.round.is_some() || self.superblock_pending() || !self.is_idle() {
            self.wait()?;
        }
        scan(&mut self.disk)
    }

    fn from_report(disk: D, report: &RecoveryReport) -> Result<Journal<D>, JournalError> {
        let layout = Layout::new(report.superblock.config);
        let analysis = &report.analysis;
        let head_op = analysis.head.ok_or(JournalError::Empty)?;
        let anchor = report.superblock.checkpoint.map(|c| c.header);
        let head = anchor
            .filter(|a| a.op == head_op)
            .or(analysis.headers[layout.slot_of(head_op)])
            .filter(|h| h.op == head_op)
            .or_else(|| {
                let fault = analysis.faulty.iter().find(|f| f.op == Some(head_op))?;
                fault.expected
            })
            .ok_or(JournalError::Empty)?;
        let mut faulty = vec![false; layout.config.slot_count as usize];
        for fault in &analysis.faulty {
            faulty[fault.slot] = true;
        }
        let copies = report
            .findings
            .iter()
            .map(|finding| match finding.copy {
                CopyState::Valid(h) => h.encode(),
                CopyState::Zero | CopyState::Corrupt => [0u8; HEADER_SIZE],
            })
            .collect();
        Ok(Journal {
            disk,
            layout,
            superblock: report.superblock,
            superblock_writing: None,
            superblock_next: None,
            superblock_phase: SuperblockPhase::Idle,
            headers: analysis.headers.clone(),
            copies,
            faulty,
            dirty_sectors: BTreeSet::new(),
            head,
            op_min: analysis.op_min,
            anchor,
            entries_durable: head_op,
            durable: head_op,
            round: None,
            round_owed: false,
            flush_target: None,
            pool: Vec::new(),
            run_pool: Vec::new(),
            run: None,
            completions: Vec::new(),
            reads: Vec::new(),
            syncs_done: 0,
            poisoned: None,
        })
    }

    /// Makes recovery's decisions durable: header copies first, then erasures, so that a crash
    /// in between can only resurrect an unacknowledged entry, never fault one.
    fn repair_after_recovery(&mut self, report: &RecoveryReport) -> Result<(), JournalError> {
        self.repair_superblock_copies(report)?;
        let analysis = &report.analysis;
        if !analysis.copy_repairs.is_empty() {
            // The entries behind the copies to rewrite were read back, but may sit only in the
            // page cache after a process crash: make them durable before a copy vouches for them.
            self.sync_barrier()?;
        }
        for &slot in &analysis.copy_repairs {
            let header = analysis.headers[slot].expect("invariant: a repaired copy has an entry");
            self.set_copy(slot, Some(&header));
        }
        for &slot in &analysis.truncated {
            if report.findings[slot].copy != CopyState::Zero {
                self.set_copy(slot, None);
            }
        }
        // Corrupt copies of intact-or-faulty slots are rewritten from what the journal knows.
        for (slot, finding) in report.findings.iter().enumerate() {
            if finding.copy == CopyState::Corrupt
                && let Some(header) = self.headers[slot]
            {
                self.set_copy(slot, Some(&header));
            }
        }
        self.write_dirty_copies();
        self.sync_barrier()?;
        let mut erased = false;
        for &slot in &analysis.truncated {
            if report.findings[slot].entry != recovery::EntryState::Zero {
                let buf = AlignedBuf::zeroed(SECTOR_SIZE);
                self.disk
                    .submit_write(self.layout.slot_offset(slot), buf, token(TOKEN_ERASE, 0));
                erased = true;
            }
        }
        if erased {
            self.sync_barrier()?;
        }
        Ok(())
    }

    /// Rewrites every superblock copy that does not hold the recovered superblock, so that the
    /// next update starts from four identical copies. Copies that match are never touched, so
    /// a crash during this repair still leaves their quorum. Without it, a crash in the second
    /// half of one update followed by a crash in the first half of the next could leave no
    /// quorum of the newer version and bring back an older view.
    fn repair_superblock_copies(&mut self, report: &RecoveryReport) -> Result<(), JournalError> {
        let mut rewrote = false;
        for (copy, found) in report.superblock_copies.iter().enumerate() {
            if *found != Some(report.superblock) {
                let buf = sector_of(&report.superblock.encode(copy));
                let offset = Layout::superblock_offset(copy);
                self.disk
                    .submit_write(offset, buf, token(TOKEN_SUPERBLOCK_WRITE, copy as u64));
                rewrote = true;
            }
        }
        if rewrote {
            self.sync_barrier()?;
        }
        Ok(())
    }

    #[must_use]
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The newest superblock whose update has completed.
    #[must_use]
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// The last appended entry's header (durable or not).
    #[must_use]
    pub fn head(&self) -> &Header {
        &self.head
    }

    /// The highest op whose entry and header copy are durable: the acknowledgement point.
    #[must_use]
    pub fn durable_op(&self) -> Op {
        self.durable
    }

    /// The oldest op still in the ring.
    #[must_use]
    pub fn op_min(&self) -> Op {
        self.op_min
    }

    /// Entries allowed to be appended but not yet durable; beyond it `append` pushes back.
    /// See [`Layout::in_flight_max`].
    #[must_use]
    pub fn in_flight_max(&self) -> u64 {
        self.layout.in_flight_max()
    }

    /// The header of the durable checkpoint's op, which the log follows.
    #[must_use]
    pub fn anchor(&self) -> Option<Header> {
        self.anchor
    }

    /// The header of `op`, if the ring holds it (intact or faulty), or if it is the durable
    /// checkpoint's op.
    #[must_use]
    pub fn header(&self, op: Op) -> Option<Header> {
        if let Some(anchor) = self.anchor.filter(|a| a.op == op) {
            return Some(anchor);
        }
        if op < self.op_min || op > self.head.op {
            return None;
        }
        self.headers[self.layout.slot_of(op)].filter(|h| h.op == op)
    }

    #[must_use]
    pub fn is_faulty(&self, op: Op) -> bool {
        self.faulty[self.layout.slot_of(op)]
            && self.headers[self.layout.slot_of(op)].is_none_or(|h| h.op == op)
    }

    /// The ops currently marked faulty.
    #[must_use]
    pub fn faulty_ops(&self) -> Vec<Op> {
        (self.op_min.0..=self.head.op.0)
            .map(Op)
            .filter(|&op| self.is_faulty(op))
            .collect()
    }

    /// The error the journal stopped with, if it has.
    #[must_use]
    pub fn poisoned(&self) -> Option<&DiskError> {
        self.poisoned.as_ref()
    }

    #[must_use]
    pub fn disk(&self) -> &D {
        &self.disk
    }

    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    #[must_use]
    pub fn into_disk(self) -> D {
        self.disk
    }

    fn check_poisoned(&self) -> Result<(), JournalError> {
        match &self.poisoned {
            Some(cause) => Err(JournalError::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends an entry after the head, building its header. Returns the header.
    pub fn append(&mut self, meta: &EntryMeta, body: &[u8]) -> Result<Header, JournalError> {
        let header = Header::new(
            meta,
            self.head.op.next(),
            self.head.checksum,
            self.superblock.cluster,
            self.superblock.shard,
            body,
        );
        // The header was built from this body just now: hashing it again would only double
        // the dominant cost of an append.
        self.append_checked(&header, body, BodyChecked::Yes)?;
        Ok(header)
    }

    /// Appends an entry whose header was built elsewhere (a backup appending the primary's
    /// prepare). It must extend the chain at the head.
    pub fn append_entry(&mut self, header: &Header, body: &[u8]) -> Result<(), JournalError> {
        self.append_checked(header, body, BodyChecked::No)
    }

    fn append_checked(
        &mut self,
        header: &Header,
        body: &[u8],
        checked: BodyChecked,
    ) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let head = self.head.op;
        let mismatch = |reason| JournalError::ChainMismatch {
            op: header.op,
            head,
            reason,
        };
        if header.op != head.next() {
            return Err(mismatch("op is not head + 1"));
        }
        if header.parent != self.head.checksum {
            return Err(mismatch("parent is not the head's checksum"));
        }
        if header.cluster != self.superblock.cluster || header.shard != self.superblock.shard {
            return Err(mismatch("cluster or shard differs"));
        }
        if header.size as usize != HEADER_SIZE + body.len()
            || (checked == BodyChecked::No && Checksum::of_body(body) != header.checksum_body)
        {
            return Err(mismatch("body does not match its checksum"));
        }
        if header.size as usize > self.layout.slot_size() {
            let max = self.layout.slot_size();
            return Err(JournalError::EntryTooLarge {
                size: header.size as usize,
                max,
            });
        }
        let in_flight = header.op.0 - self.durable.0;
        if in_flight > self.in_flight_max() {
            return Err(JournalError::Backpressure {
                in_flight,
                max: self.in_flight_max(),
            });
        }
        let slot = self.layout.slot_of(header.op);
        self.add_to_run(self.layout.slot_offset(slot), header, body);
        self.headers[slot] = Some(*header);
        self.faulty[slot] = false;
        self.head = *header;
        let slot_count = u64::from(self.layout.config.slot_count);
        self.op_min = self
            .op_min
            .max(Op(header.op.0.saturating_sub(slot_count - 1)));
        Ok(())
    }

    /// Rewrites the entry of an op the ring already holds (by header) with a body fetched
    /// from a peer: the repair of a faulty slot. Its header copy is already durable, so the
    /// next barrier makes the repair durable.
    pub fn repair(&mut self, header: &Header, body: &[u8]) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let op = header.op;
        let head = self.head.op;
        if self
            .header(op)
            .is_none_or(|known| known.checksum != header.checksum)
        {
            return Err(JournalError::ChainMismatch {
                op,
                head,
                reason: "repair of another entry",
            });
        }
        if Checksum::of_body(body) != header.checksum_body
            || header.size as usize != HEADER_SIZE + body.len()
        {
            return Err(JournalError::ChainMismatch {
                op,
                head,
                reason: "repair body mismatch",
            });
        }
        let mut buf = self.take_buffer(header.padded_size());
        let bytes = buf.as_mut_slice();
        bytes[..HEADER_SIZE].copy_from_slice(&header.encode());
        bytes[HEADER_SIZE..header.size as usize].copy_from_slice(body);
        bytes[header.size as usize..].fill(0);
        let slot = self.layout.slot_of(op);
        self.disk
            .submit_write(self.layout.slot_offset(slot), buf, token(TOKEN_ERASE, 0));
        self.faulty[slot] = false;
        Ok(())
    }

    /// Places an entry in the current write run if its slot directly follows the run's end
    /// (slots as large as their entries, the ring not wrapping), else starts a new run.
    fn add_to_run(&mut self, offset: u64, header: &Header, body: &[u8]) {
        let padded = header.padded_size();
        let extends = self.run.as_ref().is_some_and(|run| {
            run.offset + run.len as u64 == offset && run.len + padded <= WRITE_RUN_BYTES_MAX
        });
        if !extends {
            self.submit_run();
            let mut buf = self.run_pool.pop().unwrap_or_else(|| {
                AlignedBuf::with_capacity(WRITE_RUN_BYTES_MAX.max(self.layout.slot_size()))
            });
            // Only sectors the buffer never held are zero-filled here: a pooled buffer keeps its
            // old bytes, every one of which an entry overwrites before the run is submitted. An
            // entry larger than a pooled run buffer (slots over 1 MiB) grows it.
            buf.resize(buf.capacity().max(padded));
            self.run = Some(WriteRun {
                offset,
                buf,
                len: 0,
                last_op: header.op,
            });
        }
        let run = self.run.as_mut().expect("invariant: a run exists");
        let start = run.len;
        assert!(
            start + padded <= run.buf.len(),
            "invariant: the entry fits the run"
        );
        // Header, body and zero padding cover the entry's sectors entirely.
        let bytes = &mut run.buf.as_mut_slice()[start..start + padded];
        bytes[..HEADER_SIZE].copy_from_slice(&header.encode());
        bytes[HEADER_SIZE..header.size as usize].copy_from_slice(body);
        bytes[header.size as usize..].fill(0);
        run.len = start + padded;
        run.last_op = header.op;
        if run.len + SECTOR_SIZE > WRITE_RUN_BYTES_MAX {
            // Nothing more fits: hand the run to the disk now rather than at the next append or
            // round. While an earlier round's barrier is in flight, the disk then writes these
            // entries during that barrier instead of after it. They are speculative until a
            // later barrier covers them, like any entry write.
            self.submit_run();
        }
    }

    /// Hands the current write run to the disk.
    fn submit_run(&mut self) {
        if let Some(mut run) = self.run.take() {
            assert!(run.len > 0, "invariant: a run holds at least one entry");
            // Shrinking keeps the allocation and writes nothing.
            run.buf.resize(run.len);
            self.disk
                .submit_write(run.offset, run.buf, token(TOKEN_ENTRY, run.last_op.0));
        }
    }

    fn take_buffer(&mut self, len: usize) -> AlignedBuf {
        let mut buf = self
            .pool
            .pop()
            .unwrap_or_else(|| AlignedBuf::with_capacity(self.layout.slot_size()));
        buf.resize(len);
        buf
    }

    /// Asks for everything appended so far to become durable. Returns at once; progress comes
    /// from [`Journal::poll`] or [`Journal::wait`], and [`Journal::durable_op`] tells when.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.check_poisoned()?;
        self.flush_target = Some(self.head.op);
        if self.round.is_none() {
            self.start_round();
        }
        Ok(())
    }

    fn start_owed_round(&mut self) {
        if self.round_owed && self.round.is_none() {
            self.start_round();
        }
    }

    fn start_round(&mut self) {
        assert!(self.round.is_none());
        self.round_owed = false;
        // Every entry appended so far must be submitted before the round's barrier.
        self.submit_run();
        let copies_upto = self.entries_durable;
        for op in self.durable.0 + 1..=copies_upto.0 {
            let slot = self.layout.slot_of(Op(op));
            let header = self.headers[slot].expect("invariant: a durable entry has a header");
            assert_eq!(header.op, Op(op));
            self.set_copy(slot, Some(&header));
        }
        self.write_dirty_copies();
        self.disk.submit_barrier(token(TOKEN_ROUND, 0));
        self.round = Some(Round {
            entries_upto: self.head.op,
            copies_upto,
        });
    }

    fn set_copy(&mut self, slot: usize, header: Option<&Header>) {
        self.copies[slot] = header.map_or([0u8; HEADER_SIZE], Header::encode);
        self.dirty_sectors.insert(slot / HEADERS_PER_SECTOR);
    }

    /// Writes the dirty header-zone sectors, adjacent ones as one write.
    fn write_dirty_copies(&mut self) {
        let sectors: Vec<usize> = std::mem::take(&mut self.dirty_sectors)
            .into_iter()
            .collect();
        let mut start = 0;
        while start < sectors.len() {
            let mut end = start + 1;
            while end < sectors.len()
                && sectors[end] == sectors[end - 1] + 1
                && (end - start + 1) * SECTOR_SIZE <= WRITE_RUN_BYTES_MAX
            {
                end += 1;
            }
            self.write_copy_sectors(sectors[start], end - start);
            start = end;
        }
    }

    fn write_copy_sectors(&mut self, first_sector: usize, count: usize) {
        let mut buf = self.take_buffer(count * SECTOR_SIZE);
        let bytes = buf.as_mut_slice();
        bytes.fill(0);
        let first = first_sector * HEADERS_PER_SECTOR;
        let last = ((first_sector + count) * HEADERS_PER_SECTOR).min(self.copies.len());
        for (i, copy) in self.copies[first..last].iter().enumerate() {
            bytes[i * HEADER_SIZE..(i + 1) * HEADER_SIZE].copy_from_slice(copy);
        }
        let offset = self.layout.header_sector_offset(first_sector);
        self.disk
            .submit_write(offset, buf, token(TOKEN_COPY, first_sector as u64));
    }

    fn on_round_done(&mut self) {
        let round = self
            .round
            .take()
            .expect("invariant: a round barrier belongs to a round");
        assert!(round.entries_upto >= self.entries_durable);
        assert!(round.copies_upto >= self.durable);
        self.entries_durable = round.entries_upto;
        self.durable = round.copies_upto;
        assert!(self.durable <= self.entries_durable && self.entries_durable <= self.head.op);
        if self
            .flush_target
            .is_some_and(|target| target > self.durable)
        {
            if self.head.op > round.entries_upto {
                self.start_round();
            } else {
                // Nothing was appended while this round ran: the next round would carry header
                // copies alone. Owe it to the next `flush` or `wait`, so that the caller's next
                // batch rides in the same barrier (one barrier per batch, not one and a half).
                self.round_owed = true;
            }
        } else {
            self.flush_target = None;
        }
    }

    /// Starts a durable update of the view state. Views never regress. Returns at once;
    /// [`Journal::superblock`] shows the new state once both halves are durable.
    /// `recovering_head` is [`Superblock::recovering_head`].
    pub fn write_superblock(
        &mut self,
        view: View,
        log_view: View,
        commit: CommitIndex,
        recovering_head: bool,
    ) -> Result<(), JournalError> {
        self.check_poisoned()?;
        let latest = self.latest_superblock();
        assert!(
            view >= latest.view,
            "view regressed from {} to {view}",
            latest.view
        );
        assert!(log_view >= latest.log_view, "log view regressed");
        assert!(log_view <= view);
        let next = Superblock {
            sequence: latest.sequence + 1,
            view,
            log_view,
            commit,
            recovering_head,
            ..latest
        };
        if self.superblock_phase == SuperblockPhase::Idle {
            self.start_superblock_update(next);
        } else {
            self.superblock_next = Some(next);
        }
        Ok(())
    }

    /// True while a superblock update is on its way to disk.
    #[must_use]
    pub fn superblock_pending(&self) -> bool {
        self.superblock_phase != SuperblockPhase::Idle
    }

    /// Starts an update with a barrier of its own. Without it, a disk that reorders writes could
    /// persist the copies (say, a log view) and lose log entries submitted before them, so the
    /// view state would vouch for a log that is not on disk. The simulator found this: a new
    /// primary's log view survived a crash that lost the entries it had just repaired.
    fn start_superblock_update(&mut self, superblock: Superblock) {
        // The log the new view state vouches for includes entries still gathered in a run.
        self.submit_run();
        self.disk.submit_barrier(token(TOKEN_SUPERBLOCK_BARRIER, 0));
        self.superblock_writing = Some(superblock);
        self.superblock_phase = SuperblockPhase::LogBarrier;
    }

    fn start_superblock_half(&mut self, superblock: Superblock, phase: SuperblockPhase) {
        let copies = match phase {
            SuperblockPhase::FirstHalf => 0..SUPERBLOCK_COPIES / 2,
            SuperblockPhase::SecondHalf => SUPERBLOCK_COPIES / 2..SUPERBLOCK_COPIES,
            SuperblockPhase::Idle | SuperblockPhase::LogBarrier => {
                unreachable!("only the halves write copies")
            }
        };
        for copy in copies {
            let buf = sector_of(&superblock.encode(copy));
            let offset = Layout::superblock_offset(copy);
            self.disk
                .submit_write(offset, buf, token(TOKEN_SUPERBLOCK_WRITE, copy as u64));
        }
        self.disk.submit_barrier(token(TOKEN_SUPERBLOCK_BARRIER, 0));
        self.superblock_writing = Some(superblock);
        self.superblock_phase = phase;
    }

    fn on_superblock_barrier(&mut self) {
        let writing = self
            .superblock_writing
            .expect("invariant: a superblock is being written");
        match self.superblock_phase {
            SuperblockPhase::LogBarrier => {
                self.start_superblock_half(writing, SuperblockPhase::FirstHalf);
            }
            SuperblockPhase::FirstHalf => {
                self.start_superblock_half(writing, SuperblockPhase::SecondHalf);
            }
            SuperblockPhase::SecondHalf => {
                self.superblock = writing;
                self.anchor = writing.checkpoint.map(|c| c.header).or(self.anchor);
                if let Some(anchor) = self.anchor {
                    self.op_min = self.op_min.max(anchor.op.next());
                }
                self.superblock_writing = None;
                self.superblock_phase = SuperblockPhase::Idle;
                if let Some(next) = self.superblock_next.take() {
                    self.start_superblock_update(next);
                }
            }
            SuperblockPhase::Idle => unreachable!("superblock barrier while idle"),
        }
    }

    /// Processes finished I/O without blocking.
    pub fn poll(&mut self) -> Result<(), JournalError> {
        let mut completions = std::mem::take(&mut self.completions);
        self.disk.poll(&mut completions);
        self.handle(&mut completions);
        self.completions = completions;
        self.check_poisoned()
    }

    /// Blocks until some I/O finishes, then processes it.
    pub fn wait(&mut self) -> Result<(), JournalError> {
        self.start_owed_round();
        let mut completions = std::mem::take(&mut self.completions);
        self.disk.wait(&mut completions);
        self.handle(&mut completions);
        self.completions = completions;
        self.check_poisoned()
    }

    /// True when no I/O is in flight.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.disk.in_flight() == 0
    }

    fn handle(&mut self, completions: &mut Vec<Completion>) {
        for completion in completions.drain(..) {
            if token_kind(completion.token) == TOKEN_READ {
                self.reads.push(completion);
                continue;
            }
            if token_kind(completion.token) == TOKEN_CHECKPOINT {
                // Checkpoint buffers are as large as the checkpoint: never pooled.
                if let Err(cause) = &completion.result {
                    self.poisoned.get_or_insert_with(|| cause.clone());
                }
                continue;
            }
            if let Err(cause) = &completion.result {
                // fsyncgate: never retry; the state on disk is unknown.
                self.poisoned.get_or_insert_with(|| cause.clone());
            }
            if let Some(buf) = completion.buf {
                if buf.capacity() >= WRITE_RUN_BYTES_MAX {
                    if self.run_pool.len() < RUN_POOL_MAX {
                        self.run_pool.push(buf);
                    }
                } else if self.pool.len() < BUFFER_POOL_MAX {
                    self.pool.push(buf);
                }
            }
            if completion.kind != IoKind::Barrier || self.poisoned.is_some() {
                continue;
            }
            match token_kind(completion.token) {
                TOKEN_ROUND => self.on_round_done(),
                TOKEN_SUPERBLOCK_BARRIER => self.on_superblock_barrier(),
                TOKEN_SYNC => self.syncs_done += 1,
                kind => unreachable!("barrier with token kind {kind}"),
            }
        }
    }

    /// Flushes and waits until every appended entry and every superblock update is durable.
    /// Blocking.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        while self.durable < self.head.op || self.superblock_pending() || self.round.is_some() {
            self.wait()?;
        }
        Ok(())
    }

    fn sync_barrier(&mut self) -> Result<(), JournalError> {
        let target = self.syncs_done + 1;
        self.disk.submit_barrier(token(TOKEN_SYNC, 0));
        while self.syncs_done < target {
            self.wait()?;
        }
        Ok(())
    }

    /// Reads an acknowledged entry and verifies it against the header the journal expects.
    /// Blocking.
    pub fn read(&mut self, op: Op) -> Result<Entry, JournalError> {
        self.check_poisoned()?;
        if op < self.op_min || op > self.durable {
            return Err(JournalError::NotInLog {
                op,
                op_min: self.op_min,
                head: self.durable,
            });
        }
        if self.is_faulty(op) {
            return Err(JournalError::Faulty { op });
        }
        let slot = self.layout.slot_of(op);
        let expected = self.headers[slot].expect("invariant: an op in the log has a header");
        assert_eq!(expected.op, op);
        let read_token = token(TOKEN_READ, op.0);
        let buf = AlignedBuf::zeroed(expected.padded_size());
        self.disk
            .submit_read(self.layout.slot_offset(slot), buf, read_token);
        let completion = loop {
            if let Some(i) = self.reads.iter().position(|c| c.token == read_token) {
                break self.reads.swap_remove(i);
            }
            self.wait()?;
        };
        let buf = completion
            .buf
            .expect("invariant: a read returns its buffer");
        if let Err(cause) = completion.result {
            return Err(JournalError::ReadFailed { op, cause });
        }
        let (cluster, shard) = (self.superblock.cluster, self.superblock.shard);
        match recovery::entry_state(buf.as_slice(), slot, &self.layout, cluster, shard) {
            recovery::EntryState::Valid(header) if header.checksum == expected.checksum => {
                let body = buf.as_slice()[HEADER_SIZE..header.size as usize].to_vec();
                Ok(Entry { header, body })
            }
            _ => {
                self.faulty[slot] = true;
                Err(JournalError::Faulty { op })
            }
        }
    }

    /// The superblock the next update builds on: the queued one, the one being written, or the
    /// durable one.
    fn latest_superblock(&self) -> Superblock {
        self.superblock_next
            .or(self.superblock_writing)
            .unwrap_or(self.superblock)
    }

    /// True while a checkpoint's superblock update has not completed.
    #[must_use]
    pub fn checkpoint_pending(&self) -> bool {
        self.latest_superblock().checkpoint != self.superblock.checkpoint
    }

    /// Writes `bytes`, the encoded checkpoint taken at the op of `header`, to the checkpoint copy
    /// the durable superblock does not name, then updates the superblock to name it. Returns at
    /// once; [`Journal::superblock`] names the checkpoint once it is durable. The superblock
    /// update starts with a barrier, so the copy is durable before any superblock names it, and a
    /// crash before the update completes leaves the previous checkpoint named and intact.
    pub fn write_checkpoint(
        &mut self,
        header: &Header,
        checksum: Checksum,
        bytes: &[u8],
    ) -> Result<(), JournalError> {
        self.check_poisoned()?;
        assert!(
            !self.checkpoint_pending(),
            "one checkpoint write at a time: the previous one is not durable yet"
        );
        let next = self.checkpoint_superblock(header, checksum, bytes)?;
        if self.superblock_phase == SuperblockPhase::Idle {
            self.start_superblock_update(next);
        } else {
            self.superblock_next = Some(next);
        }
        Ok(())
    }

    /// Submits the checkpoint's bytes to the free copy and returns the superblock naming it.
    fn checkpoint_superblock(
        &mut self,
        header: &Header,
        checksum: Checksum,
        bytes: &[u8],
    ) -> Result<Superblock, JournalError> {
        let max = self.layout.config.checkpoint_size as usize;
        if bytes.len() > max {
            return Err(JournalError::CheckpointTooLarge {
                size: bytes.len(),
                max,
            });
        }
        assert_eq!(Checksum::of(bytes), checksum, "checkpoint checksum");
        let latest = self.latest_superblock();
        let copy = latest.checkpoint.map_or(0, |c| 1 - c.copy);
        assert!(usize::from(copy) < CHECKPOINT_COPIES);
        let mut buf = AlignedBuf::zeroed(bytes.len().div_ceil(SECTOR_SIZE).max(1) * SECTOR_SIZE);
        buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        let offset = self.layout.checkpoint_offset(usize::from(copy));
        self.disk
            .submit_write(offset, buf, token(TOKEN_CHECKPOINT, u64::from(copy)));
        Ok(Superblock {
            sequence: latest.sequence + 1,
            checkpoint: Some(CheckpointRef {
                header: *header,
                checksum,
                size: bytes.len() as u64,
                copy,
            }),
            ..latest
        })
    }

    /// Reads the durable checkpoint back and verifies it against the superblock's checksum.
    /// `Ok(None)` when there is none, or when its copy is damaged (the replica then fetches a
    /// checkpoint from a peer). Blocking.
    pub fn read_checkpoint(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        self.check_poisoned()?;
        let Some(checkpoint) = self.superblock.checkpoint else {
            return Ok(None);
        };
        let size = usize::try_from(checkpoint.size).expect("invariant: a checkpoint fits memory");
        let read_token = token(TOKEN_READ, (1 << 55) | u64::from(checkpoint.copy));
        let buf = AlignedBuf::zeroed(size.div_ceil(SECTOR_SIZE).max(1) * SECTOR_SIZE);
        let offset = self.layout.checkpoint_offset(usize::from(checkpoint.copy));
        self.disk.submit_read(offset, buf, read_token);
        let completion = loop {
            if let Some(i) = self.reads.iter().position(|c| c.token == read_token) {
                break self.reads.swap_remove(i);
            }
            self.wait()?;
        };
        let buf = completion
            .buf
            .expect("invariant: a read returns its buffer");
        if completion.result.is_err() {
            return Ok(None);
        }
        let bytes = &buf.as_slice()[..size];
        Ok((Checksum::of(bytes) == checkpoint.checksum).then(|| bytes.to_vec()))
    }

    /// Installs a checkpoint fetched from a peer (state transfer) and makes the log follow it.
    /// If the log holds the checkpoint's op with the same checksum, the ops after it stay;
    /// otherwise every op after it is erased and the log is the checkpoint alone. Blocking.
    ///
    /// Order: the checkpoint copy, then the superblock naming it (until that is durable, the
    /// previous checkpoint and log stand untouched), then the erasures (header copies first, as
    /// in a truncation). A crash before the erasures leaves stale entries after the anchor that
    /// do not chain from it; recovery then cuts the log at the anchor and marks its head as
    /// uncertain, which is safe: none of them can be committed, since the committed log holds
    /// the checkpoint's op and they do not follow it.
    pub fn install_checkpoint(
        &mut self,
        header: &Header,
        checksum: Checksum,
        bytes: &[u8],
    ) -> Result<(), JournalError> {
        self.check_poisoned()?;
        self.submit_run();
        while self.round.is_some() || self.superblock_pending() || !self.is_idle() {
            self.wait()?;
        }
        let keep = self
            .header(header.op)
            .is_some_and(|h| h.checksum == header.checksum);
        let next = self.checkpoint_superblock(header, checksum, bytes)?;
        self.start_superblock_update(next);
        while self.superblock_pending() {
            self.wait()?;
        }
        if !keep {
            let stale: Vec<usize> = (0..self.headers.len())
                .filter(|&slot| self.headers[slot].is_some_and(|h| h.op > header.op))
                .collect();
            self.erase_slots(&stale)?;
            self.head = *header;
            self.entries_durable = header.op;
            self.durable = header.op;
            self.flush_target = None;
            self.round_owed = false;
        }
        self.anchor = Some(*header);
        self.op_min = self.op_min.max(header.op.next());
        Ok(())
    }

    /// Erases the entries in `slots`, durably: their header copies are zeroed (and made
    /// durable) before the entries, so a crash in between can only leave an unacknowledged
    /// entry, never a faulty one. Blocking.
    fn erase_slots(&mut self, slots: &[usize]) -> Result<(), JournalError> {
        for &slot in slots {
            self.set_copy(slot, None);
        }
        self.write_dirty_copies();
        self.sync_barrier()?;
        for &slot in slots {
            let offset = self.layout.slot_offset(slot);
            self.disk.submit_write(
                offset,
                AlignedBuf::zeroed(SECTOR_SIZE),
                token(TOKEN_ERASE, 0),
            );
            self.headers[slot] = None;
            self.faulty[slot] = false;
        }
        self.sync_barrier()
    }

    /// Erases every op after `op`, durably. Used by a view change to drop an uncommitted
    /// suffix. Header copies are zeroed (and made durable) before the entries are erased, so a
    /// crash in between can only leave an unacknowledged entry, never a faulty one. Blocking.
    pub fn truncate_after(&mut self, op: Op) -> Result<(), JournalError> {
        self.check_poisoned()?;
        assert!(
            (op >= self.op_min || self.anchor.is_some_and(|a| a.op == op)) && op <= self.head.op,
            "truncation point outside the log"
        );
        // Entries still gathered in a run go out first, so the erasures below come after them.
        self.submit_run();
        while self.round.is_some() || !self.is_idle() {
            self.wait()?;
        }
        let new_head = self.header(op).ok_or(JournalError::Faulty { op })?;
        let slots: Vec<usize> = (op.0 + 1..=self.head.op.0)
            .map(|o| self.layout.slot_of(Op(o)))
            .collect();
        self.erase_slots(&slots)?;
        self.head = new_head;
        self.entries_durable = self.entries_durable.min(op);
        self.durable = self.durable.min(op);
        Ok(())
    }
}

fn sector_of(bytes: &[u8; SECTOR_SIZE]) -> AlignedBuf {
    let mut buf = AlignedBuf::zeroed(SECTOR_SIZE);
    buf.as_mut_slice().copy_from_slice(bytes);
    buf
}

/// Waits until at most `limit` I/Os are in flight, failing on the first error.
fn settle<D: VirtualDisk>(disk: &mut D, limit: usize) -> Result<(), JournalError> {
    let mut out = Vec::new();
    while disk.in_flight() > limit {
        disk.wait(&mut out);
        for completion in out.drain(..) {
            if let Err(cause) = completion.result {
                return Err(JournalError::Poisoned { cause });
            }
        }
    }
    Ok(())
}

fn barrier_blocking<D: VirtualDisk>(disk: &mut D) -> Result<(), JournalError> {
    disk.submit_barrier(token(TOKEN_SYNC, 0));
    settle(disk, 0)
}

/// Reads `(offset, len)` regions, at most [`RECOVERY_READS_MAX`] at a time. A region whose read
/// fails comes back as `None`.
fn read_regions<D: VirtualDisk>(disk: &mut D, regions: &[(u64, usize)]) -> Vec<Option<AlignedBuf>> {
    let mut results: Vec<Option<AlignedBuf>> = (0..regions.len()).map(|_| None).collect();
    let mut out = Vec::new();
    for (batch_start, batch) in regions.chunks(RECOVERY_READS_MAX).enumerate() {
        for (i, &(offset, len)) in batch.iter().enumerate() {
            let index = batch_start * RECOVERY_READS_MAX + i;
            disk.submit_read(
                offset,
                AlignedBuf::zeroed(len),
                token(TOKEN_READ, index as u64),
            );
        }
        while disk.in_flight() > 0 {
            disk.wait(&mut out);
            for completion in out.drain(..) {
                assert_eq!(
                    token_kind(completion.token),
                    TOKEN_READ,
                    "scan needs an idle disk"
                );
                let index = token_value(completion.token) as usize;
                if completion.result.is_ok() {
                    results[index] = completion.buf;
                }
            }
        }
    }
    results
}

/// Reads the superblock, header zone and every slot, and runs the decision table.
fn scan<D: VirtualDisk>(disk: &mut D) -> Result<RecoveryReport, JournalError> {
    let superblock_zone = (SUPERBLOCK_COPIES * SECTOR_SIZE) as u64;
    if disk.size() < superblock_zone {
        return Err(JournalError::DiskTooSmall {
            needed: superblock_zone,
            actual: disk.size(),
        });
    }
    let superblock_regions: Vec<(u64, usize)> = (0..SUPERBLOCK_COPIES)
        .map(|copy| (Layout::superblock_offset(copy), SECTOR_SIZE))
        .collect();
    let sectors = read_regions(disk, &superblock_regions);
    let copies: Vec<Option<Superblock>> = sectors
        .iter()
        .enumerate()
        .map(|(copy, buf)| {
            buf.as_ref()
                .and_then(|b| Superblock::decode(b.as_slice(), copy))
        })
        .collect();
    let Some(superblock) = superblock::select(&copies) else {
        let blank = sectors
            .iter()
            .flatten()
            .all(|b| b.as_slice().iter().all(|&x| x == 0));
        return Err(if blank {
            JournalError::NotFormatted
        } else {
            JournalError::SuperblockCorrupt
        });
    };
    let layout = Layout::new(superblock.config);
    if disk.size() < layout.total_size() {
        return Err(JournalError::DiskTooSmall {
            needed: layout.total_size(),
            actual: disk.size(),
        });
    }
    let (cluster, shard) = (superblock.cluster, superblock.shard);
    let slot_count = layout.config.slot_count as usize;
    let header_regions: Vec<(u64, usize)> = (0..layout.header_sector_count())
        .map(|sector| (layout.header_sector_offset(sector), SECTOR_SIZE))
        .collect();
    let header_sectors = read_regions(disk, &header_regions);
    let copy_states: Vec<CopyState> = (0..slot_count)
        .map(|slot| {
            let Some(sector) = &header_sectors[slot / HEADERS_PER_SECTOR] else {
                return CopyState::Corrupt;
            };
            let at = (slot % HEADERS_PER_SECTOR) * HEADER_SIZE;
            let bytes = &sector.as_slice()[at..at + HEADER_SIZE];
            recovery::copy_state(bytes, slot, &layout, cluster, shard)
        })
        .collect();
    let first_regions: Vec<(u64, usize)> = (0..slot_count)
        .map(|slot| (layout.slot_offset(slot), SECTOR_SIZE))
        .collect();
    let mut firsts = read_regions(disk, &first_regions);
    // Entries longer than a sector need a second, full read.
    let long: Vec<usize> = (0..slot_count)
        .filter(
            |&slot| match firsts[slot].as_ref().map(|b| Header::decode(b.as_slice())) {
                Some(HeaderState::Valid(h)) => {
                    h.padded_size() > SECTOR_SIZE && h.size as usize <= layout.slot_size()
                }
                _ => false,
            },
        )
        .collect();
    let long_regions: Vec<(u64, usize)> = long
        .iter()
        .map(|&slot| {
            let bytes = firsts[slot]
                .as_ref()
                .expect("invariant: filtered on a read sector");
            let HeaderState::Valid(h) = Header::decode(bytes.as_slice()) else {
                unreachable!("filtered on a valid header")
            };
            (layout.slot_offset(slot), h.padded_size())
        })
        .collect();
    for (slot, full) in long.iter().zip(read_regions(disk, &long_regions)) {
        firsts[*slot] = full;
    }
    let findings: Vec<SlotFinding> = (0..slot_count)
        .map(|slot| SlotFinding {
            copy: copy_states[slot],
            entry: match &firsts[slot] {
                Some(buf) => recovery::entry_state(buf.as_slice(), slot, &layout, cluster, shard),
                None => recovery::EntryState::Corrupt,
            },
        })
        .collect();
    let anchor = superblock.checkpoint.map(|c| c.header);
    let analysis = recovery::analyze_from(&layout, &findings, anchor);
    Ok(RecoveryReport {
        superblock,
        analysis,
        findings,
        superblock_copies: copies,
    })
}
