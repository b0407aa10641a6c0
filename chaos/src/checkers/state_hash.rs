//! State hashes are equal at equal ops: every replica, including one that restarted and
//! re-executed its log, reaches the same running state hash after op `n`. This is the
//! determinism guarantee (same ops, same timestamps, same seed, same state).

use std::collections::BTreeMap;

use chronon_engine::checksum::Checksum;
use chronon_engine::ids::Op;

#[derive(Debug, Default)]
pub struct StateHashChecker {
    hashes: BTreeMap<Op, (Checksum, u8)>,
}

impl StateHashChecker {
    pub fn observe(&mut self, replica: u8, op: Op, state_hash: Checksum) -> Result<(), String> {
        match self.hashes.get(&op) {
            Some(&(first, by)) if first != state_hash => Err(format!(
                "state hashes diverge after op {op}: replica {by} has {first}, replica {replica} \
                 has {state_hash}"
            )),
            Some(_) => Ok(()),
            None => {
                self.hashes.insert(op, (state_hash, replica));
                Ok(())
            }
        }
    }
}
