//! Depth maps: how many codebooks each cell of a record uses (1..=m), for all records of a
//! block, coded together with an adaptive range coder (the `constriction` crate's). A depth
//! map is cheap because neighbouring cells tend to share depths: each depth is coded under
//! the context of the depth to its left (or, in the first column, the one above), with counts
//! that adapt as the block goes. docs/FORMAT.md specifies the model exactly; both sides must
//! compute the same probabilities, so everything here is integer arithmetic.

use crate::adaptive::AdaptiveCounts;
use crate::{ArchiveError, Header, Record, Result};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};

/// What coding a depth adds to its count in its context.
const INCREMENT: u32 = 8;
/// When a context's counts sum past this, each is halved (rounding up), so the model follows
/// changes within a block.
const MAX_TOTAL: u32 = 1 << 12;

/// One record's cells, row-major, and its grid's width in cells.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Cells in the record.
    pub cells: usize,
    /// Cells per grid row.
    pub columns: usize,
}

/// The depth model: m + 1 contexts (0: no neighbour; c ≥ 1: neighbour at depth c) of m
/// symbols (depth − 1).
fn contexts(m: u32) -> AdaptiveCounts {
    AdaptiveCounts::new(m as usize, INCREMENT, MAX_TOTAL)
}

/// The context of cell `i` of a record: the depth to its left, or above in the first column,
/// or 0 for the first cell.
fn context(depths: &[u8], i: usize, columns: usize) -> usize {
    if !i.is_multiple_of(columns) {
        depths[i - 1] as usize
    } else if i >= columns {
        depths[i - columns] as usize
    } else {
        0
    }
}

/// Codes the depth maps of a block's records (each depth in 1..=m, m ≥ 2) as 32-bit words.
pub fn encode(maps: &[(&[u8], usize)], m: u32) -> Vec<u32> {
    let mut contexts = contexts(m);
    let mut coder = DefaultRangeEncoder::new();
    for &(depths, columns) in maps {
        for i in 0..depths.len() {
            let ctx = context(depths, i, columns);
            contexts.encode(&mut coder, ctx, depths[i] as usize - 1);
        }
    }
    coder
        .into_compressed()
        .expect("coding into a Vec cannot fail")
}

/// Decodes the depth maps of records of the given shapes from `words`; `None` when the words
/// are not exactly what [`encode`] writes for some maps (so every accepted depth map has one
/// encoding, and a block reads back to the same bytes).
pub fn decode(words: &[u32], shapes: &[Shape], m: u32) -> Option<Vec<Vec<u8>>> {
    let mut contexts = contexts(m);
    let mut coder = DefaultRangeDecoder::from_compressed(words.to_vec()).ok()?;
    let mut maps = Vec::with_capacity(shapes.len());
    for shape in shapes {
        let mut depths = Vec::with_capacity(shape.cells);
        for i in 0..shape.cells {
            let ctx = context(&depths, i, shape.columns.max(1));
            let symbol = contexts.decode(&mut coder, ctx)?;
            depths.push(symbol as u8 + 1);
        }
        maps.push(depths);
    }
    let refs: Vec<(&[u8], usize)> = maps
        .iter()
        .zip(shapes)
        .map(|(d, s)| (d.as_slice(), s.columns.max(1)))
        .collect();
    (encode(&refs, m) == words).then_some(maps)
}

/// The depth map of a block of `records`, coded, when it needs one (some cell below m).
pub(crate) fn block_words(header: &Header, records: &[Record]) -> Option<Vec<u32>> {
    if !records.iter().any(|r| r.has_depth_map(header)) {
        return None;
    }
    let maps: Vec<Vec<u8>> = records.iter().map(|r| r.cell_depths(header)).collect();
    let refs: Vec<(&[u8], usize)> = maps
        .iter()
        .zip(records)
        .map(|(d, r)| (d.as_slice(), header.grid_of(r).0 as usize))
        .collect();
    Some(encode(&refs, header.codebooks_used))
}

/// Decodes a block's depth map `words` into `records` (the block's, from image `first`),
/// leaving empty the depths of a record whose cells all use m; refuses words that are not the
/// coding of any depths and a map in which every cell uses all m.
pub(crate) fn set_depths(
    header: &Header,
    first: u64,
    records: &mut [Record],
    words: &[u32],
) -> Result<()> {
    let bad = |reason: &str| ArchiveError::InvalidRecord {
        index: first,
        reason: reason.into(),
    };
    let shapes: Vec<Shape> = records
        .iter()
        .map(|r| {
            let (gw, gh) = header.grid_of(r);
            Shape {
                cells: (gw * gh) as usize,
                columns: gw as usize,
            }
        })
        .collect();
    let maps = decode(words, &shapes, header.codebooks_used)
        .ok_or_else(|| bad("its block's depth map is not the coding of any depths"))?;
    for (r, d) in records.iter_mut().zip(maps) {
        r.depths = d;
    }
    if !records.iter().any(|r| r.has_depth_map(header)) {
        return Err(bad(
            "its block has a depth map in which every cell uses all codebooks",
        ));
    }
    for r in records.iter_mut() {
        if !r.has_depth_map(header) {
            r.depths.clear();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(maps: &[(Vec<u8>, usize)]) -> Vec<Shape> {
        maps.iter()
            .map(|(d, c)| Shape {
                cells: d.len(),
                columns: *c,
            })
            .collect()
    }

    #[test]
    fn round_trips_and_refuses_other_words() {
        let maps = vec![
            (vec![1, 1, 2, 8, 8, 8, 3, 1, 1], 3),
            (vec![4; 16], 4),
            (vec![2, 7], 1),
        ];
        let refs: Vec<(&[u8], usize)> = maps.iter().map(|(d, c)| (d.as_slice(), *c)).collect();
        let words = encode(&refs, 8);
        let back = decode(&words, &shapes(&maps), 8).unwrap();
        assert_eq!(
            back,
            maps.iter().map(|(d, _)| d.clone()).collect::<Vec<_>>()
        );
        let mut longer = words.clone();
        longer.push(0);
        assert!(decode(&longer, &shapes(&maps), 8).is_none());
        assert!(decode(&words[..words.len() - 1], &shapes(&maps), 8).is_none());
    }

    #[test]
    fn a_long_map_codes_to_the_same_words_as_when_the_format_was_fixed() {
        // 2,000 cells (20 records of 10×10) of clustered pseudo-random depths, m = 8: the
        // words, and so every archive's bytes, must not change with the coder's version.
        let mut state = 12345u32;
        let maps: Vec<Vec<u8>> = (0..20)
            .map(|_| {
                let mut d = 4u8;
                (0..100)
                    .map(|_| {
                        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        if state >> 29 == 0 {
                            d = 1 + (state >> 8) as u8 % 8;
                        }
                        d
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<(&[u8], usize)> = maps.iter().map(|d| (d.as_slice(), 10)).collect();
        let words = encode(&refs, 8);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!((words.len(), crc32fast::hash(&bytes)), GOLDEN_LONG_MAP);
        let shapes: Vec<Shape> = maps
            .iter()
            .map(|d| Shape {
                cells: d.len(),
                columns: 10,
            })
            .collect();
        assert_eq!(decode(&words, &shapes, 8).unwrap(), maps);
    }

    /// Word count and CRC-32 of the words of the map above, as constriction 0.5.0 codes it.
    const GOLDEN_LONG_MAP: (usize, u32) = (73, 444_331_765);

    #[test]
    fn flat_maps_cost_little() {
        // 64 records of 16 cells, nearly all at depth 3: far below 3 bits a cell.
        let mut maps = Vec::new();
        for r in 0..64u8 {
            let mut d = vec![3u8; 16];
            d[(r % 16) as usize] = 5;
            maps.push(d);
        }
        let refs: Vec<(&[u8], usize)> = maps.iter().map(|d| (d.as_slice(), 4)).collect();
        let bits = encode(&refs, 8).len() * 32;
        assert!(bits < 64 * 16, "{bits} bits for 1024 cells");
    }
}
