//! The reference application: a key-value store with get, put, delete and compare-and-set.
//! Every command goes through the log, so reads are linearizable.

use imbl::OrdMap;

use super::codec::{Reader, put_bytes};
use super::{Applied, ApplyContext, ChrApplication};

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
    Delete {
        key: Vec<u8>,
    },
    /// Sets `new` if the current value equals `expected` (`None`: the key is absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// A key-value reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvReply {
    Value(Option<Vec<u8>>),
    Done,
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
}

const GET: u8 = 1;
const PUT: u8 = 2;
const DELETE: u8 = 3;
const CAS: u8 = 4;

fn put_option(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
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
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
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
            | KvCommand::Cas { key, .. } => key,
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
            KvReply::Cas { swapped, current } => {
                out.push(CAS);
                out.push(u8::from(*swapped));
                put_option(&mut out, current.as_deref());
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
            CAS => {
                let swapped = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return None,
                };
                KvReply::Cas {
                    swapped,
                    current: read_option(&mut r)?,
                }
            }
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
}

pub type KvState = OrdMap<Vec<u8>, Vec<u8>>;

impl ChrApplication for KvStore {
    type State = KvState;
    type Error = KvError;

    fn genesis(&self) -> KvState {
        OrdMap::new()
    }

    fn apply(
        &self,
        state: &KvState,
        event: &[u8],
        _context: &ApplyContext,
    ) -> Result<Applied<KvState>, KvError> {
        let command = KvCommand::decode(event).ok_or(KvError::Malformed { len: event.len() })?;
        let (state, reply) = match command {
            KvCommand::Get { key } => (state.clone(), KvReply::Value(state.get(&key).cloned())),
            KvCommand::Put { key, value } => (state.update(key, value), KvReply::Done),
            KvCommand::Delete { key } => (state.without(&key), KvReply::Done),
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
        };
        Ok(Applied {
            state,
            reply: reply.encode(),
            effects: Vec::new(),
        })
    }

    fn query(&self, state: &KvState, query: &[u8]) -> Result<Vec<u8>, KvError> {
        match KvCommand::decode(query) {
            Some(KvCommand::Get { key }) => Ok(KvReply::Value(state.get(&key).cloned()).encode()),
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
    use crate::ids::{Op, ShardId, Timestamp, View};

    fn context() -> ApplyContext {
        ApplyContext {
            shard: ShardId(0),
            op: Op(1),
            view: View(0),
            timestamp: Timestamp(0),
            seed: 0,
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
        ];
        for command in commands {
            let bytes = command.encode();
            assert_eq!(KvCommand::decode(&bytes), Some(command));
            for cut in 0..bytes.len() {
                assert_eq!(KvCommand::decode(&bytes[..cut]), None);
            }
        }
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
                .apply(&state, &command.encode(), &context())
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
        assert_eq!(run(KvCommand::Delete { key: b"a".to_vec() }), KvReply::Done);
        let snapshot = kv.snapshot(&state);
        assert_eq!(kv.restore(&snapshot), Ok(state.clone()));
        assert!(kv.restore(&snapshot[..snapshot.len() - 1]).is_err());
        assert!(kv.apply(&state, b"\xff", &context()).is_err());
    }
}
