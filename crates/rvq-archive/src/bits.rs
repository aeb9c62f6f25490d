//! Fixed-width index packing. One [`BitSink`] trait with two implementations: [`BitPacker`],
//! which packs bits MSB-first into bytes, and [`BitCounter`], which only counts them, so that
//! the rate of a setting can be measured without writing anything.

use bitvec::prelude::*;

/// Somewhere fixed-width values can be written.
pub trait BitSink {
    /// Appends the low `bits` bits of `value`, most significant first (`bits` ≤ 32).
    fn put(&mut self, value: u32, bits: u32);
    /// Bits written so far.
    fn bits_written(&self) -> u64;
}

/// Packs values MSB-first into bytes; the last byte is padded with zero bits.
#[derive(Clone, Debug, Default)]
pub struct BitPacker {
    bits: BitVec<u8, Msb0>,
}

impl BitPacker {
    /// An empty packer with room for `bits` bits.
    pub fn with_capacity(bits: usize) -> Self {
        Self {
            bits: BitVec::with_capacity(bits),
        }
    }

    /// The packed bytes, zero-padded to a whole byte.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bits.into_vec()
    }
}

impl BitSink for BitPacker {
    fn put(&mut self, value: u32, bits: u32) {
        debug_assert!(bits <= 32 && (bits == 32 || value >> bits == 0));
        let view = value.view_bits::<Msb0>();
        self.bits
            .extend_from_bitslice(&view[(32 - bits) as usize..]);
    }

    fn bits_written(&self) -> u64 {
        self.bits.len() as u64
    }
}

/// Counts the bits that would be written.
#[derive(Clone, Copy, Debug, Default)]
pub struct BitCounter {
    bits: u64,
}

impl BitSink for BitCounter {
    fn put(&mut self, _value: u32, bits: u32) {
        self.bits += bits as u64;
    }

    fn bits_written(&self) -> u64 {
        self.bits
    }
}

/// Writes `values` at `bits` bits each.
pub fn put_all(sink: &mut impl BitSink, values: &[u32], bits: u32) {
    for &v in values {
        sink.put(v, bits);
    }
}

/// Reads `count` values of `bits` bits each, MSB-first, from `bytes`. Returns `None` if the
/// bytes are too few. The caller checks that unused trailing bits are zero.
pub fn unpack(bytes: &[u8], count: usize, bits: u32) -> Option<Vec<u32>> {
    let view = bytes.view_bits::<Msb0>();
    let need = count.checked_mul(bits as usize)?;
    if need > view.len() {
        return None;
    }
    Some(
        view[..need]
            .chunks_exact(bits as usize)
            .map(|c| c.load_be::<u32>())
            .collect(),
    )
}

/// True when every bit from `from` to the end of `bytes` is zero.
pub fn zero_after(bytes: &[u8], from: usize) -> bool {
    bytes.view_bits::<Msb0>()[from.min(bytes.len() * 8)..].not_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_msb_first() {
        let mut p = BitPacker::default();
        put_all(&mut p, &[0b101, 0b001, 0b111], 3);
        assert_eq!(p.bits_written(), 9);
        assert_eq!(p.into_bytes(), vec![0b1010_0111, 0b1000_0000]);
    }

    #[test]
    fn counter_matches_packer() {
        let mut p = BitPacker::default();
        let mut c = BitCounter::default();
        for bits in 1..=16 {
            p.put((1 << bits) - 1, bits);
            c.put(0, bits);
        }
        assert_eq!(p.bits_written(), c.bits_written());
    }

    #[test]
    fn unpack_inverts_pack_at_every_width() {
        for bits in 1..=16u32 {
            let vals: Vec<u32> = (0..37)
                .map(|i| (i * 2654435761u32) >> (32 - bits))
                .collect();
            let mut p = BitPacker::default();
            put_all(&mut p, &vals, bits);
            let bytes = p.into_bytes();
            assert_eq!(unpack(&bytes, vals.len(), bits).unwrap(), vals);
            assert!(zero_after(&bytes, vals.len() * bits as usize));
            assert!(unpack(&bytes, vals.len() + 8, bits).is_none());
        }
    }
}
