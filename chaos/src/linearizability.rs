//! Linearizability checker for the client history (DESIGN.md §8).
//!
//! A history is linearizable if every call can be given a point, between its invocation and its
//! return, at which it takes effect atomically, such that the calls in the order of those points
//! are a legal run of the sequential specification: here a map of registers where an absent key
//! reads as `None` (Herlihy & Wing, "Linearizability: A Correctness Condition for Concurrent
//! Objects", TOPLAS 12(3), 1990, §3).
//!
//! Every operation touches exactly one key, and linearizability is local (compositional): a
//! history is linearizable if and only if each object's sub-history is (Herlihy & Wing 1990,
//! §3, locality, Theorem 1). So the history is partitioned by key and each key's sub-history
//! is checked alone. This is what keeps checking cheap: the search is exponential only in the
//! number of calls concurrent on one key, not in the length of the history.
//!
//! Each key is checked with the Wing–Gong algorithm (J. M. Wing and C. Gong, "Testing and
//! verifying concurrent objects", JPDC 17, 1993) with G. Lowe's cache of configurations ("WGL"
//! in "Testing for linearizability", Concurrency and Computation 29(4), 2017), as in
//! P. Fonseca's Porcupine: the calls' invocation and return events, sorted by time, form a
//! doubly-linked list; a depth-first search linearizes, one at a time, a call whose invocation
//! precedes the earliest return still in the list, removing ("lifting") its two events, and
//! backtracks when it reaches a return it cannot get past. Configurations (calls linearized,
//! register value) already entered are cached, since entering one again cannot succeed where
//! it failed before.
//!
//! A call whose outcome the client never learned has an infinite return time and accepts any
//! outcome: it may take effect anywhere after its invocation, or never, which is the same as
//! taking effect after every other call, since nothing observes the register after that. Such
//! pending calls are what makes the search expensive, since each may be placed almost anywhere,
//! so they are kept out of the event list and handled with reductions that each keep the search
//! complete (every one is argued where it is implemented):
//! - pending calls that cannot affect any outcome are dropped (`keep_relevant`), and stop
//!   being tried once the last call that could observe their effect is placed;
//! - identical pending calls are tried in invocation order only (`PendingCall::twin_before`);
//! - a configuration is skipped if one with the same completed calls and value but fewer
//!   pending calls placed was entered (`Cache`);
//! - a pending call is tried only after the completed candidates, and a Put or Delete is not
//!   placed right after one (`Search::wasted_after_pending`).
//!
//! For completed calls, a read (a Get, or a Cas that did not swap) that the current value
//! explains is placed without trying alternatives (`Cursor::Reads`), a partial-order reduction
//! that removes most branching on read-heavy histories.
//!
//! Checking linearizability of registers is NP-complete in general, but polynomial when every
//! write writes a distinct value (P. B. Gibbons and E. Korach, "Testing shared memories", SIAM
//! J. Computing 26(4), 1997). Workloads stay cheap to check when writes carry unique values (a
//! client id and sequence number), each key sees at most about ten concurrent clients, and a
//! crashed client comes back under a fresh id; with a handful of values shared by many pending
//! calls on one long key, a search may end `Undecided`.
//!
//! Events at the same tick are ordered invocations first, so a call returning at tick `t` is
//! concurrent with one invoked at `t`. Ticks are coarse and the simulator may process the two
//! events in either order within a tick, so treating them as ordered could raise a false alarm;
//! treating them as concurrent can only miss a violation that a finer clock would have shown.

use crate::history::{Call, History, KvOp, KvOutcome};
use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hasher};
use std::iter;

/// The most search steps spent on one key before giving up with [`Violation::Undecided`].
/// A step takes tens of nanoseconds and caches at most one configuration: measured here, a key
/// that hits this limit costs well under a second and under 100 MB. Histories that the
/// simulator keeps checkable (about ten concurrent clients per key) need a few tens of steps
/// per call, or a few hundred to prove a violation at the end of a long key.
pub const SEARCH_STEPS_MAX_PER_KEY: u64 = 5_000_000;

/// The most linearized calls a counterexample lists before eliding the earlier ones: the calls
/// right before the one that could not be placed are the ones a developer needs.
const EXPLANATION_PREFIX_CALLS_MAX: usize = 8;

/// The most concurrent calls a counterexample lists as alternatives that were tried.
const EXPLANATION_CANDIDATES_MAX: usize = 8;

/// What a successful check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckStats {
    pub keys_checked: usize,
    pub calls_checked: usize,
    /// Search steps over all keys: each tries one call at one place or backtracks once.
    pub search_steps: u64,
}

/// Why a history did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Violation {
    /// No order of one key's calls explains every outcome: the service is not linearizable.
    NotLinearizable(Box<Counterexample>),
    /// One key's search hit `search_steps_max` before deciding. Not evidence of a bug in the
    /// service: the workload put too many concurrent or pending calls on one key for the
    /// checker (see the module comment).
    Undecided {
        key: Vec<u8>,
        calls: usize,
        search_steps: u64,
    },
    /// The history itself is impossible (a return before its invocation, or an outcome of the
    /// wrong kind for its operation): a bug in whatever recorded it.
    Malformed { call: usize, reason: String },
}

/// A key whose sub-history is not linearizable, with what the search got furthest with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counterexample {
    pub key: Vec<u8>,
    /// Indices into `History::calls`, in linearization order: the longest sequence of this
    /// key's calls the search found that respects real time and the register's semantics.
    pub longest_prefix: Vec<usize>,
    /// Index into `History::calls` of the call whose return the search could not get past
    /// after that prefix: no call concurrent with it could be placed next, itself included.
    pub unplaceable: usize,
    /// A few lines for a developer: the end of the prefix, the value after it, and the call.
    pub explanation: String,
}

/// Checks `history` with the default per-key search bound [`SEARCH_STEPS_MAX_PER_KEY`].
pub fn check(history: &History) -> Result<CheckStats, Violation> {
    check_bounded(history, SEARCH_STEPS_MAX_PER_KEY)
}

/// Checks `history`, spending at most `search_steps_max` steps on any one key.
///
/// Keys are checked in byte order so the report is deterministic. A key that is not
/// linearizable is reported in preference to one that is undecided, since it is proof of a bug.
pub fn check_bounded(history: &History, search_steps_max: u64) -> Result<CheckStats, Violation> {
    validate(history)?;
    let mut stats = CheckStats::default();
    let mut undecided = None;
    for (key, indices) in partition_by_key(history) {
        let key_history = KeyHistory::new(history, &indices);
        let mut search = Search::new(&key_history);
        let verdict = search.run(search_steps_max);
        stats.keys_checked += 1;
        stats.calls_checked += indices.len();
        stats.search_steps += search.steps;
        match verdict {
            Verdict::Linearizable => {}
            Verdict::NotLinearizable => {
                let counterexample = explain(history, key, indices.len(), &search.deepest);
                return Err(Violation::NotLinearizable(Box::new(counterexample)));
            }
            Verdict::Undecided => {
                undecided.get_or_insert(Violation::Undecided {
                    key: key.to_vec(),
                    calls: indices.len(),
                    search_steps: search.steps,
                });
            }
        }
    }
    undecided.map_or(Ok(stats), Err)
}

fn validate(history: &History) -> Result<(), Violation> {
    for (index, call) in history.calls.iter().enumerate() {
        let Some((returned_at, outcome)) = &call.returned else {
            continue;
        };
        if *returned_at < call.invoked_at {
            return Err(Violation::Malformed {
                call: index,
                reason: format!(
                    "returned at {returned_at}, before invoked at {}",
                    call.invoked_at
                ),
            });
        }
        if !call.op.returns_kind_of(outcome) {
            return Err(Violation::Malformed {
                call: index,
                reason: format!(
                    "{} cannot return {}",
                    render_op(&call.op),
                    render_outcome(outcome)
                ),
            });
        }
    }
    Ok(())
}

/// Each key with the indices of its calls, in key order so that reports are deterministic.
fn partition_by_key(history: &History) -> Vec<(&[u8], Vec<usize>)> {
    let mut keys: FastMap<&[u8], Vec<usize>> = FastMap::default();
    for (index, call) in history.calls.iter().enumerate() {
        keys.entry(call.op.key()).or_default().push(index);
    }
    let mut keys: Vec<(&[u8], Vec<usize>)> = keys.into_iter().collect();
    keys.sort_unstable_by_key(|&(key, _)| key);
    keys
}

/// A `HashMap` with `FastHasher`: the checker hashes keys, values and configurations of its
/// own making, where `SipHash`'s resistance to chosen inputs buys nothing and costs time.
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// `FxHash` (from rustc) with a splitmix64 finaliser, so that both the low bits a hash table
/// indexes by and the high bits it tags with are well mixed.
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            self.add(u64::from_le_bytes(
                word.try_into().expect("invariant: 8-byte chunk"),
            ));
        }
        let mut last = [0; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.add(u64::from_le_bytes(last));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }
}

// --- The sequential model, over interned values -------------------------------------------

/// A register value as a small integer: `ABSENT` or the id of a distinct byte string seen on
/// this key. Interning makes model states `Copy` and cheap to hash and compare in the cache.
type Value = u32;
const ABSENT: Value = 0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ModelOp {
    Get,
    Put(Value),
    Delete,
    Cas { expected: Value, new: Value },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelOutcome {
    Value(Value),
    Done,
    Cas { swapped: bool, current: Value },
}

impl ModelOp {
    /// Runs the operation on `state`: the next state and the outcome a client would see.
    fn apply(self, state: Value) -> (Value, ModelOutcome) {
        match self {
            ModelOp::Get => (state, ModelOutcome::Value(state)),
            ModelOp::Put(value) => (value, ModelOutcome::Done),
            ModelOp::Delete => (ABSENT, ModelOutcome::Done),
            ModelOp::Cas { expected, new } => {
                let swapped = state == expected;
                let next = if swapped { new } else { state };
                (
                    next,
                    ModelOutcome::Cas {
                        swapped,
                        current: state,
                    },
                )
            }
        }
    }

    /// The next state if taking effect at `state` explains `outcome`, else `None`.
    fn step(self, state: Value, outcome: ModelOutcome) -> Option<Value> {
        let (next, produced) = self.apply(state);
        (outcome == produced).then_some(next)
    }
}

/// Maps each distinct byte string of one key's history to a [`Value`].
#[derive(Default)]
struct Interner<'h> {
    ids: FastMap<&'h [u8], Value>,
}

impl<'h> Interner<'h> {
    fn value(&mut self, bytes: Option<&'h Vec<u8>>) -> Value {
        let Some(bytes) = bytes else {
            return ABSENT;
        };
        let next = Value::try_from(self.ids.len() + 1).expect("invariant: fewer than 2^32 values");
        *self.ids.entry(bytes.as_slice()).or_insert(next)
    }

    /// How many values there are, `ABSENT` included: one past the largest id.
    fn values(&self) -> usize {
        self.ids.len() + 1
    }

    fn op(&mut self, op: &'h KvOp) -> ModelOp {
        match op {
            KvOp::Get { .. } => ModelOp::Get,
            KvOp::Put { value, .. } => ModelOp::Put(self.value(Some(value))),
            KvOp::Delete { .. } => ModelOp::Delete,
            KvOp::Cas { expected, new, .. } => ModelOp::Cas {
                expected: self.value(expected.as_ref()),
                new: self.value(Some(new)),
            },
        }
    }

    fn outcome(&mut self, outcome: &'h KvOutcome) -> ModelOutcome {
        match outcome {
            KvOutcome::Value(value) => ModelOutcome::Value(self.value(value.as_ref())),
            KvOutcome::Done => ModelOutcome::Done,
            KvOutcome::Cas { swapped, current } => ModelOutcome::Cas {
                swapped: *swapped,
                current: self.value(current.as_ref()),
            },
        }
    }
}

// --- One key's sub-history -------------------------------------------------------------------

/// A call whose client learned the outcome: it must take effect within its interval.
#[derive(Clone, Copy, Debug)]
struct CompletedCall {
    /// Index into `History::calls`.
    index: usize,
    op: ModelOp,
    outcome: ModelOutcome,
    invoked_at: u64,
    returned_at: u64,
    /// A Get, or a Cas that did not swap: it leaves the value as it found it.
    read_only: bool,
}

/// A call whose client never learned the outcome: it may take effect once, at any point after
/// its invocation, with any outcome, or never.
#[derive(Clone, Copy, Debug)]
struct PendingCall {
    index: usize,
    op: ModelOp,
    invoked_at: u64,
    /// The pending call with the same operation invoked last before this one. Identical
    /// pending calls are interchangeable, except that an earlier one may be placed wherever a
    /// later one may; so the search only places a call once its twin before it is placed,
    /// turning 2^n choices among n twins into n + 1.
    twin_before: Option<usize>,
}

struct KeyHistory {
    /// Sorted by invocation, so calls linearized early have low ids and the cache's bitsets
    /// stay short (see `Cache::insert`).
    completed: Vec<CompletedCall>,
    /// Sorted by invocation, which is the order the search may place them in.
    pending: Vec<PendingCall>,
    /// For each value, how many of these calls observe it (see `CompletedCall::observes`).
    observers: Vec<u32>,
}

impl KeyHistory {
    fn new(history: &History, indices: &[usize]) -> KeyHistory {
        let mut interner = Interner::default();
        let mut completed = Vec::new();
        let mut pending = Vec::new();
        for &index in indices {
            let call = &history.calls[index];
            let (op, invoked_at) = (interner.op(&call.op), call.invoked_at);
            match &call.returned {
                Some((returned_at, outcome)) => {
                    let outcome = interner.outcome(outcome);
                    let returned_at = *returned_at;
                    let read_only = matches!(
                        outcome,
                        ModelOutcome::Value(_) | ModelOutcome::Cas { swapped: false, .. }
                    );
                    completed.push(CompletedCall {
                        index,
                        op,
                        outcome,
                        invoked_at,
                        returned_at,
                        read_only,
                    });
                }
                None => pending.push(PendingCall {
                    index,
                    op,
                    invoked_at,
                    twin_before: None,
                }),
            }
        }
        completed.sort_by_key(|call| (call.invoked_at, call.index));
        let observers = keep_relevant(&completed, &mut pending, interner.values());
        pending.sort_by_key(|call| (call.invoked_at, call.index));
        link_twins(&mut pending);
        KeyHistory {
            completed,
            pending,
            observers,
        }
    }
}

impl CompletedCall {
    /// The value this call saw: what a Get returned or a Cas reported as current. While
    /// another value is current, the call cannot take effect.
    fn observes(&self) -> Option<Value> {
        match self.outcome {
            ModelOutcome::Value(value) | ModelOutcome::Cas { current: value, .. } => Some(value),
            ModelOutcome::Done => None,
        }
    }
}

impl PendingCall {
    /// The value this call reacts to: a pending Cas swaps only on its expected value.
    fn observes(&self) -> Option<Value> {
        match self.op {
            ModelOp::Cas { expected, .. } => Some(expected),
            _ => None,
        }
    }

    /// The value this call leaves current if it takes effect and changes anything. A Cas
    /// whose new value is its expected one changes nothing.
    fn writes(&self) -> Option<Value> {
        match self.op {
            ModelOp::Get => None,
            ModelOp::Cas { expected, new } if expected == new => None,
            ModelOp::Put(value) | ModelOp::Cas { new: value, .. } => Some(value),
            ModelOp::Delete => Some(ABSENT),
        }
    }
}

/// Drops the pending calls that cannot affect any completed call's outcome, and returns how
/// many of the remaining calls observe each value.
///
/// A pending call matters only if it writes a value some call observes. Say pending call `p`
/// writes `v` and no call observes `v`. While `v` is current no completed call can take
/// effect (a Get or Cas would report `v`, so it observes `v`), and a pending Cas cannot swap
/// (it would observe `v`), so what follows `p` in a linearization is no-op pending Cas calls
/// and then a Put or Delete, or the end. Removing `p` and those pending calls leaves every
/// completed call's outcome as it was: a linearization with `p` exists only if one without it
/// does. A pending Get never matters. Dropping a pending Cas can leave a value unobserved, so
/// this repeats until nothing changes. It keeps timed-out writes of unique values, the common
/// case in the simulator, out of the search.
fn keep_relevant(
    completed: &[CompletedCall],
    pending: &mut Vec<PendingCall>,
    values: usize,
) -> Vec<u32> {
    loop {
        let mut observers = vec![0u32; values];
        let observed = completed.iter().filter_map(CompletedCall::observes);
        for value in observed.chain(pending.iter().filter_map(PendingCall::observes)) {
            observers[value as usize] += 1;
        }
        let before = pending.len();
        pending.retain(|call| {
            call.writes()
                .is_some_and(|value| observers[value as usize] > 0)
        });
        if pending.len() == before {
            return observers;
        }
    }
}

fn link_twins(pending: &mut [PendingCall]) {
    let mut last: FastMap<ModelOp, usize> = FastMap::default();
    for (id, call) in pending.iter_mut().enumerate() {
        call.twin_before = last.insert(call.op, id);
    }
}

// --- Doubly-linked lists ------------------------------------------------------------------

const HEAD: usize = 0;
const TAIL: usize = 1;
/// Nodes 0 and 1 are the sentinels; element `i` of a list is node `i + FIRST`.
const FIRST: usize = 2;

/// A doubly-linked list of `0..len` in order, between sentinels, supporting Porcupine's
/// `lift` and `unlift`: an unlinked node keeps its links, so it can be put back in O(1) as
/// long as unlinks and relinks are strictly nested, as the depth-first search's are.
#[derive(Debug)]
struct Links {
    prev: Vec<usize>,
    next: Vec<usize>,
}

impl Links {
    fn new(len: usize) -> Links {
        let chain: Vec<usize> = iter::once(HEAD)
            .chain(FIRST..FIRST + len)
            .chain(iter::once(TAIL))
            .collect();
        let mut prev = vec![HEAD; FIRST + len];
        let mut next = vec![TAIL; FIRST + len];
        for pair in chain.windows(2) {
            next[pair[0]] = pair[1];
            prev[pair[1]] = pair[0];
        }
        Links { prev, next }
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// The invocations and returns of the completed calls not yet linearized, in time order.
struct EventList {
    links: Links,
    /// The event at node `FIRST + i`: its call, and whether it is the call's return.
    events: Vec<(usize, bool)>,
    invocation_node: Vec<usize>,
    return_node: Vec<usize>,
}

impl EventList {
    fn new(calls: &[CompletedCall]) -> EventList {
        // (time, is_return, call): invocations sort before returns at the same tick (see the
        // module comment).
        let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(calls.len() * 2);
        for (id, call) in calls.iter().enumerate() {
            order.push((call.invoked_at, false, id));
            order.push((call.returned_at, true, id));
        }
        order.sort_unstable();
        let mut invocation_node = vec![0; calls.len()];
        let mut return_node = vec![0; calls.len()];
        for (position, &(_, is_return, id)) in order.iter().enumerate() {
            let nodes = if is_return {
                &mut return_node
            } else {
                &mut invocation_node
            };
            nodes[id] = position + FIRST;
        }
        let events = order
            .iter()
            .map(|&(_, is_return, id)| (id, is_return))
            .collect();
        EventList {
            links: Links::new(order.len()),
            events,
            invocation_node,
            return_node,
        }
    }

    fn event(&self, node: usize) -> (usize, bool) {
        self.events[node - FIRST]
    }

    /// Removes a call's invocation and return (Porcupine's `lift`).
    fn lift(&mut self, call: usize) {
        self.links.unlink(self.invocation_node[call]);
        self.links.unlink(self.return_node[call]);
    }

    /// Puts back what `lift` removed, in the reverse order.
    fn unlift(&mut self, call: usize) {
        self.links.relink(self.return_node[call]);
        self.links.relink(self.invocation_node[call]);
    }
}

// --- The cache of explored configurations -----------------------------------------------------

/// The splitmix64 finaliser: spreads every input bit over the hash table's index and tag bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Copy, Debug)]
struct CacheEntry {
    /// Words of the completed calls' bitset below this are all ones.
    full_words: usize,
    /// In `Cache::words`: the completed bitset's words from `full_words` to its last non-zero
    /// one, then the pending bitset's up to its last non-zero one.
    words_start: usize,
    completed_len: usize,
    pending_len: usize,
    state: Value,
    /// The next entry with the same hash, chained instead of a `Vec` per bucket.
    next: Option<usize>,
}

/// The configurations (completed calls linearized, pending calls placed, register value) the
/// search has entered.
///
/// A configuration is subsumed by an entered one with the same completed calls and value and
/// a subset of its pending calls: any way to finish from it also finishes from the entered
/// one, leaving the extra pending calls for the end. By induction on the length of the
/// shortest way to finish, a search that skips subsumed configurations still finds one
/// whenever one exists (an entered configuration on the current path has not failed yet, but
/// it will try that same way itself).
///
/// Bitsets are stored trimmed of leading all-ones and trailing zero words, in one arena. The
/// search linearizes calls roughly in invocation order, so the window of mixed words is about
/// as wide as the concurrency, and the cache grows linearly with the history rather than
/// quadratically.
#[derive(Default)]
struct Cache {
    heads: FastMap<u64, usize>,
    entries: Vec<CacheEntry>,
    words: Vec<u64>,
}

impl Cache {
    /// Adds the configuration; false if an entered one subsumes it.
    fn insert(&mut self, completed: &[u64], pending: &[u64], state: Value) -> bool {
        let full_words = completed
            .iter()
            .take_while(|&&word| word == u64::MAX)
            .count();
        let completed = trim_zeros(&completed[full_words..]);
        let pending = trim_zeros(pending);
        let seed = mix(full_words as u64 ^ (u64::from(state) << 32));
        let hash = completed.iter().fold(seed, |hash, &word| mix(hash ^ word));

        let head = self.heads.get(&hash).copied();
        let mut cursor = head;
        while let Some(index) = cursor {
            let entry = self.entries[index];
            let (entry_completed, rest) =
                self.words[entry.words_start..].split_at(entry.completed_len);
            let entry_pending = &rest[..entry.pending_len];
            let same = entry.state == state
                && entry.full_words == full_words
                && entry_completed == completed;
            if same && is_subset(entry_pending, pending) {
                return false;
            }
            cursor = entry.next;
        }
        self.entries.push(CacheEntry {
            full_words,
            words_start: self.words.len(),
            completed_len: completed.len(),
            pending_len: pending.len(),
            state,
            next: head,
        });
        self.words.extend_from_slice(completed);
        self.words.extend_from_slice(pending);
        self.heads.insert(hash, self.entries.len() - 1);
        true
    }
}

fn trim_zeros(words: &[u64]) -> &[u64] {
    &words[..words
        .iter()
        .rposition(|&word| word != 0)
        .map_or(0, |last| last + 1)]
}

/// Whether every bit of `small` is set in `large`; words past either's end are zero.
fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small.len() <= large.len() && small.iter().zip(large).all(|(&s, &l)| s & !l == 0)
}

/// A bitset over `0..len`.
#[derive(Debug)]
struct Bitset(Vec<u64>);

impl Bitset {
    fn new(len: usize) -> Bitset {
        Bitset(vec![0; len.div_ceil(64)])
    }

    /// Flips bit `id`, which must currently be `!to`.
    fn set(&mut self, id: usize, to: bool) {
        let (word, bit) = (id / 64, 1u64 << (id % 64));
        assert_eq!(
            self.0[word] & bit != 0,
            !to,
            "invariant: each call placed at most once"
        );
        self.0[word] ^= bit;
    }

    fn get(&self, id: usize) -> bool {
        self.0[id / 64] & (1u64 << (id % 64)) != 0
    }
}

// --- The search ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    NotLinearizable,
    Undecided,
}

#[derive(Clone, Copy, Debug)]
enum Placed {
    Completed(usize),
    Pending(usize),
}

/// A placed call and what to restore when the search takes it back.
#[derive(Clone, Copy, Debug)]
struct Frame {
    placed: Placed,
    /// Placed as the only choice worth trying (see `Cursor::Reads`): if it fails, so does
    /// the configuration it was placed from.
    forced: bool,
    /// Index into `History::calls`, for the counterexample.
    index: usize,
    state_before: Value,
    blocking_before: usize,
}

/// Where the search looks for the next call to place.
#[derive(Clone, Copy, Debug)]
enum Cursor {
    /// Walking the event list for a read-only candidate that the value explains. Placing it
    /// first is enough: if any way to finish exists, one places it now. It is a candidate, so
    /// every call that returned before its invocation is already placed; it changes no value,
    /// so moving it ahead of the calls placed before it in that way changes no outcome. This
    /// partial-order reduction removes most branching on read-heavy histories.
    Reads(usize),
    /// Then walking it again: any invocation is a candidate; the first return ends the walk.
    Event(usize),
    /// Then walking the pending list: a call invoked no later than the first return (at node
    /// `Search::blocking`) is a candidate. Completed calls go first because placing fewer
    /// pending calls early makes configurations the cache can subsume later ones by.
    Pending(usize),
}

/// The longest linearization found, kept for the counterexample.
///
/// Copying the whole stack at every improvement would be quadratic on a long history, so only
/// the part above the lowest point the stack fell to since the last copy is copied: below it
/// the copy is still equal to the stack.
#[derive(Debug, Default)]
struct Deepest {
    /// Indices into `History::calls`.
    calls: Vec<usize>,
    /// The call whose return the search stood at, unable to place anything.
    blocked_at: Option<usize>,
    /// `calls[..agrees_below]` equals the stack's bottom.
    agrees_below: usize,
}

impl Deepest {
    fn observe(&mut self, stack: &[Frame], blocked_at: usize) {
        if self.blocked_at.is_some() && stack.len() <= self.calls.len() {
            return;
        }
        self.calls.truncate(self.agrees_below);
        self.calls
            .extend(stack[self.agrees_below..].iter().map(|frame| frame.index));
        self.agrees_below = self.calls.len();
        self.blocked_at = Some(blocked_at);
    }

    fn popped_to(&mut self, depth: usize) {
        self.agrees_below = self.agrees_below.min(depth);
    }
}

/// The depth-first search of Wing & Gong with Lowe's cache, as in Porcupine's `checkSingle`:
/// walk the list from its head trying each invocation met; on meeting a return, the call it
/// ends was not linearized in time, so undo the last choice and try the next one after it.
/// Pending calls are kept out of the event list (their returns would never be met) and tried
/// after the completed candidates; the search succeeds once every completed call is placed.
struct Search<'k> {
    key: &'k KeyHistory,
    events: EventList,
    pending: Links,
    completed_placed: Bitset,
    pending_placed: Bitset,
    completed_left: usize,
    /// For each value, how many calls not yet placed observe it.
    observers_left: Vec<u32>,
    state: Value,
    cursor: Cursor,
    /// The node of the first return in the event list, once the walk has met it.
    blocking: usize,
    cache: Cache,
    stack: Vec<Frame>,
    deepest: Deepest,
    steps: u64,
}

impl<'k> Search<'k> {
    fn new(key: &'k KeyHistory) -> Search<'k> {
        let events = EventList::new(&key.completed);
        let cursor = Cursor::Reads(events.links.first());
        let mut search = Search {
            key,
            events,
            pending: Links::new(key.pending.len()),
            completed_placed: Bitset::new(key.completed.len()),
            pending_placed: Bitset::new(key.pending.len()),
            completed_left: key.completed.len(),
            observers_left: key.observers.clone(),
            state: ABSENT,
            cursor,
            blocking: TAIL,
            cache: Cache::default(),
            stack: Vec::new(),
            deepest: Deepest::default(),
            steps: 0,
        };
        // The root is entered like any configuration, so placing pending calls that change
        // nothing is pruned at once.
        search
            .cache
            .insert(&search.completed_placed.0, &search.pending_placed.0, ABSENT);
        search
    }

    fn run(&mut self, search_steps_max: u64) -> Verdict {
        while self.completed_left > 0 {
            if self.steps == search_steps_max {
                return Verdict::Undecided;
            }
            self.steps += 1;
            let progressed = match self.cursor {
                Cursor::Reads(node) => self.at_read(node),
                Cursor::Event(node) => {
                    self.at_event(node);
                    true
                }
                Cursor::Pending(node) => self.at_pending(node),
            };
            if !progressed {
                return Verdict::NotLinearizable;
            }
        }
        Verdict::Linearizable
    }

    /// False when the search is exhausted: the history is not linearizable.
    fn at_read(&mut self, node: usize) -> bool {
        let (call, is_return) = self.events.event(node);
        if is_return {
            self.cursor = Cursor::Event(self.events.links.first());
            return true;
        }
        let CompletedCall {
            op,
            outcome,
            read_only,
            index,
            ..
        } = self.key.completed[call];
        if !read_only || op.step(self.state, outcome).is_none() {
            self.cursor = Cursor::Reads(self.events.links.next[node]);
            return true;
        }
        self.completed_placed.set(call, true);
        if !self
            .cache
            .insert(&self.completed_placed.0, &self.pending_placed.0, self.state)
        {
            // Entered before, from here or with fewer pending calls placed, and failed there;
            // and it was the only choice worth trying from here.
            self.completed_placed.set(call, false);
            return self.backtrack();
        }
        self.events.lift(call);
        self.completed_left -= 1;
        self.push(Placed::Completed(call), true, index, self.state);
        true
    }

    fn at_event(&mut self, node: usize) {
        assert!(
            node != TAIL,
            "invariant: a completed call's return follows its invocation"
        );
        let (call, is_return) = self.events.event(node);
        if is_return {
            self.blocking = node;
            self.cursor = Cursor::Pending(self.pending.first());
        } else if self.wasted_after_pending(call) {
            self.cursor = Cursor::Event(self.events.links.next[node]);
        } else if let Some(state_after) = self.try_completed(call) {
            self.events.lift(call);
            self.completed_left -= 1;
            self.push(
                Placed::Completed(call),
                false,
                self.key.completed[call].index,
                state_after,
            );
        } else {
            self.cursor = Cursor::Event(self.events.links.next[node]);
        }
    }

    /// Whether placing `call` now would make the pending calls placed just before it useless.
    /// Pending calls are worth placing only to produce the value a completed call then
    /// observes: a Put or Delete would overwrite it, and a way to finish that places pending
    /// calls and then a Put or Delete also finishes, shorter, without those pending calls, so
    /// the configuration before them (which the search has entered) will find it.
    fn wasted_after_pending(&self, call: usize) -> bool {
        let after_pending = self
            .stack
            .last()
            .is_some_and(|frame| matches!(frame.placed, Placed::Pending(_)));
        after_pending && self.key.completed[call].observes().is_none()
    }

    /// False when the search is exhausted: the history is not linearizable.
    fn at_pending(&mut self, node: usize) -> bool {
        let (blocking_call, _) = self.events.event(self.blocking);
        let deadline = self.key.completed[blocking_call].returned_at;
        if node == TAIL || self.key.pending[node - FIRST].invoked_at > deadline {
            return self.dead_end();
        }
        let call = node - FIRST;
        if let Some(state_after) = self.try_pending(call) {
            self.pending.unlink(node);
            self.push(
                Placed::Pending(call),
                false,
                self.key.pending[call].index,
                state_after,
            );
        } else {
            self.cursor = Cursor::Pending(self.pending.next[node]);
        }
        true
    }

    /// The state after `call` if it can take effect now into a configuration not yet entered.
    fn try_completed(&mut self, call: usize) -> Option<Value> {
        let CompletedCall { op, outcome, .. } = self.key.completed[call];
        let state_after = op.step(self.state, outcome)?;
        self.completed_placed.set(call, true);
        if self.cache.insert(
            &self.completed_placed.0,
            &self.pending_placed.0,
            state_after,
        ) {
            Some(state_after)
        } else {
            self.completed_placed.set(call, false);
            None
        }
    }

    fn try_pending(&mut self, call: usize) -> Option<Value> {
        let pending = self.key.pending[call];
        if pending
            .twin_before
            .is_some_and(|twin| !self.pending_placed.get(twin))
        {
            return None;
        }
        // Once every call observing the value it writes is placed, a pending call can no
        // longer matter, by the argument of `keep_relevant` applied to the rest of the
        // linearization.
        let observed = pending
            .writes()
            .is_some_and(|value| self.observers_left[value as usize] > 0);
        if !observed {
            return None;
        }
        let (state_after, _) = pending.op.apply(self.state);
        self.pending_placed.set(call, true);
        if self.cache.insert(
            &self.completed_placed.0,
            &self.pending_placed.0,
            state_after,
        ) {
            Some(state_after)
        } else {
            self.pending_placed.set(call, false);
            None
        }
    }

    /// Records a call just placed (and lifted), and restarts the walk from the head.
    fn push(&mut self, placed: Placed, forced: bool, index: usize, state_after: Value) {
        let (state_before, blocking_before) = (self.state, self.blocking);
        self.stack.push(Frame {
            placed,
            forced,
            index,
            state_before,
            blocking_before,
        });
        self.state = state_after;
        self.cursor = Cursor::Reads(self.events.links.first());
        if let Some(value) = self.observes(placed) {
            self.observers_left[value as usize] -= 1;
        }
    }

    fn observes(&self, placed: Placed) -> Option<Value> {
        match placed {
            Placed::Completed(call) => self.key.completed[call].observes(),
            Placed::Pending(call) => self.key.pending[call].observes(),
        }
    }

    /// Stuck at the first return: records how far the search got, then backtracks.
    fn dead_end(&mut self) -> bool {
        let (blocking_call, _) = self.events.event(self.blocking);
        let blocked_at = self.key.completed[blocking_call].index;
        self.deepest.observe(&self.stack, blocked_at);
        self.backtrack()
    }

    /// Takes back placed calls until one was not forced, and moves past it; false if none.
    fn backtrack(&mut self) -> bool {
        while let Some(frame) = self.stack.pop() {
            self.deepest.popped_to(self.stack.len());
            self.undo(frame);
            if !frame.forced {
                return true;
            }
            self.steps += 1;
        }
        false
    }

    /// Restores the configuration before `frame` and points the cursor past its call.
    fn undo(&mut self, frame: Frame) {
        if let Some(value) = self.observes(frame.placed) {
            self.observers_left[value as usize] += 1;
        }
        self.state = frame.state_before;
        self.blocking = frame.blocking_before;
        match frame.placed {
            Placed::Completed(call) => {
                self.completed_placed.set(call, false);
                self.completed_left += 1;
                self.events.unlift(call);
                let invocation = self.events.invocation_node[call];
                self.cursor = Cursor::Event(self.events.links.next[invocation]);
            }
            Placed::Pending(call) => {
                self.pending_placed.set(call, false);
                let node = call + FIRST;
                self.pending.relink(node);
                self.cursor = Cursor::Pending(self.pending.next[node]);
            }
        }
    }
}

// --- The counterexample ----------------------------------------------------------------------

fn explain(
    history: &History,
    key: &[u8],
    calls_on_key: usize,
    deepest: &Deepest,
) -> Counterexample {
    let longest_prefix = deepest.calls.clone();
    let unplaceable = deepest
        .blocked_at
        .expect("invariant: a failed search met a return");
    let mut text = format!(
        "key {}: not linearizable ({calls_on_key} calls on this key).\n",
        render_bytes(key)
    );
    text += &format!(
        "Longest linearizable prefix found: {} calls",
        longest_prefix.len()
    );
    let elided = longest_prefix
        .len()
        .saturating_sub(EXPLANATION_PREFIX_CALLS_MAX);
    if elided > 0 {
        text += &format!(" ({elided} earlier ones elided)");
    }
    text += ":\n";
    for &index in &longest_prefix[elided..] {
        text += &format!("  {}\n", render_call(index, &history.calls[index]));
    }
    let value = value_after(history, &longest_prefix);
    text += &format!(
        "after which the value is {}.\n",
        render_value(value.as_ref())
    );
    let call = &history.calls[unplaceable];
    text += &format!("Cannot place next: {}\n", render_call(unplaceable, call));
    text += &why_unplaceable(call, value);
    text += &render_candidates(history, &longest_prefix, unplaceable);
    Counterexample {
        key: key.to_vec(),
        longest_prefix,
        unplaceable,
        explanation: text,
    }
}

/// Replays a linearization on the real values, for the explanation.
fn value_after(history: &History, linearization: &[usize]) -> Option<Vec<u8>> {
    let mut value = None;
    for &index in linearization {
        history.calls[index].op.apply(&mut value);
    }
    value
}

fn why_unplaceable(call: &Call, mut value: Option<Vec<u8>>) -> String {
    let expected = call.op.apply(&mut value);
    match &call.returned {
        Some((_, outcome)) if *outcome != expected => format!(
            "  here it would return {}, not {}; and no concurrent call placed first helps.\n",
            render_outcome(&expected),
            render_outcome(outcome)
        ),
        _ => "  it fits here, but every continuation after it fails.\n".to_string(),
    }
}

/// The calls that could have been linearized instead at that point: not in the prefix and
/// invoked no later than the unplaceable call returned.
fn render_candidates(history: &History, prefix: &[usize], unplaceable: usize) -> String {
    let deadline = history.calls[unplaceable]
        .returned
        .as_ref()
        .map_or(u64::MAX, |(at, _)| *at);
    let key = history.calls[unplaceable].op.key();
    let candidates: Vec<usize> = (0..history.calls.len())
        .filter(|&index| index != unplaceable && !prefix.contains(&index))
        .filter(|&index| {
            let call = &history.calls[index];
            call.op.key() == key && call.invoked_at <= deadline
        })
        .collect();
    if candidates.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "Concurrent calls also tried there ({}):\n",
        candidates.len()
    );
    for &index in candidates.iter().take(EXPLANATION_CANDIDATES_MAX) {
        text += &format!("  {}\n", render_call(index, &history.calls[index]));
    }
    text
}

fn render_call(index: usize, call: &Call) -> String {
    let (returned, outcome) = match &call.returned {
        Some((at, outcome)) => (format!("{at}]"), render_outcome(outcome)),
        None => ("never)".to_string(), "?".to_string()),
    };
    format!(
        "#{index} client {} {} [{}, {returned} -> {outcome}",
        call.client,
        render_op(&call.op),
        call.invoked_at
    )
}

fn render_op(op: &KvOp) -> String {
    match op {
        KvOp::Get { .. } => "Get".to_string(),
        KvOp::Put { value, .. } => format!("Put({})", render_bytes(value)),
        KvOp::Delete { .. } => "Delete".to_string(),
        KvOp::Cas { expected, new, .. } => {
            format!(
                "Cas({} => {})",
                render_value(expected.as_ref()),
                render_bytes(new)
            )
        }
    }
}

fn render_outcome(outcome: &KvOutcome) -> String {
    match outcome {
        KvOutcome::Value(value) => render_value(value.as_ref()),
        KvOutcome::Done => "done".to_string(),
        KvOutcome::Cas {
            swapped: true,
            current,
        } => {
            format!("swapped, saw {}", render_value(current.as_ref()))
        }
        KvOutcome::Cas {
            swapped: false,
            current,
        } => {
            format!("not swapped, saw {}", render_value(current.as_ref()))
        }
    }
}

fn render_value(value: Option<&Vec<u8>>) -> String {
    value.map_or_else(|| "absent".to_string(), |bytes| render_bytes(bytes))
}

/// Printable ASCII in quotes, anything else as hex; long values are cut, since a developer
/// only needs to tell them apart.
fn render_bytes(bytes: &[u8]) -> String {
    const SHOWN_MAX: usize = 24;
    let shown = &bytes[..bytes.len().min(SHOWN_MAX)];
    let ellipsis = if bytes.len() > SHOWN_MAX { "..." } else { "" };
    if shown
        .iter()
        .all(|byte| byte.is_ascii_graphic() || *byte == b' ')
    {
        format!("\"{}{ellipsis}\"", String::from_utf8_lossy(shown))
    } else {
        let hex = shown.iter().fold(String::new(), |mut hex, byte| {
            // Writing to a `String` cannot fail.
            let _ = write!(hex, "{byte:02x}");
            hex
        });
        format!("0x{hex}{ellipsis}")
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotLinearizable(counterexample) => {
                f.write_str(counterexample.explanation.trim_end())
            }
            Violation::Undecided {
                key,
                calls,
                search_steps,
            } => write!(
                f,
                "key {}: linearizability undecided after {search_steps} search steps over \
                 {calls} calls; nothing was proven either way. Spread the workload over more \
                 keys or fewer concurrent clients per key (at most about 10).",
                render_bytes(key)
            ),
            Violation::Malformed { call, reason } => write!(
                f,
                "call #{call} is impossible as recorded ({reason}); the history was not \
                 checked. Fix the recorder."
            ),
        }
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the cache tells apart completed-call bitsets that differ only in where their full
    // and empty words are, and equal ones as equal, by inserting each twice with two values.
    #[test]
    fn cache_distinguishes_trimmed_bitsets() {
        let mut cache = Cache::default();
        let sets: [&[u64]; 5] = [
            &[0, 0],
            &[u64::MAX, 0],
            &[u64::MAX, 1],
            &[1, 0],
            &[u64::MAX, u64::MAX],
        ];
        for set in sets {
            assert!(cache.insert(set, &[], 0), "{set:?} is new");
            assert!(
                cache.insert(set, &[], 1),
                "{set:?} with another value is new"
            );
        }
        for set in sets {
            assert!(!cache.insert(set, &[0], 0), "{set:?} was entered");
        }
    }

    // Proves a configuration is subsumed exactly by an entered one with the same completed
    // calls and value and a subset of its pending calls, by inserting supersets, subsets and
    // unrelated sets of pending calls after one.
    #[test]
    fn cache_subsumes_supersets_of_pending_calls() {
        let mut cache = Cache::default();
        assert!(cache.insert(&[0b1], &[0b0101], 7));
        assert!(!cache.insert(&[0b1], &[0b0101], 7), "equal");
        assert!(!cache.insert(&[0b1], &[0b1101, 1], 7), "superset");
        assert!(cache.insert(&[0b1], &[0b0100], 7), "subset");
        assert!(cache.insert(&[0b1], &[0b0011], 7), "unrelated");
        assert!(cache.insert(&[0b1], &[0b0101], 8), "another value");
        assert!(cache.insert(&[0b11], &[0b0101], 7), "other completed calls");
    }

    // Proves relink undoes unlink when nested, as the search nests them, by unlinking two
    // neighbours and the ends of a list, relinking in reverse order and comparing the links.
    #[test]
    fn relink_restores_unlink() {
        let mut links = Links::new(5);
        let before = (links.prev.clone(), links.next.clone());
        for node in [FIRST + 2, FIRST + 3, FIRST, FIRST + 4] {
            links.unlink(node);
        }
        assert_eq!(links.first(), FIRST + 1);
        for node in [FIRST + 4, FIRST, FIRST + 3, FIRST + 2] {
            links.relink(node);
        }
        assert_eq!((links.prev, links.next), before);
        assert_eq!(Links::new(0).first(), TAIL);
    }

    // Proves the pending calls that cannot matter are dropped (a Get; writes of values no call
    // observes, including one observed only by a pending Cas that is itself dropped) and the
    // rest kept and chained to their identical twins, on one key's hand-made sub-history.
    #[test]
    fn pending_calls_that_cannot_matter_are_dropped() {
        let key = || b"k".to_vec();
        let bytes = |value: &str| value.as_bytes().to_vec();
        let put = |value: &str| KvOp::Put {
            key: key(),
            value: bytes(value),
        };
        let cas = |expected: &str, new: &str| KvOp::Cas {
            key: key(),
            expected: Some(bytes(expected)),
            new: bytes(new),
        };
        let pending = |op, invoked_at| Call {
            client: 1,
            op,
            invoked_at,
            returned: None,
        };
        let get = |invoked_at, value: Option<&str>| Call {
            client: 2,
            op: KvOp::Get { key: key() },
            invoked_at,
            returned: Some((invoked_at + 1, KvOutcome::Value(value.map(bytes)))),
        };
        let history = History {
            calls: vec![
                pending(put("unseen"), 0),
                pending(put("seen"), 1),
                pending(KvOp::Get { key: key() }, 2),
                pending(KvOp::Delete { key: key() }, 3),
                pending(put("seen"), 4),
                pending(put("x"), 5),
                pending(cas("x", "unseen too"), 6),
                get(7, Some("seen")),
                get(9, None),
            ],
        };
        let key_history = KeyHistory::new(&history, &(0..history.len()).collect::<Vec<_>>());
        let kept: Vec<(usize, Option<usize>)> = key_history
            .pending
            .iter()
            .map(|call| (call.index, call.twin_before))
            .collect();
        assert_eq!(kept, vec![(1, None), (3, None), (4, Some(0))]);
        assert_eq!(key_history.completed.len(), 2);
    }
}
