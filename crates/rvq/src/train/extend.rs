//! More codebooks for a trained model: each new level is fitted by k-means to what the levels
//! before it leave of the encoder's outputs on a set of images. The network and the existing
//! codebooks are kept bit for bit, so every depth the model had decodes as before; the new
//! levels raise the ceiling that `--quality 100` and `--psnr` can reach.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::codebooks;
use crate::config::{MAX_CODEBOOKS, ModelConfig};
use crate::error::{Error, Result};
use crate::image_io::{self, Limits};
use crate::model::{self, Model, latents_to_rows};
use crate::quantizer;

/// How [`extend_codebooks`] fits the new levels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtendOptions {
    /// Codebooks of the extended model, more than the model has.
    pub codebooks: usize,
    /// Lloyd iterations per new codebook.
    pub iterations: usize,
    /// The most latent vectors fitted (a random sample when the images give more).
    pub max_vectors: usize,
    /// Seeds the sample and the k-means starts.
    pub seed: u64,
}

impl Default for ExtendOptions {
    fn default() -> Self {
        Self {
            codebooks: 16,
            iterations: 20,
            max_vectors: 200_000,
            seed: 0,
        }
    }
}

/// What an extension did: written beside the model as `extension.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExtensionCard {
    /// Fingerprint of the model extended.
    pub parent: String,
    /// Fingerprint of the extended model.
    pub fingerprint: String,
    /// The options used.
    pub options: ExtendOptions,
    /// Image files the latents came from (names only).
    pub images: Vec<String>,
    /// Latent vectors fitted.
    pub vectors: usize,
    /// Mean squared latent residual per value after each level, the first level first (the
    /// model's own levels by greedy search, then the new ones).
    pub residual: Vec<f64>,
}

/// The file [`extend_codebooks`] writes beside the weights.
pub const EXTENSION_FILE: &str = "extension.json";

/// Refuses an extension of a model of `cfg` that `opts` cannot make.
fn check_extension(cfg: &ModelConfig, opts: &ExtendOptions) -> Result<()> {
    let (n_q, k) = (cfg.num_codebooks, cfg.codebook_size);
    if cfg.depth_input {
        // Its depth input has one channel per codebook: with more codebooks the weights
        // would no longer fit the configuration.
        return Err(Error::InvalidOption(
            "a model with a depth input cannot be extended (its depth input is sized to its codebooks)".into(),
        ));
    }
    if opts.codebooks <= n_q || opts.codebooks > MAX_CODEBOOKS {
        return Err(Error::InvalidOption(format!(
            "an extension needs {} to {MAX_CODEBOOKS} codebooks; asked for {}",
            n_q + 1,
            opts.codebooks
        )));
    }
    if opts.iterations == 0 || opts.max_vectors < k {
        return Err(Error::InvalidOption(format!(
            "an extension needs at least one iteration and {k} vectors"
        )));
    }
    Ok(())
}

/// Adds codebooks to `model` up to `opts.codebooks`, fitted on the latents of `files` (every
/// cell of every image, padded as the encoder pads), and writes the extended model to `out`
/// (`model.bpk`, `config.json`, [`EXTENSION_FILE`]).
pub fn extend_codebooks(
    model: &Model,
    files: &[PathBuf],
    opts: &ExtendOptions,
    out: &Path,
) -> Result<ExtensionCard> {
    let cfg = &model.config;
    let old = model.net.codebooks().ok_or(Error::NotQuantized)?;
    let (n_q, k, d) = (cfg.num_codebooks, cfg.codebook_size, cfg.latent_dim);
    check_extension(cfg, opts)?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let latents = latent_rows(model, files)?;
    let rows = latents.len() / d;
    if rows < k {
        return Err(Error::InvalidOption(format!(
            "the images give {rows} latent vectors, fewer than the {k} entries of a codebook"
        )));
    }
    let (latents, rows) = sample(latents, d, opts.max_vectors, &mut rng);
    let device = &model.device;
    let points = Tensor::<2>::from_data(TensorData::new(latents.clone(), [rows, d]), device);
    let (_, quantized) = quantizer::quantize(points, &old, n_q);
    let mut residual: Vec<f32> = latents
        .iter()
        .zip(quantizer::float_vec(quantized))
        .map(|(z, q)| z - q)
        .collect();
    let mut energies = level_energies(model, &latents, rows)?;
    let mut books = quantizer::float_vec(old);
    for _ in n_q..opts.codebooks {
        let (centroids, _) = codebooks::kmeans(&residual, d, k, opts.iterations, &mut rng, device);
        let book = Tensor::<2>::from_data(TensorData::new(centroids.clone(), [k, d]), device);
        let pts = Tensor::<2>::from_data(TensorData::new(residual.clone(), [rows, d]), device);
        let chosen = quantizer::int_vec(quantizer::nearest(pts, book));
        for (i, &c) in chosen.iter().enumerate() {
            let entry = &centroids[c as usize * d..(c as usize + 1) * d];
            for (r, e) in residual[i * d..(i + 1) * d].iter_mut().zip(entry) {
                *r -= e;
            }
        }
        energies.push(mean_square(&residual));
        books.extend_from_slice(&centroids);
    }
    let fingerprint = save_extended(model, books, opts.codebooks, out)?;
    let card = ExtensionCard {
        parent: model::hex(&model.fingerprint),
        fingerprint: model::hex(&fingerprint),
        options: opts.clone(),
        images: files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        vectors: rows,
        residual: energies,
    };
    let json = serde_json::to_string_pretty(&card).expect("the card serialises");
    crate::files::write_atomic(&out.join(EXTENSION_FILE), json.as_bytes())?;
    Ok(card)
}

/// Writes `model` with codebooks `books` (`[codebooks][k][d]`) to `out`; returns the
/// fingerprint of the weights written.
fn save_extended(
    model: &Model,
    books: Vec<f32>,
    codebooks: usize,
    out: &Path,
) -> Result<[u8; model::FINGERPRINT_LEN]> {
    let mut config = model.config.clone();
    config.num_codebooks = codebooks;
    config.validate()?;
    let (k, d) = (config.codebook_size, config.latent_dim);
    let mut net = model.net.clone();
    net.set_codebooks(Tensor::from_data(
        TensorData::new(books, [codebooks, k, d]),
        &model.device,
    ));
    Model::save_net(&net, &config, out)
}

/// At most `max` of the `d`-dimensional rows of `latents`, drawn at random (in their order),
/// and how many.
fn sample(latents: Vec<f32>, d: usize, max: usize, rng: &mut StdRng) -> (Vec<f32>, usize) {
    let rows = latents.len() / d;
    if rows <= max {
        return (latents, rows);
    }
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(rng);
    order.truncate(max);
    order.sort_unstable();
    let kept = order
        .iter()
        .flat_map(|&r| latents[r * d..(r + 1) * d].iter().copied())
        .collect();
    (kept, max)
}

/// Every latent vector (`[n][d]`, row-major) of every cell of `files`, each image padded to
/// the grid as the encoder pads it.
fn latent_rows(model: &Model, files: &[PathBuf]) -> Result<Vec<f32>> {
    let f = model.config.grid_factor;
    let mut out = Vec::new();
    for file in files {
        let image = image_io::read_rgb(file, &Limits::default())?.image;
        let pw = (image.width() as usize).div_ceil(f) * f;
        let ph = (image.height() as usize).div_ceil(f) * f;
        let values = image_io::to_planar_padded(&image, pw, ph);
        let z = model.encode_planar(&values, 1, ph, pw)?;
        out.extend(quantizer::float_vec(latents_to_rows(z)));
    }
    Ok(out)
}

/// The mean squared residual after each of the model's own levels, greedy search.
fn level_energies(model: &Model, latents: &[f32], rows: usize) -> Result<Vec<f64>> {
    let d = model.config.latent_dim;
    let books = model.net.codebooks().ok_or(Error::NotQuantized)?;
    let mut out = Vec::new();
    for depth in 1..=model.config.num_codebooks {
        let points =
            Tensor::<2>::from_data(TensorData::new(latents.to_vec(), [rows, d]), &model.device);
        let (_, q) = quantizer::quantize(points, &books, depth);
        let r: Vec<f32> = latents
            .iter()
            .zip(quantizer::float_vec(q))
            .map(|(z, q)| z - q)
            .collect();
        out.push(mean_square(&r));
    }
    Ok(out)
}

fn mean_square(values: &[f32]) -> f64 {
    values
        .iter()
        .map(|&v| f64::from(v) * f64::from(v))
        .sum::<f64>()
        / values.len() as f64
}
