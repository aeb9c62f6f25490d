//! Measuring quality: mean squared error and PSNR of reconstructions, per number of codebooks.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::data::{CIFAR_SIDE, ImageSet};
use crate::error::{Error, Result};
use crate::image_io::Rgb;
use crate::model::{Model, RvqVae, latents_to_rows, rows_to_latents};
use crate::quantizer;

/// Quality of reconstructions with one number of codebooks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DepthQuality {
    /// Codebooks used (0: the unquantized path through the autoencoder).
    pub codebooks: usize,
    /// Bits per 32×32 image at this depth.
    pub bits_per_image: u64,
    /// Mean squared error per pixel value, values on [0, 1].
    pub mse: f64,
    /// 10·log10(1 / mse), in dB.
    pub psnr: f64,
}

/// PSNR in dB of a mean squared error on [0, 1] values; infinite for a perfect match.
pub fn psnr(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (1.0 / mse).log10()
    }
}

/// Sum of squared differences of two equally sized 8-bit images, values scaled to [0, 1].
pub fn squared_error(a: &Rgb, b: &Rgb) -> f64 {
    a.pixels()
        .iter()
        .zip(b.pixels())
        .map(|(&x, &y)| {
            let d = (x as f64 - y as f64) / 255.0;
            d * d
        })
        .sum()
}

/// PSNR (dB) of `decoded` against `original`, two 8-bit images of one size.
pub fn image_psnr(original: &Rgb, decoded: &Rgb) -> f64 {
    psnr(squared_error(original, decoded) / original.pixels().len() as f64)
}

/// The depths worth reporting for `n_q` codebooks: 1, 2, 4, … up to and including `n_q`.
pub fn report_depths(n_q: usize) -> Vec<usize> {
    let mut d: Vec<usize> = (0..)
        .map(|p| 1usize << p)
        .take_while(|&v| v < n_q)
        .collect();
    if n_q > 0 {
        d.push(n_q);
    }
    d
}

/// Mean squared error of `model`'s reconstructions of `images` at each of `depths` codebooks
/// (0 = unquantized), in batches of `batch` images. Refuses a depth past the model's
/// codebooks, or any depth above 0 for a model without them.
pub fn quality(
    model: &Model,
    images: &ImageSet,
    depths: &[usize],
    batch: usize,
) -> Result<Vec<DepthQuality>> {
    quality_of(
        &model.net,
        &model.config,
        images,
        depths,
        batch,
        &model.device,
    )
}

/// [`quality`] of a network being trained.
pub(crate) fn quality_of(
    net: &RvqVae,
    config: &ModelConfig,
    images: &ImageSet,
    depths: &[usize],
    batch: usize,
    device: &Device,
) -> Result<Vec<DepthQuality>> {
    let codebooks = net.codebooks();
    let available = if codebooks.is_some() {
        config.num_codebooks
    } else {
        0
    };
    if let Some(&asked) = depths.iter().find(|&&d| d > available) {
        return Err(if available == 0 {
            Error::NotQuantized
        } else {
            Error::Codebooks { asked, available }
        });
    }
    let mut sums = vec![0f64; depths.len()];
    let ids: Vec<usize> = (0..images.len()).collect();
    for chunk in ids.chunks(batch.max(1)) {
        let x = images.batch(chunk, None, device);
        let z = net.encode(x.clone());
        let [b, _, h, w] = z.dims();
        let rows = latents_to_rows(z);
        for (slot, &depth) in depths.iter().enumerate() {
            let q = match (&codebooks, depth) {
                (Some(cb), d) if d > 0 => quantizer::quantize(rows.clone(), cb, d).1,
                _ => rows.clone(),
            };
            let cells = vec![depth; b * h * w];
            let xhat = net.decode(rows_to_latents(q, b, h, w), Some(&cells));
            let se: f32 = (xhat - x.clone()).square().sum().into_scalar::<f32>();
            sums[slot] += se as f64;
        }
    }
    let values = (images.len() * images.image_bytes()).max(1) as f64;
    Ok(depths
        .iter()
        .zip(sums)
        .map(|(&codebooks, s)| {
            let mse = s / values;
            DepthQuality {
                codebooks,
                bits_per_image: config.bits_per_image(CIFAR_SIDE, CIFAR_SIDE, codebooks),
                mse,
                psnr: psnr(mse),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_known_errors() {
        assert!(psnr(0.0).is_infinite());
        assert!((psnr(0.01) - 20.0).abs() < 1e-12);
        assert!((psnr(0.0018) - 27.447).abs() < 1e-3);
    }

    #[test]
    fn depths_are_powers_of_two_then_n_q() {
        assert_eq!(report_depths(8), vec![1, 2, 4, 8]);
        assert_eq!(report_depths(6), vec![1, 2, 4, 6]);
        assert_eq!(report_depths(1), vec![1]);
        assert!(report_depths(0).is_empty());
    }
}
