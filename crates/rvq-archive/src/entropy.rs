//! Entropy-coded indices (payload coder 1): a block's indices range-coded under adaptive
//! counts, so that entries a block uses often cost fewer than b bits. Each index is coded as
//! a high part under its codebook level's context, then its low bits under the context of
//! (level, high part): two small alphabets instead of one of k symbols, which keeps the model
//! cheap to build per symbol and lets it adapt within one block. docs/FORMAT.md specifies it
//! exactly; as with the depth map, a reader accepts only words that re-encode to themselves.

use crate::adaptive::AdaptiveCounts;
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};

/// What coding a symbol adds to its count.
const INCREMENT: u32 = 4;
/// When a context's counts sum past this, each is halved (rounding up).
const MAX_TOTAL: u32 = 1 << 12;

/// The most decoding work a coded block may ask of a reader per byte of what follows its
/// fields (depth map and coded words), in model entries built ([`work`]): so a forged block
/// cannot make a reader decode for long. Real photographs code at 7 to 10 bits an index, far
/// inside it, and even a constant index stays inside it at 1,024 entries and more (the test
/// `constant_indices_stay_within_the_work_bound`); an encoder packs a block beyond it, as it
/// packs such a flat block under a smaller codebook ([`MIN_INDEX_WORK`]).
pub const WORK_PER_BYTE: u64 = 1 << 15;

/// The least work an index counts for ([`work`]): what the two models of an index of a
/// 1,024-entry codebook cost, so that a block holds at most 512 indices a byte (2 KiB of
/// decoded indices) at every codebook size.
pub(crate) const MIN_INDEX_WORK: u64 = 64;

/// The work of decoding a coded block of `cells` cells and `indices` indices for codebooks of
/// `k` entries: each index builds its two models (the high and low alphabets' sizes, and at
/// least [`MIN_INDEX_WORK`]), and, when the block has a depth map of `m` depths
/// (`depth_map_depths` = m, else 0), each cell builds one of m. For k = 1,024 without a depth
/// map, 64 per index: at most 512 indices a byte.
///
/// The floor bounds memory as well as time: a decoded index takes 4 bytes however cheap its
/// models, and without it a block of a 2-entry codebook (2 per index) could hold 16,384
/// indices a byte, so a forged archive of a few hundred kilobytes would ask for gigabytes.
pub fn work(k: u32, depth_map_depths: u32, cells: u64, indices: u64) -> u64 {
    let (low_bits, highs) = split(k);
    let lows = if low_bits > 0 { 1u64 << low_bits } else { 0 };
    let per_index = (highs as u64 + lows).max(MIN_INDEX_WORK);
    cells
        .saturating_mul(depth_map_depths as u64)
        .saturating_add(indices.saturating_mul(per_index))
}

/// How an index of a codebook of `k` entries splits: its low bits (half its bits, rounded
/// down) and the number of high parts.
pub(crate) fn split(k: u32) -> (u32, usize) {
    let bits = u32::BITS - (k.max(2) - 1).leading_zeros();
    let low_bits = bits / 2;
    (low_bits, k.div_ceil(1 << low_bits) as usize)
}

/// The models of one block: the high parts' in context level, the low bits' in context
/// (level, high part); none for low bits when k = 2, whose indices have none.
struct Model {
    low_bits: u32,
    highs: usize,
    high: AdaptiveCounts,
    low: Option<AdaptiveCounts>,
}

impl Model {
    fn new(k: u32) -> Self {
        let (low_bits, highs) = split(k);
        Self {
            low_bits,
            highs,
            high: AdaptiveCounts::new(highs, INCREMENT, MAX_TOTAL),
            low: (low_bits > 0).then(|| AdaptiveCounts::new(1 << low_bits, INCREMENT, MAX_TOTAL)),
        }
    }
}

/// The level of each of a record's indices, in stored (level-major) order, from how many of
/// its cells reach each level.
fn levels(per_level: &[u64]) -> impl Iterator<Item = usize> + '_ {
    per_level
        .iter()
        .enumerate()
        .flat_map(|(level, &n)| std::iter::repeat_n(level, n as usize))
}

/// Codes the indices of a block's records (each with its index count per level) for
/// codebooks of `k` entries, as 32-bit words.
pub(crate) fn encode(records: &[(&[u32], &[u64])], k: u32) -> Vec<u32> {
    let mut model = Model::new(k);
    let mut coder = DefaultRangeEncoder::new();
    for &(indices, per_level) in records {
        for (&v, level) in indices.iter().zip(levels(per_level)) {
            let high = (v >> model.low_bits) as usize;
            model.high.encode(&mut coder, level, high);
            if let Some(low) = model.low.as_mut() {
                let bits = (v & ((1 << model.low_bits) - 1)) as usize;
                low.encode(&mut coder, level * model.highs + high, bits);
            }
        }
    }
    coder
        .into_compressed()
        .expect("coding into a Vec cannot fail")
}

/// Decodes the indices of records with the given counts per level from `words`; `None` when
/// the words are not exactly what [`encode`] writes for some indices. Indices may come out
/// at or above `k` (a high part of the last group with low bits beyond it): the caller
/// refuses those as it refuses packed ones.
pub(crate) fn decode(words: &[u32], records: &[&[u64]], k: u32) -> Option<Vec<Vec<u32>>> {
    let mut model = Model::new(k);
    let mut coder = DefaultRangeDecoder::from_compressed(words.to_vec()).ok()?;
    let mut out = Vec::with_capacity(records.len());
    for per_level in records {
        let mut indices = Vec::with_capacity(per_level.iter().sum::<u64>() as usize);
        for level in levels(per_level) {
            let high = model.high.decode(&mut coder, level)?;
            let mut v = (high as u32) << model.low_bits;
            if let Some(low) = model.low.as_mut() {
                v |= low.decode(&mut coder, level * model.highs + high)? as u32;
            }
            indices.push(v);
        }
        out.push(indices);
    }
    let refs: Vec<(&[u32], &[u64])> = out
        .iter()
        .zip(records)
        .map(|(i, l)| (i.as_slice(), *l))
        .collect();
    (encode(&refs, k) == words).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u32) -> u32 {
        *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *state >> 8
    }

    #[test]
    fn round_trips_every_codebook_size_and_refuses_other_words() {
        let mut state = 7;
        for k in [2u32, 3, 5, 1000, 1024, 65_536] {
            let per_level = [vec![6u64, 4, 1], vec![2, 2, 2]];
            let records: Vec<Vec<u32>> = per_level
                .iter()
                .map(|l| {
                    (0..l.iter().sum::<u64>())
                        .map(|_| lcg(&mut state) % k)
                        .collect()
                })
                .collect();
            let refs: Vec<(&[u32], &[u64])> = records
                .iter()
                .zip(&per_level)
                .map(|(r, l)| (r.as_slice(), l.as_slice()))
                .collect();
            let counts: Vec<&[u64]> = per_level.iter().map(|l| l.as_slice()).collect();
            let words = encode(&refs, k);
            assert_eq!(decode(&words, &counts, k).unwrap(), records, "k = {k}");
            let mut longer = words.clone();
            longer.push(0);
            assert!(decode(&longer, &counts, k).is_none());
        }
    }

    #[test]
    fn a_long_block_codes_to_the_same_words_as_when_the_format_was_fixed() {
        // 64 records of 16 cells at m = 8, k = 1,024, entries drawn with a skew: the words,
        // and so every coded archive's bytes, must not change with the coder's version.
        let mut state = 99;
        let records: Vec<Vec<u32>> = (0..64)
            .map(|_| {
                (0..128)
                    .map(|_| {
                        let r = lcg(&mut state);
                        (r % 1024) * (r >> 20 & 1) + (r % 37) * (1 - (r >> 20 & 1))
                    })
                    .collect()
            })
            .collect();
        let per_level = [16u64; 8];
        let refs: Vec<(&[u32], &[u64])> = records
            .iter()
            .map(|r| (r.as_slice(), per_level.as_slice()))
            .collect();
        let words = encode(&refs, 1024);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!((words.len(), crc32fast::hash(&bytes)), GOLDEN_LONG_BLOCK);
        let counts = vec![per_level.as_slice(); 64];
        assert_eq!(decode(&words, &counts, 1024).unwrap(), records);
    }

    /// Word count and CRC-32 of the words of the block above, as constriction 0.5.0 codes it.
    const GOLDEN_LONG_BLOCK: (usize, u32) = (2259, 3_730_159_856);

    #[test]
    fn skewed_indices_cost_less_than_packed() {
        // 64 records of 16 cells at m = 2, k = 1,024, drawn from 40 entries: far below
        // 10 bits an index.
        let mut state = 3;
        let records: Vec<Vec<u32>> = (0..64)
            .map(|_| (0..32).map(|_| (lcg(&mut state) % 40) * 25).collect())
            .collect();
        let per_level = [16u64, 16];
        let refs: Vec<(&[u32], &[u64])> = records
            .iter()
            .map(|r| (r.as_slice(), per_level.as_slice()))
            .collect();
        let bits = encode(&refs, 1024).len() * 32;
        assert!(bits < 64 * 32 * 7, "{bits} bits for 2,048 indices");
    }

    #[test]
    fn constant_indices_stay_within_the_work_bound() {
        // One index repeated 100,000 times, the cheapest input there is, still codes within
        // the bound, with a fifth to spare, at the codebook sizes of models (1,024 entries and
        // more): a flat image's block is coded, and the bound only ever refuses forged blocks.
        // Smaller codebooks code such a block below the floor's 512 indices a byte, so it is
        // packed (`work_counts_every_index_at_least_the_floor`).
        for k in [1024, 4096, 65_536] {
            let flat = vec![1u32; 100_000];
            let words = encode(&[(&flat, &[100_000])], k);
            let work = work(k, 0, 100_000, 100_000);
            let bound = WORK_PER_BYTE * 4 * words.len() as u64;
            assert!(work * 6 / 5 <= bound, "k = {k}: work {work}, bound {bound}");
        }
    }

    #[test]
    fn work_counts_every_index_at_least_the_floor() {
        for k in [2, 3, 5, 16, 255, 256, 1024, 4096, 65_536] {
            let (low_bits, highs) = split(k);
            let lows = if low_bits > 0 { 1 << low_bits } else { 0 };
            let per_index = work(k, 0, 1000, 1000) / 1000;
            assert_eq!(
                per_index,
                (highs as u64 + lows).max(MIN_INDEX_WORK),
                "k = {k}"
            );
            assert!(WORK_PER_BYTE / per_index <= 512, "k = {k}");
            // Cells of a depth map count on top.
            assert_eq!(work(k, 3, 10, 1000), 30 + 1000 * per_index);
        }
        assert_eq!(work(2, 0, 1, 1), 64);
    }
}
