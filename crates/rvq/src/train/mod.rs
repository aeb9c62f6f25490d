//! Training an RVQ-VAE: Adam (or AdamW) on the reconstruction and commitment losses, codebooks
//! learnt by EMA with k-means initialisation and dead-code restarts, quantizer dropout so one
//! model decodes at every depth, an optional moving average of the weights for evaluation,
//! frequent checkpoints and exact resumption.

mod card;
mod checkpoint;
mod extend;
mod options;
mod start;

/// A codebook's usage, as training reports it ([`Event`], [`ModelCard`]).
pub use crate::codebooks::CodebookStats;
pub use card::{Event, ModelCard};
pub use checkpoint::{RUN_FILES, check_checkpoint_replaceable, has_checkpoint};
pub use extend::{EXTENSION_FILE, ExtendOptions, ExtensionCard, extend_codebooks};
pub use options::{Init, TrainOptions};

use checkpoint::{
    AVERAGE_DIR, CHECKPOINT_DIR, CheckpointState, EMA_FILE, OPTIM_FILE, STATE_FILE, checkpoint_dir,
    load_ema, optimizer_state_error, read_text,
};
use options::check_resumed;
use start::{codebook_tensor, init_codebooks, mix, warm_start};

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use crate::codebooks::EmaCodebooks;
use crate::data::{ImageSet, Splits};
use crate::error::{Error, Result};
use crate::eval::{self, DepthQuality};
use crate::model::{self, Model, RvqVae, latents_to_rows, rows_to_latents};
use crate::pca::PatchPca;
use crate::quantizer;

/// A training run in progress: the network and its optimizer, the EMA codebooks, the weight
/// average if the options keep one, and where the run stands. [`train`] drives one from start (or checkpoint) to finished model folder; the
/// pieces are public so a program can drive its own loop.
pub struct Trainer {
    /// `None` only inside [`Trainer::step`], while the optimizer owns it.
    net: Option<RvqVae>,
    /// The moving average of the weights, on the inference device, with
    /// [`TrainOptions::weight_average`].
    average: Option<RvqVae>,
    optim: ModuleOptimizer,
    ema: Option<EmaCodebooks>,
    state: CheckpointState,
    device: Device,
    ad: Device,
    out: PathBuf,
    batch: usize,
    steps_per_epoch: usize,
    total_steps: usize,
    warmup: usize,
    /// Steps trained on the L1 loss ([`TrainOptions::l1_fraction`] of the total).
    l1_steps: usize,
    order: Option<(usize, Vec<usize>)>,
    session_start: Instant,
    base_seconds: f64,
}

/// What a fresh run and a resumed one each build before [`Trainer::assemble`] lays out the
/// schedule: the weights (the average too, if kept), the optimizer, the EMA codebooks, the
/// run's state and the autodiff device.
struct Parts {
    net: RvqVae,
    average: Option<RvqVae>,
    optim: ModuleOptimizer,
    ema: Option<EmaCodebooks>,
    state: CheckpointState,
    ad: Device,
}

impl Trainer {
    /// A fresh run of `options` on `train`, checkpointing under `out`: the linear path fitted
    /// and the codebooks seeded from it, or, with [`TrainOptions::start_from`], the weights and
    /// codebooks of a trained model (fine-tuning, with fresh optimizer moments).
    pub fn new(
        options: &TrainOptions,
        train: &ImageSet,
        out: &Path,
        device: &Device,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<Self> {
        options.config.validate()?;
        if train.is_empty() {
            return Err(Error::NoTrainingImages);
        }
        let opts = options.clone();
        opts.check()?;
        let ad = device.clone().autodiff();
        ad.seed(opts.seed);
        let (net, ema) = match &opts.start_from {
            Some(dir) => warm_start(dir, &opts, &ad)?,
            None => {
                let mut net = RvqVae::new(&opts.config, &ad);
                if opts.config.linear_path && opts.init == Init::Pca {
                    let cfg = &opts.config;
                    let images = opts.pca_images.clamp(1, train.len());
                    let pca = PatchPca::fit(train, cfg.grid_factor, images, device);
                    net.set_linear_basis(&pca.basis(cfg.latent_dim), &pca.mean);
                    on_event(Event::Pca {
                        images,
                        truncation_mse: pca.truncation_mse(cfg.latent_dim),
                    });
                }
                let ema = init_codebooks(&mut net, &opts, train, device, &ad)?;
                (net, ema)
            }
        };
        let state = CheckpointState {
            step: 0,
            wall_seconds: 0.0,
            options: opts,
            last_validation: Vec::new(),
            last_stats: Vec::new(),
        };
        let parts = Parts {
            optim: optimizer(&state.options),
            average: (state.options.weight_average > 0.0).then(|| net.valid()),
            net,
            ema,
            state,
            ad,
        };
        Ok(Self::assemble(parts, train, out, device))
    }

    /// The run checkpointed under `out`, exactly where it stopped: weights, optimizer moments,
    /// EMA sums and counts, the weight average, step (the data order and random draws follow
    /// from the seed and the step). Its options are the checkpoint's, so a resumed run is the
    /// run it continues.
    pub fn resume(out: &Path, train: &ImageSet, device: &Device) -> Result<Self> {
        let ckpt = checkpoint_dir(out)?;
        let state_path = ckpt.join(STATE_FILE);
        let text = read_text(&state_path)?;
        let state: CheckpointState = serde_json::from_str(&text).map_err(|e| Error::BadData {
            path: state_path.clone(),
            reason: format!("not a training checkpoint: {e}"),
        })?;
        state.options.check()?;
        let ad = device.clone().autodiff();
        let loaded = Model::load(&ckpt, &ad)?;
        let optim_path = ckpt.join(OPTIM_FILE);
        let optim = optimizer(&state.options)
            .load(&optim_path)
            .map_err(optimizer_state_error(&optim_path))?;
        let ema = match loaded.net.codebooks() {
            Some(cb) => Some(load_ema(&ckpt, &state.options, quantizer::float_vec(cb))?),
            None => None,
        };
        let average = if state.options.weight_average > 0.0 {
            let dir = ckpt.join(AVERAGE_DIR);
            if !dir.is_dir() {
                return Err(Error::BadData {
                    path: dir,
                    reason: "the checkpoint lacks the weight average its options ask for".into(),
                });
            }
            Some(Model::load(&dir, device)?.net)
        } else {
            None
        };
        let parts = Parts {
            net: loaded.net,
            average,
            optim,
            ema,
            state,
            ad,
        };
        Ok(Self::assemble(parts, train, out, device))
    }

    /// The run made of `parts`, its schedule laid out over `train`.
    fn assemble(parts: Parts, train: &ImageSet, out: &Path, device: &Device) -> Self {
        let Parts {
            net,
            average,
            optim,
            ema,
            state,
            ad,
        } = parts;
        let opts = &state.options;
        let n = train.len();
        let batch = opts.batch_size.min(n).max(1);
        let steps_per_epoch = (n / batch).max(1);
        let mut total_steps = steps_per_epoch.saturating_mul(opts.epochs);
        if let Some(m) = opts.max_steps {
            total_steps = total_steps.min(m);
        }
        Self {
            warmup: (total_steps / 50).clamp(1, 500),
            l1_steps: (opts.l1_fraction as f64 * total_steps as f64).round() as usize,
            base_seconds: state.wall_seconds,
            net: Some(net),
            average,
            optim,
            ema,
            state,
            device: device.clone(),
            ad,
            out: out.to_path_buf(),
            batch,
            steps_per_epoch,
            total_steps,
            order: None,
            session_start: Instant::now(),
        }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> usize {
        self.state.step
    }

    /// Steps the learning-rate schedule spans; training is done when it gets there.
    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    /// The options of the run (the checkpoint's, for a resumed one).
    pub fn options(&self) -> &TrainOptions {
        &self.state.options
    }

    /// One optimizer step on the next batch of `train`; returns its [`Event::Step`] fields.
    pub fn step(&mut self, train: &ImageSet) -> Event {
        let epoch = self.state.step / self.steps_per_epoch;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut order: Vec<usize> = (0..train.len()).collect();
            order.shuffle(&mut StdRng::seed_from_u64(mix(
                self.state.options.seed,
                epoch as u64,
            )));
            self.order = Some((epoch, order));
        }
        let b = self.state.step % self.steps_per_epoch;
        let order = &self.order.as_ref().expect("order was just set").1;
        let ids = &order[b * self.batch..(b + 1) * self.batch];
        let mut rng = StdRng::seed_from_u64(mix(
            self.state.options.seed ^ 0x5eed,
            self.state.step as u64,
        ));
        let lr = learning_rate(
            self.state.options.learning_rate,
            self.state.step,
            self.warmup,
            self.total_steps,
        );
        let l1 = self.state.step < self.l1_steps;
        let net = self
            .net
            .take()
            .expect("the network is only taken inside step");
        let (net, mse, loss, stats) = step(
            net,
            &mut self.optim,
            &mut self.ema,
            &self.state.options,
            train,
            ids,
            (lr, l1),
            &mut rng,
            &self.ad,
        );
        if let Some(avg) = self.average.take() {
            let t = self.state.step as f32;
            let decay = self
                .state
                .options
                .weight_average
                .min((1.0 + t) / (10.0 + t));
            let (avg, unmatched) = crate::average::blend(avg, &net.valid(), decay);
            assert_eq!(unmatched, 0, "the weight average is a copy of the network");
            self.average = Some(avg);
        }
        self.net = Some(net);
        self.state.step += 1;
        if !stats.is_empty() {
            self.state.last_stats = stats.clone();
        }
        Event::Step {
            step: self.state.step,
            epoch,
            mse,
            loss,
            codebooks: stats,
        }
    }

    /// Whether the last step finished an epoch (or the run).
    pub fn at_epoch_end(&self) -> bool {
        self.state.step.is_multiple_of(self.steps_per_epoch) || self.state.step >= self.total_steps
    }

    /// Quality on `valid` at 1, 2, 4, … codebooks and on the unquantized path; kept for the
    /// card.
    pub fn validate(&mut self, valid: &ImageSet) -> Result<Vec<DepthQuality>> {
        let cfg = &self.state.options.config;
        // Every reported depth, then the unquantized path (all a plain autoencoder has).
        let depths = if cfg.quantize {
            let mut d = eval::report_depths(cfg.num_codebooks);
            d.push(0);
            d
        } else {
            vec![0]
        };
        let q = eval::quality_of(&self.evaluated(), cfg, valid, &depths, 250, &self.device)?;
        self.state.last_validation = q.clone();
        Ok(q)
    }

    /// The network validation and the finished model use: the weight average with the
    /// current codebooks, or the current weights.
    fn evaluated(&self) -> RvqVae {
        match &self.average {
            Some(avg) => {
                let mut avg = avg.clone();
                if let Some(codebooks) = self.net().valid().codebooks() {
                    avg.set_codebooks(codebooks);
                }
                avg
            }
            None => self.net().valid(),
        }
    }

    fn net(&self) -> &RvqVae {
        self.net
            .as_ref()
            .expect("the network is only taken inside step")
    }

    /// Writes the whole training state under `out/checkpoint/`: into a fresh folder first,
    /// which then replaces the old one, so an interrupted write leaves the previous
    /// checkpoint whole.
    pub fn checkpoint(&mut self) -> Result<()> {
        check_checkpoint_replaceable(&self.out)?;
        self.state.wall_seconds = self.wall_seconds();
        let dir = self.out.join(CHECKPOINT_DIR);
        let fresh = self.out.join(format!("{CHECKPOINT_DIR}.new"));
        let old = self.out.join(format!("{CHECKPOINT_DIR}.old"));
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(io(&fresh))?;
        }
        Model::save_net(&self.net().valid(), &self.state.options.config, &fresh)?;
        if let Some(avg) = &self.average {
            Model::save_net(avg, &self.state.options.config, &fresh.join(AVERAGE_DIR))?;
        }
        let optim_path = fresh.join(OPTIM_FILE);
        self.optim
            .save(&optim_path)
            .map_err(optimizer_state_error(&optim_path))?;
        if let Some(ema) = &self.ema {
            let mut bytes = crate::export::le_f32(ema.counts());
            bytes.extend(crate::export::le_f32(ema.sums()));
            crate::files::write_atomic(&fresh.join(EMA_FILE), &bytes)?;
        }
        let json = serde_json::to_string(&self.state).expect("state serialises");
        crate::files::write_atomic(&fresh.join(STATE_FILE), json.as_bytes())?;
        if dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io(&old))?;
            }
            std::fs::rename(&dir, &old).map_err(io(&dir))?;
        }
        std::fs::rename(&fresh, &dir).map_err(io(&dir))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        Ok(())
    }

    fn wall_seconds(&self) -> f64 {
        self.base_seconds + self.session_start.elapsed().as_secs_f64()
    }

    /// Writes the model folder (`model.bpk`, `config.json`, `card.json`) and returns the card.
    pub fn finish(mut self, splits: &Splits, machine: &str) -> Result<ModelCard> {
        self.state.wall_seconds = self.wall_seconds();
        if self.state.last_validation.is_empty() {
            self.validate(&splits.valid)?;
        }
        let final_net = self.evaluated();
        let cfg = &self.state.options.config;
        let fp = Model::save_net(&final_net, cfg, &self.out)?;
        let card = ModelCard {
            config: cfg.clone(),
            parameters: final_net.num_params(),
            fingerprint: model::hex(&fp),
            data: splits.description.clone(),
            options: TrainOptions {
                start_from: None,
                ..self.state.options.clone()
            },
            epochs_completed: self.state.step as f64 / self.steps_per_epoch as f64,
            steps: self.state.step,
            images_seen: self.state.step as u64 * self.batch as u64,
            wall_seconds: self.state.wall_seconds,
            machine: machine.to_string(),
            validation: self.state.last_validation.clone(),
            validation_images: splits.valid.len(),
            codebooks: self.state.last_stats.clone(),
            rvq_version: env!("CARGO_PKG_VERSION").to_string(),
            parent: match &self.state.options.start_from {
                Some(dir) => {
                    let path = dir.join(model::WEIGHTS_FILE);
                    let weights =
                        std::fs::read(&path).map_err(|e| Error::Io { path, source: e })?;
                    Some(model::hex(&model::fingerprint(&weights)))
                }
                None => None,
            },
        };
        let json = serde_json::to_string_pretty(&card).expect("card serialises");
        crate::files::write_atomic(&self.out.join(model::CARD_FILE), json.as_bytes())?;
        Ok(card)
    }
}

/// Trains on `splits` and writes the model folder `out` (`model.bpk`, `config.json`,
/// `card.json`), checkpointing to `out/checkpoint/`. With `resume`, continues from that
/// checkpoint, which must have been trained with `options` (the steps between checkpoints
/// and the starting model's folder aside): anything else is refused, so a resumed run is the
/// run it continues.
/// `stop_at` ends this session after that many steps in all, checkpointed, without writing
/// the model folder: the learning-rate schedule stays the full run's, so a later `resume`
/// continues exactly as if it had not stopped.
#[allow(clippy::too_many_arguments)]
pub fn train(
    options: &TrainOptions,
    splits: &Splits,
    out: &Path,
    device: &Device,
    machine: &str,
    resume: bool,
    stop_at: Option<usize>,
    on_event: &mut dyn FnMut(Event),
) -> Result<Option<ModelCard>> {
    check_checkpoint_replaceable(out)?;
    let mut trainer = if resume {
        let trainer = Trainer::resume(out, &splits.train, device)?;
        check_resumed(trainer.options(), options).map_err(|differences| Error::ResumeMismatch {
            run: out.to_path_buf(),
            differences,
        })?;
        trainer
    } else {
        Trainer::new(options, &splits.train, out, device, on_event)?
    };
    let end = stop_at.map_or(trainer.total_steps(), |s| s.min(trainer.total_steps()));
    on_event(Event::Start {
        step: trainer.step_count(),
        total_steps: trainer.total_steps(),
    });
    // The one option a resumed run may change (check_resumed), so the asked one.
    let every = options.checkpoint_every.max(1);
    while trainer.step_count() < end {
        let event = trainer.step(&splits.train);
        let epoch = match &event {
            Event::Step { epoch, .. } => *epoch,
            _ => unreachable!("Trainer::step reports a step"),
        };
        on_event(event);
        let epoch_end = trainer.at_epoch_end();
        if epoch_end {
            let quality = trainer.validate(&splits.valid)?;
            on_event(Event::Validation { epoch, quality });
        }
        let step = trainer.step_count();
        if step.is_multiple_of(every) || epoch_end || step == end {
            trainer.checkpoint()?;
            on_event(Event::Checkpoint { step });
        }
    }
    if trainer.step_count() < trainer.total_steps() {
        return Ok(None);
    }
    trainer.finish(splits, machine).map(Some)
}

/// Linear warm-up, then cosine decay to zero.
pub fn learning_rate(peak: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

#[allow(clippy::too_many_arguments)]
fn step(
    net: RvqVae,
    optim: &mut ModuleOptimizer,
    ema: &mut Option<EmaCodebooks>,
    opts: &TrainOptions,
    train: &ImageSet,
    ids: &[usize],
    (lr, l1): (f64, bool),
    rng: &mut StdRng,
    ad: &Device,
) -> (RvqVae, f32, f32, Vec<CodebookStats>) {
    let cfg = &opts.config;
    let flips: Vec<bool> = ids.iter().map(|_| rng.random::<bool>()).collect();
    let x = train.batch(ids, Some(&flips), ad);
    let z = net.encode(x.clone());
    let [b, _, h, w] = z.dims();
    let rows = latents_to_rows(z);
    let mut host = None;
    let (decoder_in, commit) = match net.codebooks() {
        Some(codebooks) => {
            let n_q = cfg.num_codebooks;
            let image_depths: Vec<usize> = if rng.random::<f32>() < opts.dropout_fraction {
                (0..b)
                    .map(|_| dropout_depth(&opts.dropout_weights, n_q, rng))
                    .collect()
            } else {
                vec![n_q; b]
            };
            let row_depths: Vec<usize> = image_depths
                .iter()
                .flat_map(|&dep| std::iter::repeat_n(dep, h * w))
                .collect();
            let start = rows.clone().detach();
            let (levels, quantized) =
                quantizer::quantize_to_depths(start.clone(), &codebooks, &row_depths);
            let commit = (rows.clone() - quantized.clone()).square().mean();
            // Straight-through: the decoder sees the quantized vectors, the encoder gets the
            // decoder's gradient as if quantization were the identity.
            let st = rows + (quantized - start.clone());
            host = Some((start, levels, row_depths));
            (st, commit.mul_scalar(opts.commitment))
        }
        None => (rows, Tensor::<1>::zeros([1], ad)),
    };
    let depths = host.as_ref().map(|(_, _, d)| d.as_slice());
    let xhat = net.decode_unclamped(rows_to_latents(decoder_in, b, h, w), depths);
    let err = xhat - x;
    let mse = err.clone().square().mean();
    let recon = if l1 { err.abs().mean() } else { mse.clone() };
    let loss = recon + commit;
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

/// The run's optimizer: Adam, or AdamW when the options ask for weight decay (a checkpoint's
/// moments load into the same kind, since its options are the run's).
fn optimizer(opts: &TrainOptions) -> ModuleOptimizer {
    if opts.weight_decay > 0.0 {
        AdamWConfig::new()
            .with_weight_decay(opts.weight_decay)
            .init()
    } else {
        AdamConfig::new().init()
    }
}

/// One image's depth in a dropout batch: uniform over `1..=n_q`, or drawn with the odds
/// `weights` (checked by [`TrainOptions::check_dropout`]).
fn dropout_depth(weights: &[f32], n_q: usize, rng: &mut StdRng) -> usize {
    if weights.is_empty() {
        return rng.random_range(1..=n_q);
    }
    let total: f32 = weights.iter().sum();
    let mut u = rng.random::<f32>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i + 1;
        }
        u -= w;
    }
    // Rounding can leave u just past the last bucket: the deepest depth with any weight.
    weights
        .iter()
        .rposition(|&w| w > 0.0)
        .map_or(n_q, |i| i + 1)
}

/// Random crops taken from each image of a training folder unless told otherwise.
pub const DEFAULT_CROPS: usize = 64;

/// The side of those crops unless told otherwise: CIFAR-10's.
pub const DEFAULT_CROP_SIDE: usize = crate::data::CIFAR_SIDE;

/// Loads training data from one source or several, for the CLI: see
/// [`crate::data::load_mixture`] (`crops` per image of a folder, each `side`×`side`; at a
/// larger side CIFAR-10 trains on mosaics of its images). One source loads as
/// [`crate::data::load_training`] loads it.
pub fn load_mixed_data(
    paths: &[PathBuf],
    valid: usize,
    (crops, side): (usize, usize),
    seed: u64,
) -> Result<Splits> {
    crate::data::load_mixture(
        paths,
        valid,
        (crops, side),
        &mut StdRng::seed_from_u64(seed),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    #[test]
    fn a_resume_with_other_options_is_refused_naming_them() {
        let saved = TrainOptions {
            learning_rate: 2e-3,
            ..TrainOptions::default()
        };
        let same = TrainOptions {
            checkpoint_every: 7,
            start_from: Some("elsewhere".into()),
            ..saved.clone()
        };
        check_resumed(&saved, &same).unwrap();
        let other = TrainOptions {
            learning_rate: 1e-3,
            config: ModelConfig {
                latent_dim: 32,
                ..saved.config.clone()
            },
            ..saved.clone()
        };
        let err = check_resumed(&saved, &other).unwrap_err();
        assert!(err.contains("learning_rate 0.002, not 0.001"), "{err}");
        assert!(err.contains("config.latent_dim 64, not 32"), "{err}");
        assert!(!err.contains("epochs"), "{err}");
        // f32 options show as typed, and an unset step limit says so.
        let other = TrainOptions {
            dropout_fraction: 0.3,
            max_steps: Some(4),
            ..saved.clone()
        };
        let err = check_resumed(&saved, &other).unwrap_err();
        assert!(err.contains("dropout_fraction 0.5, not 0.3;"), "{err}");
        assert!(err.contains("max_steps unset, not 4"), "{err}");
        // A learning rate an ulp off (as JSON can read one back) is the same rate.
        let close = TrainOptions {
            learning_rate: f64::from_bits(saved.learning_rate.to_bits() + 1),
            ..saved.clone()
        };
        check_resumed(&saved, &close).unwrap();
    }

    #[test]
    fn dropout_depths_follow_their_odds() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            assert_eq!(dropout_depth(&[0.0, 1.0, 0.0], 3, &mut rng), 2);
            let d = dropout_depth(&[], 3, &mut rng);
            assert!((1..=3).contains(&d));
        }
        let mut seen = [0usize; 3];
        let n = 20_000;
        for _ in 0..n {
            seen[dropout_depth(&[1.0, 1.0, 2.0], 3, &mut rng) - 1] += 1;
        }
        for (count, want) in seen.iter().zip([0.25, 0.25, 0.5]) {
            let share = *count as f64 / n as f64;
            assert!((share - want).abs() < 0.015, "{seen:?}");
        }
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_zero() {
        assert!(learning_rate(1.0, 0, 10, 100) < 0.2);
        assert!((learning_rate(1.0, 9, 10, 100) - 1.0).abs() < 1e-12);
        assert!(learning_rate(1.0, 55, 10, 100) < 0.6);
        assert!(learning_rate(1.0, 100, 10, 100) < 1e-9);
    }
}
