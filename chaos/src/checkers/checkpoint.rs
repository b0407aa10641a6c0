//! Checkpoints agree: every replica's checkpoint at op `n` is the same bytes (the same
//! checksum). A checkpoint is the replicated state after a committed op, and execution is
//! deterministic, so any difference (a snapshot that depends on something besides the state, a
//! session table that differs, a state restored wrongly and checkpointed again) shows here, even
//! when no later read would reveal it. Together with `state_hash.rs`, which the simulation also
//! feeds with every restore (`Action::Restored`), it checks that a replica restored from a
//! checkpoint reaches the state of one that executed the log.

use std::collections::BTreeMap;

use chronon_engine::checksum::Checksum;
use chronon_engine::ids::Op;

#[derive(Debug, Default)]
pub struct CheckpointChecker {
    checkpoints: BTreeMap<Op, (Checksum, u8)>,
}

impl CheckpointChecker {
    pub fn observe(&mut self, replica: u8, op: Op, checksum: Checksum) -> Result<(), String> {
        match self.checkpoints.get(&op) {
            Some(&(first, by)) if first != checksum => Err(format!(
                "checkpoints diverge at op {op}: replica {by} has {first}, replica {replica} has \
                 {checksum}"
            )),
            Some(_) => Ok(()),
            None => {
                self.checkpoints.insert(op, (checksum, replica));
                Ok(())
            }
        }
    }

    #[must_use]
    pub fn count(&self) -> usize {
        self.checkpoints.len()
    }
}
