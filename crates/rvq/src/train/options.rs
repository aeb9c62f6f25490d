//! How to train: the options of a run, their checks, and which of them a resumed run may
//! change.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{Error, Result};

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

pub(super) fn default_pca_images() -> usize {
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

/// Refuses to resume a run with options other than those its checkpoint was trained with:
/// the schedule, data order and depths follow from them, so a changed option would not
/// apply, silently. Only what cannot change the weights may differ: the steps between
/// checkpoints, and where the starting model was read from (used at step 0 only).
pub(super) fn check_resumed(
    saved: &TrainOptions,
    asked: &TrainOptions,
) -> std::result::Result<(), String> {
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
        crate::codebooks::check_rates(self.ema_decay, self.dead_fraction)
    }
}
