//! Principal components of image patches: the start of the model's linear path.
//!
//! The covariance is a matrix product on the device; its eigenvectors come from the cyclic
//! Jacobi method on the host, which is exact enough and small (3·f² = 192 rows for 8×8 patches)
//! that a linear-algebra dependency would buy nothing.

use burn::prelude::*;

use crate::data::ImageSet;
use crate::model::pixel_unshuffle;
use crate::quantizer::float_vec;

/// Mean and principal directions of pixel-unshuffled f×f patches.
#[derive(Clone, Debug)]
pub struct PatchPca {
    /// Values per patch: 3·f².
    pub dim: usize,
    /// Mean patch, `[dim]`.
    pub mean: Vec<f32>,
    /// Eigenvectors of the covariance as rows, largest eigenvalue first, `[dim][dim]`.
    pub components: Vec<f32>,
    /// Eigenvalues (variances along each component), descending.
    pub variances: Vec<f32>,
}

impl PatchPca {
    /// Fits on the f×f patches of `images` (up to `max_images` of them, from the start), in
    /// batches of 256 on `device`.
    pub fn fit(images: &ImageSet, f: usize, max_images: usize, device: &Device) -> Self {
        let dim = 3 * f * f;
        let count = max_images.clamp(1, images.len().max(1)).min(images.len());
        let ids: Vec<usize> = (0..count).collect();
        let mut sum = Tensor::<2>::zeros([1, dim], device);
        let mut gram = Tensor::<2>::zeros([dim, dim], device);
        let mut rows = 0usize;
        for chunk in ids.chunks(256) {
            let x = pixel_unshuffle(images.batch(chunk, None, device), f);
            let [b, _, h, w] = x.dims();
            let p = x.permute([0, 2, 3, 1]).reshape([b * h * w, dim]);
            sum = sum + p.clone().sum_dim(0);
            gram = gram + p.clone().transpose().matmul(p);
            rows += b * h * w;
        }
        let n = rows.max(1) as f64;
        let sum: Vec<f64> = float_vec(sum).into_iter().map(f64::from).collect();
        let gram: Vec<f64> = float_vec(gram).into_iter().map(f64::from).collect();
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        // Covariance from the raw second moment. The f32 sums carry a relative error near
        // 1e-7 of second moments near 0.25, which cancels against mean² here: negligible for
        // the leading components the linear path keeps (variances 1e-4 and up), not for the
        // smallest ones, which only enter `truncation_mse` as a sum.
        let mut cov = vec![0f64; dim * dim];
        for i in 0..dim {
            for j in 0..dim {
                cov[i * dim + j] = gram[i * dim + j] / n - mean[i] * mean[j];
            }
        }
        let (values, vectors) = symmetric_eigen(&cov, dim);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
        let mut components = Vec::with_capacity(dim * dim);
        for &c in &order {
            // Column c of `vectors` is the c-th eigenvector; a fixed sign (largest entry
            // positive) makes the fit reproducible across backends.
            let col: Vec<f64> = (0..dim).map(|r| vectors[r * dim + c]).collect();
            let big = col
                .iter()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(1.0);
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            components.extend(col.iter().map(|v| (v * sign) as f32));
        }
        Self {
            dim,
            mean: mean.iter().map(|&m| m as f32).collect(),
            components,
            variances: order.iter().map(|&c| values[c].max(0.0) as f32).collect(),
        }
    }

    /// The first `d` components as a `[d][dim]` basis; rows beyond `dim` are zero (a latent
    /// wider than a patch has nothing more to carry linearly).
    pub fn basis(&self, d: usize) -> Vec<f32> {
        let mut out = vec![0f32; d * self.dim];
        let rows = d.min(self.dim);
        out[..rows * self.dim].copy_from_slice(&self.components[..rows * self.dim]);
        out
    }

    /// Mean squared error per value of reconstructing patches from their first `d`
    /// components: the variance left in the others, divided by the patch size.
    pub fn truncation_mse(&self, d: usize) -> f64 {
        let rest: f64 = self.variances.iter().skip(d).map(|&v| f64::from(v)).sum();
        rest / self.dim as f64
    }
}

/// Eigenvalues and eigenvectors (as columns of a row-major `[n][n]` matrix) of the symmetric
/// matrix `a`, by cyclic Jacobi rotations until the off-diagonal mass is negligible.
pub fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n);
    let mut a = a.to_vec();
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= total * 1e-24 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_known_matrix() {
        // [[2, 1], [1, 2]]: eigenvalues 3 and 1, eigenvectors (1, 1)/√2 and (1, −1)/√2.
        let (values, vectors) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
        let mut sorted = values.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        assert!((sorted[0] - 3.0).abs() < 1e-12 && (sorted[1] - 1.0).abs() < 1e-12);
        let big = if values[0] > values[1] { 0 } else { 1 };
        let (x, y) = (vectors[big], vectors[2 + big]);
        assert!((x.abs() - y.abs()).abs() < 1e-12 && x * y > 0.0, "{x} {y}");
    }

    #[test]
    fn jacobi_reconstructs_a_random_symmetric_matrix() {
        let n = 12;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..=i {
                let v = ((i * 31 + j * 17) % 13) as f64 - 6.0;
                a[i * n + j] = v;
                a[j * n + i] = v;
            }
        }
        let (values, v) = symmetric_eigen(&a, n);
        // V·diag(λ)·Vᵀ must give A back, and V must be orthonormal.
        for i in 0..n {
            for j in 0..n {
                let back: f64 = (0..n)
                    .map(|k| v[i * n + k] * values[k] * v[j * n + k])
                    .sum();
                assert!((back - a[i * n + j]).abs() < 1e-9, "({i},{j})");
                let dot: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-9);
            }
        }
    }
}
