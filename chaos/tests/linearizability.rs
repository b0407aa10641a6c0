//! Tests of the linearizability checker: hand-written edge cases, histories generated from
//! real sequential executions (linearizable by construction) and mutated ones, and a
//! cross-check against `stateright`'s independent linearizability tester.

use chronon_chaos::history::{Call, History, KvOp, KvOutcome};
use chronon_chaos::linearizability::{CheckStats, Violation, check, check_bounded};
use chronon_engine::rng::Rng;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use std::collections::HashMap;
use std::time::Instant;

// --- Building histories by hand ------------------------------------------------------------

const K: &[u8] = b"k";

fn bytes(value: &str) -> Vec<u8> {
    value.as_bytes().to_vec()
}

fn get() -> KvOp {
    KvOp::Get { key: K.to_vec() }
}

fn put(value: &str) -> KvOp {
    KvOp::Put {
        key: K.to_vec(),
        value: bytes(value),
    }
}

fn delete() -> KvOp {
    KvOp::Delete { key: K.to_vec() }
}

fn cas(expected: Option<&str>, new: &str) -> KvOp {
    KvOp::Cas {
        key: K.to_vec(),
        expected: expected.map(bytes),
        new: bytes(new),
    }
}

fn read(value: Option<&str>) -> KvOutcome {
    KvOutcome::Value(value.map(bytes))
}

fn done() -> KvOutcome {
    KvOutcome::Done
}

fn swapped(current: Option<&str>) -> KvOutcome {
    KvOutcome::Cas {
        swapped: true,
        current: current.map(bytes),
    }
}

fn refused(current: Option<&str>) -> KvOutcome {
    KvOutcome::Cas {
        swapped: false,
        current: current.map(bytes),
    }
}

/// A call that returned `outcome` to `client` over `[invoked_at, returned_at]`.
fn call(client: u64, op: KvOp, invoked_at: u64, returned_at: u64, outcome: KvOutcome) -> Call {
    Call {
        client,
        op,
        invoked_at,
        returned: Some((returned_at, outcome)),
    }
}

/// A call whose outcome its client never learned.
fn pending(client: u64, op: KvOp, invoked_at: u64) -> Call {
    Call {
        client,
        op,
        invoked_at,
        returned: None,
    }
}

/// The same call on another key.
fn on(key: &str, mut call: Call) -> Call {
    match &mut call.op {
        KvOp::Get { key: k } | KvOp::Put { key: k, .. } | KvOp::Delete { key: k } => {
            *k = bytes(key);
        }
        KvOp::Cas { key: k, .. } => *k = bytes(key),
    }
    call
}

fn history(calls: Vec<Call>) -> History {
    History { calls }
}

// --- Hand-written cases --------------------------------------------------------------------

struct Case {
    name: &'static str,
    calls: Vec<Call>,
    linearizable: bool,
}

fn case(name: &'static str, linearizable: bool, calls: Vec<Call>) -> Case {
    Case {
        name,
        calls,
        linearizable,
    }
}

#[allow(clippy::too_many_lines)] // A table: one entry per edge case reads best in one place.
fn cases() -> Vec<Case> {
    vec![
        case("empty history", true, vec![]),
        case(
            "absent key reads as absent",
            true,
            vec![call(1, get(), 0, 1, read(None))],
        ),
        case(
            "sequential put then get",
            true,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(2, get(), 2, 3, read(Some("a"))),
            ],
        ),
        case(
            "stale read after a completed write",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(1, put("b"), 2, 3, done()),
                call(2, get(), 4, 5, read(Some("a"))),
            ],
        ),
        case(
            "lost write: absent after a completed put",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(2, get(), 2, 3, read(None)),
            ],
        ),
        case(
            "read concurrent with a write may see the old value",
            true,
            vec![
                call(1, put("a"), 0, 10, done()),
                call(2, get(), 2, 3, read(None)),
            ],
        ),
        case(
            "read concurrent with a write may see the new value",
            true,
            vec![
                call(1, put("a"), 0, 10, done()),
                call(2, get(), 2, 3, read(Some("a"))),
            ],
        ),
        case(
            "reads may not see a concurrent write and then lose it",
            false,
            vec![
                call(1, put("a"), 0, 10, done()),
                call(2, get(), 1, 2, read(Some("a"))),
                call(2, get(), 3, 4, read(None)),
            ],
        ),
        case(
            "concurrent writes in either order",
            true,
            vec![
                call(1, put("a"), 0, 10, done()),
                call(2, put("b"), 0, 10, done()),
                call(3, get(), 1, 2, read(Some("b"))),
                call(3, get(), 11, 12, read(Some("a"))),
            ],
        ),
        case(
            "concurrent writes observed in both orders",
            false,
            vec![
                call(1, put("a"), 0, 100, done()),
                call(2, put("b"), 0, 100, done()),
                call(3, get(), 10, 11, read(Some("a"))),
                call(4, get(), 10, 11, read(Some("b"))),
                call(3, get(), 20, 21, read(Some("b"))),
                call(4, get(), 20, 21, read(Some("a"))),
            ],
        ),
        case(
            "a write observed twice around another",
            false,
            vec![
                call(1, put("a"), 0, 10, done()),
                call(2, put("b"), 0, 10, done()),
                call(3, get(), 1, 2, read(Some("a"))),
                call(3, get(), 3, 4, read(Some("b"))),
                call(3, get(), 5, 6, read(Some("a"))),
            ],
        ),
        case(
            "cas: one winner, the loser sees the winner's value",
            true,
            vec![
                call(1, cas(None, "a"), 0, 10, swapped(None)),
                call(2, cas(None, "b"), 0, 10, refused(Some("a"))),
                call(3, get(), 11, 12, read(Some("a"))),
            ],
        ),
        case(
            "cas that swapped twice",
            false,
            vec![
                call(1, cas(None, "a"), 0, 10, swapped(None)),
                call(2, cas(None, "b"), 0, 10, swapped(None)),
            ],
        ),
        case(
            "cas swapped although the value did not match",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(2, cas(None, "b"), 2, 3, swapped(None)),
            ],
        ),
        case(
            "cas refused while the value matched",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(2, cas(Some("a"), "b"), 2, 3, refused(Some("a"))),
            ],
        ),
        case(
            "cas refused, reporting a value never written",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(2, cas(None, "b"), 2, 3, refused(Some("z"))),
            ],
        ),
        case(
            "cas chain of two clients",
            true,
            vec![
                call(1, cas(None, "a"), 0, 1, swapped(None)),
                call(2, cas(Some("a"), "b"), 2, 5, swapped(Some("a"))),
                call(1, cas(Some("a"), "c"), 3, 6, refused(Some("b"))),
                call(1, get(), 7, 8, read(Some("b"))),
            ],
        ),
        case(
            "read of a value never written",
            false,
            vec![call(1, get(), 0, 1, read(Some("x")))],
        ),
        case(
            "delete then read absent",
            true,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(1, delete(), 2, 3, done()),
                call(2, get(), 4, 5, read(None)),
            ],
        ),
        case(
            "read of a deleted value",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                call(1, delete(), 2, 3, done()),
                call(2, get(), 4, 5, read(Some("a"))),
            ],
        ),
        case(
            "delete of an absent key succeeds",
            true,
            vec![call(1, delete(), 0, 1, done())],
        ),
        case(
            "pending write that becomes visible later",
            true,
            vec![
                pending(1, put("a"), 0),
                call(2, get(), 5, 6, read(None)),
                call(2, get(), 7, 8, read(Some("a"))),
            ],
        ),
        case(
            "pending write that never becomes visible",
            true,
            vec![
                pending(1, put("a"), 0),
                call(2, get(), 5, 6, read(None)),
                call(2, get(), 100, 101, read(None)),
            ],
        ),
        case(
            "pending write seen, then unseen",
            false,
            vec![
                pending(1, put("a"), 0),
                call(2, get(), 5, 6, read(Some("a"))),
                call(2, get(), 7, 8, read(None)),
            ],
        ),
        case(
            "pending write seen before it was invoked",
            false,
            vec![
                call(2, get(), 0, 1, read(Some("a"))),
                pending(1, put("a"), 2),
            ],
        ),
        case(
            "pending cas that swapped",
            true,
            vec![
                call(1, put("a"), 0, 1, done()),
                pending(1, cas(Some("a"), "b"), 2),
                call(2, get(), 3, 4, read(Some("b"))),
            ],
        ),
        case(
            "pending cas that did not take effect",
            true,
            vec![
                call(1, put("a"), 0, 1, done()),
                pending(1, cas(Some("a"), "b"), 2),
                call(2, get(), 3, 4, read(Some("a"))),
            ],
        ),
        case(
            "pending cas cannot swap on a mismatch",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                pending(1, cas(None, "b"), 2),
                call(2, get(), 3, 4, read(Some("b"))),
            ],
        ),
        case(
            "pending get constrains nothing",
            true,
            vec![pending(1, get(), 0)],
        ),
        case(
            "two identical pending writes, each seen once",
            true,
            vec![
                pending(1, put("a"), 0),
                pending(2, put("a"), 0),
                call(3, put("b"), 1, 2, done()),
                call(3, get(), 3, 4, read(Some("a"))),
                call(3, put("b"), 5, 6, done()),
                call(3, get(), 7, 8, read(Some("a"))),
            ],
        ),
        case(
            "one pending write cannot be seen twice",
            false,
            vec![
                pending(1, put("a"), 0),
                call(3, put("b"), 1, 2, done()),
                call(3, get(), 3, 4, read(Some("a"))),
                call(3, put("b"), 5, 6, done()),
                call(3, get(), 7, 8, read(Some("a"))),
            ],
        ),
        case(
            "a pending write enabling a pending cas",
            true,
            vec![
                pending(1, put("a"), 0),
                pending(2, cas(Some("a"), "b"), 1),
                call(3, get(), 2, 3, read(Some("b"))),
            ],
        ),
        case(
            "a pending delete explains an absent read",
            true,
            vec![
                call(1, put("a"), 0, 1, done()),
                pending(2, delete(), 2),
                call(3, get(), 3, 4, read(None)),
                call(3, get(), 5, 6, read(None)),
            ],
        ),
        case(
            "a pending delete cannot be undone",
            false,
            vec![
                call(1, put("a"), 0, 1, done()),
                pending(2, delete(), 2),
                call(3, get(), 3, 4, read(None)),
                call(3, get(), 5, 6, read(Some("a"))),
            ],
        ),
        case(
            "a timed-out call may land after the client's next call",
            true,
            vec![
                pending(1, put("a"), 0),
                call(1, put("b"), 1, 2, done()),
                call(2, get(), 3, 4, read(Some("a"))),
            ],
        ),
        case(
            "a return and an invocation at the same tick are concurrent",
            true,
            vec![
                call(1, put("a"), 0, 5, done()),
                call(2, get(), 5, 6, read(None)),
            ],
        ),
        case(
            "zero-length calls are ordered by their ticks",
            false,
            vec![
                call(1, put("a"), 3, 3, done()),
                call(2, get(), 3, 3, read(Some("a"))),
                call(2, get(), 4, 4, read(None)),
            ],
        ),
        case(
            "keys are independent registers",
            true,
            vec![
                on("x", call(1, put("a"), 0, 1, done())),
                on("y", call(2, get(), 2, 3, read(None))),
                on("x", call(2, get(), 4, 5, read(Some("a")))),
            ],
        ),
        case(
            "a stale read on a second key",
            false,
            vec![
                on("x", call(1, put("a"), 0, 1, done())),
                on("y", call(1, put("a"), 0, 1, done())),
                on("x", call(2, get(), 2, 3, read(Some("a")))),
                on("y", call(2, get(), 2, 3, read(None))),
            ],
        ),
    ]
}

// Proves the checker's verdict on each hand-written edge case (stale and lost reads, Cas
// anomalies, pending calls, ties, several keys) by checking each and comparing the verdict
// with the one the case states. A failing case prints the checker's explanation.
#[test]
fn table_of_small_histories() {
    for Case {
        name,
        calls,
        linearizable,
    } in cases()
    {
        match (check(&history(calls)), linearizable) {
            (Ok(_), true) | (Err(Violation::NotLinearizable(_)), false) => {}
            (Ok(stats), false) => panic!("{name}: expected a violation, got {stats:?}"),
            (Err(violation), _) => panic!("{name}: expected linearizable, got {violation}"),
        }
    }
}

// Proves a violation names the key, the longest linearizable prefix and the call that could
// not be placed, on a stale read where all three are known, and that the message shows them.
#[test]
fn violation_explains_the_stale_read() {
    let calls = vec![
        on("other", call(9, put("z"), 0, 1, done())),
        call(1, put("a"), 0, 1, done()),
        call(1, put("b"), 2, 3, done()),
        call(2, get(), 4, 5, read(Some("a"))),
    ];
    let Err(Violation::NotLinearizable(counterexample)) = check(&history(calls)) else {
        panic!("a stale read must be reported");
    };
    assert_eq!(counterexample.key, b"k");
    assert_eq!(counterexample.longest_prefix, vec![1, 2]);
    assert_eq!(counterexample.unplaceable, 3);
    let message = Violation::NotLinearizable(counterexample).to_string();
    println!("{message}");
    assert!(message.contains("key \"k\""), "{message}");
    assert!(
        message.contains("#3 client 2 Get [4, 5] -> \"a\""),
        "{message}"
    );
    assert!(message.contains("would return \"b\""), "{message}");
}

// Proves impossible recordings are refused as such rather than reported as consistency bugs:
// a return before its invocation and an outcome of the wrong kind.
#[test]
fn malformed_histories_are_refused() {
    let backwards = history(vec![call(1, get(), 5, 4, read(None))]);
    assert!(matches!(
        check(&backwards),
        Err(Violation::Malformed { call: 0, .. })
    ));
    let wrong_kind = history(vec![
        call(1, get(), 0, 1, read(None)),
        call(1, put("a"), 2, 3, read(None)),
    ]);
    let verdict = check(&wrong_kind);
    assert!(
        matches!(verdict, Err(Violation::Malformed { call: 1, .. })),
        "{verdict:?}"
    );
}

// Proves the search gives up with `Undecided` instead of running on, and that a proven
// violation on another key still wins over it: a tiny step budget on a key with many
// concurrent calls, and a stale read on a key checked after it.
#[test]
fn search_is_bounded() {
    let mut calls: Vec<Call> = (0..12)
        .map(|client| call(client, put("a"), 0, 100, done()))
        .collect();
    calls.push(call(20, get(), 101, 102, read(Some("a"))));
    let crowded = history(calls.clone());
    let verdict = check_bounded(&crowded, 10);
    assert!(
        matches!(&verdict, Err(Violation::Undecided { key, calls: 13, search_steps: 10 }) if key == b"k"),
        "{verdict:?}"
    );
    println!("{}", verdict.expect_err("undecided"));
    assert!(check(&crowded).is_ok());

    calls.push(on("later", call(1, put("a"), 0, 1, done())));
    calls.push(on("later", call(1, get(), 2, 3, read(None))));
    let verdict = check_bounded(&history(calls), 10);
    assert!(
        matches!(&verdict, Err(Violation::NotLinearizable(c)) if c.key == b"later"),
        "{verdict:?}"
    );
}

// --- Histories generated from real executions ---------------------------------------------

/// The shape of a generated workload.
#[derive(Clone, Copy, Debug)]
struct Workload {
    keys: u64,
    /// Each client works on key `client % keys`, so this many per key run concurrently.
    clients_per_key: u64,
    calls: usize,
    /// Values are drawn from this many, so that Cas sometimes matches.
    values: u64,
    /// Chance per tick, in percent, that a client waiting for an answer gives up on it.
    give_up_percent: u64,
}

/// A client's call in flight: its index, and its outcome once it has taken effect.
type InFlight = (usize, Option<KvOutcome>);

/// Runs clients against a real sequential store tick by tick. Each call takes effect
/// atomically at some tick between its invocation and its return, so the recorded history
/// is linearizable by construction; some clients give up on a call before or after it took
/// effect, leaving it pending.
fn execute(rng: &mut Rng, workload: Workload) -> History {
    let mut history = History::new();
    let mut store: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let clients = workload.keys * workload.clients_per_key;
    let mut in_flight: Vec<Option<InFlight>> = vec![None; clients as usize];
    let mut tick = 0;
    while history.len() < workload.calls || in_flight.iter().any(Option::is_some) {
        for client in 0..clients {
            let slot = &mut in_flight[client as usize];
            *slot = match slot.take() {
                None if history.len() < workload.calls && rng.chance(1, 2) => {
                    let key = format!("key{}", client % workload.keys);
                    let op = random_op(rng, key.as_bytes(), workload.values);
                    Some((history.invoke(client, op, tick), None))
                }
                None => None,
                Some((index, None)) if rng.chance(1, 3) => {
                    let op = &history.calls[index].op;
                    let mut value = store.get(op.key()).cloned();
                    let outcome = op.apply(&mut value);
                    match value {
                        Some(value) => store.insert(op.key().to_vec(), value),
                        None => store.remove(op.key()),
                    };
                    Some((index, Some(outcome)))
                }
                Some((index, Some(outcome))) if rng.chance(1, 2) => {
                    history.complete(index, tick, outcome);
                    None
                }
                Some(_) if rng.chance(workload.give_up_percent, 100) => None,
                unchanged => unchanged,
            };
        }
        tick += 1;
    }
    history
}

fn random_value(rng: &mut Rng, values: u64) -> Vec<u8> {
    format!("v{}", rng.below(values)).into_bytes()
}

fn random_op(rng: &mut Rng, key: &[u8], values: u64) -> KvOp {
    let key = key.to_vec();
    match rng.below(20) {
        0..7 => KvOp::Get { key },
        7..13 => KvOp::Put {
            key,
            value: random_value(rng, values),
        },
        13..15 => KvOp::Delete { key },
        _ => {
            let expected = if rng.chance(1, 4) {
                None
            } else {
                Some(random_value(rng, values))
            };
            KvOp::Cas {
                key,
                expected,
                new: random_value(rng, values),
            }
        }
    }
}

fn random_outcome(rng: &mut Rng, op: &KvOp, values: u64) -> KvOutcome {
    let value = if rng.chance(2, 3) {
        Some(random_value(rng, values))
    } else {
        None
    };
    match op {
        KvOp::Get { .. } => KvOutcome::Value(value),
        KvOp::Put { .. } | KvOp::Delete { .. } => KvOutcome::Done,
        KvOp::Cas { .. } => KvOutcome::Cas {
            swapped: rng.chance(1, 2),
            current: value,
        },
    }
}

// Proves the checker accepts every history of a correct store, across workload shapes with
// pending calls, by generating them from real sequential executions (`execute`) for many seeds.
#[test]
fn executions_of_a_correct_store_are_linearizable() {
    let shapes = [
        Workload {
            keys: 1,
            clients_per_key: 3,
            calls: 40,
            values: 2,
            give_up_percent: 5,
        },
        Workload {
            keys: 1,
            clients_per_key: 8,
            calls: 200,
            values: 3,
            give_up_percent: 2,
        },
        Workload {
            keys: 5,
            clients_per_key: 4,
            calls: 300,
            values: 3,
            give_up_percent: 10,
        },
    ];
    for seed in 0..300 {
        let workload = shapes[seed as usize % shapes.len()];
        let execution = execute(&mut Rng::new(seed), workload);
        let verdict = check(&execution);
        assert!(
            verdict.is_ok(),
            "seed {seed}, {workload:?}: {}",
            verdict.expect_err("failed")
        );
    }
}

// Proves the checker rejects a correct store's history once one completed Get or Cas is made
// to report a value nobody ever wrote, which no order can explain, and names that call's key.
#[test]
fn executions_with_an_impossible_outcome_are_not_linearizable() {
    let workload = Workload {
        keys: 4,
        clients_per_key: 5,
        calls: 300,
        values: 3,
        give_up_percent: 5,
    };
    for seed in 0..200 {
        let mut execution = execute(&mut Rng::new(seed), workload);
        let mut rng = Rng::new(seed ^ 0xdead_beef);
        let observers: Vec<usize> = (0..execution.len())
            .filter(|&index| {
                let call = &execution.calls[index];
                call.returned.is_some() && matches!(call.op, KvOp::Get { .. } | KvOp::Cas { .. })
            })
            .collect();
        let victim = observers[rng.below(observers.len() as u64) as usize];
        let ghost = Some(b"never written".to_vec());
        let call = &mut execution.calls[victim];
        let (_, outcome) = call.returned.as_mut().expect("completed");
        *outcome = match outcome {
            KvOutcome::Value(_) => KvOutcome::Value(ghost),
            _ => KvOutcome::Cas {
                swapped: false,
                current: ghost,
            },
        };
        let key = call.op.key().to_vec();
        let verdict = check(&execution);
        assert!(
            matches!(&verdict, Err(Violation::NotLinearizable(c)) if c.key == key),
            "seed {seed}: mutated call #{victim}, got {verdict:?}"
        );
    }
}

// --- Cross-check against stateright ------------------------------------------------------

/// The register as `stateright` sees it, written independently of `KvOp::apply` so that the
/// cross-check also checks the checker's model of Cas and Delete.
#[derive(Clone, Debug, Default)]
struct Register(Option<Vec<u8>>);

impl SequentialSpec for Register {
    type Op = KvOp;
    type Ret = KvOutcome;

    fn invoke(&mut self, op: &KvOp) -> KvOutcome {
        match op {
            KvOp::Get { .. } => KvOutcome::Value(self.0.clone()),
            KvOp::Put { value, .. } => {
                self.0 = Some(value.clone());
                KvOutcome::Done
            }
            KvOp::Delete { .. } => {
                self.0 = None;
                KvOutcome::Done
            }
            KvOp::Cas { expected, new, .. } => {
                let current = self.0.take();
                let swapped = current == *expected;
                self.0 = if swapped {
                    Some(new.clone())
                } else {
                    current.clone()
                };
                KvOutcome::Cas { swapped, current }
            }
        }
    }
}

/// Stateright's verdict. Its tester takes invocation and return events in real-time order
/// and allows one call in flight per thread; giving every call its own thread lets a client
/// have a timed-out call pending while it issues the next, as ours can, and loses nothing: the
/// tester derives real-time order from the event sequence alone. Events at the same tick go
/// invocations first, the tie rule the checker documents.
fn stateright_linearizable(history: &History) -> bool {
    let mut events: Vec<(u64, bool, usize)> = Vec::new();
    for (index, call) in history.calls.iter().enumerate() {
        events.push((call.invoked_at, false, index));
        if let Some((at, _)) = &call.returned {
            events.push((*at, true, index));
        }
    }
    events.sort_unstable();
    let mut tester = LinearizabilityTester::new(Register::default());
    for (_, is_return, index) in events {
        let call = &history.calls[index];
        let recorded = match (&call.returned, is_return) {
            (Some((_, outcome)), true) => tester.on_return(index, outcome.clone()),
            _ => tester.on_invoke(index, call.op.clone()),
        };
        recorded.expect("a well-formed history");
    }
    tester.is_consistent()
}

// Proves the checker and stateright's tester agree on hundreds of small one-key histories
// (at most 6 calls, 3 clients), and on more with 8 calls, 4 clients and many pending calls,
// which exercise the reductions for pending calls: executions of a correct store, cut short,
// half of them with one outcome replaced by a random one, so that both verdicts occur often
// (the test counts them).
#[test]
fn agrees_with_stateright_on_small_histories() {
    let small = Workload {
        keys: 1,
        clients_per_key: 3,
        calls: 6,
        values: 2,
        give_up_percent: 15,
    };
    let pending = Workload {
        keys: 1,
        clients_per_key: 4,
        calls: 8,
        values: 3,
        give_up_percent: 40,
    };
    for (workload, seeds) in [(small, 600), (pending, 400)] {
        let (mut agreed_linearizable, mut agreed_not) = (0, 0);
        for seed in 0..seeds {
            let mut rng = Rng::new(seed);
            let mut execution = execute(&mut rng, workload);
            execution
                .calls
                .truncate(1 + rng.below(workload.calls as u64) as usize);
            if rng.chance(1, 2) {
                mutate_one_outcome(&mut rng, &mut execution, workload.values);
            }
            let ours = check(&execution);
            let theirs = stateright_linearizable(&execution);
            assert_eq!(
                ours.is_ok(),
                theirs,
                "{workload:?} seed {seed}: {execution:#?}\n{ours:?}"
            );
            if theirs {
                agreed_linearizable += 1;
            } else {
                agreed_not += 1;
            }
        }
        println!("{workload:?}: agreed {agreed_linearizable} linearizable, {agreed_not} not");
        assert!(agreed_linearizable > seeds / 6 && agreed_not > seeds / 6);
    }
}

fn mutate_one_outcome(rng: &mut Rng, execution: &mut History, values: u64) {
    let index = rng.below(execution.len() as u64) as usize;
    let call = &mut execution.calls[index];
    let outcome = random_outcome(rng, &call.op, values);
    match &mut call.returned {
        Some((_, recorded)) => *recorded = outcome,
        None => call.returned = Some((call.invoked_at + rng.below(4), outcome)),
    }
}

// --- Scale ------------------------------------------------------------------------------------

// Proves a violation at the very end of a long key with many pending calls is still decided:
// the search must then rule out every linearization of everything before it. One key, 1,000
// calls from 10 clients that give up on 5% of waits, unique values as the simulator writes
// them, and the last completed Get made to read a value nobody wrote.
#[test]
fn late_violation_on_a_long_key_with_pending_calls_is_decided() {
    let workload = Workload {
        keys: 1,
        clients_per_key: 10,
        calls: 1_000,
        values: 1 << 40,
        give_up_percent: 5,
    };
    for seed in 0..3 {
        let mut execution = execute(&mut Rng::new(seed), workload);
        let last_get = (0..execution.len())
            .rev()
            .find(|&index| {
                let call = &execution.calls[index];
                matches!(call.op, KvOp::Get { .. }) && call.returned.is_some()
            })
            .expect("a completed Get");
        let (_, outcome) = execution.calls[last_get]
            .returned
            .as_mut()
            .expect("completed");
        *outcome = read(Some("never written"));
        let pending = execution
            .calls
            .iter()
            .filter(|call| call.returned.is_none())
            .count();
        let verdict = check(&execution);
        assert!(
            matches!(&verdict, Err(Violation::NotLinearizable(c)) if c.unplaceable == last_get),
            "seed {seed} ({pending} pending calls): {verdict:?}"
        );
    }
}

// Proves the checker handles the simulator's intended scale, 10,000 calls over 100 keys with
// 10 concurrent clients per key, by checking such an execution. It prints the time taken for
// information only: benchmarks are not assertions (DESIGN.md §8).
#[test]
fn checks_ten_thousand_calls_over_a_hundred_keys() {
    let workload = Workload {
        keys: 100,
        clients_per_key: 10,
        calls: 10_000,
        values: 4,
        give_up_percent: 1,
    };
    let execution = execute(&mut Rng::new(7), workload);
    let started = Instant::now();
    let stats = check(&execution).expect("a correct store's execution");
    let elapsed = started.elapsed();
    assert_eq!(stats.keys_checked, 100);
    assert_eq!(stats.calls_checked, execution.len());
    let CheckStats { search_steps, .. } = stats;
    println!(
        "{stats:?} in {elapsed:?} ({} steps per call)",
        search_steps / execution.len() as u64
    );
}
