//! The codebooks on [`crate::cpu`]'s path: the residual searches' products, and dequantization.

use rayon::prelude::*;

use super::{matmul, matmul_into};

/// The codebooks of every level, for the greedy residual search (beam 1) as products.
#[derive(Clone, Debug)]
pub(crate) struct Books {
    /// Per level `[k, d]`: the entries.
    entries: Vec<Vec<f32>>,
    /// Per level `[d, k]`: the entries as the product's right-hand side.
    transposed: Vec<Vec<f32>>,
    /// Per level, each entry's squared length.
    norms: Vec<Vec<f32>>,
    k: usize,
    d: usize,
}

/// Rows searched at once: a 512 × k score block stays in cache (as `quantizer::nearest`).
const SEARCH_ROWS: usize = 512;

/// Cells one task of [`Books::dequantize`] takes at least.
const MIN_CELLS: usize = 256;

/// Rows a shortlist scores at once: 4,096 × k scores, 16 MiB at k = 1,024.
const SHORTLIST_ROWS: usize = 4096;

impl Books {
    /// From `[n_q, k, d]` values.
    pub fn new(values: &[f32], [n_q, k, d]: [usize; 3]) -> Self {
        assert_eq!(values.len(), n_q * k * d);
        let entries: Vec<Vec<f32>> = values.chunks(k * d).map(<[f32]>::to_vec).collect();
        let transposed = entries
            .iter()
            .map(|e| {
                let mut t = vec![0.0; k * d];
                for (j, entry) in e.chunks(d).enumerate() {
                    for (i, &v) in entry.iter().enumerate() {
                        t[i * k + j] = v;
                    }
                }
                t
            })
            .collect();
        let norms = entries
            .iter()
            .map(|e| e.chunks(d).map(|v| v.iter().map(|x| x * x).sum()).collect())
            .collect();
        Self {
            entries,
            transposed,
            norms,
            k,
            d,
        }
    }

    /// Entry `e` of level `level`.
    pub fn entry(&self, level: usize, e: usize) -> &[f32] {
        &self.entries[level][e * self.d..(e + 1) * self.d]
    }

    /// The entry of level `level` greedy search takes for a row with these `dots` (the row's
    /// [`Books::dots`]): the least ‖e‖² − 2·r·e, the first on a tie.
    pub fn nearest(&self, level: usize, dots: &[f32]) -> usize {
        nearest(dots, &self.norms[level])
    }

    /// Each row of `rows` (`[n, d]`) dotted with each entry of level `level`: `[n, k]`.
    pub fn dots(&self, level: usize, rows: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        self.dots_into(level, rows, &mut out);
        out
    }

    /// [`Books::dots`] into `out`, resized to fit: a search level after level reuses one
    /// buffer instead of faulting in a new one each time.
    pub fn dots_into(&self, level: usize, rows: &[f32], out: &mut Vec<f32>) {
        let n = rows.len() / self.d;
        // Not zeroed first: the product writes every element, on every thread, where a
        // resize that grew the buffer wrote its zeros on one.
        out.clear();
        out.reserve(n * self.k);
        let dims = (n, self.d, self.k);
        matmul_into(
            &mut out.spare_capacity_mut()[..n * self.k],
            false,
            rows,
            &self.transposed[level],
            dims,
        );
        // SAFETY: `matmul_into` without `add` initialised all n·k elements.
        unsafe { out.set_len(n * self.k) };
    }

    /// For each row of `rows` (`[n, d]`), the `count` entries of level `level` with the least
    /// ‖e‖² − 2·r·e (nearest the row, as far as the product's rounding tells), in no order:
    /// `[n, count]`.
    pub fn shortlist(&self, level: usize, rows: &[f32], count: usize) -> Vec<u32> {
        let count = count.min(self.k);
        let mut out = vec![0u32; rows.len() / self.d * count];
        if count == 0 {
            return out;
        }
        let norms = &self.norms[level];
        // A block of rows at a time: a large image's cells at one level made scores of
        // hundreds of MiB at once. A row's dots do not depend on the rows beside it on x86-64
        // up to 512 dimensions (see `GreedyAlong::same_products`); elsewhere a near-tie at the
        // list's end may fall the other way, which the shortlist's margin absorbs.
        let mut scores = Vec::new();
        let blocks = rows.chunks(SHORTLIST_ROWS * self.d);
        for (rows, out) in blocks.zip(out.chunks_mut(SHORTLIST_ROWS * count)) {
            self.dots_into(level, rows, &mut scores);
            let each = out.par_chunks_mut(count).zip(scores.par_chunks(self.k));
            each.for_each_init(Vec::new, |list: &mut Vec<(f32, u32)>, (out, dots)| {
                list.clear();
                let scored = dots.iter().zip(norms).map(|(&t, &n)| n - 2.0 * t);
                list.extend(scored.zip(0..));
                let order =
                    |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                list.select_nth_unstable_by(count - 1, order);
                for (o, &(_, e)) in out.iter_mut().zip(&list[..count]) {
                    *o = e;
                }
            });
        }
        out
    }

    /// The latents of `indices` (per image, `depth` levels of `cells` indices each, all
    /// checked to be below k), each cell summing its first `depths[image][cell]` levels (all
    /// `depth` without depths), in level order: rows `[images·cells, d]`.
    pub fn dequantize(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        cells: usize,
        depth: usize,
    ) -> Vec<f32> {
        let d = self.d;
        let mut out = vec![0.0; indices.len() * cells * d];
        // Cell by cell on every thread, not image by image: one large image is one image.
        let each = out.par_chunks_mut(d).with_min_len(MIN_CELLS).enumerate();
        each.for_each(|(at, row)| {
            let (i, c) = (at / cells, at % cells);
            let used = depths
                .and_then(|ds| ds[i].get(c))
                .map_or(depth, |&u| (u as usize).min(depth));
            for (level, book) in self.entries.iter().enumerate().take(used) {
                let e = indices[i][level * cells + c] as usize;
                let entry = &book[e * d..(e + 1) * d];
                row.iter_mut().zip(entry).for_each(|(r, v)| *r += v);
            }
        });
        out
    }

    /// The greedy residual search of `rows` (`[n, d]`) over the first `depth` levels, as
    /// `quantizer::quantize`: at each level the entry minimising ‖e‖² − 2·r·e (the first on a
    /// tie), then subtracted. Returns the indices, level by level.
    pub fn greedy(&self, rows: &[f32], depth: usize) -> Vec<Vec<u32>> {
        let (k, d) = (self.k, self.d);
        let n = rows.len() / d;
        let mut residual = rows.to_vec();
        let mut scores = Vec::new();
        let mut out = Vec::with_capacity(depth);
        for level in 0..depth.min(self.entries.len()) {
            let (book, norms) = (&self.entries[level], &self.norms[level]);
            let mut chosen = vec![0u32; n];
            for start in (0..n).step_by(SEARCH_ROWS) {
                let m = SEARCH_ROWS.min(n - start);
                let block = &mut residual[start * d..(start + m) * d];
                scores.resize(m * k, 0.0);
                matmul(&mut scores, false, block, &self.transposed[level], m, d, k);
                block
                    .par_chunks_mut(d)
                    .zip(scores.par_chunks(k))
                    .zip(&mut chosen[start..start + m])
                    .for_each(|((r, s), index)| {
                        let best = nearest(s, norms);
                        *index = best as u32;
                        let entry = &book[best * d..(best + 1) * d];
                        r.iter_mut().zip(entry).for_each(|(a, e)| *a -= e);
                    });
            }
            out.push(chosen);
        }
        out
    }
}

/// The entry with the least `norm − 2·dot`, the first on a tie.
fn nearest(dots: &[f32], norms: &[f32]) -> usize {
    let mut best = (f32::INFINITY, 0);
    for (j, (&sc, &norm)) in dots.iter().zip(norms).enumerate() {
        let score = norm - sc * 2.0;
        if score < best.0 {
            best = (score, j);
        }
    }
    best.1
}
