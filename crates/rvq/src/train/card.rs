//! What a run reports: its progress as events, and the model card of a finished model.

use serde::{Deserialize, Serialize};

use crate::codebooks::CodebookStats;
use crate::config::ModelConfig;
use crate::eval::DepthQuality;

use super::options::TrainOptions;

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
