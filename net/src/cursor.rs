//! A bounds-checked reader over untrusted bytes that names the field it failed on.

use crate::error::NetError;

#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], NetError> {
        if len > self.bytes.len() {
            return Err(NetError::Truncated {
                field,
                needed: len,
                remaining: self.bytes.len(),
            });
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], NetError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, NetError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, NetError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, NetError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, NetError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub(crate) fn u128(&mut self, field: &'static str) -> Result<u128, NetError> {
        Ok(u128::from_le_bytes(self.array(field)?))
    }

    /// A u32 length prefix and that many bytes. The length is checked against what remains
    /// before anything is read, so a lying prefix never causes an allocation.
    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], NetError> {
        let declared = self.u32(field)?;
        self.counted(u64::from(declared), 1, field)
    }

    /// `count` items of `item_size` bytes, checked against what remains.
    pub(crate) fn counted(
        &mut self,
        count: u64,
        item_size: usize,
        field: &'static str,
    ) -> Result<&'a [u8], NetError> {
        let fits = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(item_size))
            .filter(|&len| len <= self.bytes.len());
        match fits {
            Some(len) => self.take(len, field),
            None => Err(NetError::BadLength {
                field,
                declared: count.saturating_mul(item_size as u64),
                remaining: self.bytes.len(),
            }),
        }
    }

    /// Fails unless every byte was read: encodings are canonical, so trailing bytes mean the
    /// sender and receiver disagree on the format.
    pub(crate) fn finish(self) -> Result<(), NetError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(NetError::TrailingBytes {
                count: self.bytes.len(),
            })
        }
    }
}
