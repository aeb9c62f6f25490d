//! Residual vector quantization: nearest-neighbour search on the model's device, greedy and
//! by beam; codebooks are learnt in `codebooks` (training only).

use burn::prelude::*;
use rayon::prelude::*;

use crate::cpu::Books;

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

/// Residual quantization by beam search: keeps the `beam` best partial sums per row from level
/// to level and returns, per level, the indices of the sequence whose final residual is
/// smallest ([`Paths::levels`]), and for each shallower depth the sequence closest there
/// ([`Paths::prefixes`]). Greedy search ([`quantize`]) commits to the nearest entry at each
/// level; a slightly worse first choice can leave a residual the later codebooks fit much
/// better. A beam can also drop the greedy sequence and end worse than it, so at every depth
/// each row keeps whichever of the two is closer there: never worse than greedy. The decoder
/// is unchanged: it sums whatever entries the indices name. With `beam` ≤ 1 this is
/// [`quantize`] (on the CPU path, up to near-ties that the path's other order of summation can
/// break the other way).
///
/// With `cpu`, the products of the search (the beam's dots and the greedy path it is checked
/// against) run on [`crate::cpu`]'s path with its codebooks; the beam's ranking is exact on the
/// host either way (see `BeamState::advance`). Without `per_depth` (every row stops at the full
/// depth) no shallower path is kept.
pub fn quantize_beam(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    (depth, beam): (usize, usize),
    cpu: Option<&Books>,
    per_depth: bool,
) -> Paths {
    if beam <= 1 {
        let levels = greedy_search(latents, codebooks, depth, cpu);
        return Paths {
            levels,
            prefixes: Vec::new(),
        };
    }
    let [n, d] = latents.dims();
    let [_, k, _] = codebooks.dims();
    let device = latents.device();
    let rows = float_vec(latents.clone());
    let books: Vec<Tensor<2>> = (0..depth)
        .map(|l| codebook_level(codebooks, l, k, d))
        .collect();
    let host_books: Vec<Vec<f32>> = books.iter().map(|b| float_vec(b.clone())).collect();
    let norms: Vec<Vec<f32>> = host_books
        .iter()
        .map(|b| b.chunks(d).map(|e| e.iter().map(|v| v * v).sum()).collect())
        .collect();
    let mut out = vec![Vec::with_capacity(n); depth];
    let shallower = if per_depth { 1..depth } else { 1..1 };
    let mut prefixes: Vec<Vec<u32>> = shallower.map(|p| Vec::with_capacity(n * p)).collect();
    // Cells are independent: a block at a time bounds the score matrix (block·beam × k).
    for start in (0..n).step_by(BEAM_CELLS) {
        let cells = BEAM_CELLS.min(n - start);
        let mut search = BeamState::new(&rows[start * d..(start + cells) * d], d);
        for level in 0..depth {
            let dots = match cpu {
                Some(cpu) => cpu.dots(level, &search.residuals),
                None => {
                    let r = Tensor::<2>::from_data(
                        TensorData::new(search.residuals.clone(), [search.rows(), d]),
                        &device,
                    );
                    float_vec(r.matmul(books[level].clone().transpose()))
                }
            };
            search.advance(&dots, &host_books[level], &norms[level], beam);
            if let Some(prefix) = prefixes.get_mut(level) {
                search.push_best(prefix);
            }
        }
        for (level, col) in search.best_paths().into_iter().enumerate() {
            out[level].extend(col);
        }
    }
    // A beam can drop the greedy path at some level and end worse than it: at every depth,
    // keep whichever of the two is closer there, so that a wider search never loses to greedy
    // on any cell at any depth.
    let greedy = greedy_search(latents, codebooks, depth, cpu);
    let error = |row: usize, path: &mut dyn Iterator<Item = u32>| {
        path_error(&rows[row * d..(row + 1) * d], &host_books, path)
    };
    // Per row, a bit for each depth 1..=depth at which greedy's path is to be taken: at the
    // full depth where it is at least as close (as before there were shallower paths), at a
    // shallower one where it is closer.
    assert!(depth <= 64, "at most 64 levels");
    let greedy_wins: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|row| {
            let mut wins = 0u64;
            let theirs = |p: usize| error(row, &mut greedy.iter().take(p).map(|l| l[row]));
            for (p, pre) in (1..).zip(&prefixes) {
                if theirs(p) < error(row, &mut pre[row * p..(row + 1) * p].iter().copied()) {
                    wins |= 1 << (p - 1);
                }
            }
            if theirs(depth) <= error(row, &mut out.iter().map(|l| l[row])) {
                wins |= 1 << (depth - 1);
            }
            wins
        })
        .collect();
    for (row, wins) in greedy_wins.into_iter().enumerate() {
        for p in (1..=depth).filter(|p| wins & (1 << (p - 1)) != 0) {
            match prefixes.get_mut(p - 1) {
                Some(pre) => {
                    for (level, slot) in pre[row * p..(row + 1) * p].iter_mut().enumerate() {
                        *slot = greedy[level][row];
                    }
                }
                None => {
                    for (level, col) in out.iter_mut().enumerate() {
                        col[row] = greedy[level][row];
                    }
                }
            }
        }
    }
    Paths {
        levels: out,
        prefixes,
    }
}

/// [`quantize`]'s indices, level by level: on [`crate::cpu`]'s products with `cpu`, else on
/// tensors.
fn greedy_search(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depth: usize,
    cpu: Option<&Books>,
) -> Vec<Vec<u32>> {
    match cpu {
        Some(books) => books.greedy(&float_vec(latents), depth),
        None => quantize(latents, codebooks, depth)
            .0
            .into_iter()
            .map(int_vec)
            .collect(),
    }
}

/// `‖a − b‖²`, summed in order, so that every caller rounds alike.
pub(crate) fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Squared norm of what `path` (one index per level) leaves of `latent`.
fn path_error(latent: &[f32], books: &[Vec<f32>], path: impl Iterator<Item = u32>) -> f32 {
    let d = latent.len();
    let entries = books
        .iter()
        .zip(path)
        .map(|(book, c)| &book[c as usize * d..(c as usize + 1) * d]);
    residual(latent, entries).iter().map(|v| v * v).sum()
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

const BEAM_CELLS: usize = 256;

/// Scores a beam's shortlist skips at once when none of them would enter it.
const SCAN: usize = 32;

/// The candidates of a beam search over a block of cells: `width` partial sums per cell.
struct BeamState {
    cells: usize,
    dim: usize,
    width: usize,
    /// `[cells·width][dim]`: what each candidate leaves to quantize.
    residuals: Vec<f32>,
    /// Squared norm of each residual.
    errors: Vec<f32>,
    /// Indices chosen so far by each candidate.
    paths: Vec<Vec<u32>>,
}

impl BeamState {
    fn new(latents: &[f32], dim: usize) -> Self {
        let cells = latents.len() / dim;
        Self {
            cells,
            dim,
            width: 1,
            residuals: latents.to_vec(),
            errors: latents
                .chunks(dim)
                .map(|r| r.iter().map(|v| v * v).sum())
                .collect(),
            paths: vec![Vec::new(); cells],
        }
    }

    fn rows(&self) -> usize {
        self.cells * self.width
    }

    /// One level: every candidate extended by every entry (`dots[row][entry]` = residual ·
    /// entry), and the `beam` best kept per cell.
    ///
    /// The dots come from the device, whose matrix product sums in its own order, and
    /// `‖r‖² + ‖e‖² − 2·r·e` cancels two large numbers: ranked by that alone, two candidates a
    /// few ulps apart could swap places on another backend, and with them every later level of
    /// the cell. So the dots only shortlist (the `beam` best and as many again); the shortlist
    /// is ranked by its exact squared distance, summed on the host in one fixed order, ties
    /// broken by parent and entry: the same choice wherever the latents agree.
    fn advance(&mut self, dots: &[f32], book: &[f32], norms: &[f32], beam: usize) {
        let (k, d) = (norms.len(), self.dim);
        let width = beam.min(self.width * k);
        let listed = (2 * width).min(self.width * k);
        let mut residuals = vec![0.0; self.cells * width * d];
        let mut errors = vec![0.0; self.cells * width];
        let mut paths = vec![Vec::new(); self.cells * width];
        // Cells are independent: threads take them in turn, each with its own shortlist.
        let out = residuals
            .par_chunks_mut(width * d)
            .zip(errors.par_chunks_mut(width))
            .zip(paths.par_chunks_mut(width))
            .enumerate();
        let start = || Vec::<(f32, usize, usize)>::with_capacity(listed + 1);
        out.for_each_init(start, |short, (cell, ((res, err), path))| {
            short.clear();
            for row in cell * self.width..(cell + 1) * self.width {
                let scores = dots[row * k..(row + 1) * k].chunks(SCAN);
                for (i, (dots, norms)) in scores.zip(norms.chunks(SCAN)).enumerate() {
                    let dist = |dot: f32, norm: f32| self.errors[row] + norm - 2.0 * dot;
                    // Most entries are far: a run none of which would enter a full shortlist
                    // is passed over in one vectorised test (counting, so as not to branch).
                    if short.len() == listed {
                        let bar = short[listed - 1].0;
                        let pairs = dots.iter().zip(norms);
                        if pairs
                            .map(|(&t, &n)| u32::from(dist(t, n) < bar))
                            .sum::<u32>()
                            == 0
                        {
                            continue;
                        }
                    }
                    for (j, (&dot, &norm)) in dots.iter().zip(norms).enumerate() {
                        let dist = dist(dot, norm);
                        if short.len() == listed && dist >= short[listed - 1].0 {
                            continue;
                        }
                        let at = short.partition_point(|b| b.0 <= dist);
                        short.insert(at, (dist, row, i * SCAN + j));
                        short.truncate(listed);
                    }
                }
            }
            for s in short.iter_mut() {
                let parent = &self.residuals[s.1 * d..(s.1 + 1) * d];
                s.0 = squared_distance(parent, &book[s.2 * d..(s.2 + 1) * d]);
            }
            short.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            for (j, &(e, row, c)) in short[..width].iter().enumerate() {
                let parent = &self.residuals[row * d..(row + 1) * d];
                let entry = &book[c * d..(c + 1) * d];
                let r = &mut res[j * d..(j + 1) * d];
                r.iter_mut()
                    .zip(parent.iter().zip(entry))
                    .for_each(|(r, (p, e))| *r = p - e);
                err[j] = e;
                let mut p = Vec::with_capacity(self.paths[row].len() + 1);
                p.extend_from_slice(&self.paths[row]);
                p.push(c as u32);
                path[j] = p;
            }
        });
        self.width = width;
        self.residuals = residuals;
        self.errors = errors;
        self.paths = paths;
    }

    /// Appends each cell's closest candidate, as far as the search has gone.
    fn push_best(&self, out: &mut Vec<u32>) {
        // `advance` keeps each cell's candidates closest first.
        for cell in 0..self.cells {
            out.extend_from_slice(&self.paths[cell * self.width]);
        }
    }

    /// Per level, each cell's index on its candidate with the smallest final error.
    fn best_paths(&self) -> Vec<Vec<u32>> {
        let depth = self.paths.first().map_or(0, Vec::len);
        let mut out = vec![Vec::with_capacity(self.cells); depth];
        for cell in 0..self.cells {
            let rows = cell * self.width..(cell + 1) * self.width;
            let best = rows
                .min_by(|&a, &b| self.errors[a].total_cmp(&self.errors[b]))
                .expect("every cell has candidates");
            for (level, &c) in self.paths[best].iter().enumerate() {
                out[level].push(c);
            }
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One level of a beam one wide over a single 1-D cell at 0.5, with the device's dots off
    /// by `noise` for the second entry: what it keeps.
    fn keeps(entries: [f32; 2], noise: f32) -> u32 {
        let mut beam = BeamState::new(&[0.5], 1);
        let norms: Vec<f32> = entries.iter().map(|e| e * e).collect();
        let dots = [0.5 * entries[0], 0.5 * entries[1] + noise];
        beam.advance(&dots, &entries, &norms, 1);
        beam.paths[0][0]
    }

    /// Backends sum the dots in other orders: a few ulps either way must not change what the
    /// beam keeps, at an exact tie (broken by the entry's number) or near one.
    #[test]
    fn the_beam_ranks_by_exact_distances_not_by_the_devices_dots() {
        for noise in [-1e-6, 0.0, 1e-6] {
            // 0 and 1 are both 0.25 from 0.5.
            assert_eq!(keeps([0.0, 1.0], noise), 0, "tie, noise {noise}");
            // 0.999 is 0.249001 away: nearer by less than the noise moves the score.
            assert_eq!(
                keeps([0.0, 0.999], noise - 2e-3),
                1,
                "near tie, noise {noise}"
            );
        }
    }
}
