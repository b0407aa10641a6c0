//! Encoding helpers shared by the command, reply and snapshot formats: explicit little-endian
//! fields on top of the engine's [`Reader`], which checks every bound and never panics.

use chronon_engine::app::EffectId;
use chronon_engine::app::codec::{Reader, put_bytes, put_u64};
use chronon_engine::{Op, ShardId, Timestamp};

pub(crate) fn put_string(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

/// Reads a length-prefixed string; `None` if truncated or not UTF-8.
pub(crate) fn read_string(r: &mut Reader<'_>) -> Option<String> {
    String::from_utf8(r.bytes()?.to_vec()).ok()
}

pub(crate) fn put_timestamp(out: &mut Vec<u8>, at: Timestamp) {
    put_u64(out, at.0);
}

pub(crate) fn read_timestamp(r: &mut Reader<'_>) -> Option<Timestamp> {
    Some(Timestamp(r.u64()?))
}

/// An effect id as 14 bytes: shard (u16), op (u64), ordinal (u32).
pub(crate) fn put_effect_id(out: &mut Vec<u8>, id: EffectId) {
    out.extend_from_slice(&id.shard.0.to_le_bytes());
    put_u64(out, id.op.0);
    out.extend_from_slice(&id.ordinal.to_le_bytes());
}

pub(crate) fn read_effect_id(r: &mut Reader<'_>) -> Option<EffectId> {
    let shard = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    Some(EffectId {
        shard: ShardId(shard),
        op: Op(r.u64()?),
        ordinal: r.u32()?,
    })
}
