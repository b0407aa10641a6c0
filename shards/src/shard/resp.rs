//! The Redis front end: parsing each RESP connection's commands, answering the local ones,
//! sending key-value commands to the log through this thread's proxy sessions, and writing
//! replies back in command order.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chronon_engine::app::kv::{KvCommand, KvReply, KvStore};
use chronon_engine::ids::{ReplicaIndex, ShardId, View};
use chronon_engine::vsr::{Envelope, Replica, ReplyError};
use chronon_net::resp::{
    CommandError, Execution, KvPlan, KvResult, NodeView, RespCommand, RespSession, RespValue,
};

use super::{ConnKind, Route, Shard};
use crate::io::ConnId;
use crate::proxy::{Outcome, Tag};

/// A RESP command waiting for its turn to be answered (replies go out in command order).
#[derive(Debug)]
struct Pending {
    seq: u64,
    state: PendingState,
    close_after: bool,
}

#[derive(Debug)]
enum PendingState {
    Ready(RespValue),
    /// Waiting for `missing` results. `results` holds one per command of the plan, batch by
    /// batch, as the plan's merge takes them: filled in place, so that the merge needs no
    /// copy (each slot starts as an empty error, which allocates nothing).
    Waiting {
        plan: KvPlan,
        results: Vec<Vec<KvResult>>,
        missing: usize,
    },
}

/// One RESP connection's session and its commands not yet answered.
#[derive(Debug)]
pub(super) struct RespState {
    session: RespSession,
    queue: VecDeque<Pending>,
    next_seq: u64,
    closing: bool,
}

impl RespState {
    pub(super) fn new(client_id: u64) -> RespState {
        RespState {
            session: RespSession::new(client_id),
            queue: VecDeque::new(),
            next_seq: 0,
            closing: false,
        }
    }
}

/// True for the key-value commands, which are answered by the log, not by this node.
fn goes_to_the_log(command: &RespCommand) -> bool {
    matches!(
        command,
        RespCommand::Get { .. }
            | RespCommand::Set { .. }
            | RespCommand::Del { .. }
            | RespCommand::Exists { .. }
            | RespCommand::IncrBy { .. }
            | RespCommand::MGet { .. }
            | RespCommand::MSet { .. }
    )
}

/// A command's part: which batch of its plan, and which command in that batch.
fn part_of(batch: usize, index: usize) -> usize {
    (batch << 20) | index
}

fn split_part(part: usize) -> (usize, usize) {
    (part >> 20, part & ((1 << 20) - 1))
}

/// Types the command whose arguments are `args` within `buffer`. Commands of up to
/// `ARGS_INLINE` arguments (every `GET` and `SET`) borrow them from the stack, not a new vector.
fn parse_command(buffer: &[u8], args: &[Range<usize>]) -> Result<RespCommand, CommandError> {
    const ARGS_INLINE: usize = 8;
    if args.len() <= ARGS_INLINE {
        let mut parts: [&[u8]; ARGS_INLINE] = [&[]; ARGS_INLINE];
        for (part, range) in parts.iter_mut().zip(args) {
            *part = &buffer[range.clone()];
        }
        RespCommand::parse(&parts[..args.len()])
    } else {
        let parts: Vec<&[u8]> = args.iter().map(|r| &buffer[r.clone()]).collect();
        RespCommand::parse(&parts)
    }
}

/// Dead letters `INFO` lists by id, at most.
const DEAD_LETTERS_LISTED: usize = 100;

/// A plan waiting for every one of its engine commands' results.
fn waiting(plan: KvPlan) -> PendingState {
    let results: Vec<Vec<KvResult>> = plan
        .batches()
        .iter()
        .map(|b| (0..b.commands.len()).map(|_| Err(String::new())).collect())
        .collect();
    let missing = results.iter().map(Vec::len).sum();
    PendingState::Waiting {
        plan,
        results,
        missing,
    }
}

/// The reply to a read-only plan from this replica's state, if the connection opted in to
/// stale reads (`READONLY`) and every key lives on this shard; `None` sends it to the log.
fn stale_reply(
    stale: bool,
    replica: &Replica<KvStore>,
    shard: ShardId,
    plan: &KvPlan,
) -> Option<RespValue> {
    if !stale || !plan.is_read_only() || plan.batches().iter().any(|b| b.shard != shard) {
        return None;
    }
    let read = |command: &KvCommand| -> KvResult {
        let bytes = replica
            .query(&command.encode())
            .map_err(|e| e.to_string())?;
        KvReply::decode(&bytes).ok_or_else(|| "ERR internal error: an undecodable read".to_owned())
    };
    let results: Vec<Vec<KvResult>> = plan
        .batches()
        .iter()
        .map(|b| b.commands.iter().map(read).collect())
        .collect();
    Some(plan.reply(&results))
}

/// A replica's answer to one key-value command, as the plan's merge expects it.
fn kv_result(outcome: Outcome) -> KvResult {
    match outcome {
        Ok(bytes) => KvReply::decode(&bytes)
            .ok_or_else(|| "ERR internal error: an undecodable reply from the shard".to_owned()),
        Err(ReplyError::Rejected(text)) => Err(text),
        Err(ReplyError::NoSession) => {
            Err("TRYAGAIN the node's session with the shard was evicted; retry".to_owned())
        }
        Err(ReplyError::TooLarge { size, max }) => Err(format!(
            "ERR the command is {size} bytes, more than a log entry holds ({max})"
        )),
        Err(ReplyError::NotPrimary { .. }) => {
            Err("TRYAGAIN the shard is changing primary; retry".to_owned())
        }
        Err(ReplyError::Misdirected { cluster, .. }) => Err(format!(
            "ERR internal error: the shard answered for cluster {cluster}, not this node's"
        )),
    }
}

impl Shard {
    /// Parses every complete command a RESP connection sent, answers or dispatches each, and
    /// writes whatever replies are ready, in order. The input buffer is lent out of the
    /// connection meanwhile and consumed from the front once, after the last command.
    pub(super) fn on_resp_input(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut input = std::mem::take(&mut connection.input);
        let mut args = std::mem::take(&mut self.scratch.resp_args);
        let mut used = 0;
        while let Some(connection) = self.conns.get_mut(&conn) {
            let ConnKind::Resp(state) = &mut connection.kind else {
                break;
            };
            if state.closing {
                used = input.len();
                break;
            }
            let buffer = &input[used..];
            let taken = match self.resp_parser.parse(buffer, &mut args) {
                Ok(Some(taken)) => taken,
                Ok(None) => break,
                Err(error) => {
                    // The stream's framing is lost: answer, then close, as Redis does.
                    let seq = state.next_seq;
                    state.next_seq += 1;
                    state.queue.push_back(Pending {
                        seq,
                        state: PendingState::Ready(RespValue::Error(format!(
                            "ERR Protocol error: {error}"
                        ))),
                        close_after: true,
                    });
                    state.closing = true;
                    used = input.len();
                    break;
                }
            };
            let parsed = (!args.is_empty()).then(|| parse_command(buffer, &args));
            used += taken;
            let Some(parsed) = parsed else {
                continue;
            };
            let seq = state.next_seq;
            state.next_seq += 1;
            self.run_resp_command(conn, seq, parsed);
        }
        self.scratch.resp_args = args;
        if let Some(connection) = self.conns.get_mut(&conn) {
            input.drain(..used);
            connection.input = input;
        }
        self.write_resp_replies(conn);
    }

    fn node_view_primaries(&self) -> Vec<ReplicaIndex> {
        let topology = &self.setup.topology;
        (0..topology.shard_count)
            .map(|t| {
                let view = if t == self.setup.shard.0 {
                    self.replica.view()
                } else {
                    View(self.post.views[usize::from(t)].load(Ordering::Relaxed))
                };
                topology.primary(ShardId(t), view)
            })
            .collect()
    }

    fn run_resp_command(
        &mut self,
        conn: ConnId,
        seq: u64,
        parsed: Result<RespCommand, CommandError>,
    ) {
        // Key-value commands go to the log, and `PING` and `ECHO` need nothing: only the other
        // commands answered here need the cluster's view, and only `INFO` this replica's
        // state, so neither is built per request.
        let viewless = matches!(
            &parsed,
            Ok(command) if goes_to_the_log(command)
                || matches!(command, RespCommand::Ping { .. } | RespCommand::Echo { .. })
        );
        let primaries = if viewless {
            Vec::new()
        } else {
            self.node_view_primaries()
        };
        let status = if matches!(parsed, Ok(RespCommand::Info { .. })) {
            self.status_lines()
        } else {
            String::new()
        };
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let command = match parsed {
            Ok(command) => command,
            Err(error) => {
                state.queue.push_back(Pending {
                    seq,
                    state: PendingState::Ready(RespValue::Error(error.0)),
                    close_after: false,
                });
                return;
            }
        };
        let view = NodeView {
            topology: &self.setup.topology,
            host: self.setup.host,
            shard: self.setup.shard,
            primaries: &primaries,
        };
        let is_info = matches!(command, RespCommand::Info { .. });
        let pending = match chronon_net::resp::execute(&command, &view, &mut state.session) {
            Execution::Reply(RespValue::Bulk(mut text)) if is_info => {
                text.extend_from_slice(status.as_bytes());
                PendingState::Ready(RespValue::Bulk(text))
            }
            Execution::Reply(reply) => PendingState::Ready(reply),
            Execution::Close(reply) => {
                state.closing = true;
                state.queue.push_back(Pending {
                    seq,
                    state: PendingState::Ready(reply),
                    close_after: true,
                });
                return;
            }
            Execution::Kv(plan) => {
                let stale = state.session.stale_reads;
                match stale_reply(stale, &self.replica, self.setup.shard, &plan) {
                    Some(reply) => PendingState::Ready(reply),
                    None => waiting(plan),
                }
            }
        };
        // Queued before its requests are submitted: a reply may come back at once.
        state.queue.push_back(Pending {
            seq,
            state: pending,
            close_after: false,
        });
        let Some(Pending {
            state: PendingState::Waiting { plan, .. },
            ..
        }) = state.queue.back()
        else {
            return;
        };
        let now = Instant::now();
        let mut out = std::mem::take(&mut self.scratch.proxy_out);
        for (batch, shard_batch) in plan.batches().iter().enumerate() {
            let proxy = &mut self.proxies[usize::from(shard_batch.shard.0)];
            for (index, command) in shard_batch.commands.iter().enumerate() {
                let tag = Tag {
                    conn,
                    command: seq,
                    part: part_of(batch, index),
                };
                proxy.submit(tag, command.encode(), now, &mut out);
            }
        }
        let done = std::mem::take(&mut self.scratch.proxy_done);
        self.proxy_output(out, done);
    }

    /// The `# Chronon` section appended to `INFO`: this shard's replica state, so operators
    /// and tests can compare replicas.
    fn status_lines(&self) -> String {
        let outbox = self.replica.outbox();
        let counts = outbox.counts();
        let mut text = format!(
            "\r\n# Chronon\r\nchronon_shard:{}\r\nchronon_replica:{}\r\nchronon_view:{}\r\n\
             chronon_status:{:?}\r\nchronon_op:{}\r\nchronon_commit:{}\r\n\
             chronon_executed:{}\r\nchronon_state_hash:{:032x}\r\n\
             chronon_peer_messages_dropped:{}\r\nchronon_io:{}\r\nchronon_disk:{}\r\n\
             chronon_effects_pending:{}\r\nchronon_effects_completed:{}\r\n\
             chronon_effects_dead_lettered:{}\r\nchronon_effect_attempts_failed:{}\r\n\
             chronon_timers_armed:{}\r\nchronon_timers_fired:{}\r\nchronon_log_base:{}\r\n\
             chronon_checkpoint_durable:{}\r\nchronon_state_transfers:{}\r\n",
            self.setup.shard,
            self.setup.host,
            self.replica.view(),
            self.replica.status(),
            self.replica.op(),
            self.replica.commit_max(),
            self.replica.commit_min(),
            self.replica.state_hash().0,
            self.peers.iter().flatten().map(|p| p.dropped).sum::<u64>(),
            self.io.mode().name(),
            self.host.journal().disk().kind_name(),
            outbox.pending().len(),
            counts.completed,
            outbox.dead().len(),
            counts.failed_attempts,
            outbox.timers().len(),
            counts.timers_fired,
            self.replica.log_base(),
            self.replica.checkpoint_durable(),
            self.replica.stats().state_transfers,
        );
        // The dead letters, oldest first, for an operator to retry (`chronon kv retry-effect`).
        for (id, dead) in outbox.dead().iter().take(DEAD_LETTERS_LISTED) {
            let error: String = dead.error.chars().filter(|c| !c.is_control()).collect();
            text.push_str(&format!(
                "chronon_dead_letter:{id} failures={} error={error}\r\n",
                dead.failures
            ));
        }
        text
    }

    /// Sends a proxy's requests towards their shards and files its finished results. The
    /// vectors come from, and go back to, the loop's scratch buffers.
    pub(super) fn proxy_output(&mut self, mut out: Vec<Envelope>, mut done: Vec<(Tag, Outcome)>) {
        for envelope in out.drain(..) {
            self.on_envelope(envelope, Route::Local);
        }
        let mut touched = std::mem::take(&mut self.scratch.touched);
        for (tag, outcome) in done.drain(..) {
            self.file_result(tag, outcome);
            touched.push(tag.conn);
        }
        touched.sort_unstable();
        touched.dedup();
        for &conn in &touched {
            self.write_resp_replies(conn);
        }
        touched.clear();
        self.scratch.touched = touched;
        self.scratch.proxy_out = out;
        self.scratch.proxy_done = done;
    }

    pub(super) fn on_proxy_reply(&mut self, reply: chronon_engine::vsr::Reply) {
        let Some(index) = self.proxies.iter().position(|p| p.client() == reply.client) else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch.proxy_out);
        let mut done = std::mem::take(&mut self.scratch.proxy_done);
        self.proxies[index].on_reply(reply, Instant::now(), &mut out, &mut done);
        self.proxy_output(out, done);
    }

    fn file_result(&mut self, tag: Tag, outcome: Outcome) {
        let Some(connection) = self.conns.get_mut(&tag.conn) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let Some(pending) = state.queue.iter_mut().find(|p| p.seq == tag.command) else {
            return;
        };
        let PendingState::Waiting {
            plan,
            results,
            missing,
        } = &mut pending.state
        else {
            return;
        };
        let (batch, index) = split_part(tag.part);
        let Some(slot) = results.get_mut(batch).and_then(|b| b.get_mut(index)) else {
            return;
        };
        // The proxy reports each part once (it forgets a request when it reports it), so
        // `missing` reaches zero exactly when every slot is filled.
        *slot = kv_result(outcome);
        *missing = missing.saturating_sub(1);
        if *missing == 0 {
            pending.state = PendingState::Ready(plan.reply(results));
        }
    }

    /// Writes the replies at the front of a RESP connection's queue that are ready.
    pub(super) fn write_resp_replies(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let ConnKind::Resp(state) = &mut connection.kind else {
            return;
        };
        let mut close = false;
        let bytes = &mut self.scratch.replies;
        bytes.clear();
        let protocol = state.session.protocol;
        while let Some(Pending {
            state: PendingState::Ready(_),
            ..
        }) = state.queue.front()
        {
            let pending = state.queue.pop_front().expect("front exists");
            if let PendingState::Ready(reply) = pending.state {
                reply.encode_as(protocol, bytes);
            }
            if pending.close_after {
                close = true;
                break;
            }
        }
        if bytes.is_empty() && !close {
            return;
        }
        let failed = !bytes.is_empty() && !self.io.send(conn, bytes);
        if failed || close {
            self.close_conn(conn);
        }
    }
}
