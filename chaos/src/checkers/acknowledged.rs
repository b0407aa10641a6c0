//! No acknowledged write is lost: every request whose outcome a client learned was applied at
//! a committed op that the converged cluster still holds. Checked after the liveness phase, when
//! every replica has executed the whole committed log.

use chronon_engine::ids::{ClientId, Op, RequestNumber};

use super::exactly_once::ExactlyOnceChecker;
use crate::history::KvOp;

pub fn check(
    acknowledged: &[(ClientId, RequestNumber, KvOp)],
    applied: &ExactlyOnceChecker,
    commit: Op,
) -> Result<(), String> {
    for (client, request, op) in acknowledged {
        match applied.applied_at(*client, *request) {
            Some(at) if at <= commit => {}
            Some(at) => {
                return Err(format!(
                    "client {client} request {request} ({op:?}) was acknowledged but applied at \
                     op {at}, beyond the final commit {commit}"
                ));
            }
            None => {
                return Err(format!(
                    "client {client} request {request} ({op:?}) was acknowledged but is not in \
                     the committed log"
                ));
            }
        }
    }
    Ok(())
}
