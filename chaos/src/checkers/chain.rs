//! Hash chains are valid: in every replica's in-memory log each op's parent is its
//! predecessor's checksum, the committed prefix matches the cluster's, and the journal on its
//! simulated disk recovers clean with an unbroken chain.

use chronon_engine::app::kv::KvStore;
use chronon_engine::ids::Op;
use chronon_engine::log::RecoveryReport;
use chronon_engine::vsr::Replica;

use super::prefix::PrefixChecker;

pub fn check_replica(
    index: u8,
    replica: &Replica<KvStore>,
    prefix: &PrefixChecker,
) -> Result<(), String> {
    // The log starts at the replica's checkpoint (or the root): what came before was reclaimed.
    for op in replica.log_base().0 + 1..=replica.op().0 {
        let (Some(header), Some(parent)) = (replica.header(Op(op)), replica.header(Op(op - 1)))
        else {
            return Err(format!("replica {index}: log has a hole at op {op}"));
        };
        if header.parent != parent.checksum {
            return Err(format!("replica {index}: hash chain broken at op {op}"));
        }
        if Op(op) <= replica.commit_min() && prefix.committed(Op(op)) != Some(header.checksum) {
            return Err(format!(
                "replica {index}: committed op {op} differs from the cluster's"
            ));
        }
    }
    Ok(())
}

pub fn check_journal(index: u8, report: Option<RecoveryReport>, head: Op) -> Result<(), String> {
    let report = report.ok_or_else(|| format!("replica {index}: journal does not open"))?;
    if !report.is_clean() {
        return Err(format!(
            "replica {index}: journal not clean: {:?}",
            report.analysis.faulty
        ));
    }
    match report.analysis.head {
        Some(journal_head) if journal_head >= head => Ok(()),
        other => Err(format!(
            "replica {index}: journal head {other:?} behind the log head {head}"
        )),
    }
}
