//! Training an RVQ-VAE: Adam on the reconstruction and commitment losses, codebooks learnt by
//! EMA with k-means initialisation and dead-code restarts, quantizer dropout so one model
//! decodes at every depth, frequent checkpoints and exact resumption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::data::{ImageSet, Splits};
use crate::error::{Error, Result};
use crate::eval::{self, DepthQuality};
use crate::model::{self, Model, RvqVae, latents_to_rows, rows_to_latents};
use crate::quantizer::{self, CodebookStats, EmaCodebooks};

/// How to train.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model to train.
    pub config: ModelConfig,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate of Adam (cosine decay to 0 after a short warm-up).
    pub learning_rate: f64,
    /// Weight of the commitment loss ‖z − sg(q)‖².
    pub commitment: f32,
    /// Fraction of batches trained at a random depth per image (quantizer dropout); the
    /// others use every codebook.
    pub dropout_fraction: f32,
    /// EMA decay of the codebooks.
    pub ema_decay: f32,
    /// Dead-code threshold as a fraction of an entry's fair share of a batch.
    pub dead_fraction: f32,
    /// Images encoded to seed the codebooks by k-means.
    pub kmeans_images: usize,
    /// Seed for data order, augmentation, dropout depths and restarts.
    pub seed: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: usize,
    /// Stop after this many steps in total (for tests and time-boxed runs).
    pub max_steps: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            config: ModelConfig::default(),
            epochs: 20,
            batch_size: 128,
            learning_rate: 1e-3,
            commitment: 0.25,
            dropout_fraction: 0.5,
            ema_decay: 0.99,
            dead_fraction: 0.1,
            kmeans_images: 1024,
            seed: 0,
            checkpoint_every: 100,
            max_steps: None,
        }
    }
}

/// What a trained model folder's `card.json` records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelCard {
    /// The model's configuration.
    pub config: ModelConfig,
    /// Trainable parameters (codebooks included).
    pub parameters: usize,
    /// Truncated SHA-256 of `model.bpk`, as archives cite it.
    pub fingerprint: String,
    /// The training data.
    pub data: String,
    /// Training options.
    pub options: TrainOptions,
    /// Epochs completed (fractional when stopped mid-epoch).
    pub epochs_completed: f64,
    /// Optimizer steps taken.
    pub steps: usize,
    /// Images seen.
    pub images_seen: u64,
    /// Training wall time, all sessions of a resumed run together.
    pub wall_seconds: f64,
    /// Where it was trained.
    pub machine: String,
    /// Quality on the validation images, per number of codebooks (0: unquantized path).
    pub validation: Vec<DepthQuality>,
    /// Validation images used.
    pub validation_images: usize,
    /// Codebook usage at the end of training.
    pub codebooks: Vec<CodebookStats>,
    /// rvq version that trained it.
    pub rvq_version: String,
}

/// Progress reported during training.
#[derive(Clone, Debug)]
pub enum Event {
    /// Training is about to start (or resume) at `step` of `total_steps`.
    Start {
        /// Steps already done.
        step: usize,
        /// Steps planned.
        total_steps: usize,
    },
    /// One optimizer step.
    Step {
        /// Steps done.
        step: usize,
        /// Epoch (0-based).
        epoch: usize,
        /// Reconstruction MSE of this batch.
        mse: f32,
        /// Total loss of this batch.
        loss: f32,
        /// Codebook usage after this step.
        codebooks: Vec<CodebookStats>,
    },
    /// Validation at the end of an epoch.
    Validation {
        /// Epoch just finished (0-based).
        epoch: usize,
        /// Quality per depth.
        quality: Vec<DepthQuality>,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: usize,
    },
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    step: usize,
    counts: Vec<f32>,
    wall_seconds: f64,
    options: TrainOptions,
    last_validation: Vec<DepthQuality>,
    last_stats: Vec<CodebookStats>,
}

const CHECKPOINT_DIR: &str = "checkpoint";
const OPTIM_FILE: &str = "optim.bpk";
const STATE_FILE: &str = "state.json";

/// Trains on `splits` and writes the model folder `out` (`model.bpk`, `config.json`,
/// `card.json`), checkpointing to `out/checkpoint/`. With `resume`, continues from that
/// checkpoint (its options win over `options`, so a resumed run is the run it continues).
pub fn train(
    options: &TrainOptions,
    splits: &Splits,
    out: &Path,
    device: &Device,
    machine: &str,
    resume: bool,
    on_event: &mut dyn FnMut(Event),
) -> Result<ModelCard> {
    options.config.validate()?;
    if splits.train.is_empty() {
        return Err(Error::Other("no training images".into()));
    }
    let ad = device.clone().autodiff();
    let ckpt = out.join(CHECKPOINT_DIR);
    let state_path = ckpt.join(STATE_FILE);
    let mut optim: ModuleOptimizer = AdamConfig::new().init();
    let (mut net, mut ema, mut state, opts) = if resume && state_path.is_file() {
        let text = read_text(&state_path)?;
        let state: CheckpointState = serde_json::from_str(&text).map_err(|e| Error::BadData {
            path: state_path.clone(),
            reason: format!("not a training checkpoint: {e}"),
        })?;
        let opts = state.options.clone();
        let loaded = Model::load(&ckpt, &ad)?;
        optim = optim
            .load(ckpt.join(OPTIM_FILE))
            .map_err(|e| Error::Other(format!("{}: {e:?}", ckpt.join(OPTIM_FILE).display())))?;
        let ema = loaded.net.codebooks().map(|cb| {
            let c = &opts.config;
            let mut e = EmaCodebooks::from_entries(
                c.num_codebooks,
                c.codebook_size,
                c.latent_dim,
                quantizer::float_vec(cb),
                state.counts.clone(),
            );
            e.decay = opts.ema_decay;
            e.dead_fraction = opts.dead_fraction;
            e
        });
        (loaded.net, ema, state, opts)
    } else {
        if resume {
            return Err(Error::BadData {
                path: state_path,
                reason: "no checkpoint to resume from".into(),
            });
        }
        let opts = options.clone();
        ad.seed(opts.seed);
        let mut net = RvqVae::new(&opts.config, &ad);
        let ema = init_codebooks(&mut net, &opts, &splits.train, device, &ad);
        let state = CheckpointState {
            step: 0,
            counts: Vec::new(),
            wall_seconds: 0.0,
            options: opts.clone(),
            last_validation: Vec::new(),
            last_stats: Vec::new(),
        };
        (net, ema, state, opts)
    };
    let cfg = opts.config.clone();
    let n = splits.train.len();
    let batch = opts.batch_size.min(n).max(1);
    let steps_per_epoch = n / batch;
    let mut total_steps = steps_per_epoch * opts.epochs;
    if let Some(m) = opts.max_steps {
        total_steps = total_steps.min(m);
    }
    let warmup = (total_steps / 50).clamp(1, 500);
    let depths_report = {
        let mut d = eval::report_depths(cfg.num_codebooks);
        d.push(0);
        d
    };
    on_event(Event::Start {
        step: state.step,
        total_steps,
    });
    let session_start = Instant::now();
    let base_seconds = state.wall_seconds;
    let mut last_stats = state.last_stats.clone();
    while state.step < total_steps {
        let epoch = state.step / steps_per_epoch;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(mix(opts.seed, epoch as u64)));
        let first = state.step % steps_per_epoch;
        for b in first..steps_per_epoch {
            if state.step >= total_steps {
                break;
            }
            let ids = &order[b * batch..(b + 1) * batch];
            let mut rng = StdRng::seed_from_u64(mix(opts.seed ^ 0x5eed, state.step as u64));
            let lr = learning_rate(opts.learning_rate, state.step, warmup, total_steps);
            let (next, mse, loss, stats) = step(
                net,
                &mut optim,
                &mut ema,
                &opts,
                &splits.train,
                ids,
                lr,
                &mut rng,
                &ad,
            );
            net = next;
            state.step += 1;
            if !stats.is_empty() {
                last_stats = stats.clone();
            }
            on_event(Event::Step {
                step: state.step,
                epoch,
                mse,
                loss,
                codebooks: stats,
            });
            let end_of_epoch = b + 1 == steps_per_epoch || state.step == total_steps;
            if end_of_epoch {
                let q = eval::quality(
                    &net.valid(),
                    &cfg,
                    &splits.valid,
                    &depths_report,
                    250,
                    device,
                );
                state.last_validation = q.clone();
                on_event(Event::Validation { epoch, quality: q });
            }
            if state.step % opts.checkpoint_every.max(1) == 0 || end_of_epoch {
                state.wall_seconds = base_seconds + session_start.elapsed().as_secs_f64();
                state.counts = ema.as_ref().map(|e| e.counts.clone()).unwrap_or_default();
                state.last_stats = last_stats.clone();
                save_checkpoint(&net, &optim, &state, &ckpt)?;
                on_event(Event::Checkpoint { step: state.step });
            }
        }
    }
    state.wall_seconds = base_seconds + session_start.elapsed().as_secs_f64();
    let final_net = net.valid();
    if state.last_validation.is_empty() {
        state.last_validation =
            eval::quality(&final_net, &cfg, &splits.valid, &depths_report, 250, device);
    }
    let fp = Model::save_net(&final_net, &cfg, out)?;
    let card = ModelCard {
        config: cfg.clone(),
        parameters: final_net.num_params(),
        fingerprint: model::hex(&fp),
        data: splits.description.clone(),
        options: opts.clone(),
        epochs_completed: state.step as f64 / steps_per_epoch.max(1) as f64,
        steps: state.step,
        images_seen: state.step as u64 * batch as u64,
        wall_seconds: state.wall_seconds,
        machine: machine.to_string(),
        validation: state.last_validation.clone(),
        validation_images: splits.valid.len(),
        codebooks: last_stats,
        rvq_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let json = serde_json::to_string_pretty(&card).expect("card serialises");
    model::write_atomic(&out.join(model::CARD_FILE), json.as_bytes())?;
    Ok(card)
}

/// Splits a seed into independent streams.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed
        .wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Linear warm-up, then cosine decay to zero.
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn save_checkpoint(
    net: &RvqVae,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
    dir: &Path,
) -> Result<()> {
    Model::save_net(&net.valid(), &state.options.config, dir)?;
    let optim_path: PathBuf = dir.join(OPTIM_FILE);
    let tmp = model::temp_path(&optim_path);
    optim
        .save(&tmp)
        .map_err(|e| Error::Other(format!("{}: {e:?}", optim_path.display())))?;
    std::fs::rename(&tmp, &optim_path).map_err(|e| Error::Io {
        path: optim_path,
        source: e,
    })?;
    let json = serde_json::to_string(state).expect("state serialises");
    model::write_atomic(&dir.join(STATE_FILE), json.as_bytes())
}

/// Seeds each codebook by k-means on the residuals the previous ones leave, over the
/// encoder's outputs for the first `kmeans_images` training images.
fn init_codebooks(
    net: &mut RvqVae,
    opts: &TrainOptions,
    train: &ImageSet,
    device: &Device,
    ad: &Device,
) -> Option<EmaCodebooks> {
    let cfg = &opts.config;
    if !cfg.quantize {
        return None;
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
    let cells = (32 / cfg.grid_factor).pow(2);
    let per_batch = (opts.batch_size * cells) as f32 / rows as f32;
    let mut residual = data;
    for _ in 0..cfg.num_codebooks {
        let (centroids, sizes) = quantizer::kmeans(&residual, d, k, 10, &mut rng, device);
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
    let mut ema = EmaCodebooks::from_entries(cfg.num_codebooks, k, d, books, counts);
    ema.decay = opts.ema_decay;
    ema.dead_fraction = opts.dead_fraction;
    net.set_codebooks(codebook_tensor(&ema, ad));
    Some(ema)
}

fn codebook_tensor(ema: &EmaCodebooks, device: &Device) -> Tensor<3> {
    Tensor::from_data(
        TensorData::new(ema.codebooks.clone(), [ema.levels, ema.size, ema.dim]),
        device,
    )
}

#[allow(clippy::too_many_arguments)]
fn step(
    net: RvqVae,
    optim: &mut ModuleOptimizer,
    ema: &mut Option<EmaCodebooks>,
    opts: &TrainOptions,
    train: &ImageSet,
    ids: &[usize],
    lr: f64,
    rng: &mut StdRng,
    ad: &Device,
) -> (RvqVae, f32, f32, Vec<CodebookStats>) {
    let cfg = &opts.config;
    let flips: Vec<bool> = ids.iter().map(|_| rng.random::<bool>()).collect();
    let x = train.batch(ids, Some(&flips), ad);
    let z = net.encode(x.clone());
    let [b, d, h, w] = z.dims();
    let rows = latents_to_rows(z);
    let mut host = None;
    let (decoder_in, commit) = match net.codebooks() {
        Some(codebooks) => {
            let n_q = cfg.num_codebooks;
            let image_depths: Vec<usize> = if rng.random::<f32>() < opts.dropout_fraction {
                (0..b).map(|_| rng.random_range(1..=n_q)).collect()
            } else {
                vec![n_q; b]
            };
            let row_depths: Vec<usize> = image_depths
                .iter()
                .flat_map(|&dep| std::iter::repeat_n(dep, h * w))
                .collect();
            let n = row_depths.len();
            let start = rows.clone().detach();
            let mut residual = start.clone();
            let mut levels = Vec::with_capacity(n_q);
            let max_depth = *image_depths.iter().max().unwrap_or(&n_q);
            for level in 0..max_depth {
                let book = codebooks
                    .clone()
                    .slice([level..level + 1, 0..cfg.codebook_size, 0..d])
                    .reshape([cfg.codebook_size, d]);
                let idx = quantizer::nearest(residual.clone(), book.clone());
                let mask: Vec<f32> = row_depths
                    .iter()
                    .map(|&dep| if dep > level { 1.0 } else { 0.0 })
                    .collect();
                let mask = Tensor::<2>::from_data(TensorData::new(mask, [n, 1]), ad);
                residual = residual - book.select(0, idx.clone()) * mask;
                levels.push(idx);
            }
            let quantized = start.clone() - residual;
            let commit = (rows.clone() - quantized.clone()).square().mean();
            // Straight-through: the decoder sees the quantized vectors, the encoder gets the
            // decoder's gradient as if quantization were the identity.
            let st = rows + (quantized - start.clone());
            host = Some((start, levels, row_depths));
            (st, commit.mul_scalar(opts.commitment))
        }
        None => (rows, Tensor::<1>::zeros([1], ad)),
    };
    let xhat = net.decode(rows_to_latents(decoder_in, b, h, w));
    let mse = (xhat - x).square().mean();
    let loss = mse.clone() + commit;
    let mse_v: f32 = mse.into_scalar::<f32>();
    let grads = loss.backward();
    let loss_v: f32 = loss.into_scalar::<f32>();
    let grads = GradientsParams::from_grads(grads, &net);
    let mut net = optim.step(lr, net, grads);
    let mut stats = Vec::new();
    if let (Some(ema), Some((start, levels, row_depths))) = (ema.as_mut(), host) {
        let latents = quantizer::float_vec(start);
        let indices: Vec<Vec<u32>> = levels.into_iter().map(quantizer::int_vec).collect();
        stats = ema.update(&latents, &indices, &row_depths, rng);
        net.set_codebooks(codebook_tensor(ema, ad));
    }
    (net, mse_v, loss_v, stats)
}

/// Loads training data, for the CLI: see [`crate::data::load_training`].
pub fn load_data(path: &Path, valid: usize, seed: u64) -> Result<Splits> {
    crate::data::load_training(path, valid, 64, &mut StdRng::seed_from_u64(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_zero() {
        assert!(learning_rate(1.0, 0, 10, 100) < 0.2);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
        assert!(learning_rate(1.0, 100, 10, 100) < 1e-9);
    }
}
