//! How a key-value RESP command runs on the engine: split into per-shard lists of
//! [`KvCommand`]s, then its replies merged back into the one reply Redis would give.
//!
//! Each key becomes one engine command on its key's shard (`key_shard`); a shard's commands
//! keep argument order, so `DEL a a` deletes once and counts one, as Redis does. Commands on
//! different shards are not atomic together: an `MSET` whose second shard fails has still
//! written the first shard's keys. The merged reply is then the first failure in argument
//! order, so the client knows not to trust the write.

use chronon_engine::ShardId;
use chronon_engine::app::kv::{KvCommand, KvReply};

use crate::resp::command::{RespCommand, SetCondition};
use crate::resp::value::RespValue;
use crate::slots::key_shard;

/// One engine command's outcome as the node learned it: the reply, or the text of the error
/// (the engine's rejection, such as `ERR value is not an integer or out of range`, or the
/// node's own, such as `TRYAGAIN the shard has no primary`). Text without an upper-case error
/// code first is sent as `ERR <text>`.
pub type KvResult = Result<KvReply, String>;

/// The engine commands for one shard, in argument order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardBatch {
    pub shard: ShardId,
    pub commands: Vec<KvCommand>,
}

/// How the replies become one RESP reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Merge {
    /// `GET`: a bulk string or nil.
    Value,
    /// `SET` without a condition, `MSET`: `+OK` once every write is done.
    Ok,
    /// `SET NX` (a compare-and-set from absent) and `SET XX`: `+OK`, or nil if not written.
    OkIfWritten,
    /// `DEL`: how many keys existed.
    Deleted,
    /// `EXISTS`: how many keys exist (a key named twice counts twice).
    Existing,
    /// `INCR`, `INCRBY`: the new value.
    Integer,
    /// `MGET`: an array of bulk strings and nils.
    Values,
}

/// The engine commands a key-value RESP command needs, grouped by shard, and how to merge
/// their replies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvPlan {
    merge: Merge,
    /// Grouped by shard, in the order each shard first appears among the keys.
    batches: Vec<ShardBatch>,
    /// For each key in argument order, where its command is: (batch, index in the batch).
    positions: Vec<(usize, usize)>,
}

impl KvPlan {
    /// The plan for `command` on a cluster of `shard_count` shards; `None` for commands the
    /// node answers by itself (`PING`, `CLUSTER ...`).
    #[must_use]
    pub fn new(command: &RespCommand, shard_count: u16) -> Option<KvPlan> {
        let (merge, commands) = engine_commands(command)?;
        let mut plan = KvPlan {
            merge,
            batches: Vec::new(),
            positions: Vec::with_capacity(commands.len()),
        };
        for command in commands {
            let shard = key_shard(command.key(), shard_count);
            let batch = if let Some(batch) = plan.batches.iter().position(|b| b.shard == shard) {
                batch
            } else {
                plan.batches.push(ShardBatch {
                    shard,
                    commands: Vec::new(),
                });
                plan.batches.len() - 1
            };
            plan.positions
                .push((batch, plan.batches[batch].commands.len()));
            plan.batches[batch].commands.push(command);
        }
        assert!(
            !plan.positions.is_empty(),
            "every key-value command has a key"
        );
        Some(plan)
    }

    /// True if the command only reads (`GET`, `MGET`, `EXISTS`): it may be answered stale from
    /// a replica's state when the connection opted in with `READONLY`.
    #[must_use]
    pub fn is_read_only(&self) -> bool {
        matches!(self.merge, Merge::Value | Merge::Values | Merge::Existing)
    }

    /// What to send: one list of engine commands per shard touched.
    #[must_use]
    pub fn batches(&self) -> &[ShardBatch] {
        &self.batches
    }

    /// The RESP reply, from `results[b][i]`, the outcome of `batches()[b].commands[i]`.
    ///
    /// The lists must match `batches()` in shape (a node bug otherwise). A reply of the wrong
    /// kind (a `Done` to a `Get`) is answered with an error instead, since it comes from
    /// another process and may mean mismatched versions.
    #[must_use]
    pub fn reply(&self, results: &[Vec<KvResult>]) -> RespValue {
        assert_eq!(
            results.len(),
            self.batches.len(),
            "one result list per batch"
        );
        for (batch, list) in self.batches.iter().zip(results) {
            assert_eq!(batch.commands.len(), list.len(), "one result per command");
        }
        let mut replies = Vec::with_capacity(self.positions.len());
        for &(batch, index) in &self.positions {
            match &results[batch][index] {
                Ok(reply) => replies.push(reply),
                Err(text) => return RespValue::Error(error_text(text)),
            }
        }
        self.merge(&replies)
            .unwrap_or_else(|| RespValue::Error(UNEXPECTED_REPLY.to_owned()))
    }

    /// Merges replies in argument order; `None` if one is of the wrong kind.
    fn merge(&self, replies: &[&KvReply]) -> Option<RespValue> {
        let ok = || RespValue::Simple("OK".to_owned());
        let merged = match (self.merge, replies) {
            (Merge::Value, [KvReply::Value(value)]) => bulk_or_null(value.as_ref()),
            (Merge::OkIfWritten, [KvReply::Cas { swapped, .. } | KvReply::Written(swapped)]) => {
                if *swapped {
                    ok()
                } else {
                    RespValue::Null
                }
            }
            (Merge::Integer, [KvReply::Integer(value)]) => RespValue::Integer(*value),
            (Merge::Ok, replies) => {
                if !replies.iter().all(|r| matches!(r, KvReply::Done)) {
                    return None;
                }
                ok()
            }
            (Merge::Deleted | Merge::Existing, replies) => {
                let mut count = 0;
                for reply in replies {
                    match (self.merge, reply) {
                        (Merge::Deleted, KvReply::Deleted(found))
                        | (Merge::Existing, KvReply::Exists(found)) => count += i64::from(*found),
                        _ => return None,
                    }
                }
                RespValue::Integer(count)
            }
            (Merge::Values, replies) => {
                let mut values = Vec::with_capacity(replies.len());
                for reply in replies {
                    let KvReply::Value(value) = reply else {
                        return None;
                    };
                    values.push(bulk_or_null(value.as_ref()));
                }
                RespValue::Array(values)
            }
            _ => return None,
        };
        Some(merged)
    }
}

/// The merge rule and the engine commands, one per key in argument order.
fn engine_commands(command: &RespCommand) -> Option<(Merge, Vec<KvCommand>)> {
    let get = |key: &Vec<u8>| KvCommand::Get { key: key.clone() };
    let planned = match command {
        RespCommand::Get { key } => (Merge::Value, vec![get(key)]),
        RespCommand::Set {
            key,
            value,
            condition,
        } => {
            let (key, value) = (key.clone(), value.clone());
            match condition {
                SetCondition::Always => (Merge::Ok, vec![KvCommand::Put { key, value }]),
                SetCondition::IfAbsent => (
                    Merge::OkIfWritten,
                    vec![KvCommand::Cas {
                        key,
                        expected: None,
                        new: value,
                    }],
                ),
                SetCondition::IfPresent => (
                    Merge::OkIfWritten,
                    vec![KvCommand::PutIfPresent { key, value }],
                ),
            }
        }
        RespCommand::Del { keys } => (
            Merge::Deleted,
            keys.iter()
                .map(|key| KvCommand::Delete { key: key.clone() })
                .collect(),
        ),
        RespCommand::Exists { keys } => (
            Merge::Existing,
            keys.iter()
                .map(|key| KvCommand::Exists { key: key.clone() })
                .collect(),
        ),
        RespCommand::IncrBy { key, delta } => (
            Merge::Integer,
            vec![KvCommand::IncrBy {
                key: key.clone(),
                delta: *delta,
            }],
        ),
        RespCommand::MGet { keys } => (Merge::Values, keys.iter().map(get).collect()),
        RespCommand::MSet { pairs } => (
            Merge::Ok,
            pairs
                .iter()
                .map(|(key, value)| KvCommand::Put {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
        ),
        _ => return None,
    };
    Some(planned)
}

fn bulk_or_null(value: Option<&Vec<u8>>) -> RespValue {
    value.map_or(RespValue::Null, |bytes| RespValue::Bulk(bytes.clone()))
}

/// `text` as an error reply's text: kept if it starts with an error code (an upper-case word
/// such as `ERR`, `TRYAGAIN`, `CLUSTERDOWN`), else prefixed with `ERR `.
#[must_use]
pub fn error_text(text: &str) -> String {
    let code = text.split(' ').next().unwrap_or_default();
    let has_code =
        text.len() > code.len() && !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase());
    if has_code {
        text.to_owned()
    } else {
        format!("ERR {text}")
    }
}

/// A reply of the wrong kind comes from another process, so it is an error reply, not a panic.
const UNEXPECTED_REPLY: &str = "ERR internal error: the key-value application answered with \
    a reply this command does not expect, and the command may have taken effect; check that \
    every host runs the same Chronon version";
