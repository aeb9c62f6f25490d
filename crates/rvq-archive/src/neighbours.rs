//! Payload coder 2: a block's indices range-coded under contexts from what a reader already
//! holds. Before an index is coded, the indices at the same level of its neighbours to the
//! left, above, above-right and above-left (those deep enough to have one) are offered in
//! turn, each as a yes/no under its own adaptive context; an index that matches none is coded
//! as payload coder 1 codes every index. Flat regions reuse an entry across neighbouring cells,
//! which then costs a fraction of a bit instead of six to ten. docs/FORMAT.md specifies it
//! exactly; integer arithmetic throughout, and a reader accepts only words that re-encode to
//! themselves.

use crate::adaptive::AdaptiveCounts;
use crate::entropy::split;
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};

/// What coding a yes/no adds to its count.
const MATCH_INCREMENT: u32 = 4;
/// A yes/no context whose two counts sum past this is halved (rounding up): so a match costs
/// at least log2(64/63) ≈ 0.023 bits, so a flat block stays within the work bound
/// ([`INDEX_WORK`]).
const MATCH_MAX_TOTAL: u32 = 64;
/// What coding an index's high part or low bits adds to its count.
const INCREMENT: u32 = 8;
/// When a high-part or low-bits context's counts sum past this, each is halved (rounding up).
const MAX_TOTAL: u32 = 1 << 12;
/// Levels told apart by the yes/no contexts: 0, 1, 2, and 3 or deeper.
const MATCH_LEVELS: usize = 4;
/// Neighbours offered: left, above, above-right, above-left.
const NEIGHBOURS: usize = 4;

/// What every decoded index costs, in the unit of [`crate::WORK_PER_BYTE`] (model entries
/// built), before its yes/no answers and alphabets: the least a payload-coder-1 index counts
/// for, so that a block can hold no more indices per byte than with that coder (at most 512),
/// however cheap its matches.
pub(crate) const INDEX_WORK: u64 = crate::entropy::MIN_INDEX_WORK;
/// What decoding one yes/no costs.
pub(crate) const MATCH_WORK: u64 = 2;

/// What decoding the high part and low bits of an index of a `k`-entry codebook costs: the
/// sizes of their two alphabets.
fn alphabet_work(k: u32) -> u64 {
    let (low_bits, highs) = split(k);
    let lows = if low_bits > 0 { 1u64 << low_bits } else { 0 };
    highs as u64 + lows
}

/// One record's layout as the coder needs it: its grid's width and every cell's depth
/// (row-major).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout<'a> {
    /// Cells per grid row.
    pub columns: usize,
    /// Each cell's depth, 1..=m.
    pub depths: &'a [u8],
}

/// The block's models.
struct Models {
    low_bits: u32,
    highs: usize,
    matches: AdaptiveCounts,
    high: AdaptiveCounts,
    low: Option<AdaptiveCounts>,
}

impl Models {
    fn new(k: u32) -> Self {
        let (low_bits, highs) = split(k);
        Self {
            low_bits,
            highs,
            matches: AdaptiveCounts::new(2, MATCH_INCREMENT, MATCH_MAX_TOTAL),
            high: AdaptiveCounts::new(highs, INCREMENT, MAX_TOTAL),
            low: (low_bits > 0).then(|| AdaptiveCounts::new(1 << low_bits, INCREMENT, MAX_TOTAL)),
        }
    }
}

/// The distinct indices at `level` of cell `c`'s neighbours (left, above, above-right,
/// above-left, in that order, each only where it is in the grid and deep enough), read from
/// `row` (this level's indices of the cells before `c`), and how many offered indices
/// repeated an earlier one.
fn candidates(
    row: &[u32],
    layout: Layout,
    level: usize,
    c: usize,
) -> ([u32; NEIGHBOURS], usize, usize) {
    let columns = layout.columns;
    let (y, x) = (c / columns, c % columns);
    let left = x > 0;
    let up = y > 0;
    let right = x + 1 < columns;
    let at = [
        left.then(|| c - 1),
        up.then(|| c - columns),
        (up && right).then(|| c - columns + 1),
        (up && left).then(|| c - columns - 1),
    ];
    let mut out = [0; NEIGHBOURS];
    let (mut n, mut repeats) = (0, 0);
    for j in at.into_iter().flatten() {
        if layout.depths[j] as usize <= level {
            continue;
        }
        let v = row[j];
        if out[..n].contains(&v) {
            repeats += 1;
        } else {
            out[n] = v;
            n += 1;
        }
    }
    (out, n, repeats)
}

/// The yes/no context of offering the `rank`-th distinct neighbour at `level` when `repeats`
/// offered indices repeated earlier ones.
fn match_context(level: usize, rank: usize, repeats: usize) -> usize {
    (level.min(MATCH_LEVELS - 1) * NEIGHBOURS + rank) * NEIGHBOURS + repeats
}

/// Codes the indices of a block's records (each in stored order: level-major, the cells deep
/// enough for each level, row-major) for codebooks of `k` entries, as 32-bit words, with the
/// work a reader will spend decoding them.
pub(crate) fn encode(records: &[(&[u32], Layout)], k: u32) -> (Vec<u32>, u64) {
    encode_within(records, k, u64::MAX).expect("no work exceeds u64::MAX")
}

/// [`encode`], given up (`None`) as soon as the work passes `cap`: a reader checking which
/// model a block should have used need not finish a coding that could not be valid.
pub(crate) fn encode_within(
    records: &[(&[u32], Layout)],
    k: u32,
    cap: u64,
) -> Option<(Vec<u32>, u64)> {
    let mut models = Models::new(k);
    let mut coder = DefaultRangeEncoder::new();
    let mut work = 0u64;
    for &(indices, layout) in records {
        let cells = layout.depths.len();
        let m = layout.depths.iter().copied().max().unwrap_or(0) as usize;
        // One level's indices at a time: the neighbours offered are at the index's level.
        let mut row = vec![0u32; cells];
        let mut stored = indices.iter();
        for level in 0..m {
            for c in 0..cells {
                if layout.depths[c] as usize <= level {
                    continue;
                }
                let v = *stored
                    .next()
                    .expect("the layout counts the record's indices");
                let (offered, n, repeats) = candidates(&row, layout, level, c);
                row[c] = v;
                work += INDEX_WORK;
                let mut matched = false;
                for (rank, &u) in offered[..n].iter().enumerate() {
                    let hit = u == v;
                    models.matches.encode(
                        &mut coder,
                        match_context(level, rank, repeats),
                        hit as usize,
                    );
                    work += MATCH_WORK;
                    if hit {
                        matched = true;
                        break;
                    }
                }
                if !matched {
                    work += alphabet_work(k);
                    let high = (v >> models.low_bits) as usize;
                    models.high.encode(&mut coder, level, high);
                    if let Some(low) = models.low.as_mut() {
                        let bits = (v & ((1 << models.low_bits) - 1)) as usize;
                        low.encode(&mut coder, level * models.highs + high, bits);
                    }
                }
                if work > cap {
                    return None;
                }
            }
        }
    }
    let words = coder
        .into_compressed()
        .expect("coding into a Vec cannot fail");
    Some((words, work))
}

/// Why [`decode`] refused words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Decoding them would cost more than the budget.
    OverBudget,
    /// They are not exactly what [`encode`] writes for any indices.
    NotCoding,
}

/// Decodes the indices of records of the given layouts from `words`, spending at most
/// `budget` work. Indices may come out at or above `k` (a high part of the last group with
/// low bits beyond it): the caller refuses those as it refuses packed ones.
pub(crate) fn decode(
    words: &[u32],
    layouts: &[Layout],
    k: u32,
    budget: u64,
) -> Result<Vec<Vec<u32>>, Refused> {
    use Refused::{NotCoding, OverBudget};
    let mut models = Models::new(k);
    let mut coder = DefaultRangeDecoder::from_compressed(words.to_vec()).map_err(|_| NotCoding)?;
    let mut work = 0u64;
    let mut out = Vec::with_capacity(layouts.len());
    for &layout in layouts {
        let cells = layout.depths.len();
        let m = layout.depths.iter().copied().max().unwrap_or(0) as usize;
        let total: usize = layout.depths.iter().map(|&d| d as usize).sum();
        let mut row = vec![0u32; cells];
        let mut indices = Vec::with_capacity(total);
        for level in 0..m {
            for c in 0..cells {
                if layout.depths[c] as usize <= level {
                    continue;
                }
                let (offered, n, repeats) = candidates(&row, layout, level, c);
                work += INDEX_WORK;
                let mut found = None;
                for (rank, &u) in offered[..n].iter().enumerate() {
                    work += MATCH_WORK;
                    if work > budget {
                        return Err(OverBudget);
                    }
                    let context = match_context(level, rank, repeats);
                    let answer = models.matches.decode(&mut coder, context);
                    if answer.ok_or(NotCoding)? == 1 {
                        found = Some(u);
                        break;
                    }
                }
                let v = match found {
                    Some(u) => u,
                    None => {
                        work += alphabet_work(k);
                        if work > budget {
                            return Err(OverBudget);
                        }
                        let high = models.high.decode(&mut coder, level).ok_or(NotCoding)?;
                        let mut v = (high as u32) << models.low_bits;
                        if let Some(low) = models.low.as_mut() {
                            let context = level * models.highs + high;
                            v |= low.decode(&mut coder, context).ok_or(NotCoding)? as u32;
                        }
                        v
                    }
                };
                row[c] = v;
                indices.push(v);
            }
        }
        out.push(indices);
    }
    let refs: Vec<(&[u32], Layout)> = out
        .iter()
        .zip(layouts)
        .map(|(i, &l)| (i.as_slice(), l))
        .collect();
    if encode(&refs, k).0 == words {
        Ok(out)
    } else {
        Err(NotCoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u32) -> u32 {
        *state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *state >> 8
    }

    /// A record of `columns`×`rows` cells with depths from `depth(c)`, its indices drawn from
    /// `draw`, in stored order.
    fn record(
        columns: usize,
        rows: usize,
        depth: impl Fn(usize) -> u8,
        mut draw: impl FnMut(usize, usize) -> u32,
    ) -> (Vec<u8>, Vec<u32>) {
        let depths: Vec<u8> = (0..columns * rows).map(depth).collect();
        let m = *depths.iter().max().unwrap() as usize;
        let mut indices = Vec::new();
        for level in 0..m {
            for (c, &d) in depths.iter().enumerate() {
                if d as usize > level {
                    indices.push(draw(level, c));
                }
            }
        }
        (depths, indices)
    }

    #[test]
    fn round_trips_every_codebook_size_and_refuses_other_words() {
        let mut state = 11;
        for k in [2u32, 3, 5, 1000, 1024, 65_536] {
            let a = record(5, 3, |c| 1 + (c % 3) as u8, |_, _| lcg(&mut state) % k);
            // Half the indices copy the left neighbour's: matches and misses both occur.
            let mut prev = 0;
            let b = record(
                7,
                4,
                |c| 1 + (c % 2) as u8,
                |_, c| {
                    let r = lcg(&mut state);
                    prev = if c % 7 > 0 && r & 1 == 0 { prev } else { r % k };
                    prev
                },
            );
            let layouts = [
                Layout {
                    columns: 5,
                    depths: &a.0,
                },
                Layout {
                    columns: 7,
                    depths: &b.0,
                },
            ];
            let refs = [(a.1.as_slice(), layouts[0]), (b.1.as_slice(), layouts[1])];
            let (words, work) = encode(&refs, k);
            let back = decode(&words, &layouts, k, work).unwrap();
            assert_eq!(back, vec![a.1.clone(), b.1.clone()], "k = {k}");
            // One unit of work less than the coding needs is refused as such.
            let short = decode(&words, &layouts, k, work - 1);
            assert_eq!(short, Err(Refused::OverBudget), "k = {k}");
            let mut longer = words.clone();
            longer.push(0);
            assert_eq!(
                decode(&longer, &layouts, k, u64::MAX),
                Err(Refused::NotCoding)
            );
        }
    }

    #[test]
    fn a_coding_is_given_up_once_its_work_passes_the_cap() {
        let (depths, indices) = record(
            40,
            30,
            |c| 1 + (c % 3) as u8,
            |l, c| ((c * 7 + l) % 50) as u32,
        );
        let layout = Layout {
            columns: 40,
            depths: &depths,
        };
        let (words, work) = encode(&[(&indices, layout)], 64);
        assert_eq!(
            encode_within(&[(&indices, layout)], 64, work),
            Some((words, work))
        );
        assert_eq!(encode_within(&[(&indices, layout)], 64, work - 1), None);
    }

    #[test]
    fn neighbours_are_offered_left_above_above_right_above_left_without_repeats() {
        // 3×3 cells at depth 1; the centre one (cell 4) is offered, at level 0:
        //   7 8 7
        //   9 . 5
        let depths = [1, 1, 1, 1, 1, 1, 1, 1, 1];
        let layout = Layout {
            columns: 3,
            depths: &depths,
        };
        let row = [7, 8, 7, 9, 0, 5, 0, 0, 0];
        assert_eq!(candidates(&row, layout, 0, 4), ([9, 8, 7, 0], 3, 1));
        // The first cell has none; the first column's cells have no left or above-left.
        assert_eq!(candidates(&row, layout, 0, 0).1, 0);
        assert_eq!(candidates(&row, layout, 0, 6), ([9, 0, 0, 0], 2, 0));
        // A neighbour too shallow for the level is not offered.
        let shallow = [2, 1, 2, 2, 2, 2, 2, 2, 2];
        let layout = Layout {
            columns: 3,
            depths: &shallow,
        };
        let row = [1, 2, 3, 4, 0, 0, 0, 0, 0];
        assert_eq!(candidates(&row, layout, 1, 4), ([4, 3, 1, 0], 3, 0));
    }

    #[test]
    fn a_flat_record_costs_a_fraction_of_a_bit_an_index_and_stays_within_the_work_bound() {
        // 100,000 cells at depth 2 with one entry per level: every index but the first of
        // each level matches its left neighbour. No coding can be cheaper per index, and it
        // still needs less work per byte than the format allows, with a fifth to spare.
        for k in [2, 16, 1024, 65_536] {
            let (depths, indices) = record(1000, 100, |_| 2, |level, _| (level as u32 + 1) % k);
            let layout = Layout {
                columns: 1000,
                depths: &depths,
            };
            let (words, work) = encode(&[(&indices, layout)], k);
            let bits = words.len() * 32;
            assert!(bits * 20 < indices.len(), "k = {k}: {bits} bits");
            let bound = crate::WORK_PER_BYTE * 4 * words.len() as u64;
            assert!(work * 6 / 5 <= bound, "k = {k}: work {work}, bound {bound}");
        }
    }

    #[test]
    fn a_long_block_codes_to_the_same_words_as_when_the_format_was_fixed() {
        // 8 records of 12×9 cells, depths 1..=8, indices copying a neighbour half the time:
        // the words, and so every archive of this coder, must not change with its version.
        let mut state = 2024;
        let mut records = Vec::new();
        for _ in 0..8 {
            let mut prev = 0;
            records.push(record(
                12,
                9,
                |c| 1 + ((c * 7 + c / 12) % 8) as u8,
                |_, _| {
                    let r = lcg(&mut state);
                    prev = if r & 1 == 0 { prev } else { r % 1024 };
                    prev
                },
            ));
        }
        let refs: Vec<(&[u32], Layout)> = records
            .iter()
            .map(|(d, i)| {
                (
                    i.as_slice(),
                    Layout {
                        columns: 12,
                        depths: d,
                    },
                )
            })
            .collect();
        let (words, work) = encode(&refs, 1024);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(
            (words.len(), crc32fast::hash(&bytes), work),
            GOLDEN_LONG_BLOCK
        );
        let layouts: Vec<Layout> = refs.iter().map(|r| r.1).collect();
        let back = decode(&words, &layouts, 1024, work).unwrap();
        assert!(back.iter().zip(&records).all(|(b, r)| *b == r.1));
    }

    /// Word count, CRC-32 and work of the block above, as constriction 0.5.0 codes it.
    const GOLDEN_LONG_BLOCK: (usize, u32, u64) = (885, 1_868_936_111, 419_396);
}
