//! Checkpoints of a run: where they live, the state they keep beside the weights, and reading
//! them back.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codebooks::{CodebookStats, EmaCodebooks};
use crate::error::{Error, Result};
use crate::eval::DepthQuality;

use super::options::TrainOptions;

#[derive(Serialize, Deserialize)]
pub(super) struct CheckpointState {
    pub(super) step: usize,
    pub(super) wall_seconds: f64,
    pub(super) options: TrainOptions,
    pub(super) last_validation: Vec<DepthQuality>,
    pub(super) last_stats: Vec<CodebookStats>,
}

pub(super) const CHECKPOINT_DIR: &str = "checkpoint";

pub(super) const OPTIM_FILE: &str = "optim.bpk";

pub(super) const STATE_FILE: &str = "state.json";

pub(super) const EMA_FILE: &str = "ema.f32";

/// The checkpoint's subfolder holding the weight average, as a model folder.
pub(super) const AVERAGE_DIR: &str = "average";

/// What a run writes directly in its folder (the model's three files and the checkpoint
/// folder, with the one it retires): a new run replaces any of them, so the binary refuses to
/// start one over them unless forced.
pub const RUN_FILES: [&str; 6] = [
    crate::model::WEIGHTS_FILE,
    crate::model::CONFIG_FILE,
    crate::model::CARD_FILE,
    CHECKPOINT_DIR,
    "checkpoint.old",
    "checkpoint.new",
];

/// Refuses an `out/checkpoint` or `out/checkpoint.old` that holds no checkpoint (no
/// `state.json`): a run retires and deletes the checkpoint folders it finds there, and must
/// not delete a folder of someone else's files. (`checkpoint.new`, which a run writes before
/// its `state.json` and deletes when a crash left it half written, is refused unless forced,
/// as [`RUN_FILES`].)
pub fn check_checkpoint_replaceable(out: &Path) -> Result<()> {
    for name in [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.old")] {
        let dir = out.join(name);
        if dir.exists() && !dir.join(STATE_FILE).is_file() {
            return Err(Error::BadData {
                path: dir,
                reason: format!(
                    "holds no checkpoint ({STATE_FILE} missing), and a run would replace it; move it away or train into another folder"
                ),
            });
        }
    }
    Ok(())
}

/// Whether `out` holds a checkpoint that [`super::Trainer::resume`] can continue.
pub fn has_checkpoint(out: &Path) -> bool {
    checkpoint_dir(out).is_ok()
}

/// Where to resume from: the checkpoint folder, or the previous one when a crash came between
/// retiring it and putting the new one in place.
pub(super) fn checkpoint_dir(out: &Path) -> Result<PathBuf> {
    [CHECKPOINT_DIR.to_string(), format!("{CHECKPOINT_DIR}.old")]
        .iter()
        .map(|name| out.join(name))
        .find(|dir| dir.join(STATE_FILE).is_file())
        .ok_or_else(|| Error::BadData {
            path: out.join(CHECKPOINT_DIR).join(STATE_FILE),
            reason: "no checkpoint to resume from".into(),
        })
}

pub(super) fn load_ema(
    dir: &Path,
    opts: &TrainOptions,
    codebooks: Vec<f32>,
) -> Result<EmaCodebooks> {
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

pub(super) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

/// What a failed write or read of the optimizer state at `path` is reported as.
pub(super) fn optimizer_state_error<E: std::fmt::Debug>(
    path: &Path,
) -> impl FnOnce(E) -> Error + '_ {
    move |e| Error::Checkpoint {
        path: path.to_path_buf(),
        reason: format!("{e:?}"),
    }
}
