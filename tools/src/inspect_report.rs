//! The human-readable report `chronon inspect` prints for one shard file, and the problems it
//! raises. Pure formatting of what `inspect` read, so the layout is stable and unit-tested.

use std::fmt::Display;

use chronon_engine::Op;
use chronon_engine::log::recovery::{CopyState, Decision, EntryState, SlotFinding, TABLE};
use chronon_engine::log::{JournalError, RecoveryReport, Superblock};

use crate::data_dir::{self, ShardFile};
use crate::inspect::Inspection;

/// Width of the label column; values line up after it.
const LABEL_WIDTH: usize = 16;

/// Slots listed per category. A badly damaged file could have a million; the count is always
/// shown, and the first few are enough to tell what happened.
const LISTED_SLOTS_MAX: usize = 32;

/// Faulty ops named in the one-line error; the report lists more.
const ERROR_OPS_MAX: usize = 8;

/// One slot in a list: the slot, the op it holds or should hold if known, and why it is listed.
type SlotLine = (usize, Option<Op>, &'static str);

pub fn print(file: &ShardFile, inspection: &Inspection) {
    for line in lines(file, inspection) {
        say!("{line}");
    }
}

/// The report for one file, line by line.
#[must_use]
pub fn lines(file: &ShardFile, inspection: &Inspection) -> Vec<String> {
    let mut out = vec![format!(
        "{} ({} bytes, read with the {} disk)",
        data_dir::shard_file_name(file.shard),
        inspection.size,
        inspection.disk_kind
    )];
    match &inspection.result {
        Ok(report) => report_lines(report, &inspection.copies, &mut out),
        Err(error) => {
            out.push(field("copies", copies_text(&inspection.copies, None)));
            out.push(field(
                "status",
                format!("{} (see the error below)", error_summary(error)),
            ));
            return out;
        }
    }
    let status = if problems(file, inspection).is_empty() {
        "clean"
    } else {
        "PROBLEMS (see the errors below)"
    };
    out.push(field("status", status));
    out
}

/// The report for a file that could not be read at all; the error says why.
#[must_use]
pub fn unusable_lines(file: &ShardFile) -> Vec<String> {
    vec![
        data_dir::shard_file_name(file.shard),
        field("status", "unusable (see the error below)"),
    ]
}

fn report_lines(report: &RecoveryReport, copies: &[Option<Superblock>], out: &mut Vec<String>) {
    let sb = &report.superblock;
    out.push(field(
        "superblock",
        format!(
            "cluster {}, shard {}, replica {} of {}, sequence {}",
            sb.cluster, sb.shard, sb.replica, sb.replica_count, sb.sequence
        ),
    ));
    let recovering = if sb.recovering_head {
        " (recovering head: the log may lack acknowledged ops; the replica waits for a view's log from its peers)"
    } else {
        ""
    };
    out.push(field(
        "view",
        format!(
            "view {}, log view {}, commit {}{recovering}",
            sb.view, sb.log_view, sb.commit
        ),
    ));
    out.push(field("copies", copies_text(copies, Some(sb))));
    out.push(field(
        "ring",
        format!(
            "{} slots x {} bytes",
            sb.config.slot_count, sb.config.slot_size
        ),
    ));
    out.push(field(
        "checkpoint",
        match sb.checkpoint {
            Some(c) => format!(
                "op {}, copy {}, {} of {} bytes",
                c.header.op, c.copy, c.size, sb.config.checkpoint_size
            ),
            None => format!("none yet ({} bytes per copy)", sb.config.checkpoint_size),
        },
    ));
    let analysis = &report.analysis;
    let Some(head) = analysis.head else {
        out.push(field(
            "ops",
            "none: the log holds no entry, not even its root",
        ));
        return;
    };
    let count = head.0 - analysis.op_min.0 + 1;
    let noun = if count == 1 { "op" } else { "ops" };
    out.push(field(
        "ops",
        format!("{}..={head} ({count} {noun})", analysis.op_min),
    ));
    out.push(field("chain", chain_text(report, head)));
    out.push(field("dropped prefix", dropped_text(report)));
    list(
        out,
        "faulty",
        "to be repaired from a peer",
        &faulty_slots(report),
    );
    list(
        out,
        "torn",
        "unacknowledged writes recovery will erase",
        &torn_slots(report),
    );
    list(
        out,
        "copy rewrites",
        "header copies recovery will rewrite",
        &copy_rewrites(report),
    );
}

fn field(label: &str, value: impl Display) -> String {
    format!("  {label:<LABEL_WIDTH$}{value}")
}

fn list(out: &mut Vec<String>, label: &str, meaning: &str, slots: &[SlotLine]) {
    if slots.is_empty() {
        out.push(field(label, "none"));
        return;
    }
    out.push(field(label, format!("{} slot(s), {meaning}:", slots.len())));
    let indent = 2 + LABEL_WIDTH + 2;
    for &(slot, op, why) in slots.iter().take(LISTED_SLOTS_MAX) {
        out.push(format!(
            "{:indent$}slot {slot}, op {}: {why}",
            "",
            op_text(op)
        ));
    }
    if slots.len() > LISTED_SLOTS_MAX {
        out.push(format!(
            "{:indent$}... and {} more",
            "",
            slots.len() - LISTED_SLOTS_MAX
        ));
    }
}

fn op_text(op: Option<Op>) -> String {
    op.map_or_else(|| "unknown".to_owned(), |op| op.to_string())
}

/// Each superblock copy against the one recovery selected: a copy that is older, different
/// or invalid was outvoted (a crash during an update leaves one half old; rot leaves one bad).
fn copies_text(copies: &[Option<Superblock>], selected: Option<&Superblock>) -> String {
    if selected.is_some() && copies.iter().all(|copy| copy.as_ref() == selected) {
        return format!("all {} current", copies.len());
    }
    if copies.iter().all(Option::is_none) {
        return format!("all {} invalid", copies.len());
    }
    let states: Vec<String> = copies
        .iter()
        .enumerate()
        .map(|(i, copy)| match (copy, selected) {
            (None, _) => format!("{i} invalid"),
            (Some(copy), Some(selected)) if copy == selected => format!("{i} current"),
            (Some(copy), Some(selected)) if copy.sequence < selected.sequence => {
                format!("{i} older (sequence {})", copy.sequence)
            }
            (Some(copy), _) => format!("{i} sequence {} (no quorum)", copy.sequence),
        })
        .collect();
    states.join(", ")
}

fn chain_text(report: &RecoveryReport, head: Op) -> String {
    let analysis = &report.analysis;
    if let Some(op) = analysis.chain_break {
        return format!(
            "BROKEN at op {op}: its parent checksum is not op {}'s checksum",
            op.0 - 1
        );
    }
    if analysis.faulty.is_empty() {
        format!("verified over ops {}..={head}", analysis.op_min)
    } else {
        "verified between the faulty ops (it cannot be checked across a damaged entry)".to_owned()
    }
}

/// Recovery drops the oldest ops, up to a damaged one, when the damage lies where writes in
/// flight at the crash may have been reusing slots: expected after a crash, so not an error,
/// but shown because it shortens the log.
fn dropped_text(report: &RecoveryReport) -> String {
    match report.analysis.dropped_prefix {
        None => "none".to_owned(),
        Some(op) => format!(
            "ops up to {op}: damaged where unacknowledged writes may have been reusing slots"
        ),
    }
}

fn is_faulty_row(decision: Decision) -> bool {
    matches!(
        decision,
        Decision::FaultyCopyOp | Decision::FaultyEntryOp | Decision::FaultyUnknownOp
    )
}

fn faulty_slots(report: &RecoveryReport) -> Vec<SlotLine> {
    let analysis = &report.analysis;
    let lines = analysis.faulty.iter().map(|fault| {
        let row = &TABLE[analysis.rows[fault.slot]];
        // The ring analysis also faults a slot whose own witnesses look unwritten or torn when a
        // later op may have been acknowledged: the op was durable once, so it must be repaired.
        let why = if is_faulty_row(row.decision) {
            row.why
        } else {
            "missing, though a later op may have been acknowledged"
        };
        (fault.slot, fault.op, why)
    });
    lines.collect()
}

fn torn_slots(report: &RecoveryReport) -> Vec<SlotLine> {
    let analysis = &report.analysis;
    let mut slots: Vec<SlotLine> = analysis
        .truncated
        .iter()
        .map(|&slot| {
            let row = &TABLE[analysis.rows[slot]];
            let why = if row.decision == Decision::Truncate {
                row.why
            } else {
                "intact, but beyond the acknowledged end of the log"
            };
            (slot, entry_op(&report.findings[slot]), why)
        })
        .collect();
    slots.sort_unstable_by_key(|line| line.0);
    slots
}

/// The header copies recovery rewrites: those behind an intact entry, corrupt ones it can
/// rebuild, and those of truncated entries, which it zeroes. This mirrors
/// `Journal::repair_after_recovery`, which does not expose its plan.
fn copy_rewrites(report: &RecoveryReport) -> Vec<SlotLine> {
    let analysis = &report.analysis;
    let mut slots = Vec::new();
    for (slot, finding) in report.findings.iter().enumerate() {
        let op = analysis.headers[slot].map(|header| header.op);
        let why = if analysis.copy_repairs.contains(&slot) {
            match finding.copy {
                CopyState::Zero => "copy never written; the entry is durable",
                CopyState::Corrupt => "copy corrupt; rebuilt from the intact entry",
                CopyState::Valid(_) => "copy older than the durable entry",
            }
        } else if analysis.truncated.contains(&slot) && finding.copy != CopyState::Zero {
            "copy zeroed with its truncated entry"
        } else if finding.copy == CopyState::Corrupt && op.is_some() {
            "copy corrupt; rebuilt from the entry's header"
        } else {
            continue;
        };
        slots.push((slot, op.or_else(|| entry_op(finding)), why));
    }
    slots
}

fn entry_op(finding: &SlotFinding) -> Option<Op> {
    match finding.entry {
        EntryState::Valid(header) | EntryState::HeaderOnly(header) => Some(header.op),
        EntryState::Zero | EntryState::Corrupt => match finding.copy {
            CopyState::Valid(header) => Some(header.op),
            CopyState::Zero | CopyState::Corrupt => None,
        },
    }
}

fn error_summary(error: &JournalError) -> &'static str {
    match error {
        JournalError::NotFormatted => "not formatted",
        JournalError::SuperblockCorrupt => "no superblock quorum",
        JournalError::DiskTooSmall { .. } => "smaller than its superblock says",
        _ => "unreadable",
    }
}

/// The problems of one file, one line each, naming the file, the op and what to do. Empty
/// when the file is clean: torn unacknowledged writes are a normal result of a crash.
#[must_use]
pub fn problems(file: &ShardFile, inspection: &Inspection) -> Vec<String> {
    let path = file.path.display();
    let report = match &inspection.result {
        Ok(report) => report,
        Err(error) => return vec![format!("{path}: {error}")],
    };
    let mut problems = Vec::new();
    let shard = report.superblock.shard;
    if shard != file.shard {
        problems.push(format!(
            "{path}: the file name says shard {} but its superblock says shard {shard}: it was \
             renamed or copied from another shard. Rename it to {}, or reformat this replica",
            file.shard,
            data_dir::shard_file_name(shard)
        ));
    }
    let analysis = &report.analysis;
    if analysis.head.is_none() {
        problems.push(format!(
            "{path}: the log holds no entry, not even its root: reformat this replica"
        ));
    }
    if !analysis.faulty.is_empty() {
        problems.push(faulty_problem(&path, report));
    }
    if let Some(op) = analysis.chain_break {
        problems.push(format!(
            "{path}: the hash chain breaks at op {op}: it does not follow op {}, so the log mixes \
             two histories (a lost or misdirected write). Reformat this replica and let it catch \
             up from its peers",
            op.0 - 1
        ));
    }
    problems
}

fn faulty_problem(path: &impl Display, report: &RecoveryReport) -> String {
    let faulty = &report.analysis.faulty;
    let mut ops: Vec<String> = faulty
        .iter()
        .take(ERROR_OPS_MAX)
        .map(|fault| op_text(fault.op))
        .collect();
    if faulty.len() > ERROR_OPS_MAX {
        ops.push(format!("... ({} in all)", faulty.len()));
    }
    let (noun, verb) = if faulty.len() == 1 {
        ("op", "is")
    } else {
        ("ops", "are")
    };
    format!(
        "{path}: {noun} {} {verb} faulty: an entry this replica may have acknowledged is damaged \
         or missing. Start the replica in its cluster so it repairs the entry from a peer, or \
         reformat this replica and let it catch up from its peers",
        ops.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use chronon_engine::log::LogConfig;
    use chronon_engine::{ClusterId, CommitIndex, ReplicaIndex, ShardId, View};

    use super::*;

    fn superblock(sequence: u64) -> Superblock {
        Superblock {
            sequence,
            cluster: ClusterId(1),
            shard: ShardId(0),
            replica: ReplicaIndex(0),
            replica_count: 3,
            view: View(sequence),
            log_view: View(sequence),
            commit: CommitIndex(Some(Op(0))),
            recovering_head: false,
            config: LogConfig {
                slot_count: 16,
                slot_size: 8192,
                checkpoint_size: 64 * 1024,
            },
            checkpoint: None,
        }
    }

    // The copies line names each copy recovery outvoted and why, so a torn superblock update
    // (one half older) reads differently from rot (one copy invalid).
    #[test]
    fn copies_text_names_outvoted_copies() {
        let (new, old) = (Some(superblock(5)), Some(superblock(4)));
        let selected = superblock(5);
        assert_eq!(
            copies_text(&[new, new, new, new], Some(&selected)),
            "all 4 current"
        );
        assert_eq!(
            copies_text(&[new, new, old, old], Some(&selected)),
            "0 current, 1 current, 2 older (sequence 4), 3 older (sequence 4)"
        );
        assert_eq!(
            copies_text(&[new, None, new, new], Some(&selected)),
            "0 current, 1 invalid, 2 current, 3 current"
        );
        assert_eq!(
            copies_text(&[None, None, None, None], None),
            "all 4 invalid"
        );
        assert_eq!(
            copies_text(&[new, None, None, old], None),
            "0 sequence 5 (no quorum), 1 invalid, 2 invalid, 3 sequence 4 (no quorum)"
        );
    }
}
