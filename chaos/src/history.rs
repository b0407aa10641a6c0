//! The client history the simulator records and the linearizability checker reads.
//!
//! A history is the list of calls clients issued against the key-value service, each with the
//! tick it was invoked at and, if the client learned it, the tick and outcome of its return.
//! The checker in `linearizability.rs` decides whether some sequential order of these calls,
//! consistent with their real-time order, explains every outcome.

/// One key-value operation as a client issued it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KvOp {
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
    /// Sets `new` if the current value equals `expected` (None = key absent).
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// What the client learned.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutcome {
    /// Get's result.
    Value(Option<Vec<u8>>),
    /// Put or Delete succeeded (Delete of an absent key also succeeds).
    Done,
    /// Cas result: whether it swapped, and the value it saw.
    Cas {
        swapped: bool,
        current: Option<Vec<u8>>,
    },
}

/// One call in the history. Times are simulator ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub client: u64,
    pub op: KvOp,
    pub invoked_at: u64,
    /// `None` if the client never learned the outcome (timed out, crashed, run ended): the
    /// call may or may not have taken effect, at any time after its invocation.
    pub returned: Option<(u64, KvOutcome)>,
}

/// Every call clients issued during a run, in the order they were invoked.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub calls: Vec<Call>,
}

impl KvOp {
    /// The one key this operation touches; the checker partitions the history by it.
    #[must_use]
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Get { key }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key }
            | KvOp::Cas { key, .. } => key,
        }
    }

    /// Whether `outcome` is the kind of outcome this operation returns (a Get a `Value`, a Put
    /// or Delete `Done`, a Cas `Cas`). A mismatch is a recording bug, not a consistency one.
    #[must_use]
    pub fn returns_kind_of(&self, outcome: &KvOutcome) -> bool {
        matches!(
            (self, outcome),
            (KvOp::Get { .. }, KvOutcome::Value(_))
                | (KvOp::Put { .. } | KvOp::Delete { .. }, KvOutcome::Done)
                | (KvOp::Cas { .. }, KvOutcome::Cas { .. })
        )
    }

    /// Applies the operation to `current`, the value of its key, as the sequential reference
    /// register does, and returns the outcome a client would see. The simulator and the tests
    /// use it to model what a correct service answers.
    pub fn apply(&self, current: &mut Option<Vec<u8>>) -> KvOutcome {
        match self {
            KvOp::Get { .. } => KvOutcome::Value(current.clone()),
            KvOp::Put { value, .. } => {
                *current = Some(value.clone());
                KvOutcome::Done
            }
            KvOp::Delete { .. } => {
                *current = None;
                KvOutcome::Done
            }
            KvOp::Cas { expected, new, .. } => {
                let seen = current.clone();
                let swapped = seen == *expected;
                if swapped {
                    *current = Some(new.clone());
                }
                KvOutcome::Cas {
                    swapped,
                    current: seen,
                }
            }
        }
    }
}

impl History {
    #[must_use]
    pub fn new() -> History {
        History::default()
    }

    /// Records that `client` invoked `op` at tick `at`; returns the call's index for
    /// `complete`.
    pub fn invoke(&mut self, client: u64, op: KvOp, at: u64) -> usize {
        self.calls.push(Call {
            client,
            op,
            invoked_at: at,
            returned: None,
        });
        self.calls.len() - 1
    }

    /// Records that the call at `index` returned `outcome` to its client at tick `at`.
    /// A call that never completes is simply left alone: it stays pending.
    pub fn complete(&mut self, index: usize, at: u64, outcome: KvOutcome) {
        let call = &mut self.calls[index];
        assert!(call.returned.is_none(), "call {index} completed twice");
        assert!(
            at >= call.invoked_at,
            "call {index} returned at {at}, before its invocation at {}",
            call.invoked_at
        );
        assert!(
            call.op.returns_kind_of(&outcome),
            "call {index}: {:?} cannot return {outcome:?}",
            call.op
        );
        call.returned = Some((at, outcome));
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the reference register's Cas semantics: it swaps only on an exact match (absent
    // matches only `None`) and always reports the value it saw, by applying it to each case.
    #[test]
    fn cas_swaps_only_on_match_and_reports_what_it_saw() {
        let cas = |expected: Option<&[u8]>| KvOp::Cas {
            key: b"k".to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: b"n".to_vec(),
        };
        let mut value = None;
        assert_eq!(
            cas(Some(b"x")).apply(&mut value),
            KvOutcome::Cas {
                swapped: false,
                current: None
            }
        );
        assert_eq!(value, None);
        assert_eq!(
            cas(None).apply(&mut value),
            KvOutcome::Cas {
                swapped: true,
                current: None
            }
        );
        assert_eq!(value, Some(b"n".to_vec()));
        assert_eq!(
            cas(Some(b"n")).apply(&mut value),
            KvOutcome::Cas {
                swapped: true,
                current: Some(b"n".to_vec())
            }
        );
    }

    // Proves `invoke`/`complete` record what the simulator will call them with, and that a
    // return before its invocation is refused as the recording bug it is.
    #[test]
    fn invoke_then_complete_records_the_call() {
        let mut history = History::new();
        let index = history.invoke(7, KvOp::Delete { key: b"k".to_vec() }, 3);
        assert!(history.calls[index].returned.is_none());
        history.complete(index, 5, KvOutcome::Done);
        assert_eq!(history.calls[index].returned, Some((5, KvOutcome::Done)));
        assert_eq!(history.calls[index].op.key(), b"k");

        let late = history.invoke(7, KvOp::Get { key: b"k".to_vec() }, 10);
        let refused = std::panic::catch_unwind(move || history.complete(late, 9, KvOutcome::Done));
        assert!(refused.is_err());
    }
}
