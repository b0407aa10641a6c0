//! Committed prefixes agree: every replica that executes op `n` executes the same prepare
//! (the same checksum). Execution happens only for committed ops, so a mismatch means two
//! replicas committed different histories: the core safety property of VSR (VRR 2012, §4.1).

use std::collections::BTreeMap;

use chronon_engine::checksum::Checksum;
use chronon_engine::ids::Op;

#[derive(Debug, Default)]
pub struct PrefixChecker {
    executed: BTreeMap<Op, (Checksum, u8)>,
}

impl PrefixChecker {
    /// Records that `replica` executed `op`, whose prepare has `checksum`.
    pub fn observe(&mut self, replica: u8, op: Op, checksum: Checksum) -> Result<(), String> {
        match self.executed.get(&op) {
            Some(&(first, by)) if first != checksum => Err(format!(
                "committed prefixes diverge at op {op}: replica {by} executed {first}, replica \
                 {replica} executed {checksum}"
            )),
            Some(_) => Ok(()),
            None => {
                self.executed.insert(op, (checksum, replica));
                Ok(())
            }
        }
    }

    /// The checksum every replica executed at `op`, if any executed it.
    #[must_use]
    pub fn committed(&self, op: Op) -> Option<Checksum> {
        self.executed.get(&op).map(|(c, _)| *c)
    }

    #[must_use]
    pub fn highest(&self) -> Op {
        self.executed.keys().next_back().copied().unwrap_or(Op(0))
    }
}
