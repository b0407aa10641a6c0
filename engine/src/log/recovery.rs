//! Recovery's decision table and the analysis of a whole ring.
//!
//! Each slot has two witnesses: the redundant header copy in the header zone and the entry in
//! the slot. The journal writes a header copy only after the entry's barrier has completed, and
//! acknowledges an op only after its header copy's barrier has completed. So:
//!
//! - a valid header copy vouches that its entry was once durable (and may have been
//!   acknowledged): if the entry is now missing or damaged, that is corruption, and the slot is
//!   *faulty*, to be repaired from a peer, never dropped;
//! - an entry whose header copy was never written was never acknowledged: if it is torn it is
//!   truncated, and if it is intact it is kept and its header copy rewritten.
//!
//! [`TABLE`] lists every case. A test enumerates every combination of witness states and checks
//! that exactly one row matches each.

use crate::checksum::Checksum;
use crate::ids::{ClusterId, Op, ShardId};
use crate::log::format::{Header, HeaderState, Layout, Operation};

/// The state of a slot's redundant header copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyState {
    Zero,
    /// Bad checksum, or a valid header that belongs to another slot, cluster or shard (a
    /// misdirected write).
    Corrupt,
    Valid(Header),
}

/// The state of the entry stored in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// The slot's first sector is all zeros.
    Zero,
    /// The entry's header is unreadable, or belongs to another slot, cluster or shard.
    Corrupt,
    /// The header is valid but the body is not: a torn write, or a rotten body.
    HeaderOnly(Header),
    Valid(Header),
}

/// How the two headers relate when both are readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Relation {
    /// Not both readable.
    NotComparable,
    /// Identical checksums.
    Same,
    /// The entry is newer (higher op, or the same op from a higher view): it was written and the
    /// crash came before its header copy.
    EntryNewer,
    /// The header copy is newer: the entry it vouches for is gone.
    EntryOlder,
    /// Same op and view, different checksum: impossible without corruption.
    Conflict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyKind {
    Zero,
    Corrupt,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EntryKind {
    Zero,
    Corrupt,
    HeaderOnly,
    Valid,
}

/// What recovery does with a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing was ever written here.
    Empty,
    /// Both witnesses agree.
    Ok,
    /// The entry is intact and newer than its header copy: keep it and rewrite the copy.
    KeepEntry,
    /// A write that was never acknowledged was torn: erase it.
    Truncate,
    /// An entry that may have been acknowledged is missing or damaged: repair from a peer.
    FaultyCopyOp,
    /// As `FaultyCopyOp`, but the op is known only from the entry's own header.
    FaultyEntryOp,
    /// Damaged beyond telling which op it held: repair from a peer.
    FaultyUnknownOp,
}

/// One row of the decision table.
#[derive(Clone, Copy, Debug)]
pub struct Row {
    pub copy: CopyKind,
    pub entry: EntryKind,
    pub relation: Relation,
    pub decision: Decision,
    pub why: &'static str,
}

const fn row(
    copy: CopyKind,
    entry: EntryKind,
    relation: Relation,
    decision: Decision,
    why: &'static str,
) -> Row {
    Row {
        copy,
        entry,
        relation,
        decision,
        why,
    }
}

use CopyKind as C;
use Decision as D;
use EntryKind as E;
use Relation as R;

/// The decision table. `docs/internals/log-format.md` reproduces it with the reasoning.
pub const TABLE: [Row; 18] = [
    row(
        C::Zero,
        E::Zero,
        R::NotComparable,
        D::Empty,
        "never written",
    ),
    row(
        C::Zero,
        E::Corrupt,
        R::NotComparable,
        D::Truncate,
        "torn write, copy never written",
    ),
    row(
        C::Zero,
        E::HeaderOnly,
        R::NotComparable,
        D::Truncate,
        "torn body, copy never written",
    ),
    row(
        C::Zero,
        E::Valid,
        R::NotComparable,
        D::KeepEntry,
        "entry durable, copy not yet",
    ),
    row(
        C::Corrupt,
        E::Zero,
        R::NotComparable,
        D::FaultyUnknownOp,
        "both witnesses lost",
    ),
    row(
        C::Corrupt,
        E::Corrupt,
        R::NotComparable,
        D::FaultyUnknownOp,
        "both witnesses lost",
    ),
    row(
        C::Corrupt,
        E::HeaderOnly,
        R::NotComparable,
        D::FaultyEntryOp,
        "body bad, copy bad",
    ),
    row(
        C::Corrupt,
        E::Valid,
        R::NotComparable,
        D::KeepEntry,
        "entry self-verifies",
    ),
    row(
        C::Valid,
        E::Zero,
        R::NotComparable,
        D::FaultyCopyOp,
        "vouched entry lost",
    ),
    row(
        C::Valid,
        E::Corrupt,
        R::NotComparable,
        D::FaultyCopyOp,
        "vouched entry corrupt",
    ),
    row(
        C::Valid,
        E::HeaderOnly,
        R::Same,
        D::FaultyCopyOp,
        "vouched entry's body corrupt",
    ),
    row(
        C::Valid,
        E::HeaderOnly,
        R::EntryNewer,
        D::Truncate,
        "newer write torn before its copy",
    ),
    row(
        C::Valid,
        E::HeaderOnly,
        R::EntryOlder,
        D::FaultyCopyOp,
        "vouched entry lost",
    ),
    row(
        C::Valid,
        E::HeaderOnly,
        R::Conflict,
        D::FaultyCopyOp,
        "witnesses conflict",
    ),
    row(C::Valid, E::Valid, R::Same, D::Ok, "witnesses agree"),
    row(
        C::Valid,
        E::Valid,
        R::EntryNewer,
        D::KeepEntry,
        "entry durable, copy not yet",
    ),
    row(
        C::Valid,
        E::Valid,
        R::EntryOlder,
        D::FaultyCopyOp,
        "vouched entry lost (misdirected)",
    ),
    row(
        C::Valid,
        E::Valid,
        R::Conflict,
        D::FaultyCopyOp,
        "witnesses conflict",
    ),
];

fn kinds(copy: &CopyState, entry: &EntryState) -> (CopyKind, EntryKind, Relation) {
    let copy_kind = match copy {
        CopyState::Zero => C::Zero,
        CopyState::Corrupt => C::Corrupt,
        CopyState::Valid(_) => C::Valid,
    };
    let entry_kind = match entry {
        EntryState::Zero => E::Zero,
        EntryState::Corrupt => E::Corrupt,
        EntryState::HeaderOnly(_) => E::HeaderOnly,
        EntryState::Valid(_) => E::Valid,
    };
    let relation = match (copy, entry) {
        (CopyState::Valid(c), EntryState::HeaderOnly(e) | EntryState::Valid(e)) => relate(c, e),
        _ => R::NotComparable,
    };
    (copy_kind, entry_kind, relation)
}

fn relate(copy: &Header, entry: &Header) -> Relation {
    if copy.checksum == entry.checksum {
        R::Same
    } else if (entry.op, entry.view) > (copy.op, copy.view) {
        R::EntryNewer
    } else if (entry.op, entry.view) < (copy.op, copy.view) {
        R::EntryOlder
    } else {
        R::Conflict
    }
}

/// The rows matching a combination of witness states; exactly one for every reachable one.
#[must_use]
pub fn matching_rows(copy: CopyKind, entry: EntryKind, relation: Relation) -> Vec<usize> {
    TABLE
        .iter()
        .enumerate()
        .filter(|(_, r)| r.copy == copy && r.entry == entry && r.relation == relation)
        .map(|(i, _)| i)
        .collect()
}

/// The index in [`TABLE`] of the row for one slot's witnesses.
#[must_use]
pub fn decide(copy: &CopyState, entry: &EntryState) -> usize {
    let (c, e, r) = kinds(copy, entry);
    let rows = matching_rows(c, e, r);
    assert_eq!(
        rows.len(),
        1,
        "invariant: the decision table covers ({c:?}, {e:?}, {r:?}) once"
    );
    rows[0]
}

/// Classifies a header-copy slot for `slot` of a ring with `layout`.
#[must_use]
pub fn copy_state(
    bytes: &[u8],
    slot: usize,
    layout: &Layout,
    cluster: ClusterId,
    shard: ShardId,
) -> CopyState {
    match Header::decode(bytes) {
        HeaderState::Zero => CopyState::Zero,
        HeaderState::Valid(h) if belongs(&h, slot, layout, cluster, shard) => CopyState::Valid(h),
        HeaderState::Valid(_) | HeaderState::Corrupt => CopyState::Corrupt,
    }
}

/// Classifies an entry read from `slot`: `bytes` holds at least its first sector, and its
/// whole padded size if the header is valid and `bytes` is long enough.
#[must_use]
pub fn entry_state(
    bytes: &[u8],
    slot: usize,
    layout: &Layout,
    cluster: ClusterId,
    shard: ShardId,
) -> EntryState {
    let header = match Header::decode(bytes) {
        HeaderState::Zero => return EntryState::Zero,
        HeaderState::Corrupt => return EntryState::Corrupt,
        HeaderState::Valid(h) => h,
    };
    if !belongs(&header, slot, layout, cluster, shard) {
        return EntryState::Corrupt;
    }
    match bytes.get(crate::constants::HEADER_SIZE..header.size as usize) {
        Some(body) if Checksum::of_body(body) == header.checksum_body => EntryState::Valid(header),
        _ => EntryState::HeaderOnly(header),
    }
}

fn belongs(h: &Header, slot: usize, layout: &Layout, cluster: ClusterId, shard: ShardId) -> bool {
    layout.slot_of(h.op) == slot
        && h.cluster == cluster
        && h.shard == shard
        && h.size as usize <= layout.slot_size()
        && (h.op != Op(0) || h.operation == Operation::ROOT)
}

/// One slot as recovery found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotFinding {
    pub copy: CopyState,
    pub entry: EntryState,
}

/// A slot that holds, or should hold, an op this replica no longer has intact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faulty {
    pub slot: usize,
    /// The op, if either witness (or its position in the ring) names it.
    pub op: Option<Op>,
    /// The header the op must have, if a witness still shows it: a repair must match it.
    pub expected: Option<Header>,
}

/// The outcome of analysing a whole ring.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Analysis {
    /// The newest op the log holds (intact or faulty), or `None` if it holds nothing.
    pub head: Option<Op>,
    /// The oldest op still in the ring.
    pub op_min: Op,
    /// Per slot: the header of the op the slot holds after recovery, intact or faulty.
    pub headers: Vec<Option<Header>>,
    /// Ops to repair from a peer.
    pub faulty: Vec<Faulty>,
    /// Slots whose unacknowledged writes are erased.
    pub truncated: Vec<usize>,
    /// Slots whose header copy must be rewritten from the intact entry.
    pub copy_repairs: Vec<usize>,
    /// The first op whose parent checksum does not match its predecessor, if the chain
    /// breaks among entries that may have been acknowledged.
    pub chain_break: Option<Op>,
    /// Table row per slot, for diagnostics and tests.
    pub rows: Vec<usize>,
    /// If set, ops up to this one were dropped from the start of the log: the oldest slots were
    /// being reused by unacknowledged writes and are damaged.
    pub dropped_prefix: Option<Op>,
}

impl Analysis {
    /// True if the log may lack ops that were acknowledged from it: a slot lost both witnesses
    /// (its op is unknown, and may have been the newest), or the chain breaks among entries that
    /// may have been acknowledged. A replica must not vote on such a log; it waits for a view's
    /// log from its peers instead.
    #[must_use]
    pub fn head_uncertain(&self) -> bool {
        self.chain_break.is_some()
            || self.faulty.iter().any(|f| f.expected.is_none())
            || self
                .rows
                .iter()
                .any(|&row| TABLE[row].decision == Decision::FaultyUnknownOp)
    }
}

/// Analyses every slot of a ring that has no checkpoint: the log may start anywhere in it.
#[must_use]
pub fn analyze(layout: &Layout, findings: &[SlotFinding]) -> Analysis {
    analyze_from(layout, findings, None)
}

/// Analyses every slot of a ring whose log follows `anchor`, the header of the op of the
/// durable checkpoint (or, without one, any op the ring holds). With an anchor, ops up to it are
/// not part of the log whatever their slots hold (the checkpoint replaces them), the log starts
/// right after it, and its first op must chain from it.
#[must_use]
pub fn analyze_from(layout: &Layout, findings: &[SlotFinding], anchor: Option<Header>) -> Analysis {
    assert_eq!(findings.len(), layout.config.slot_count as usize);
    let mut analysis = Analysis::default();
    let mut faulty = vec![false; findings.len()];
    let mut intact = vec![false; findings.len()];
    let mut vouched_max: Option<Op> = None;
    for (slot, finding) in findings.iter().enumerate() {
        let row_index = decide(&finding.copy, &finding.entry);
        let row = &TABLE[row_index];
        analysis.rows.push(row_index);
        if let CopyState::Valid(c) = finding.copy {
            vouched_max = vouched_max.max(Some(c.op));
        }
        let header = match (row.decision, finding.copy, finding.entry) {
            (D::Ok | D::KeepEntry, _, EntryState::Valid(e)) => {
                intact[slot] = true;
                if row.decision == D::KeepEntry {
                    analysis.copy_repairs.push(slot);
                }
                Some(e)
            }
            (D::FaultyCopyOp, CopyState::Valid(c), _) => Some(c),
            (D::FaultyEntryOp, _, EntryState::HeaderOnly(e)) => Some(e),
            (D::Truncate, _, _) => {
                analysis.truncated.push(slot);
                None
            }
            _ => None,
        };
        faulty[slot] = matches!(
            row.decision,
            D::FaultyCopyOp | D::FaultyEntryOp | D::FaultyUnknownOp
        );
        analysis.headers.push(header);
    }
    let Some(op_max) = analysis.headers.iter().flatten().map(|h| h.op).max() else {
        analysis.faulty = unknown_faulty(&faulty);
        if let Some(anchor) = anchor {
            analysis.head = Some(anchor.op);
            analysis.op_min = anchor.op.next();
        }
        return analysis;
    };
    let slot_count = u64::from(layout.config.slot_count);
    let mut op_min = Op(op_max.0.saturating_sub(slot_count - 1));
    let mut head = op_max;
    let mut previous: Option<Header> = None;
    if let Some(anchor) = anchor {
        op_min = op_min.max(anchor.op.next());
        head = head.max(anchor.op);
        previous = Some(anchor);
    }
    for op in op_min.0..=op_max.0 {
        let op = Op(op);
        let slot = layout.slot_of(op);
        let slot_header = analysis.headers[slot];
        let held = slot_header.filter(|h| h.op == op);
        // A slot damaged beyond naming its op may hold this one.
        let unknown_here = faulty[slot] && slot_header.is_none();
        if anchor.is_none() && op == op_min && held.is_none() && !unknown_here && !faulty[slot] {
            // The oldest ring positions may be empty: never written, or freed by a truncation
            // after the op that last used them was overwritten.
            op_min = op.next();
            continue;
        }
        let may_be_acknowledged = vouched_max.is_some_and(|v| op <= v);
        if held.is_none() && !unknown_here && !may_be_acknowledged {
            // Nothing at or after this op was acknowledged: cut the log here.
            head = Op(op.0.saturating_sub(1));
            truncate_from(layout, &mut analysis, op, op_max);
            break;
        }
        if held.is_none() {
            // A later op may have been acknowledged, so this one was durable once: repair it.
            faulty[slot] = true;
            analysis.headers[slot] = None;
        }
        if let (Some(prev), Some(h)) = (previous, held)
            && intact[slot]
            && h.parent != prev.checksum
        {
            if may_be_acknowledged {
                analysis.chain_break.get_or_insert(op);
            } else {
                head = Op(op.0 - 1);
                truncate_from(layout, &mut analysis, op, op_max);
                break;
            }
        }
        previous = held.filter(|_| intact[slot]);
    }
    analysis.op_min = op_min;
    analysis.head = match anchor {
        // The log may hold nothing after its checkpoint: its head is then the anchor.
        Some(anchor) => Some(head.max(anchor.op)),
        None => (head >= op_min).then_some(head),
    };
    analysis.faulty = faulty_in_window(layout, &analysis, &faulty, op_min, head);
    if let Some(vouched_max) = vouched_max {
        drop_overwritten_prefix(layout, &mut analysis, vouched_max);
    }
    analysis
}

/// Unacknowledged writes in flight at the crash may have overwritten, and torn, the oldest ops
/// of the ring: their slots were being reused. The journal appends at most `in_flight_max`
/// ops beyond the acknowledgement point, which is at most `vouched_max` (an acknowledged op has
/// a durable header copy), so only ops up to `vouched_max + in_flight_max - slot_count` are at
/// risk. Damage there is expected, not corruption, and the journal never promises those ops
/// (callers checkpoint before relying on them). So a faulty op in that zone moves the start of
/// the log past it instead of being reported for repair. The bound must not use the highest
/// op on disk: unacknowledged entries past the acknowledgement point would widen the zone over
/// acknowledged ops.
fn drop_overwritten_prefix(layout: &Layout, analysis: &mut Analysis, vouched_max: Op) {
    let slot_count = u64::from(layout.config.slot_count);
    let Some(risk_end) = (vouched_max.0 + layout.in_flight_max()).checked_sub(slot_count) else {
        return;
    };
    let damaged = analysis
        .faulty
        .iter()
        .filter_map(|f| f.op)
        .filter(|op| op.0 <= risk_end)
        .max();
    if let Some(damaged) = damaged {
        analysis.op_min = analysis.op_min.max(damaged.next());
        let op_min = analysis.op_min;
        analysis
            .faulty
            .retain(|f| f.op.is_none_or(|op| op >= op_min));
        analysis.chain_break = analysis.chain_break.filter(|&op| op > op_min);
        analysis.dropped_prefix = Some(damaged);
    }
}

/// The faulty slots whose op lies in the log's window `op_min..=head`.
fn faulty_in_window(
    layout: &Layout,
    analysis: &Analysis,
    faulty: &[bool],
    op_min: Op,
    head: Op,
) -> Vec<Faulty> {
    faulty
        .iter()
        .enumerate()
        .filter(|&(_, &f)| f)
        .map(|(slot, _)| {
            let expected = analysis.headers[slot];
            let op = expected
                .map(|h| h.op)
                .or_else(|| ring_op(layout, slot, op_min, head));
            Faulty { slot, op, expected }
        })
        // A damaged slot that no op of the live window maps to holds nothing the log needs
        // (say, a flipped bit in a never-used header copy): it is not faulty.
        .filter(|f| f.op.is_some_and(|op| op >= op_min && op <= head))
        .collect()
}

fn unknown_faulty(faulty: &[bool]) -> Vec<Faulty> {
    let slots = faulty.iter().enumerate().filter(|&(_, &f)| f);
    slots
        .map(|(slot, _)| Faulty {
            slot,
            op: None,
            expected: None,
        })
        .collect()
}

/// The op that `slot` holds in a ring whose ops run from `op_min` to `head`.
fn ring_op(layout: &Layout, slot: usize, op_min: Op, head: Op) -> Option<Op> {
    let slot_count = u64::from(layout.config.slot_count);
    let base = op_min.0 - op_min.0 % slot_count;
    [base + slot as u64, base + slot as u64 + slot_count]
        .into_iter()
        .map(Op)
        .find(|op| *op >= op_min && *op <= head)
}

fn truncate_from(layout: &Layout, analysis: &mut Analysis, from: Op, to: Op) {
    for op in from.0..=to.0 {
        let slot = layout.slot_of(Op(op));
        if analysis.headers[slot].is_some_and(|h| h.op.0 == op) {
            analysis.headers[slot] = None;
            analysis.copy_repairs.retain(|&s| s != slot);
            if !analysis.truncated.contains(&slot) {
                analysis.truncated.push(slot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The table is exhaustive and unambiguous: every combination of witness states that can
    // occur matches exactly one row, and every combination that cannot occur (a relation
    // between witnesses that are not both readable, or none between ones that are) matches no
    // row.
    #[test]
    fn decision_table_matches_each_case_exactly_once() {
        let copies = [C::Zero, C::Corrupt, C::Valid];
        let entries = [E::Zero, E::Corrupt, E::HeaderOnly, E::Valid];
        let relations = [
            R::NotComparable,
            R::Same,
            R::EntryNewer,
            R::EntryOlder,
            R::Conflict,
        ];
        let mut reachable = 0;
        for copy in copies {
            for entry in entries {
                for relation in relations {
                    let comparable = copy == C::Valid && matches!(entry, E::HeaderOnly | E::Valid);
                    let coherent = comparable == (relation != R::NotComparable);
                    let rows = matching_rows(copy, entry, relation);
                    if coherent {
                        reachable += 1;
                        assert_eq!(
                            rows.len(),
                            1,
                            "({copy:?}, {entry:?}, {relation:?}): {rows:?}"
                        );
                    } else {
                        assert!(rows.is_empty(), "unreachable case matched: {rows:?}");
                    }
                }
            }
        }
        assert_eq!(reachable, TABLE.len());
    }
}
