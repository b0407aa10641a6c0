//! Replica links: the connection this shard dials to the same shard on every other host, its
//! `Hello` handshake, redials with backoff, and the bounded buffer behind each link.

use std::time::Instant;

use chronon_engine::ids::ReplicaIndex;
use chronon_engine::vsr::Envelope;
use chronon_net::constants::FRAME_PAYLOAD_MAX;
use chronon_net::frame::FrameKind;
use chronon_net::{FrameDecoder, Hello};

use super::{PEER_BUFFER_MAX, PeerState, Shard};
use crate::io::{ConnId, Received};

impl Shard {
    /// The link whose connection is `conn`, if any.
    pub(super) fn peer_of(&self, conn: ConnId) -> Option<u8> {
        self.peers
            .iter()
            .position(|p| p.as_ref().is_some_and(|p| p.conn == Some(conn)))
            .map(|index| index as u8)
    }

    pub(super) fn send_to_peer(&mut self, peer: u8, envelope: &Envelope) {
        let frame = &mut self.scratch.frame;
        frame.clear();
        if chronon_net::wire::encode_envelope_frame(envelope, FRAME_PAYLOAD_MAX, frame).is_err() {
            return;
        }
        let Some(Some(link)) = self.peers.get_mut(usize::from(peer)) else {
            return;
        };
        let Some(conn) = link
            .conn
            .filter(|_| matches!(link.state, PeerState::Connected))
        else {
            link.dropped += 1;
            return;
        };
        if self.io.pending(conn) + frame.len() > PEER_BUFFER_MAX {
            link.dropped += 1;
            return;
        }
        if !self.io.send(conn, frame) {
            self.peer_failed(peer, "the connection broke".to_owned());
        }
    }

    pub(super) fn dial_peers(&mut self) {
        let now = Instant::now();
        for index in 0..self.peers.len() {
            let Some(peer) = self.peers[index].as_mut() else {
                continue;
            };
            let PeerState::Idle { retry_at } = peer.state else {
                continue;
            };
            if now < retry_at {
                continue;
            }
            match self.io.connect(peer.address) {
                Ok(conn) => {
                    peer.conn = Some(conn);
                    peer.decoder = FrameDecoder::new(FRAME_PAYLOAD_MAX);
                    peer.input.clear();
                    peer.state = PeerState::Connecting;
                }
                Err(error) => {
                    let delay = peer.backoff.next_delay();
                    peer.state = PeerState::Idle {
                        retry_at: now + delay,
                    };
                    let problem = format!("cannot connect: {error}");
                    self.report_peer_problem(index as u8, problem);
                }
            }
        }
    }

    /// The dialed connection is up: open with this node's hello.
    pub(super) fn peer_connected(&mut self, index: u8) {
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        let Some(conn) = peer.conn else {
            return;
        };
        let frame = &mut self.scratch.frame;
        frame.clear();
        self.hello.encode_frame(frame);
        peer.state = PeerState::Connected;
        if !self.io.send(conn, frame) {
            self.peer_failed(index, "the connection broke".to_owned());
        }
    }

    /// Reads the peer's side of an outbound link: only its hello is expected.
    pub(super) fn on_peer_readable(&mut self, index: u8) {
        let shard = self.setup.shard;
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        let Some(conn) = peer.conn else {
            return;
        };
        let closed = self.io.receive(conn, &mut peer.input) == Received::Closed;
        let mut input = peer.input.as_slice();
        let mut problem = None;
        while !input.is_empty() && problem.is_none() {
            match peer.decoder.push(&mut input) {
                Ok(Some(frame)) if frame.kind == FrameKind::Hello => {
                    match Hello::decode(frame.payload).and_then(|theirs| {
                        self.hello.check_peer(&theirs, Some(ReplicaIndex(index)))
                    }) {
                        Ok(()) => {
                            peer.state = PeerState::Connected;
                            peer.backoff.reset();
                            if peer.last_problem.take().is_some() {
                                tracing::info!(%shard, peer = index, "replica link up");
                            }
                        }
                        Err(error) => problem = Some(format!("refused: {error}")),
                    }
                }
                Ok(Some(_)) => problem = Some("unexpected frame on an outbound link".to_owned()),
                Ok(None) => {}
                Err(error) => problem = Some(error.to_string()),
            }
        }
        peer.input.clear();
        if let Some(problem) = problem {
            self.peer_failed(index, problem);
        } else if closed {
            self.peer_failed(index, "the peer closed the connection".to_owned());
        }
    }

    pub(super) fn peer_failed(&mut self, index: u8, problem: String) {
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        if let Some(conn) = peer.conn.take() {
            self.io.close(conn);
        }
        peer.state = PeerState::Idle {
            retry_at: Instant::now() + peer.backoff.next_delay(),
        };
        self.report_peer_problem(index, problem);
    }

    /// Logs a peer's trouble once per distinct problem, not once per retry.
    pub(super) fn report_peer_problem(&mut self, index: u8, problem: String) {
        let shard = self.setup.shard;
        let Some(Some(peer)) = self.peers.get_mut(usize::from(index)) else {
            return;
        };
        if peer.last_problem.as_deref() != Some(problem.as_str()) {
            tracing::warn!(
                %shard,
                peer = index,
                address = %peer.address,
                "replica link: {problem}; retrying with backoff"
            );
            peer.last_problem = Some(problem);
        }
    }
}
