//! Codebook learning, for training: EMA updates, k-means initialisation, dead-code restarts.
//!
//! Codebooks are learnt without gradients, the way working RVQ codecs do it: each codebook
//! entry is the running (exponential moving) mean of the encoder outputs assigned to it. That
//! bookkeeping is plain arithmetic over a few thousand vectors per step, so it lives here in
//! ordinary Rust, where it is easy to test and identical on every backend; only the distance
//! search, which is a matrix product, runs on the device.

use burn::prelude::*;
use rand::{Rng, RngExt};

use crate::error::{Error, Result};
use crate::quantizer::{int_vec, nearest};

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
