//! The reference application: a key-value store with get, put, delete, compare-and-set and
//! the few conditional and counting commands the Redis front end needs (`SET XX`, `DEL`'s count,
//! `INCRBY`, `EXISTS`). Every command goes through the log, so reads are linearizable.
//!
//! Three commands ask for side effects, which the kernel carries out exactly as it would for
//! any application: `Emit` (a message to a sink the host registers), `Webhook` (an HTTP
//! request) and `Schedule` (a command run later, when consensus time passes, for example an
//! expiry). Each replies with the id of the effect it caused.

use imbl::OrdMap;

use super::codec::{Reader, put_bytes, put_u64};
use super::{Applied, ApplyContext, ChrApplication, EffectId, Event, SideEffect};
use crate::ids::{Op, ShardId, Timestamp};

/// A key-value command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvCommand {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Removes the key; the reply says whether it existed.
    Delete {
        key: Vec<u8>,
    },
    /// Sets `new` if the current value equals `expected` (`None`: the key is absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    /// Sets `value` only if the key exists (`SET key value XX`).
    PutIfPresent {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Adds `delta` to the key's value read as a decimal `i64` (a missing key reads as 0) and
    /// stores the sum as decimal text, as Redis' `INCRBY` does. A value that is not strictly
    /// such a number, or a sum that overflows, rejects the command and changes nothing.
    IncrBy {
        key: Vec<u8>,
        delta: i64,
    },
    /// Whether the key exists, without shipping its value.
    Exists {
        key: Vec<u8>,
    },
    /// Sends `payload` to the host's sink named `sink` (an effect). Routed by the sink's name.
    Emit {
        sink: String,
        payload: Vec<u8>,
    },
    /// Runs `command` once consensus time has advanced `delay_ns` past this command's (a
    /// timer). Routed by the inner command's key; a delayed command's reply goes nowhere.
    Schedule {
        delay_ns: u64,
        command: Box<KvCommand>,
    },
    /// Makes an HTTP request (an effect); the receiver gets the effect id as `Idempotency-Key`
    /// and the primary's view as `Chronon-Fence`. Routed by the URL.
    Webhook {
        method: String,
        url: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
}

/// A key-value reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvReply {
    /// `Get`'s value.
    Value(Option<Vec<u8>>),
    /// `Put` wrote.
    Done,
    /// `Delete`: whether the key existed.
    Deleted(bool),
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
    /// `PutIfPresent`: whether it wrote (the key existed).
    Written(bool),
    /// `IncrBy`: the value after the increment.
    Integer(i64),
    /// `Exists`: whether the key exists.
    Exists(bool),
    /// `Emit`, `Schedule`, `Webhook`: the id of the effect recorded.
    Effect(EffectId),
}

// Command tags; each reply variant reuses its command's tag.
const GET: u8 = 1;
const PUT: u8 = 2;
const DELETE: u8 = 3;
const CAS: u8 = 4;
const PUT_IF_PRESENT: u8 = 5;
const INCR_BY: u8 = 6;
const EXISTS: u8 = 7;
const EMIT: u8 = 8;
const SCHEDULE: u8 = 9;
const WEBHOOK: u8 = 10;
// Only a reply: every effect command answers with its effect's id.
const EFFECT: u8 = 11;

fn put_option(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
}

/// Reads a flag byte: 0 or 1, anything else is malformed.
fn read_bool(reader: &mut Reader<'_>) -> Option<bool> {
    match reader.u8()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn read_i64(reader: &mut Reader<'_>) -> Option<i64> {
    Some(i64::from_le_bytes(reader.u64()?.to_le_bytes()))
}

fn read_string(reader: &mut Reader<'_>) -> Option<String> {
    String::from_utf8(reader.bytes()?.to_vec()).ok()
}

/// Reads an optional value; the outer `None` means malformed input.
#[allow(clippy::option_option)]
fn read_option(reader: &mut Reader<'_>) -> Option<Option<Vec<u8>>> {
    match reader.u8()? {
        0 => Some(None),
        1 => Some(Some(reader.bytes()?.to_vec())),
        _ => None,
    }
}

impl KvCommand {
    /// At least the encoded length, so that `encode` allocates once (the codec bench measured
    /// a presized buffer 1.6-4x faster than a growing one).
    fn size_hint(&self) -> usize {
        let fields = match self {
            KvCommand::Get { key } | KvCommand::Delete { key } | KvCommand::Exists { key } => {
                key.len()
            }
            KvCommand::Put { key, value } | KvCommand::PutIfPresent { key, value } => {
                key.len() + value.len()
            }
            KvCommand::Cas { key, expected, new } => {
                key.len() + new.len() + expected.as_ref().map_or(0, Vec::len)
            }
            KvCommand::IncrBy { key, .. } => key.len(),
            KvCommand::Emit { sink, payload } => sink.len() + payload.len(),
            KvCommand::Schedule { command, .. } => command.size_hint(),
            KvCommand::Webhook {
                method,
                url,
                headers,
                body,
            } => {
                let headers: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 8).sum();
                method.len() + url.len() + headers + body.len()
            }
        };
        // The tag, length prefixes, flags and fixed-size fields.
        fields + 32
    }

    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size_hint());
        match self {
            KvCommand::Get { key } => {
                out.push(GET);
                put_bytes(&mut out, key);
            }
            KvCommand::Put { key, value } => {
                out.push(PUT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            KvCommand::Delete { key } => {
                out.push(DELETE);
                put_bytes(&mut out, key);
            }
            KvCommand::Cas { key, expected, new } => {
                out.push(CAS);
                put_bytes(&mut out, key);
                put_option(&mut out, expected.as_deref());
                put_bytes(&mut out, new);
            }
            KvCommand::PutIfPresent { key, value } => {
                out.push(PUT_IF_PRESENT);
                put_bytes(&mut out, key);
                put_bytes(&mut out, value);
            }
            KvCommand::IncrBy { key, delta } => {
                out.push(INCR_BY);
                put_bytes(&mut out, key);
                put_i64(&mut out, *delta);
            }
            KvCommand::Exists { key } => {
                out.push(EXISTS);
                put_bytes(&mut out, key);
            }
            KvCommand::Emit { sink, payload } => {
                out.push(EMIT);
                put_bytes(&mut out, sink.as_bytes());
                put_bytes(&mut out, payload);
            }
            KvCommand::Schedule { delay_ns, command } => {
                out.push(SCHEDULE);
                put_u64(&mut out, *delay_ns);
                put_bytes(&mut out, &command.encode());
            }
            KvCommand::Webhook {
                method,
                url,
                headers,
                body,
            } => {
                out.push(WEBHOOK);
                put_bytes(&mut out, method.as_bytes());
                put_bytes(&mut out, url.as_bytes());
                put_u64(&mut out, headers.len() as u64);
                for (name, value) in headers {
                    put_bytes(&mut out, name.as_bytes());
                    put_bytes(&mut out, value.as_bytes());
                }
                put_bytes(&mut out, body);
            }
        }
        out
    }

    /// Decodes a command; `None` for anything malformed. Never panics.
    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<KvCommand> {
        let mut r = Reader::new(bytes);
        let command = match r.u8()? {
            GET => KvCommand::Get {
                key: r.bytes()?.to_vec(),
            },
            PUT => KvCommand::Put {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
            },
            DELETE => KvCommand::Delete {
                key: r.bytes()?.to_vec(),
            },
            CAS => KvCommand::Cas {
                key: r.bytes()?.to_vec(),
                expected: read_option(&mut r)?,
                new: r.bytes()?.to_vec(),
            },
            PUT_IF_PRESENT => KvCommand::PutIfPresent {
                key: r.bytes()?.to_vec(),
                value: r.bytes()?.to_vec(),
            },
            INCR_BY => KvCommand::IncrBy {
                key: r.bytes()?.to_vec(),
                delta: read_i64(&mut r)?,
            },
            EXISTS => KvCommand::Exists {
                key: r.bytes()?.to_vec(),
            },
            EMIT => KvCommand::Emit {
                sink: read_string(&mut r)?,
                payload: r.bytes()?.to_vec(),
            },
            SCHEDULE => KvCommand::Schedule {
                delay_ns: r.u64()?,
                command: Box::new(KvCommand::decode(r.bytes()?)?),
            },
            WEBHOOK => {
                let method = read_string(&mut r)?;
                let url = read_string(&mut r)?;
                let count = r.u64()?;
                let mut headers = Vec::new();
                for _ in 0..count {
                    headers.push((read_string(&mut r)?, read_string(&mut r)?));
                }
                KvCommand::Webhook {
                    method,
                    url,
                    headers,
                    body: r.bytes()?.to_vec(),
                }
            }
            _ => return None,
        };
        r.is_empty().then_some(command)
    }

    #[must_use]
    pub fn key(&self) -> &[u8] {
        match self {
            KvCommand::Get { key }
            | KvCommand::Put { key, .. }
            | KvCommand::Delete { key }
            | KvCommand::Cas { key, .. }
            | KvCommand::PutIfPresent { key, .. }
            | KvCommand::IncrBy { key, .. }
            | KvCommand::Exists { key } => key,
            KvCommand::Emit { sink, .. } => sink.as_bytes(),
            KvCommand::Schedule { command, .. } => command.key(),
            KvCommand::Webhook { url, .. } => url.as_bytes(),
        }
    }
}

impl KvReply {
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            KvReply::Value(value) => {
                out.push(GET);
                put_option(&mut out, value.as_deref());
            }
            KvReply::Done => out.push(PUT),
            KvReply::Deleted(existed) => {
                out.push(DELETE);
                out.push(u8::from(*existed));
            }
            KvReply::Cas { swapped, current } => {
                out.push(CAS);
                out.push(u8::from(*swapped));
                put_option(&mut out, current.as_deref());
            }
            KvReply::Written(written) => {
                out.push(PUT_IF_PRESENT);
                out.push(u8::from(*written));
            }
            KvReply::Integer(value) => {
                out.push(INCR_BY);
                put_i64(&mut out, *value);
            }
            KvReply::Exists(exists) => {
                out.push(EXISTS);
                out.push(u8::from(*exists));
            }
            KvReply::Effect(id) => {
                out.push(EFFECT);
                out.extend_from_slice(&id.shard.0.to_le_bytes());
                put_u64(&mut out, id.op.0);
                out.extend_from_slice(&id.ordinal.to_le_bytes());
            }
        }
        out
    }

    #[must_use]
    pub fn decode(bytes: &[u8]) -> Option<KvReply> {
        let mut r = Reader::new(bytes);
        let reply = match r.u8()? {
            GET => KvReply::Value(read_option(&mut r)?),
            PUT => KvReply::Done,
            DELETE => KvReply::Deleted(read_bool(&mut r)?),
            CAS => KvReply::Cas {
                swapped: read_bool(&mut r)?,
                current: read_option(&mut r)?,
            },
            PUT_IF_PRESENT => KvReply::Written(read_bool(&mut r)?),
            INCR_BY => KvReply::Integer(read_i64(&mut r)?),
            EXISTS => KvReply::Exists(read_bool(&mut r)?),
            EFFECT => KvReply::Effect(EffectId {
                shard: ShardId(u16::from_le_bytes(r.take(2)?.try_into().ok()?)),
                op: Op(r.u64()?),
                ordinal: r.u32()?,
            }),
            _ => return None,
        };
        r.is_empty().then_some(reply)
    }
}

/// The key-value store. Its state is a persistent ordered map: cloning it is O(1), so `apply`
/// can return a new state without copying the store.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvStore;

/// Why a key-value command was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    #[error(
        "malformed key-value command ({len} bytes); the client and server disagree on the format"
    )]
    Malformed { len: usize },
    #[error("malformed key-value snapshot")]
    BadSnapshot,
    /// `IncrBy` found a value that is not a decimal `i64`. The text is Redis' own, since the
    /// RESP front end passes it to Redis clients verbatim.
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    /// `IncrBy`'s sum does not fit an `i64`; the value is left as it was.
    #[error("ERR increment or decrement would overflow")]
    Overflow,
}

/// Parses `text` as Redis parses a stored integer (`string2ll`): an optional `-`, then decimal
/// digits with no leading zero unless the number is `0`; no `+`, no spaces, no `-0`, and the
/// value must fit an `i64`.
fn parse_strict_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' && (digits.len() > 1 || negative) {
        return None;
    }
    // Accumulating towards the sign keeps i64::MIN representable.
    digits.iter().try_fold(0i64, |n, &d| {
        let digit = i64::from(d - b'0');
        let n = n.checked_mul(10)?;
        if negative {
            n.checked_sub(digit)
        } else {
            n.checked_add(digit)
        }
    })
}

/// `IncrBy` on `current`: the new value, or why the command is rejected.
fn increment(current: Option<&Vec<u8>>, delta: i64) -> Result<i64, KvError> {
    let value = match current {
        None => 0,
        Some(text) => parse_strict_i64(text).ok_or(KvError::NotAnInteger)?,
    };
    value.checked_add(delta).ok_or(KvError::Overflow)
}

pub type KvState = OrdMap<Vec<u8>, Vec<u8>>;

/// Runs one command on `state`: the next state, the reply and the effect it asks for, or why it
/// is rejected (the state is then unchanged).
fn execute(
    state: &KvState,
    command: KvCommand,
    context: &ApplyContext,
) -> Result<(KvState, KvReply, Option<SideEffect>), KvError> {
    let effect = match command {
        KvCommand::Emit { sink, payload } => SideEffect::Emit { sink, payload },
        KvCommand::Schedule { delay_ns, command } => SideEffect::Schedule {
            at: Timestamp(context.timestamp.0.saturating_add(delay_ns)),
            payload: command.encode(),
        },
        KvCommand::Webhook {
            method,
            url,
            headers,
            body,
        } => SideEffect::Http {
            method,
            url,
            headers,
            body,
        },
        command => {
            let (state, reply) = execute_data(state, command)?;
            return Ok((state, reply, None));
        }
    };
    let reply = KvReply::Effect(context.effect_id(0));
    Ok((state.clone(), reply, Some(effect)))
}

/// Runs a command on the data itself.
fn execute_data(state: &KvState, command: KvCommand) -> Result<(KvState, KvReply), KvError> {
    let result = match command {
        KvCommand::Get { key } => (state.clone(), KvReply::Value(state.get(&key).cloned())),
        KvCommand::Put { key, value } => (state.update(key, value), KvReply::Done),
        KvCommand::Delete { key } => {
            let existed = state.contains_key(&key);
            (state.without(&key), KvReply::Deleted(existed))
        }
        KvCommand::PutIfPresent { key, value } => {
            if state.contains_key(&key) {
                (state.update(key, value), KvReply::Written(true))
            } else {
                (state.clone(), KvReply::Written(false))
            }
        }
        KvCommand::IncrBy { key, delta } => {
            let sum = increment(state.get(&key), delta)?;
            let text = sum.to_string().into_bytes();
            (state.update(key, text), KvReply::Integer(sum))
        }
        KvCommand::Exists { key } => (state.clone(), KvReply::Exists(state.contains_key(&key))),
        KvCommand::Cas { key, expected, new } => {
            let current = state.get(&key).cloned();
            if current == expected {
                (
                    state.update(key, new),
                    KvReply::Cas {
                        swapped: true,
                        current,
                    },
                )
            } else {
                (
                    state.clone(),
                    KvReply::Cas {
                        swapped: false,
                        current,
                    },
                )
            }
        }
        KvCommand::Emit { .. } | KvCommand::Schedule { .. } | KvCommand::Webhook { .. } => {
            unreachable!("effect commands are handled by `execute`")
        }
    };
    Ok(result)
}

impl ChrApplication for KvStore {
    type State = KvState;
    type Error = KvError;

    fn genesis(&self) -> KvState {
        OrdMap::new()
    }

    /// A command from a client, or one a timer scheduled, runs the same way; the store keeps
    /// no record of effect outcomes (the outbox has them).
    fn apply(
        &self,
        state: &KvState,
        event: Event<'_>,
        context: &ApplyContext,
    ) -> Result<Applied<KvState>, KvError> {
        let bytes = match event {
            Event::Command(bytes) | Event::Timer { payload: bytes, .. } => bytes,
            Event::EffectCompleted { .. } | Event::EffectFailed { .. } => {
                return Ok(Applied {
                    state: state.clone(),
                    reply: Vec::new(),
                    effects: Vec::new(),
                });
            }
        };
        let command = KvCommand::decode(bytes).ok_or(KvError::Malformed { len: bytes.len() })?;
        let (state, reply, effect) = execute(state, command, context)?;
        Ok(Applied {
            state,
            reply: reply.encode(),
            effects: effect.into_iter().collect(),
        })
    }

    fn query(&self, state: &KvState, query: &[u8]) -> Result<Vec<u8>, KvError> {
        match KvCommand::decode(query) {
            Some(KvCommand::Get { key }) => Ok(KvReply::Value(state.get(&key).cloned()).encode()),
            Some(KvCommand::Exists { key }) => {
                Ok(KvReply::Exists(state.contains_key(&key)).encode())
            }
            _ => Err(KvError::Malformed { len: query.len() }),
        }
    }

    fn snapshot(&self, state: &KvState) -> Vec<u8> {
        let mut out = Vec::new();
        super::codec::put_u64(&mut out, state.len() as u64);
        for (key, value) in state {
            put_bytes(&mut out, key);
            put_bytes(&mut out, value);
        }
        out
    }

    fn restore(&self, snapshot: &[u8]) -> Result<KvState, KvError> {
        let mut r = Reader::new(snapshot);
        let count = r.u64().ok_or(KvError::BadSnapshot)?;
        let mut state = OrdMap::new();
        for _ in 0..count {
            let key = r.bytes().ok_or(KvError::BadSnapshot)?.to_vec();
            let value = r.bytes().ok_or(KvError::BadSnapshot)?.to_vec();
            state.insert(key, value);
        }
        if !r.is_empty() {
            return Err(KvError::BadSnapshot);
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::View;

    fn context() -> ApplyContext {
        ApplyContext {
            shard: ShardId(0),
            op: Op(1),
            view: View(0),
            timestamp: Timestamp(0),
            seed: 0,
            effect_ordinal: 0,
        }
    }

    // Commands and replies survive encode/decode, and no truncation or junk decodes or panics.
    #[test]
    fn codec_roundtrip_and_rejects_junk() {
        let commands = [
            KvCommand::Get { key: b"k".to_vec() },
            KvCommand::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            KvCommand::Delete { key: vec![] },
            KvCommand::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"n".to_vec(),
            },
            KvCommand::Cas {
                key: b"k".to_vec(),
                expected: Some(b"o".to_vec()),
                new: vec![],
            },
            KvCommand::PutIfPresent {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            KvCommand::IncrBy {
                key: b"k".to_vec(),
                delta: i64::MIN,
            },
            KvCommand::IncrBy {
                key: vec![],
                delta: -1,
            },
            KvCommand::Exists { key: b"k".to_vec() },
        ];
        for command in commands {
            let bytes = command.encode();
            assert_eq!(KvCommand::decode(&bytes), Some(command));
            for cut in 0..bytes.len() {
                assert_eq!(KvCommand::decode(&bytes[..cut]), None);
            }
        }
        let replies = [
            KvReply::Value(None),
            KvReply::Value(Some(b"v".to_vec())),
            KvReply::Done,
            KvReply::Deleted(false),
            KvReply::Deleted(true),
            KvReply::Cas {
                swapped: true,
                current: Some(vec![]),
            },
            KvReply::Written(true),
            KvReply::Integer(i64::MAX),
            KvReply::Integer(-7),
            KvReply::Exists(false),
        ];
        for reply in replies {
            let bytes = reply.encode();
            assert_eq!(KvReply::decode(&bytes), Some(reply));
            for cut in 0..bytes.len() {
                assert_eq!(KvReply::decode(&bytes[..cut]), None);
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(KvReply::decode(&longer), None);
        }
        // A flag byte other than 0 or 1 is malformed, not "true".
        assert_eq!(KvReply::decode(&[DELETE, 2]), None);
        let mut rng = crate::rng::Rng::new(9);
        for _ in 0..2000 {
            let mut junk = vec![0u8; rng.below(20) as usize];
            rng.fill(&mut junk);
            let _ = KvCommand::decode(&junk);
            let _ = KvReply::decode(&junk);
        }
    }

    // The store's semantics, and snapshot/restore giving back the same state.
    #[test]
    fn apply_semantics_and_snapshot() {
        let kv = KvStore;
        let mut state = kv.genesis();
        let mut run = |command: KvCommand| {
            let applied = kv
                .apply(&state, Event::Command(&command.encode()), &context())
                .expect("valid command");
            state = applied.state;
            KvReply::decode(&applied.reply).expect("valid reply")
        };
        assert_eq!(
            run(KvCommand::Get { key: b"a".to_vec() }),
            KvReply::Value(None)
        );
        assert_eq!(
            run(KvCommand::Put {
                key: b"a".to_vec(),
                value: b"1".to_vec()
            }),
            KvReply::Done
        );
        let cas = KvCommand::Cas {
            key: b"a".to_vec(),
            expected: None,
            new: b"2".to_vec(),
        };
        assert_eq!(
            run(cas),
            KvReply::Cas {
                swapped: false,
                current: Some(b"1".to_vec())
            }
        );
        let cas = KvCommand::Cas {
            key: b"a".to_vec(),
            expected: Some(b"1".to_vec()),
            new: b"2".to_vec(),
        };
        assert_eq!(
            run(cas),
            KvReply::Cas {
                swapped: true,
                current: Some(b"1".to_vec())
            }
        );
        assert_eq!(
            run(KvCommand::Get { key: b"a".to_vec() }),
            KvReply::Value(Some(b"2".to_vec()))
        );
        run(KvCommand::Put {
            key: b"b".to_vec(),
            value: b"3".to_vec(),
        });
        assert_eq!(
            run(KvCommand::Delete { key: b"a".to_vec() }),
            KvReply::Deleted(true)
        );
        assert_eq!(
            run(KvCommand::Delete { key: b"a".to_vec() }),
            KvReply::Deleted(false)
        );
        let snapshot = kv.snapshot(&state);
        assert_eq!(kv.restore(&snapshot), Ok(state.clone()));
        assert!(kv.restore(&snapshot[..snapshot.len() - 1]).is_err());
        assert!(
            kv.apply(&state, Event::Command(b"\xff"), &context())
                .is_err()
        );
    }

    /// Runs `command` on `state`, keeping the new state: the reply, or the rejection's text.
    fn run(state: &mut KvState, command: &KvCommand) -> Result<KvReply, String> {
        match KvStore.apply(state, Event::Command(&command.encode()), &context()) {
            Ok(applied) => {
                *state = applied.state;
                Ok(KvReply::decode(&applied.reply).expect("valid reply"))
            }
            Err(error) => Err(error.to_string()),
        }
    }

    // PutIfPresent writes only over an existing key, Delete reports whether the key existed,
    // and Exists answers without changing anything, through both apply and query.
    #[test]
    fn conditional_put_delete_and_exists() {
        let mut state = KvStore.genesis();
        let key = || b"k".to_vec();
        let put_if_present = |value: &[u8]| KvCommand::PutIfPresent {
            key: key(),
            value: value.to_vec(),
        };
        let exists = KvCommand::Exists { key: key() };
        assert_eq!(
            run(&mut state, &put_if_present(b"1")),
            Ok(KvReply::Written(false))
        );
        assert!(state.is_empty());
        assert_eq!(run(&mut state, &exists), Ok(KvReply::Exists(false)));
        let put = KvCommand::Put {
            key: key(),
            value: vec![],
        };
        assert_eq!(run(&mut state, &put), Ok(KvReply::Done));
        // An empty value is a present key.
        assert_eq!(run(&mut state, &exists), Ok(KvReply::Exists(true)));
        assert_eq!(
            KvStore
                .query(&state, &exists.encode())
                .map(|r| KvReply::decode(&r)),
            Ok(Some(KvReply::Exists(true)))
        );
        assert_eq!(
            run(&mut state, &put_if_present(b"2")),
            Ok(KvReply::Written(true))
        );
        assert_eq!(state.get(&key()), Some(&b"2".to_vec()));
        let delete = KvCommand::Delete { key: key() };
        assert_eq!(run(&mut state, &delete), Ok(KvReply::Deleted(true)));
        assert_eq!(run(&mut state, &delete), Ok(KvReply::Deleted(false)));
        assert!(state.is_empty());
    }

    // IncrBy follows Redis: a missing key counts from 0, the stored text must be a strict
    // decimal i64, overflow is refused, and a refusal leaves the value untouched. Table-driven
    // over (stored text, delta, expected reply or error text).
    #[test]
    fn incr_by_follows_redis() {
        const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
        const OVERFLOW: &str = "ERR increment or decrement would overflow";
        let cases: [(Option<&str>, i64, Result<i64, &str>); 22] = [
            (None, 1, Ok(1)),
            (None, -5, Ok(-5)),
            (None, i64::MIN, Ok(i64::MIN)),
            (Some("0"), 0, Ok(0)),
            (Some("41"), 1, Ok(42)),
            (Some("-10"), 3, Ok(-7)),
            (Some("9223372036854775806"), 1, Ok(i64::MAX)),
            (Some("-9223372036854775808"), 1, Ok(i64::MIN + 1)),
            (Some("9223372036854775807"), 1, Err(OVERFLOW)),
            (Some("-9223372036854775808"), -1, Err(OVERFLOW)),
            (Some("1"), i64::MAX, Err(OVERFLOW)),
            (Some("9223372036854775808"), 0, Err(NOT_INTEGER)),
            (Some("-9223372036854775809"), 0, Err(NOT_INTEGER)),
            (Some(""), 1, Err(NOT_INTEGER)),
            (Some("-"), 1, Err(NOT_INTEGER)),
            (Some("+1"), 1, Err(NOT_INTEGER)),
            (Some(" 1"), 1, Err(NOT_INTEGER)),
            (Some("1 "), 1, Err(NOT_INTEGER)),
            (Some("01"), 1, Err(NOT_INTEGER)),
            (Some("-0"), 1, Err(NOT_INTEGER)),
            (Some("1.5"), 1, Err(NOT_INTEGER)),
            (Some("abc"), 1, Err(NOT_INTEGER)),
        ];
        for (stored, delta, expected) in cases {
            let mut state = KvStore.genesis();
            if let Some(text) = stored {
                state.insert(b"n".to_vec(), text.as_bytes().to_vec());
            }
            let before = state.clone();
            let command = KvCommand::IncrBy {
                key: b"n".to_vec(),
                delta,
            };
            let reply = run(&mut state, &command);
            match expected {
                Ok(sum) => {
                    assert_eq!(reply, Ok(KvReply::Integer(sum)), "{stored:?} + {delta}");
                    assert_eq!(
                        state.get(&b"n".to_vec()),
                        Some(&sum.to_string().into_bytes())
                    );
                }
                Err(text) => {
                    assert_eq!(reply, Err(text.to_owned()), "{stored:?} + {delta}");
                    assert_eq!(state, before, "a rejected IncrBy changed the value");
                }
            }
        }
    }
}
