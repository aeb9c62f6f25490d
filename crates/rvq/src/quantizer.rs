//! Residual vector quantization: nearest-neighbour search on the model's device, and the
//! codebook learning (EMA updates, k-means initialisation, dead-code restarts) on the host.
//!
//! Codebooks are learnt without gradients, the way working RVQ codecs do it: each codebook
//! entry is the running (exponential moving) mean of the encoder outputs assigned to it. That
//! bookkeeping is plain arithmetic over a few thousand vectors per step, so it lives here in
//! ordinary Rust, where it is easy to test and identical on every backend; only the distance
//! search, which is a matrix product, runs on the device.

use burn::prelude::*;
use rand::{Rng, RngExt};

use crate::error::{Error, Result};

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

/// Residual quantization by beam search: keeps the `beam` best partial sums per row from level
/// to level and returns, per level, the indices of the sequence whose final residual is
/// smallest (`indices[level][row]`). Greedy search ([`quantize`]) commits to the nearest entry
/// at each level; a slightly worse first choice can leave a residual the later codebooks fit
/// much better. A beam can also drop the greedy sequence and end worse than it, so each row
/// keeps whichever of the two ends closer: never worse than greedy. The decoder is unchanged:
/// it sums whatever entries the indices name. With `beam` ≤ 1 this is exactly [`quantize`].
pub fn quantize_beam(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depth: usize,
    beam: usize,
) -> Vec<Vec<u32>> {
    if beam <= 1 {
        return quantize(latents, codebooks, depth)
            .0
            .into_iter()
            .map(int_vec)
            .collect();
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
    // Cells are independent: a block at a time bounds the score matrix (block·beam × k).
    for start in (0..n).step_by(BEAM_CELLS) {
        let cells = BEAM_CELLS.min(n - start);
        let mut search = BeamState::new(&rows[start * d..(start + cells) * d], d);
        for level in 0..depth {
            let r = Tensor::<2>::from_data(
                TensorData::new(search.residuals.clone(), [search.rows(), d]),
                &device,
            );
            let dots = float_vec(r.matmul(books[level].clone().transpose()));
            search.advance(&dots, &host_books[level], &norms[level], beam);
        }
        for (level, col) in search.best_paths().into_iter().enumerate() {
            out[level].extend(col);
        }
    }
    // A beam can drop the greedy path at some level and end worse than it: keep whichever of
    // the two ends closer, so that a wider search never loses to greedy on any cell.
    let greedy: Vec<Vec<u32>> = quantize(latents, codebooks, depth)
        .0
        .into_iter()
        .map(int_vec)
        .collect();
    for row in 0..n {
        let v = &rows[row * d..(row + 1) * d];
        let beam_err = path_error(v, &host_books, out.iter().map(|l| l[row]));
        let greedy_err = path_error(v, &host_books, greedy.iter().map(|l| l[row]));
        if greedy_err <= beam_err {
            for (level, col) in out.iter_mut().enumerate() {
                col[row] = greedy[level][row];
            }
        }
    }
    out
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
    fn advance(&mut self, dots: &[f32], book: &[f32], norms: &[f32], beam: usize) {
        let (k, d) = (norms.len(), self.dim);
        let width = beam.min(self.width * k);
        let mut residuals = Vec::with_capacity(self.cells * width * d);
        let mut errors = Vec::with_capacity(self.cells * width);
        let mut paths = Vec::with_capacity(self.cells * width);
        let mut best: Vec<(f32, usize, usize)> = Vec::with_capacity(width + 1);
        for cell in 0..self.cells {
            best.clear();
            for row in cell * self.width..(cell + 1) * self.width {
                let scores = &dots[row * k..(row + 1) * k];
                for (c, (&dot, &norm)) in scores.iter().zip(norms).enumerate() {
                    let dist = self.errors[row] + norm - 2.0 * dot;
                    if best.len() == width && dist >= best[width - 1].0 {
                        continue;
                    }
                    let at = best.partition_point(|b| b.0 <= dist);
                    best.insert(at, (dist, row, c));
                    best.truncate(width);
                }
            }
            for &(_, row, c) in &best {
                let parent = &self.residuals[row * d..(row + 1) * d];
                let entry = &book[c * d..(c + 1) * d];
                let mut err = 0.0;
                for (p, e) in parent.iter().zip(entry) {
                    let v = p - e;
                    err += v * v;
                    residuals.push(v);
                }
                errors.push(err);
                let mut path = self.paths[row].clone();
                path.push(c as u32);
                paths.push(path);
            }
        }
        self.width = width;
        self.residuals = residuals;
        self.errors = errors;
        self.paths = paths;
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

/// Usage of one codebook, as reported during training.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CodebookStats {
    /// Fraction of entries whose running usage is above the dead-code threshold.
    pub utilisation: f32,
    /// exp(entropy) of the running usage distribution: the effective number of entries.
    pub perplexity: f32,
    /// Entries restarted from encoder outputs in the last update.
    pub restarted: usize,
}

/// Refuses an EMA decay outside (0, 1] and a dead-code fraction below 0 (or not finite).
pub fn check_rates(decay: f32, dead_fraction: f32) -> Result<()> {
    let decay_ok = decay > 0.0 && decay <= 1.0;
    let dead_ok = dead_fraction >= 0.0 && dead_fraction.is_finite();
    if decay_ok && dead_ok {
        return Ok(());
    }
    Err(Error::InvalidConfig(format!(
        "an EMA decay must lie in (0, 1] and a dead-code fraction be at least 0 (got {decay} and {dead_fraction})"
    )))
}

/// Host-side state of `n_q` codebooks learnt by exponential moving averages. Its buffers
/// always match its shape ([`EmaCodebooks::from_entries`] and [`EmaCodebooks::from_state`]
/// check them), so its fields are private.
#[derive(Clone, Debug)]
pub struct EmaCodebooks {
    levels: usize,
    size: usize,
    dim: usize,
    /// EMA decay per update.
    decay: f32,
    /// An entry is dead when its running count falls below this fraction of its fair share
    /// (vectors in the batch / entries), so the threshold scales with batch size.
    dead_fraction: f32,
    /// The entries, `[levels][size][dim]` row-major.
    codebooks: Vec<f32>,
    /// Running count of vectors assigned to each entry, `[levels][size]`.
    counts: Vec<f32>,
    sums: Vec<f32>,
}

const LAPLACE_EPS: f32 = 1e-5;

impl EmaCodebooks {
    /// Codebooks from given entries (`[levels][size][dim]`) and each entry's running count
    /// (`[levels][size]`), with a decay of 0.99 and a dead-code fraction of 0.1 until
    /// [`EmaCodebooks::with_rates`] sets others. Refuses buffers of other lengths.
    pub fn from_entries(
        levels: usize,
        size: usize,
        dim: usize,
        codebooks: Vec<f32>,
        counts: Vec<f32>,
    ) -> Result<Self> {
        let entries = levels * size;
        if codebooks.len() != entries * dim || counts.len() != entries {
            return Err(Error::InvalidConfig(format!(
                "{levels} codebooks of {size} entries of {dim} values need {} values and {entries} counts, not {} and {}",
                entries * dim,
                codebooks.len(),
                counts.len()
            )));
        }
        let sums = codebooks
            .chunks(dim)
            .zip(&counts)
            .flat_map(|(entry, &c)| entry.iter().map(move |v| v * c))
            .collect();
        Ok(Self {
            levels,
            size,
            dim,
            decay: 0.99,
            dead_fraction: 0.1,
            codebooks,
            counts,
            sums,
        })
    }

    /// Codebooks exactly as a checkpoint left them: entries, running counts and running sums
    /// (`[levels][size][dim]`), so that a resumed run continues bit for bit.
    pub fn from_state(
        levels: usize,
        size: usize,
        dim: usize,
        codebooks: Vec<f32>,
        counts: Vec<f32>,
        sums: Vec<f32>,
    ) -> Result<Self> {
        let mut ema = Self::from_entries(levels, size, dim, codebooks, counts)?;
        if sums.len() != ema.sums.len() {
            return Err(Error::InvalidConfig(format!(
                "the running sums need {} values, not {}",
                ema.sums.len(),
                sums.len()
            )));
        }
        ema.sums = sums;
        Ok(ema)
    }

    /// Sets the EMA decay per update (in (0, 1]) and the dead-code threshold, a fraction
    /// (≥ 0) of an entry's fair share of a batch.
    pub fn with_rates(mut self, decay: f32, dead_fraction: f32) -> Result<Self> {
        check_rates(decay, dead_fraction)?;
        self.decay = decay;
        self.dead_fraction = dead_fraction;
        Ok(self)
    }

    /// `[levels, size, dim]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.levels, self.size, self.dim]
    }

    /// Every entry, `[levels][size][dim]` row-major.
    pub fn entries(&self) -> &[f32] {
        &self.codebooks
    }

    /// Running count of vectors assigned to each entry, `[levels][size]`.
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }

    /// Running sums of the vectors assigned to each entry, `[levels][size][dim]`: with
    /// [`EmaCodebooks::counts`], the state a checkpoint must keep.
    pub fn sums(&self) -> &[f32] {
        &self.sums
    }

    /// One codebook's entries, `[size][dim]`.
    pub fn level(&self, level: usize) -> &[f32] {
        let n = self.size * self.dim;
        &self.codebooks[level * n..(level + 1) * n]
    }

    /// One EMA step from a batch of encoder outputs `latents` (`[n][dim]`), the index chosen
    /// for each at each level (`indices[level][n]`, made with the current codebooks), and how
    /// many levels each vector used (quantizer dropout: vector `i` took part in levels
    /// `0..depths[i]`). Returns the usage of each codebook after the step, one per level
    /// (levels beyond `indices.len()` are left as they are).
    pub fn update(
        &mut self,
        latents: &[f32],
        indices: &[Vec<u32>],
        depths: &[usize],
        rng: &mut impl Rng,
    ) -> Vec<CodebookStats> {
        let (k, d) = (self.size, self.dim);
        let n = depths.len();
        assert_eq!(latents.len(), n * d);
        let mut residual = latents.to_vec();
        let mut stats = Vec::with_capacity(self.levels);
        for level in 0..self.levels {
            // Levels deeper than any vector in the batch went unused: nothing to learn.
            let Some(idx) = indices.get(level) else {
                stats.push(self.stats(level, n, 0));
                continue;
            };
            let active: Vec<usize> = (0..n).filter(|&i| depths[i] > level).collect();
            let mut batch_counts = vec![0f32; k];
            let mut batch_sums = vec![0f32; k * d];
            for &i in &active {
                let c = idx[i] as usize;
                batch_counts[c] += 1.0;
                let row = &residual[i * d..(i + 1) * d];
                for (s, v) in batch_sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                    *s += v;
                }
            }
            // The next level quantizes what this one left, measured with the entries the
            // forward pass used, so it must be taken before they move.
            let input = residual.clone();
            {
                let book = self.level(level).to_vec();
                for &i in &active {
                    let c = idx[i] as usize;
                    for (r, e) in residual[i * d..(i + 1) * d]
                        .iter_mut()
                        .zip(&book[c * d..(c + 1) * d])
                    {
                        *r -= e;
                    }
                }
            }
            if active.is_empty() {
                stats.push(self.stats(level, n, 0));
                continue;
            }
            let restarted =
                self.learn_level(level, &batch_counts, &batch_sums, &active, &input, rng);
            stats.push(self.stats(level, n, restarted));
        }
        stats
    }

    /// Moves level `level`'s entries by one EMA step towards this batch's assignments
    /// (`batch_counts`, `batch_sums` over the `active` rows of `input`, the level's input
    /// residuals) and restarts the entries whose running count fell below the dead-code
    /// threshold from random active rows. Returns how many were restarted.
    fn learn_level(
        &mut self,
        level: usize,
        batch_counts: &[f32],
        batch_sums: &[f32],
        active: &[usize],
        input: &[f32],
        rng: &mut impl Rng,
    ) -> usize {
        let (k, d) = (self.size, self.dim);
        let counts = &mut self.counts[level * k..(level + 1) * k];
        let sums = &mut self.sums[level * k * d..(level + 1) * k * d];
        let a = 1.0 - self.decay;
        for (c, b) in counts.iter_mut().zip(batch_counts) {
            *c = self.decay * *c + a * b;
        }
        for (s, b) in sums.iter_mut().zip(batch_sums) {
            *s = self.decay * *s + a * b;
        }
        let total: f32 = counts.iter().sum();
        let book = &mut self.codebooks[level * k * d..(level + 1) * k * d];
        for c in 0..k {
            let smoothed = (counts[c] + LAPLACE_EPS) / (total + k as f32 * LAPLACE_EPS) * total;
            for j in 0..d {
                book[c * d + j] = sums[c * d + j] / smoothed;
            }
        }
        let threshold = self.dead_fraction * active.len() as f32 / k as f32;
        let mut restarted = 0;
        for c in 0..k {
            if counts[c] < threshold {
                let i = active[rng.random_range(0..active.len())];
                let row = &input[i * d..(i + 1) * d];
                book[c * d..(c + 1) * d].copy_from_slice(row);
                counts[c] = threshold;
                for (s, v) in sums[c * d..(c + 1) * d].iter_mut().zip(row) {
                    *s = v * threshold;
                }
                restarted += 1;
            }
        }
        restarted
    }

    fn stats(&self, level: usize, batch_vectors: usize, restarted: usize) -> CodebookStats {
        let k = self.size;
        let counts = &self.counts[level * k..(level + 1) * k];
        let total: f32 = counts.iter().sum();
        if total <= 0.0 {
            return CodebookStats::default();
        }
        let threshold = self.dead_fraction * batch_vectors as f32 / k as f32;
        let alive = counts.iter().filter(|&&c| c >= threshold).count();
        let entropy: f32 = counts
            .iter()
            .filter(|&&c| c > 0.0)
            .map(|&c| {
                let p = c / total;
                -p * p.ln()
            })
            .sum();
        CodebookStats {
            utilisation: alive as f32 / k as f32,
            perplexity: entropy.exp(),
            restarted,
        }
    }
}

/// k-means (Lloyd's algorithm) over `data` (`[n][dim]`), seeded with `k` distinct random
/// points, with the assignment step on `device`. Returns the centroids and how many points
/// each one holds. An empty cluster is moved to a random point.
pub fn kmeans(
    data: &[f32],
    dim: usize,
    k: usize,
    iterations: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> (Vec<f32>, Vec<f32>) {
    let n = data.len() / dim;
    assert!(n > 0, "k-means needs data");
    let mut order: Vec<usize> = (0..n).collect();
    rand::seq::SliceRandom::shuffle(order.as_mut_slice(), rng);
    let mut centroids: Vec<f32> = (0..k)
        .flat_map(|c| {
            data[order[c % n] * dim..(order[c % n] + 1) * dim]
                .iter()
                .copied()
        })
        .collect();
    let points = Tensor::<2>::from_data(TensorData::new(data.to_vec(), [n, dim]), device);
    let mut counts = vec![0f32; k];
    for _ in 0..iterations.max(1) {
        let book = Tensor::<2>::from_data(TensorData::new(centroids.clone(), [k, dim]), device);
        let assign = int_vec(nearest(points.clone(), book));
        let mut sums = vec![0f32; k * dim];
        counts.iter_mut().for_each(|c| *c = 0.0);
        for (i, &c) in assign.iter().enumerate() {
            counts[c as usize] += 1.0;
            for (s, v) in sums[c as usize * dim..(c as usize + 1) * dim]
                .iter_mut()
                .zip(&data[i * dim..(i + 1) * dim])
            {
                *s += v;
            }
        }
        for c in 0..k {
            if counts[c] > 0.0 {
                for j in 0..dim {
                    centroids[c * dim + j] = sums[c * dim + j] / counts[c];
                }
            }
        }
        for c in 0..k {
            if counts[c] == 0.0 {
                let p = rng.random_range(0..n);
                centroids[c * dim..(c + 1) * dim].copy_from_slice(&data[p * dim..(p + 1) * dim]);
            }
        }
    }
    (centroids, counts)
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
