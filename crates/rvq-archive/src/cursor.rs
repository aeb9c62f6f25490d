//! A checked cursor over an archive's bytes: every read is bounds-checked and a short read is
//! [`ArchiveError::Truncated`](crate::ArchiveError::Truncated) at its offset.

use crate::{ArchiveError, Result, varint};

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(ArchiveError::Truncated {
                what,
                offset: self.pos,
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64> {
        match varint::get(&self.bytes[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(varint::VarintError::Truncated) => Err(ArchiveError::Truncated {
                what,
                offset: self.pos,
            }),
            Err(varint::VarintError::Invalid) => Err(ArchiveError::InvalidHeader(format!(
                "{what}: malformed varint at byte {}",
                self.pos
            ))),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}
