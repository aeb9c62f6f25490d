//! Training an RVQ-VAE: Adam (or AdamW) on the reconstruction and commitment losses, codebooks
//! learnt by EMA with k-means initialisation and dead-code restarts, quantizer dropout so one
//! model decodes at every depth, an optional moving average of the weights for evaluation,
//! frequent checkpoints and exact resumption.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, ModuleOptimizer};
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
use crate::pca::PatchPca;
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
    /// Peak learning rate of Adam or AdamW (cosine decay to 0 after a short warm-up).
    pub learning_rate: f64,
    /// Weight of the commitment loss ‖z − sg(q)‖².
    pub commitment: f32,
    /// Fraction of batches trained at a random depth per image (quantizer dropout); the
    /// others use every codebook.
    pub dropout_fraction: f32,
    /// Relative odds of depths 1..=n_q in a dropout batch; empty: all depths alike.
    #[serde(default)]
    pub dropout_weights: Vec<f32>,
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
    /// How the linear path starts (ignored by models without one).
    #[serde(default)]
    pub init: Init,
    /// Training images whose patches the PCA of [`Init::Pca`] is fitted on.
    #[serde(default = "default_pca_images")]
    pub pca_images: usize,
    /// A trained model folder whose weights and codebooks start the run (fine-tuning) in
    /// place of the PCA and k-means start; its configuration must be `config`.
    #[serde(default)]
    pub start_from: Option<PathBuf>,
    /// Decoupled weight decay: 0 trains with Adam, a positive value (at most 1) with AdamW,
    /// which decays every trained parameter, biases and the linear path included.
    #[serde(default)]
    pub weight_decay: f32,
    /// Share of the steps, from the first (rounded to whole steps), whose reconstruction loss
    /// is the mean absolute error instead of the mean squared one (0: MSE throughout). Adam's
    /// moments carry over the switch, sized to the L1 gradients, so the steps after it are
    /// smaller for a while.
    #[serde(default)]
    pub l1_fraction: f32,
    /// Per-step decay of an exponential moving average of the weights, which validation and
    /// the finished model then use (with the current codebooks); 0: the last step's weights.
    /// Step t blends with min(decay, (1 + t) / (10 + t)), so the start soon stops counting.
    #[serde(default)]
    pub weight_average: f32,
}

/// How a model's linear path is initialised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// From the principal components of training patches: step 0 is already a linear codec.
    #[default]
    Pca,
    /// burn's default random initialisation, for comparison.
    Random,
}

impl std::str::FromStr for Init {
    type Err = Error;

    /// `pca` or `random`, as the options in a model card spell them.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pca" => Ok(Self::Pca),
            "random" => Ok(Self::Random),
            other => Err(Error::InvalidConfig(format!(
                "initialisation {other:?}: expected pca or random"
            ))),
        }
    }
}

fn default_pca_images() -> usize {
    20_000
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
            dropout_weights: Vec::new(),
            ema_decay: 0.99,
            dead_fraction: 0.1,
            kmeans_images: 1024,
            seed: 0,
            checkpoint_every: 100,
            max_steps: None,
            init: Init::Pca,
            pca_images: default_pca_images(),
            start_from: None,
            weight_decay: 0.0,
            l1_fraction: 0.0,
            weight_average: 0.0,
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
    /// Fingerprint of the model the run started from (fine-tuning), if any: a card names
    /// its parent by fingerprint, never by a folder of the machine that trained it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// Progress reported during training.
#[derive(Clone, Debug)]
pub enum Event {
    /// The linear path was set from a PCA of training patches.
    Pca {
        /// Images whose patches were used.
        images: usize,
        /// MSE per value of the patches rebuilt from the kept components alone.
        truncation_mse: f64,
    },
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
    wall_seconds: f64,
    options: TrainOptions,
    last_validation: Vec<DepthQuality>,
    last_stats: Vec<CodebookStats>,
}

const CHECKPOINT_DIR: &str = "checkpoint";
const OPTIM_FILE: &str = "optim.bpk";
const STATE_FILE: &str = "state.json";
const EMA_FILE: &str = "ema.f32";
/// The checkpoint's subfolder holding the weight average, as a model folder.
const AVERAGE_DIR: &str = "average";

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
        let mut total_steps = steps_per_epoch * opts.epochs;
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
        let q = eval::quality(&self.evaluated(), cfg, valid, &depths, 250, &self.device)?;
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

/// Whether `out` holds a checkpoint that [`Trainer::resume`] can continue.
pub fn has_checkpoint(out: &Path) -> bool {
    checkpoint_dir(out).is_ok()
}

/// Where to resume from: the checkpoint folder, or the previous one when a crash came between
/// retiring it and putting the new one in place.
fn checkpoint_dir(out: &Path) -> Result<PathBuf> {
    [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.old")]
        .iter()
        .map(|name| out.join(name))
        .find(|dir| dir.join(STATE_FILE).is_file())
        .ok_or_else(|| Error::BadData {
            path: out.join(CHECKPOINT_DIR).join(STATE_FILE),
            reason: "no checkpoint to resume from".into(),
        })
}

fn load_ema(dir: &Path, opts: &TrainOptions, codebooks: Vec<f32>) -> Result<EmaCodebooks> {
    let c = &opts.config;
    let path = dir.join(EMA_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    let counts = c.num_codebooks * c.codebook_size;
    let sums = counts * c.latent_dim;
    if bytes.len() != 4 * (counts + sums) {
        return Err(Error::BadData {
            path,
            reason: format!("expected {} bytes of EMA state", 4 * (counts + sums)),
        });
    }
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (counts, sums) = values.split_at(counts);
    EmaCodebooks::from_state(
        c.num_codebooks,
        c.codebook_size,
        c.latent_dim,
        codebooks,
        counts.to_vec(),
        sums.to_vec(),
    )?
    .with_rates(opts.ema_decay, opts.dead_fraction)
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

/// Seeds each codebook by k-means on the residuals the previous ones leave, over the
/// encoder's outputs for the first `kmeans_images` training images.
fn init_codebooks(
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
    let ema = ema_codebooks(opts, books, counts)?;
    net.set_codebooks(codebook_tensor(&ema, ad));
    Ok(Some(ema))
}

/// Latent vectors in one training batch: the unit the EMA counts are kept in.
fn vectors_per_batch(opts: &TrainOptions) -> f32 {
    (opts.batch_size * (32 / opts.config.grid_factor).pow(2)) as f32
}

/// EMA codebooks of `opts`' geometry, decay and dead-code threshold, from entries and counts.
fn ema_codebooks(
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

fn codebook_tensor(ema: &EmaCodebooks, device: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(ema.entries().to_vec(), ema.shape()), device)
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

/// What a failed write or read of the optimizer state at `path` is reported as.
fn optimizer_state_error<E: std::fmt::Debug>(path: &Path) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{e:?}"),
    }
}

/// Refuses to resume a run with options other than those its checkpoint was trained with:
/// the schedule, data order and depths follow from them, so a changed option would not
/// apply, silently. Only what cannot change the weights may differ: the steps between
/// checkpoints, and where the starting model was read from (used at step 0 only).
fn check_resumed(saved: &TrainOptions, asked: &TrainOptions) -> std::result::Result<(), String> {
    // Through JSON text, as the checkpoint's options came, so both sides print their shortest
    // form; a learning rate read back may still be an ulp off, hence the tolerance.
    let flat = |o: &TrainOptions| {
        let text = serde_json::to_string(o).expect("options serialise");
        let value: serde_json::Value = serde_json::from_str(&text).expect("and read back");
        let mut out = Vec::new();
        for (key, v) in value.as_object().expect("options are an object") {
            match v.as_object() {
                Some(inner) => {
                    out.extend(inner.iter().map(|(k, v)| (format!("{key}.{k}"), v.clone())))
                }
                None => out.push((key.clone(), v.clone())),
            }
        }
        out.retain(|(k, _)| k != "checkpoint_every" && k != "start_from");
        out
    };
    let same = |a: &serde_json::Value, b: &serde_json::Value| match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => a == b,
    };
    let shown = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "unset".to_string(),
        v => v.to_string(),
    };
    let asked = flat(asked);
    let differences: Vec<String> = flat(saved)
        .into_iter()
        .filter_map(|(key, was)| {
            let now = asked.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
            match now {
                Some(now) if same(&was, now) => None,
                Some(now) => Some(format!("{key} {}, not {}", shown(&was), shown(now))),
                None => Some(format!("{key} {}", shown(&was))),
            }
        })
        .collect();
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("; "))
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

impl TrainOptions {
    /// Every check below: what a run refuses before doing any work.
    pub fn check(&self) -> Result<()> {
        self.check_dropout()?;
        self.check_ema()?;
        self.check_loss()
    }

    /// Refuses a dropout fraction outside [0, 1] and depth odds that are not one finite,
    /// non-negative weight per codebook with a positive sum.
    pub fn check_dropout(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.dropout_fraction) {
            return Err(Error::InvalidOption(format!(
                "the dropout fraction must lie in [0, 1], not {}",
                self.dropout_fraction
            )));
        }
        let w = &self.dropout_weights;
        if w.is_empty() {
            return Ok(());
        }
        let n_q = self.config.num_codebooks;
        if w.len() != n_q {
            return Err(Error::InvalidOption(format!(
                "{} dropout weights given for {n_q} codebooks: give one per depth 1..={n_q}",
                w.len()
            )));
        }
        if w.iter().any(|v| !v.is_finite() || *v < 0.0) || w.iter().sum::<f32>() <= 0.0 {
            return Err(Error::InvalidOption(
                "dropout weights must be finite, non-negative and not all zero".into(),
            ));
        }
        Ok(())
    }

    /// Refuses a peak learning rate that is negative or not finite (it would train to NaN
    /// weights and save them; 0 is allowed, to measure a start), a weight decay or an L1
    /// share outside [0, 1] and a weight-average decay outside [0, 1).
    pub fn check_loss(&self) -> Result<()> {
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return Err(Error::InvalidOption(format!(
                "the learning rate must be finite and not negative, not {}",
                self.learning_rate
            )));
        }
        if !(0.0..1.0).contains(&self.weight_average) {
            return Err(Error::InvalidOption(format!(
                "the weight average's decay must lie in [0, 1), not {}",
                self.weight_average
            )));
        }
        if !(0.0..=1.0).contains(&self.weight_decay) {
            return Err(Error::InvalidOption(format!(
                "the weight decay must lie in [0, 1], not {}",
                self.weight_decay
            )));
        }
        if !(0.0..=1.0).contains(&self.l1_fraction) {
            return Err(Error::InvalidOption(format!(
                "the L1 share of the steps must lie in [0, 1], not {}",
                self.l1_fraction
            )));
        }
        Ok(())
    }

    /// Refuses an EMA decay outside (0, 1] or a negative dead-code fraction before any work
    /// is done (the codebooks would refuse them only after the PCA and k-means).
    pub fn check_ema(&self) -> Result<()> {
        quantizer::check_rates(self.ema_decay, self.dead_fraction)
    }
}

/// The network and EMA codebooks of the trained model in `dir`, to fine-tune: each entry's
/// running count starts at its fair share of a batch, so none is taken for dead at once.
fn warm_start(
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

/// Loads training data, for the CLI: see [`crate::data::load_training`].
pub fn load_data(path: &Path, valid: usize, seed: u64) -> Result<Splits> {
    crate::data::load_training(path, valid, 64, &mut StdRng::seed_from_u64(seed))
}

#[cfg(test)]
mod tests {
    use super::*;

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
