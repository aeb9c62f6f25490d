//! Unsigned LEB128 varints, canonical (shortest) form only, at most 10 bytes.

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum VarintError {
    Truncated,
    Invalid,
}

pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Bytes [`put`] writes for `v`.
pub(crate) fn len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a varint from the start of `bytes`: its value and length.
pub(crate) fn get(bytes: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut v: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = (b & 0x7f) as u64;
        if i == 9 && part > 1 {
            return Err(VarintError::Invalid);
        }
        v |= part << (7 * i);
        if b & 0x80 == 0 {
            // A zero final byte after the first is a longer spelling of a shorter varint.
            if i > 0 && b == 0 {
                return Err(VarintError::Invalid);
            }
            return Ok((v, i + 1));
        }
    }
    if bytes.len() >= 10 {
        Err(VarintError::Invalid)
    } else {
        Err(VarintError::Truncated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_canonical() {
        for v in [0u64, 1, 127, 128, 300, 16_384, u32::MAX as u64, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(get(&b), Ok((v, b.len())));
        }
        assert_eq!(get(&[0x80, 0x00]), Err(VarintError::Invalid));
        assert_eq!(get(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(get(&[0xff; 11]), Err(VarintError::Invalid));
        let mut b = Vec::new();
        put(&mut b, 300);
        assert_eq!(b, vec![0xac, 0x02]);
    }
}
