//! Exactly-once requests: a replica applies each client request (client id, request number) at
//! most once in its lifetime, however often the client retried it or it reached the log, and
//! every replica applies it at the same op.

use std::collections::{BTreeMap, BTreeSet};

use chronon_engine::ids::{ClientId, Op, RequestNumber};

#[derive(Debug, Default)]
pub struct ExactlyOnceChecker {
    /// Per replica, what its current incarnation applied.
    applied: BTreeMap<u8, BTreeSet<(ClientId, RequestNumber)>>,
    applied_at: BTreeMap<(ClientId, RequestNumber), Op>,
}

impl ExactlyOnceChecker {
    /// A replica restarted: it re-executes its log from the start.
    pub fn restarted(&mut self, replica: u8) {
        self.applied.remove(&replica);
    }

    pub fn observe(
        &mut self,
        replica: u8,
        client: ClientId,
        request: RequestNumber,
        op: Op,
    ) -> Result<(), String> {
        if !self
            .applied
            .entry(replica)
            .or_default()
            .insert((client, request))
        {
            return Err(format!(
                "replica {replica} applied client {client} request {request} twice (again at op {op})"
            ));
        }
        match self.applied_at.insert((client, request), op) {
            Some(first) if first != op => Err(format!(
                "client {client} request {request} applied at op {first} on one replica and op \
                 {op} on replica {replica}"
            )),
            _ => Ok(()),
        }
    }

    /// The op at which a request was applied, if any replica applied it.
    #[must_use]
    pub fn applied_at(&self, client: ClientId, request: RequestNumber) -> Option<Op> {
        self.applied_at.get(&(client, request)).copied()
    }
}
