//! How a run starts: codebooks seeded by k-means over the encoder's outputs, EMA state, or the
//! weights and codebooks of a trained model to fine-tune.

use std::path::Path;

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::codebooks::{self, EmaCodebooks};
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::model::{self, Model, RvqVae, latents_to_rows};
use crate::quantizer;

use super::options::TrainOptions;

/// Splits a seed into independent streams.
pub(super) fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seeds each codebook by k-means on the residuals the previous ones leave, over the
/// encoder's outputs for the first `kmeans_images` training images.
pub(super) fn init_codebooks(
    net: &mut RvqVae,
    opts: &TrainOptions,
    train: &ImageSet,
    device: &Device,
    ad: &Device,
) -> Result<Option<EmaCodebooks>> {
    let cfg = &opts.config;
    if !cfg.quantize {
        return Ok(None);
    }
    let (k, d) = (cfg.codebook_size, cfg.latent_dim);
    let inference = net.valid().to_device(device);
    let count = opts.kmeans_images.clamp(1, train.len());
    let mut data = Vec::new();
    let ids: Vec<usize> = (0..count).collect();
    for chunk in ids.chunks(256) {
        let z = inference.encode(train.batch(chunk, None, device));
        data.extend(quantizer::float_vec(latents_to_rows(z)));
    }
    let rows = data.len() / d;
    let mut rng = StdRng::seed_from_u64(mix(opts.seed, 0xC0DE));
    let mut books = Vec::with_capacity(cfg.num_codebooks * k * d);
    let mut counts = Vec::with_capacity(cfg.num_codebooks * k);
    // Scale the k-means cluster sizes to one batch, the unit the EMA counts are kept in.
    let per_batch = vectors_per_batch(opts) / rows as f32;
    let mut residual = data;
    for _ in 0..cfg.num_codebooks {
        let (centroids, sizes) = codebooks::kmeans(&residual, d, k, 10, &mut rng, device);
        let book = Tensor::<2>::from_data(TensorData::new(centroids.clone(), [k, d]), device);
        let pts = Tensor::<2>::from_data(TensorData::new(residual.clone(), [rows, d]), device);
        let idx = quantizer::int_vec(quantizer::nearest(pts, book));
        for (i, &c) in idx.iter().enumerate() {
            for j in 0..d {
                residual[i * d + j] -= centroids[c as usize * d + j];
            }
        }
        books.extend_from_slice(&centroids);
        counts.extend(sizes.iter().map(|s| s * per_batch));
    }
    let ema = ema_codebooks(opts, books, counts)?;
    net.set_codebooks(codebook_tensor(&ema, ad));
    Ok(Some(ema))
}

/// Latent vectors in one training batch: the unit the EMA counts are kept in.
pub(super) fn vectors_per_batch(opts: &TrainOptions) -> f32 {
    (opts.batch_size * (32 / opts.config.grid_factor).pow(2)) as f32
}

/// EMA codebooks of `opts`' geometry, decay and dead-code threshold, from entries and counts.
pub(super) fn ema_codebooks(
    opts: &TrainOptions,
    codebooks: Vec<f32>,
    counts: Vec<f32>,
) -> Result<EmaCodebooks> {
    let cfg = &opts.config;
    EmaCodebooks::from_entries(
        cfg.num_codebooks,
        cfg.codebook_size,
        cfg.latent_dim,
        codebooks,
        counts,
    )?
    .with_rates(opts.ema_decay, opts.dead_fraction)
}

pub(super) fn codebook_tensor(ema: &EmaCodebooks, device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(ema.entries().to_vec(), ema.shape()), device)
}

/// The network and EMA codebooks of the trained model in `dir`, to fine-tune: each entry's
/// running count starts at its fair share of a batch, so none is taken for dead at once.
pub(super) fn warm_start(
    dir: &Path,
    opts: &TrainOptions,
    ad: &Device,
) -> Result<(RvqVae, Option<EmaCodebooks>)> {
    let mut loaded = Model::load(dir, ad)?;
    // A depth input may be added by fine-tuning: it starts at zero, so the model is unchanged.
    if opts.config.depth_input && !loaded.config.depth_input {
        loaded.config.depth_input = true;
        loaded.net.add_depth_input(ad);
    }
    if loaded.config != opts.config {
        return Err(Error::BadData {
            path: dir.join(model::CONFIG_FILE),
            reason: format!(
                "the model to start from is {:?}, not the configuration asked for ({:?})",
                loaded.config, opts.config
            ),
        });
    }
    let cfg = &opts.config;
    let ema = match loaded.net.codebooks() {
        Some(cb) => {
            let share = vectors_per_batch(opts) / cfg.codebook_size as f32;
            let counts = vec![share; cfg.num_codebooks * cfg.codebook_size];
            Some(ema_codebooks(opts, quantizer::float_vec(cb), counts)?)
        }
        None => None,
    };
    Ok((loaded.net, ema))
}
