//! Newtypes for protocol numbers, so that an op is never passed where a view is expected.

use std::fmt;

macro_rules! newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

newtype!(
    /// A position in a shard's log. Op 0 is the root entry written at format time.
    Op(u64)
);
newtype!(
    /// A VSR view number.
    View(u64)
);
newtype!(
    /// Identifies a cluster; every file and message carries it, and foreign ones are refused.
    ClusterId(u64)
);
newtype!(
    /// Identifies a shard (one VSR group) within a cluster.
    ShardId(u16)
);
newtype!(
    /// A replica's index within its group, `0..replica_count`.
    ReplicaIndex(u8)
);
newtype!(
    /// A client session id.
    ClientId(u64)
);
newtype!(
    /// A client's request number within its session.
    RequestNumber(u64)
);
newtype!(
    /// Consensus time in nanoseconds, assigned by the primary.
    Timestamp(u64)
);

impl Op {
    #[must_use]
    pub fn next(self) -> Op {
        Op(self
            .0
            .checked_add(1)
            .expect("invariant: op numbers do not overflow u64"))
    }
}

/// The highest committed op, or nothing committed yet. Never encoded as a bare 0, which is
/// the root op and so a real commit point.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct CommitIndex(pub Option<Op>);

impl CommitIndex {
    pub const NONE: CommitIndex = CommitIndex(None);

    #[must_use]
    pub fn is_committed(self, op: Op) -> bool {
        self.0.is_some_and(|commit| op <= commit)
    }
}

impl fmt::Display for CommitIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(op) => write!(f, "{op}"),
            None => write!(f, "none"),
        }
    }
}
