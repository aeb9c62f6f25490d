//! Residual vector quantization: nearest-neighbour search on the model's device, greedy and
//! by beam; codebooks are learnt in `codebooks` (training only).

use burn::prelude::*;

mod beam;
mod device;

pub use beam::quantize_beam;

/// Index of the nearest codebook entry for each row of `vectors` (`[n, d]`, codebook `[k, d]`).
///
/// Distances are `‖c‖² − 2·x·c`: the `‖x‖²` term is the same for every entry of a row, so
/// leaving it out cannot change the winner and avoids cancelling two large numbers.
pub fn nearest(vectors: Tensor<2>, codebook: Tensor<2>) -> Tensor<1, Int> {
    let [n, d] = vectors.dims();
    let norms = codebook.clone().square().sum_dim(1).reshape([1, -1]);
    let book_t = codebook.transpose();
    let search = |rows: Tensor<2>| {
        let m = rows.dims()[0];
        (norms.clone() - rows.matmul(book_t.clone()).mul_scalar(2.0))
            .argmin(1)
            .reshape([m as i32])
    };
    if n <= SEARCH_ROWS {
        return search(vectors);
    }
    // A block of rows at a time: the n × k score matrix of a large image (6,144 × 1,024
    // floats for 768×512) would not stay in cache.
    let parts = (0..n)
        .step_by(SEARCH_ROWS)
        .map(|s| search(vectors.clone().slice([s..(s + SEARCH_ROWS).min(n), 0..d])))
        .collect();
    Tensor::cat(parts, 0)
}

const SEARCH_ROWS: usize = 512;

/// Quantizes `latents` (`[n, d]`) with the first `depth` codebooks of `codebooks`
/// (`[n_q, k, d]`). Returns the indices chosen at each level and the quantized vectors
/// (the sum of the chosen entries).
pub fn quantize(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depth: usize,
) -> (Vec<Tensor<1, Int>>, Tensor<2>) {
    residual_search(latents, codebooks, depth, None)
}

/// [`quantize`] with a depth per row (quantizer dropout in training: row `i` uses the first
/// `depths[i]` codebooks). Every row still gets an index at every level up to the largest
/// depth, but entries past a row's depth are not subtracted, so its quantized vector is the
/// sum of its first `depths[i]` entries.
#[cfg(feature = "train")]
pub fn quantize_to_depths(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depths: &[usize],
) -> (Vec<Tensor<1, Int>>, Tensor<2>) {
    let depth = depths.iter().copied().max().unwrap_or(0);
    residual_search(latents, codebooks, depth, Some(depths))
}

/// The one greedy residual loop: nearest entry, subtract, next level.
fn residual_search(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depth: usize,
    row_depths: Option<&[usize]>,
) -> (Vec<Tensor<1, Int>>, Tensor<2>) {
    let [_, k, d] = codebooks.dims();
    let device = latents.device();
    let mut residual = latents.clone();
    let mut indices = Vec::with_capacity(depth);
    for level in 0..depth {
        let codebook = codebook_level(codebooks, level, k, d);
        let idx = nearest(residual.clone(), codebook.clone());
        let chosen = codebook.select(0, idx.clone());
        residual = residual
            - match row_depths {
                None => chosen,
                Some(depths) => {
                    let mask: Vec<f32> = depths
                        .iter()
                        .map(|&dep| if dep > level { 1.0 } else { 0.0 })
                        .collect();
                    let n = mask.len();
                    chosen * Tensor::<2>::from_data(TensorData::new(mask, [n, 1]), &device)
                }
            };
        indices.push(idx);
    }
    (indices, latents - residual)
}

/// What a residual search chose for each row: the path (one index per level) that ends closest
/// at the full depth, and for each shallower depth the path closest at that depth. A beam's
/// best partial sum at a shallow level need not lead to its best full one (the beam trades the
/// first levels' error for the later levels'), so a row that stops early is better served by
/// its own path.
#[derive(Clone, Debug, Default)]
pub struct Paths {
    /// `levels[level][row]`: the path closest at the full depth.
    pub levels: Vec<Vec<u32>>,
    /// `prefixes[d − 1][row · d + level]` for each depth d below the full one: the path
    /// closest at depth d. Empty where each of those is the full path's start (greedy search)
    /// or where no row stops short of the full depth.
    pub prefixes: Vec<Vec<u32>>,
}

/// Indices for a batch of equally sized images.
#[derive(Clone, Debug)]
pub struct EncodedBatch {
    /// Latent grid (rows, columns).
    pub grid: (usize, usize),
    /// Per image: level-major, then row-major indices.
    pub indices: Vec<Vec<u32>>,
    /// `prefixes[d − 1][image][cell · d + level]`: the path closest at depth d, for each depth
    /// below the full one ([`Paths::prefixes`]; empty after greedy search, at a
    /// fixed depth, and once the paths are applied).
    pub(crate) prefixes: Vec<Vec<Vec<u32>>>,
}

impl EncodedBatch {
    /// Cells of each image's grid.
    pub(crate) fn cells(&self) -> usize {
        self.grid.0 * self.grid.1
    }

    /// The indices cell `cell` of image `image` uses if it stops at `depth` (1 ..= the full
    /// depth): the path closest there ([`EncodedBatch::prefixes`]).
    pub(crate) fn path(
        &self,
        image: usize,
        cell: usize,
        depth: usize,
    ) -> impl Iterator<Item = u32> + '_ {
        let own = (depth.checked_sub(1))
            .and_then(|p| self.prefixes.get(p))
            .map(|pre| &pre[image][cell * depth..(cell + 1) * depth]);
        let full = self.indices[image].iter().skip(cell).step_by(self.cells());
        let full = full.take(if own.is_some() { 0 } else { depth });
        own.into_iter().flatten().chain(full).copied()
    }

    /// Whether the path for `depth` (≥ 1) is the path for `depth − 1` with one entry more, so
    /// that what a sum over the one holds, the other's last entry completes.
    pub(crate) fn extends(&self, image: usize, cell: usize, depth: usize) -> bool {
        self.prefixes.is_empty()
            || (self.path(image, cell, depth).take(depth - 1)).eq(self.path(image, cell, depth - 1))
    }

    /// These indices with each cell's first levels the path closest at its depth in `depths`
    /// (per image; empty: every cell at the full depth, as it is). The levels past a cell's
    /// depth keep the full path's entries, which only a decode at a greater depth would read.
    pub(crate) fn at_depths(&self, depths: &[Vec<u8>]) -> EncodedBatch {
        let cells = self.cells();
        let mut indices = self.indices.clone();
        for (i, (img, depths)) in indices.iter_mut().zip(depths).enumerate() {
            for (c, &depth) in depths.iter().enumerate() {
                for (level, e) in self.path(i, c, depth as usize).enumerate() {
                    img[level * cells + c] = e;
                }
            }
        }
        EncodedBatch {
            grid: self.grid,
            indices,
            prefixes: Vec::new(),
        }
    }

    /// These indices with every cell's first `depth` levels the path closest at `depth`.
    pub(crate) fn at_depth(&self, depth: usize) -> EncodedBatch {
        let depths = vec![vec![depth as u8; self.cells()]; self.indices.len()];
        self.at_depths(&depths)
    }
}

/// A search's paths (rows image-major, then cell) regrouped per image.
pub(crate) fn per_image(
    paths: Paths,
    b: usize,
    cells: usize,
    grid: (usize, usize),
) -> EncodedBatch {
    let indices = (0..b)
        .map(|i| {
            let levels = paths.levels.iter();
            levels
                .flat_map(|l| l[i * cells..(i + 1) * cells].iter().copied())
                .collect()
        })
        .collect();
    // One depth at a time, each dropped once split: a large image's paths are not held twice.
    let prefixes = paths.prefixes.into_iter().zip(1..).map(|(pre, d)| match b {
        1 => vec![pre],
        _ => pre.chunks(cells * d).map(<[u32]>::to_vec).collect(),
    });
    EncodedBatch {
        grid,
        indices,
        prefixes: prefixes.collect(),
    }
}

/// `‖a − b‖²`, summed in order, so that every caller rounds alike.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// What is left of `latent` once `entries` (the chosen entry of each level in turn) are
/// subtracted from it, in that order, so that every caller rounds alike.
pub(crate) fn residual<'a>(
    latent: &[f32],
    entries: impl IntoIterator<Item = &'a [f32]>,
) -> Vec<f32> {
    let mut r = latent.to_vec();
    for entry in entries {
        for (x, e) in r.iter_mut().zip(entry) {
            *x -= e;
        }
    }
    r
}

/// The sum of the codebook entries that `indices` (one tensor per level) pick, each level's
/// entries first multiplied by its mask (`[rows, 1]`, 1 where the row uses the level and 0
/// where not: both exact) when `masks` are given.
pub fn dequantize_masked(
    indices: &[Tensor<1, Int>],
    codebooks: &Tensor<3>,
    masks: Option<&[Tensor<2>]>,
) -> Tensor<2> {
    let [_, k, d] = codebooks.dims();
    let mut sum: Option<Tensor<2>> = None;
    for (level, idx) in indices.iter().enumerate() {
        let mut entries = codebook_level(codebooks, level, k, d).select(0, idx.clone());
        if let Some(masks) = masks {
            entries = entries * masks[level].clone();
        }
        sum = Some(match sum {
            Some(s) => s + entries,
            None => entries,
        });
    }
    sum.expect("dequantize needs at least one level")
}

/// `n` values in [−0.5, 0.5) from `seed`, of `levels` distinct ones (few: many exact ties), by a
/// small generator, so that the searches' tests need no crate.
#[cfg(test)]
fn test_values(seed: u64, n: usize, levels: u32) -> Vec<f32> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as u32 % levels) as f32 / levels as f32 - 0.5
        })
        .collect()
}

fn codebook_level(codebooks: &Tensor<3>, level: usize, k: usize, d: usize) -> Tensor<2> {
    codebooks
        .clone()
        .slice([level..level + 1, 0..k, 0..d])
        .reshape([k, d])
}

/// A 1-D integer tensor's values on the host.
pub fn int_vec(t: Tensor<1, Int>) -> Vec<u32> {
    t.into_data()
        .try_into_vec_as::<i64>()
        .expect("integer tensor")
        .into_iter()
        .map(|v| v as u32)
        .collect()
}

/// A float tensor's values on the host.
pub fn float_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float tensor")
}
