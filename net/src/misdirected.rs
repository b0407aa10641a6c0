//! The answer to a client request that reached the wrong node: one whose envelope names another
//! cluster, or a shard the node does not have. A replica drops such envelopes unread (they are
//! not its business), which left a misconfigured client waiting out its whole timeout with no
//! hint of why. The node answers them instead, with a `Misdirected` reply naming its own
//! cluster and shard count, so the client can stop at once and say which setting is wrong.
//!
//! The check is pure: the node calls [`misdirected_reply`] on each request from a native
//! connection and writes back whatever it returns.

use chronon_engine::vsr::{Endpoint, Envelope, Message, Reply, ReplyError};
use chronon_engine::{ShardId, View};

use crate::handshake::Hello;

/// The refusal to send back for `request`, if it is a client request the node behind `node`
/// will never execute: it names another cluster, or a shard at or beyond the node's shard
/// count. `None` for everything else, including requests for another shard of this node (those
/// are forwarded) and envelopes that are not intact (their cluster field may be the damage).
///
/// The refusal is sealed by `shard` of the node, in `view`, and carries the request's client
/// and request number, so the client takes it as the answer to that very request.
#[must_use]
pub fn misdirected_reply(
    request: &Envelope,
    node: &Hello,
    shard: ShardId,
    view: View,
) -> Option<Envelope> {
    let Message::Request(body) = &request.message else {
        return None;
    };
    // The cheap fields first: a well-aimed request pays no extra checksum here.
    if request.cluster == node.cluster && request.shard.0 < node.shard_count {
        return None;
    }
    if request.from != Endpoint::Client(body.client) || !request.is_intact() {
        return None;
    }
    let refusal = Reply {
        client: body.client,
        request: body.request,
        result: Err(ReplyError::Misdirected {
            cluster: node.cluster,
            shard_count: node.shard_count,
        }),
    };
    Some(Envelope::seal(
        node.cluster,
        shard,
        view,
        Endpoint::Replica(node.replica),
        Message::Reply(refusal),
    ))
}

#[cfg(test)]
mod tests {
    use chronon_engine::vsr::{Request, RequestKind};
    use chronon_engine::{ClientId, ClusterId, ReplicaIndex, RequestNumber};

    use super::*;

    fn node() -> Hello {
        Hello::new(ClusterId(7), 2, ReplicaIndex(1), 3)
    }

    fn request(cluster: u64, shard: u16) -> Envelope {
        Envelope::seal(
            ClusterId(cluster),
            ShardId(shard),
            View(0),
            Endpoint::Client(ClientId(42)),
            Message::Request(Request {
                client: ClientId(42),
                request: RequestNumber(3),
                kind: RequestKind::Command,
                body: vec![1, 2, 3],
            }),
        )
    }

    // Table-driven: a request for another cluster or a missing shard is refused with the
    // node's own cluster and shard count, addressed to the same client and request; a request
    // for this cluster (any shard it has) and anything corrupt or not a request are not.
    #[test]
    fn refuses_only_misdirected_intact_requests() {
        let mut corrupt = request(9, 0);
        corrupt.view = View(5);
        let mut reply = request(9, 0);
        reply.message = Message::StartViewChange;
        let cases: [(&str, Envelope, bool); 6] = [
            ("this cluster, this shard", request(7, 0), false),
            ("this cluster, the other shard", request(7, 1), false),
            ("another cluster", request(9, 0), true),
            ("a shard beyond the count", request(7, 2), true),
            ("corrupt", corrupt, false),
            ("not a request", reply, false),
        ];
        for (name, envelope, refused) in cases {
            let answer = misdirected_reply(&envelope, &node(), ShardId(0), View(4));
            assert_eq!(answer.is_some(), refused, "{name}");
            let Some(answer) = answer else { continue };
            assert!(answer.is_intact(), "{name}");
            assert_eq!(answer.cluster, ClusterId(7), "{name}");
            assert_eq!(answer.from, Endpoint::Replica(ReplicaIndex(1)), "{name}");
            assert_eq!(
                answer.message,
                Message::Reply(Reply {
                    client: ClientId(42),
                    request: RequestNumber(3),
                    result: Err(ReplyError::Misdirected {
                        cluster: ClusterId(7),
                        shard_count: 2,
                    }),
                }),
                "{name}"
            );
        }
    }
}
