//! A node: one process, one thread per shard. Each thread owns its shard outright (replica,
//! journal, sockets); the threads share nothing but each other's inboxes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use chronon_disk::DiskChoice;
use chronon_engine::ids::{ReplicaIndex, ShardId};
use chronon_net::Topology;

use crate::eventfd::EventFd;
use crate::io::IoChoice;
use crate::shard::{Post, Shard, ShardError, ShardSetup};

/// What a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub topology: Topology,
    /// This host's index: it is this replica of every shard.
    pub host: ReplicaIndex,
    /// One data file per shard, in shard order.
    pub data_files: Vec<PathBuf>,
    pub disk: DiskChoice,
    /// Where `Emit` effects go, by sink name (`log` is built in).
    pub sinks: crate::effects::Sinks,
    /// Ops between checkpoints; `None`: as many as each shard's log ring allows.
    pub checkpoint_interval: Option<u64>,
    /// The network path: `io_uring`, epoll, or `io_uring` if it works here (`Auto`).
    pub io: IoChoice,
    /// Pin shard `s`'s thread to core `s mod cores`. Off by default: on a shared or virtual
    /// machine a pinned thread can wait for its core while another sits idle.
    pub pin: bool,
}

/// Stops a node from anywhere (a signal handler, another thread).
#[derive(Clone, Debug)]
pub struct Stopper {
    stop: Arc<AtomicBool>,
    doorbells: Vec<Arc<EventFd>>,
}

impl Stopper {
    /// Asks every shard to stop; [`Node::wait`] returns once they have.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        for doorbell in &self.doorbells {
            doorbell.ring();
        }
    }

    #[must_use]
    pub fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    stopper: Stopper,
    threads: Vec<JoinHandle<Result<(), ShardError>>>,
}

impl Node {
    /// Opens every shard and starts its thread. Returns once every shard has recovered and
    /// bound its ports, or with the first shard's error (the others are stopped).
    pub fn start(config: &NodeConfig) -> Result<Node, ShardError> {
        let shard_count = usize::from(config.topology.shard_count);
        assert_eq!(
            config.data_files.len(),
            shard_count,
            "one data file per shard"
        );
        let (io, fallback) = crate::io::resolve(config.io).map_err(|detail| ShardError::Io {
            shard: ShardId(0),
            detail: format!("--io uring: {detail}"),
        })?;
        if let Some(cause) = fallback {
            tracing::warn!("falling back to the epoll network path: {cause}");
        }
        let mut boxes = Vec::with_capacity(shard_count);
        let mut inboxes = Vec::with_capacity(shard_count);
        for s in 0..shard_count {
            let doorbell = Arc::new(EventFd::new().map_err(|e| ShardError::Io {
                shard: ShardId(s as u16),
                detail: format!("creating its doorbell (an eventfd): {e}"),
            })?);
            let (sender, receiver) = mpsc::channel();
            boxes.push((sender, doorbell));
            inboxes.push(receiver);
        }
        let views = (0..shard_count).map(|_| AtomicU64::new(0)).collect();
        let post = Post {
            boxes,
            views: Arc::new(views),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(shard_count);
        for (s, inbox) in inboxes.into_iter().enumerate() {
            let setup = ShardSetup {
                topology: config.topology.clone(),
                host: config.host,
                shard: ShardId(s as u16),
                data_file: config.data_files[s].clone(),
                disk: config.disk,
                sinks: config.sinks.clone(),
                checkpoint_interval: config.checkpoint_interval,
                io,
            };
            let doorbell = Arc::clone(&post.boxes[s].1);
            let (post, stop, ready) = (post.clone(), Arc::clone(&stop), ready_tx.clone());
            let core = if config.pin {
                core_affinity::get_core_ids()
                    .filter(|cores| !cores.is_empty())
                    .map(|cores| cores[s % cores.len()])
            } else {
                None
            };
            let thread = std::thread::Builder::new()
                .name(format!("shard-{s}"))
                .spawn(move || {
                    if let Some(core) = core
                        && !core_affinity::set_for_current(core)
                    {
                        tracing::warn!(shard = s, "could not pin the thread to core {}", core.id);
                    }
                    let shard = match Shard::open(setup, post, inbox, doorbell) {
                        Ok(shard) => {
                            let _ = ready.send(None);
                            shard
                        }
                        Err(error) => {
                            let _ = ready.send(Some(error.to_string()));
                            return Err(error);
                        }
                    };
                    shard.run(&stop)
                })
                .map_err(|e| ShardError::Io {
                    shard: ShardId(s as u16),
                    detail: format!("spawning its thread: {e}"),
                })?;
            threads.push(thread);
        }
        let doorbells = post.boxes.iter().map(|(_, d)| Arc::clone(d)).collect();
        let node = Node {
            stopper: Stopper { stop, doorbells },
            threads,
        };
        for _ in 0..shard_count {
            if let Ok(Some(_)) | Err(_) = ready_rx.recv() {
                node.request_stop();
                return Err(node.wait().err().unwrap_or_else(|| ShardError::Io {
                    shard: ShardId(0),
                    detail: "a shard failed to start".to_owned(),
                }));
            }
        }
        Ok(node)
    }

    /// What stops this node, for signal handlers.
    #[must_use]
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    pub fn request_stop(&self) {
        self.stopper.stop();
    }

    /// True once any shard thread has ended (a failure, or a stop).
    #[must_use]
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Waits for every shard to stop; the first error, if any.
    pub fn wait(self) -> Result<(), ShardError> {
        let mut first = Ok(());
        for thread in self.threads {
            let result = thread.join().unwrap_or_else(|_| {
                Err(ShardError::Io {
                    shard: ShardId(0),
                    detail: "a shard thread panicked (see the message above)".to_owned(),
                })
            });
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}
