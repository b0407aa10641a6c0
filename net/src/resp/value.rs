//! RESP2 replies: writers that append one reply to a buffer, a [`RespValue`] tree for replies
//! built ahead (the `COMMAND` table, `CLUSTER SLOTS`), and a decoder of replies for clients and
//! tests.

use crate::constants::RESP_DEPTH_MAX;
use crate::error::NetError;
use crate::resp::parser::{RespLimits, parse_i64};

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RespValue {
    /// `+OK`. Carriage returns and newlines are written as spaces.
    Simple(String),
    /// `-ERR ...`, starting with the error code. Newlines are written as spaces.
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    /// The null bulk string, `$-1`: a missing key.
    Null,
    Array(Vec<RespValue>),
    /// The null array, `*-1`.
    NullArray,
    /// Key-value pairs: a RESP3 map (`%`), or a flat array of keys and values in RESP2.
    Map(Vec<(RespValue, RespValue)>),
}

fn write_line(out: &mut Vec<u8>, marker: u8, text: &str) {
    out.push(marker);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

pub fn write_simple(out: &mut Vec<u8>, text: &str) {
    write_line(out, b'+', text);
}

/// Writes an error reply; `text` starts with its code (`ERR`, `NOPROTO`, ...).
pub fn write_error(out: &mut Vec<u8>, text: &str) {
    write_line(out, b'-', text);
}

pub fn write_integer(out: &mut Vec<u8>, value: i64) {
    out.push(b':');
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

pub fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

pub fn write_null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// Writes an array header; the caller writes `len` replies after it.
pub fn write_array_len(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    out.extend_from_slice(len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl RespValue {
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(2, out);
    }

    /// Encodes for a connection speaking RESP `protocol` (2 or 3): RESP3 has its own null
    /// (`_`) and maps (`%`); everything else is written alike.
    pub fn encode_as(&self, protocol: u8, out: &mut Vec<u8>) {
        match self {
            RespValue::Null | RespValue::NullArray if protocol >= 3 => {
                out.extend_from_slice(b"_\r\n");
            }
            RespValue::Array(items) => {
                write_array_len(out, items.len());
                for item in items {
                    item.encode_as(protocol, out);
                }
            }
            RespValue::Map(pairs) => {
                if protocol >= 3 {
                    out.push(b'%');
                    out.extend_from_slice(pairs.len().to_string().as_bytes());
                    out.extend_from_slice(b"\r\n");
                } else {
                    write_array_len(out, pairs.len() * 2);
                }
                for (key, value) in pairs {
                    key.encode_as(protocol, out);
                    value.encode_as(protocol, out);
                }
            }
            other => other.encode_flat(out),
        }
    }

    fn encode_flat(&self, out: &mut Vec<u8>) {
        match self {
            RespValue::Simple(text) => write_simple(out, text),
            RespValue::Error(text) => write_error(out, text),
            RespValue::Integer(value) => write_integer(out, *value),
            RespValue::Bulk(bytes) => write_bulk(out, bytes),
            RespValue::Null => write_null(out),
            RespValue::NullArray => out.extend_from_slice(b"*-1\r\n"),
            RespValue::Array(_) | RespValue::Map(_) => self.encode_as(2, out),
        }
    }

    /// A bulk string from text.
    #[must_use]
    pub fn bulk(text: &str) -> RespValue {
        RespValue::Bulk(text.as_bytes().to_vec())
    }

    /// Decodes one reply from the front of `buffer`: `None` if more bytes are needed, else the
    /// reply and the bytes it took. Bounded by `limits` (bulk and array lengths, the whole
    /// reply's size) and by a nesting depth, so hostile input cannot exhaust memory or stack.
    pub fn decode(
        buffer: &[u8],
        limits: &RespLimits,
    ) -> Result<Option<(RespValue, usize)>, NetError> {
        let mut decoder = ValueDecoder {
            buffer,
            limits,
            at: 0,
        };
        match decoder.value(0)? {
            Some(value) => Ok(Some((value, decoder.at))),
            None => Ok(None),
        }
    }
}

struct ValueDecoder<'a> {
    buffer: &'a [u8],
    limits: &'a RespLimits,
    at: usize,
}

fn bad(detail: &str) -> NetError {
    NetError::RespProtocol {
        detail: detail.to_owned(),
    }
}

impl<'a> ValueDecoder<'a> {
    fn value(&mut self, depth: usize) -> Result<Option<RespValue>, NetError> {
        let Some(&marker) = self.buffer.get(self.at) else {
            return Ok(None);
        };
        let Some(line) = self.line()? else {
            return Ok(None);
        };
        let text = || {
            std::str::from_utf8(line)
                .map(str::to_owned)
                .map_err(|_| bad("reply line is not UTF-8"))
        };
        let value = match marker {
            b'+' => RespValue::Simple(text()?),
            b'-' => RespValue::Error(text()?),
            b':' => RespValue::Integer(parse_i64(line).ok_or_else(|| bad("invalid integer"))?),
            b'$' => return self.bulk(line),
            b'*' => return self.array(line, depth),
            _ => return Err(bad("unknown reply type")),
        };
        Ok(Some(value))
    }

    /// The rest of the line at `at` (after its marker), moving past its CRLF.
    fn line(&mut self) -> Result<Option<&'a [u8]>, NetError> {
        let buffer: &'a [u8] = self.buffer;
        let rest = &buffer[self.at + 1..];
        let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
            if rest.len() > self.limits.inline_len_max {
                return Err(bad("reply line too long"));
            }
            return Ok(None);
        };
        match rest.get(cr + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(bad("expected CRLF")),
        }
        self.at += 1 + cr + 2;
        if self.at > self.limits.command_bytes_max {
            return Err(NetError::RespTooLarge {
                what: "a reply's size in bytes",
                size: self.at as u64,
                max: self.limits.command_bytes_max,
            });
        }
        Ok(Some(&rest[..cr]))
    }

    fn bulk(&mut self, line: &[u8]) -> Result<Option<RespValue>, NetError> {
        let len = parse_i64(line).ok_or_else(|| bad("invalid bulk length"))?;
        if len == -1 {
            return Ok(Some(RespValue::Null));
        }
        let len = usize::try_from(len).map_err(|_| bad("invalid bulk length"))?;
        if len > self.limits.bulk_len_max || self.at + len + 2 > self.limits.command_bytes_max {
            return Err(NetError::RespTooLarge {
                what: "bulk length",
                size: len as u64,
                max: self.limits.bulk_len_max,
            });
        }
        let end = self.at + len;
        match self.buffer.get(end..end + 2) {
            None => return Ok(None),
            Some(b"\r\n") => {}
            Some(_) => return Err(bad("expected CRLF after bulk data")),
        }
        let bytes = self.buffer[self.at..end].to_vec();
        self.at = end + 2;
        Ok(Some(RespValue::Bulk(bytes)))
    }

    fn array(&mut self, line: &[u8], depth: usize) -> Result<Option<RespValue>, NetError> {
        let len = parse_i64(line).ok_or_else(|| bad("invalid multibulk length"))?;
        if len == -1 {
            return Ok(Some(RespValue::NullArray));
        }
        let len = usize::try_from(len).map_err(|_| bad("invalid multibulk length"))?;
        if len > self.limits.array_len_max {
            return Err(NetError::RespTooLarge {
                what: "multibulk length",
                size: len as u64,
                max: self.limits.array_len_max,
            });
        }
        if depth == RESP_DEPTH_MAX {
            return Err(bad("reply nested too deeply"));
        }
        // Each item takes at least three bytes, so the remaining input bounds the allocation.
        let mut items = Vec::with_capacity(len.min((self.buffer.len() - self.at) / 3));
        for _ in 0..len {
            match self.value(depth + 1)? {
                Some(item) => items.push(item),
                None => return Ok(None),
            }
        }
        Ok(Some(RespValue::Array(items)))
    }
}
