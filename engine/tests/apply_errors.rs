//! What `apply`'s failures do: an `Err` rejects that one event (the client gets the error, the
//! state does not change, the next events apply); a panic halts the replica with a message
//! naming the shard and the op (a poison pill), rather than letting replicas diverge.

use chronon_engine::app::{Applied, ApplyContext, ChrApplication, Event};
use chronon_engine::constants::{BATCH_REQUESTS_MAX, REQUEST_QUEUE_MAX};
use chronon_engine::ids::{ClientId, ClusterId, ReplicaIndex, RequestNumber, ShardId, Timestamp};
use chronon_engine::vsr::{
    Action, EffectPolicy, Endpoint, Envelope, Input, Message, Replica, ReplicaConfig, ReplyError,
    Request, RequestKind, Timeouts,
};

/// Counts events; rejects "bad", panics on "boom".
struct Picky;

impl ChrApplication for Picky {
    type State = u64;
    type Error = String;

    fn genesis(&self) -> u64 {
        0
    }

    fn apply(
        &self,
        state: &u64,
        event: Event<'_>,
        _context: &ApplyContext,
    ) -> Result<Applied<u64>, String> {
        match event {
            Event::Command(b"bad") => Err("bad is not allowed".to_owned()),
            Event::Command(b"boom") => panic!("boom"),
            _ => Ok(Applied {
                state: state + 1,
                reply: (state + 1).to_le_bytes().to_vec(),
                effects: Vec::new(),
            }),
        }
    }

    fn query(&self, state: &u64, _query: &[u8]) -> Result<Vec<u8>, String> {
        Ok(state.to_le_bytes().to_vec())
    }

    fn snapshot(&self, state: &u64) -> Vec<u8> {
        state.to_le_bytes().to_vec()
    }

    fn restore(&self, snapshot: &[u8]) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            snapshot.try_into().map_err(|_| "bad snapshot")?,
        ))
    }
}

const CLUSTER: ClusterId = ClusterId(9);
const CLIENT: ClientId = ClientId(5);

/// A single-replica group: every append is acknowledged at once, so each request commits.
fn single() -> Replica<Picky> {
    let config = ReplicaConfig {
        cluster: CLUSTER,
        shard: ShardId(3),
        replica: ReplicaIndex(0),
        replica_count: 1,
        sessions_max: 8,
        body_max: 4096,
        batch_requests_max: BATCH_REQUESTS_MAX,
        request_queue_max: REQUEST_QUEUE_MAX,
        timeouts: Timeouts::default(),
        checkpoint_interval: 64,
        log_ops_max: 512,
        effects: EffectPolicy::default(),
        record_applied: false,
        bug: None,
    };
    Replica::new(config, Picky)
}

/// Sends one request and runs the replica until it replies; returns the reply's result.
fn call(
    replica: &mut Replica<Picky>,
    kind: RequestKind,
    number: u64,
    body: &[u8],
) -> Option<Result<Vec<u8>, ReplyError>> {
    let request = Request {
        client: CLIENT,
        request: RequestNumber(number),
        kind,
        body: body.to_vec(),
    };
    let envelope = Envelope::seal(
        CLUSTER,
        ShardId(3),
        replica.view(),
        Endpoint::Client(CLIENT),
        Message::Request(request),
    );
    let mut inputs = vec![Input::Message(envelope)];
    let mut now = 1;
    while let Some(input) = inputs.pop() {
        let mut actions = Vec::new();
        replica.step(input, &mut actions);
        for action in actions {
            match action {
                Action::Append { header, .. } => inputs.push(Input::Durable {
                    op: header.op,
                    checksum: header.checksum,
                }),
                Action::Send {
                    envelope:
                        Envelope {
                            message: Message::Reply(reply),
                            ..
                        },
                    ..
                } if reply.request == RequestNumber(number) => return Some(reply.result),
                _ => {}
            }
        }
        if inputs.is_empty() && now < 100 {
            now += 1;
            inputs.push(Input::Tick {
                now: Timestamp(now),
            });
        }
    }
    None
}

#[test]
fn an_error_rejects_only_its_event() {
    let mut replica = single();
    assert_eq!(
        call(&mut replica, RequestKind::Register, 0, b""),
        Some(Ok(Vec::new()))
    );
    assert_eq!(
        call(&mut replica, RequestKind::Command, 1, b"ok"),
        Some(Ok(1u64.to_le_bytes().to_vec()))
    );
    assert_eq!(
        call(&mut replica, RequestKind::Command, 2, b"bad"),
        Some(Err(ReplyError::Rejected("bad is not allowed".to_owned())))
    );
    assert_eq!(*replica.state(), 1, "a rejected event changes nothing");
    assert_eq!(
        call(&mut replica, RequestKind::Command, 3, b"ok"),
        Some(Ok(2u64.to_le_bytes().to_vec()))
    );
    // The rejected request resent after a newer one is stale: no reply, nothing applied.
    assert_eq!(call(&mut replica, RequestKind::Command, 2, b"bad"), None);
    assert_eq!(*replica.state(), 2);
}

#[test]
fn a_panic_halts_the_replica_naming_the_op() {
    let mut replica = single();
    call(&mut replica, RequestKind::Register, 0, b"");
    call(&mut replica, RequestKind::Command, 1, b"ok");
    let op = replica.op().0 + 1;
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        call(&mut replica, RequestKind::Command, 2, b"boom")
    }))
    .expect_err("apply panicked, so the replica must halt");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(&format!("shard 3 op {op}")) && message.contains("poison pill"),
        "{message}"
    );
    assert!(message.contains("boom"), "{message}");
}
