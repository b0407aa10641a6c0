//! The RESP2 request parser: arrays of bulk strings (what every client library,
//! `redis-cli` and `redis-benchmark` send, pipelined or not) and inline commands (what a person
//! types into `telnet`).
//!
//! The parser keeps no state between calls: the connection appends reads to its buffer and
//! calls [`RespParser::parse`] on the unconsumed bytes. Only header lines are scanned; a bulk
//! string is skipped by its declared length, so re-parsing a large, partly arrived command is
//! cheap. Every limit is checked as soon as the bytes that break it arrive (a declared length
//! before its data), so the buffer never holds more than one command's bounded size plus one
//! read. A protocol error loses the framing: the connection replies with the error and closes,
//! as Redis does.

use std::ops::Range;

use crate::constants::{
    RESP_ARRAY_LEN_MAX, RESP_BULK_LEN_MAX, RESP_COMMAND_BYTES_MAX, RESP_INLINE_LEN_MAX,
};
use crate::error::NetError;

/// Bounds on what one command may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespLimits {
    pub bulk_len_max: usize,
    pub array_len_max: usize,
    pub inline_len_max: usize,
    pub command_bytes_max: usize,
}

impl Default for RespLimits {
    fn default() -> RespLimits {
        RespLimits {
            bulk_len_max: RESP_BULK_LEN_MAX,
            array_len_max: RESP_ARRAY_LEN_MAX,
            inline_len_max: RESP_INLINE_LEN_MAX,
            command_bytes_max: RESP_COMMAND_BYTES_MAX,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RespParser {
    limits: RespLimits,
}

fn protocol(detail: impl Into<String>) -> NetError {
    NetError::RespProtocol {
        detail: detail.into(),
    }
}

impl RespParser {
    #[must_use]
    pub fn new(limits: RespLimits) -> RespParser {
        RespParser { limits }
    }

    #[must_use]
    pub fn limits(&self) -> RespLimits {
        self.limits
    }

    /// Parses one command from the front of `buffer`. Returns `None` if more bytes are needed,
    /// or the bytes the command took, with `args` holding the ranges of its arguments within
    /// `buffer`. A command may have no arguments (an empty line, `*0`): skip it.
    pub fn parse(
        &self,
        buffer: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<Option<usize>, NetError> {
        args.clear();
        match buffer.first() {
            None => Ok(None),
            Some(b'*') => self.parse_array(buffer, args),
            Some(_) => self.parse_inline(buffer, args),
        }
    }

    fn parse_inline(
        &self,
        buffer: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<Option<usize>, NetError> {
        let Some(newline) = buffer.iter().position(|&b| b == b'\n') else {
            if buffer.len() > self.limits.inline_len_max {
                return Err(protocol("too big inline request"));
            }
            return Ok(None);
        };
        if newline > self.limits.inline_len_max {
            return Err(protocol("too big inline request"));
        }
        let line_end = if newline > 0 && buffer[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        let mut start = None;
        for (at, &byte) in buffer[..line_end].iter().enumerate() {
            let space = byte == b' ' || byte == b'\t';
            match (start, space) {
                (None, false) => start = Some(at),
                (Some(from), true) => {
                    self.push_arg(args, from..at)?;
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(from) = start {
            self.push_arg(args, from..line_end)?;
        }
        Ok(Some(newline + 1))
    }

    fn push_arg(&self, args: &mut Vec<Range<usize>>, range: Range<usize>) -> Result<(), NetError> {
        if args.len() == self.limits.array_len_max {
            return Err(NetError::RespTooLarge {
                what: "an inline command's argument count",
                size: args.len() as u64 + 1,
                max: self.limits.array_len_max,
            });
        }
        args.push(range);
        Ok(())
    }

    fn parse_array(
        &self,
        buffer: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<Option<usize>, NetError> {
        let Some((count, mut at)) = self.header_line(buffer, 0, "multibulk")? else {
            return Ok(None);
        };
        if count <= 0 {
            // Redis treats `*0` and `*-1` as an empty command.
            return Ok(Some(at));
        }
        let count = u64::try_from(count).expect("invariant: count is positive");
        if count > self.limits.array_len_max as u64 {
            return Err(NetError::RespTooLarge {
                what: "multibulk length",
                size: count,
                max: self.limits.array_len_max,
            });
        }
        for _ in 0..count {
            match buffer.get(at) {
                None => return Ok(None),
                Some(b'$') => {}
                Some(&other) => {
                    return Err(protocol(format!(
                        "expected '$', got '{}'",
                        char::from(other).escape_default()
                    )));
                }
            }
            let Some((len, data)) = self.header_line(buffer, at, "bulk")? else {
                return Ok(None);
            };
            let len = usize::try_from(len).map_err(|_| protocol("invalid bulk length"))?;
            if len > self.limits.bulk_len_max {
                return Err(NetError::RespTooLarge {
                    what: "bulk length",
                    size: len as u64,
                    max: self.limits.bulk_len_max,
                });
            }
            let end = data + len;
            if end + 2 > self.limits.command_bytes_max {
                return Err(NetError::RespTooLarge {
                    what: "a command's size in bytes",
                    size: (end + 2) as u64,
                    max: self.limits.command_bytes_max,
                });
            }
            match buffer.get(end..end + 2) {
                None => return Ok(None),
                Some(b"\r\n") => {}
                Some(_) => return Err(protocol("expected CRLF after bulk data")),
            }
            args.push(data..end);
            at = end + 2;
        }
        Ok(Some(at))
    }

    /// Reads the `*<n>\r\n` or `$<n>\r\n` line at `at` (its marker already known): the number
    /// and the offset after the line.
    fn header_line(
        &self,
        buffer: &[u8],
        at: usize,
        what: &str,
    ) -> Result<Option<(i64, usize)>, NetError> {
        let rest = &buffer[at + 1..];
        let Some(cr) = rest.iter().position(|&b| b == b'\r') else {
            if rest.len() > self.limits.inline_len_max {
                return Err(protocol(format!("too big {what} count string")));
            }
            return Ok(None);
        };
        if at + 1 + cr + 2 > self.limits.command_bytes_max {
            return Err(NetError::RespTooLarge {
                what: "a command's size in bytes",
                size: (at + 1 + cr + 2) as u64,
                max: self.limits.command_bytes_max,
            });
        }
        match rest.get(cr + 1) {
            None => return Ok(None),
            Some(b'\n') => {}
            Some(_) => return Err(protocol(format!("invalid {what} length"))),
        }
        let number =
            parse_i64(&rest[..cr]).ok_or_else(|| protocol(format!("invalid {what} length")))?;
        Ok(Some((number, at + 1 + cr + 2)))
    }
}

/// A decimal integer with an optional leading `-`, no `+`, no spaces, no leading zeros beyond
/// a lone `0`, within i64: the strict form Redis accepts for lengths and integer arguments.
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 1 && digits[0] == b'0' {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    if negative {
        if magnitude == 0 {
            return None;
        }
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}
