//! The body of a prepare: a batch of client requests, encoded explicitly.

use super::message::{Request, RequestKind};
use crate::app::codec::{Reader, put_bytes, put_u64};
use crate::ids::{ClientId, RequestNumber};

/// Bytes a request adds to a batch besides its body.
pub const REQUEST_OVERHEAD: usize = 8 + 8 + 1 + 4;

#[must_use]
pub fn encode(requests: &[Request]) -> Vec<u8> {
    let size: usize = requests
        .iter()
        .map(|r| REQUEST_OVERHEAD + r.body.len())
        .sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(requests.len() as u32).to_le_bytes());
    for request in requests {
        put_u64(&mut out, request.client.0);
        put_u64(&mut out, request.request.0);
        out.push(request.kind.tag());
        put_bytes(&mut out, &request.body);
    }
    out
}

/// Decodes a batch; `None` if malformed. Bodies in the log were checksummed when written, so a
/// malformed batch means a bug, but decoding still never panics.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<Vec<Request>> {
    let mut r = Reader::new(bytes);
    let count = r.u32()? as usize;
    let mut requests = Vec::with_capacity(count.min(bytes.len() / REQUEST_OVERHEAD));
    for _ in 0..count {
        let client = ClientId(r.u64()?);
        let request = RequestNumber(r.u64()?);
        let kind = RequestKind::from_tag(r.u8()?)?;
        let body = r.bytes()?.to_vec();
        requests.push(Request {
            client,
            request,
            kind,
            body,
        });
    }
    r.is_empty().then_some(requests)
}
