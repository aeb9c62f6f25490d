//! Model configuration: the architecture and quantizer geometry, saved beside the weights.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use rvq_archive::{CODEBOOK_COUNTS, CODEBOOK_SIZES, GRID_FACTORS, LATENT_DIMS};

/// Largest codebook size the archive format can index (16 bits per index).
pub const MAX_CODEBOOK_SIZE: usize = *CODEBOOK_SIZES.end() as usize;
/// Largest number of residual codebooks.
pub const MAX_CODEBOOKS: usize = *CODEBOOK_COUNTS.end() as usize;

/// The architecture and quantizer geometry of an RVQ-VAE.
///
/// Stored as `config.json` beside the weights; reading a model checks the weights against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Latent channels per grid cell.
    pub latent_dim: usize,
    /// Entries per codebook.
    pub codebook_size: usize,
    /// Number of residual codebooks (0 when `quantize` is false).
    pub num_codebooks: usize,
    /// Downsampling from image to latent grid: 8 (32×32 → 4×4) or 4 (32×32 → 8×8).
    pub grid_factor: usize,
    /// Channel widths of the strided convolution stages, outermost first.
    pub channels: Vec<usize>,
    /// Residual blocks at the latent resolution on each side.
    pub res_blocks: usize,
    /// Hidden channels inside each residual block.
    pub res_channels: usize,
    /// False for a plain autoencoder (the study's baseline): no codebooks, no indices.
    pub quantize: bool,
    /// A linear patch projection under the convolutional encoder and decoder (see
    /// the network); absent from configurations written before it existed.
    #[serde(default)]
    pub linear_path: bool,
    /// The decoder's convolutional branch is told each cell's depth (how many codebooks its
    /// vector sums), so one network can decode a coarse cell differently from a fine one;
    /// absent from configurations written before it existed.
    #[serde(default)]
    pub depth_input: bool,
    /// How the decoder's convolutional branch doubles its resolution; absent from
    /// configurations written before there was a choice (transposed convolutions).
    #[serde(default)]
    pub upsample: Upsample,
    /// Residual blocks after each of the decoder's upsampling stages but the last (at 8×8
    /// and 16×16 for the default grid); absent from configurations written before them.
    #[serde(default)]
    pub up_res_blocks: usize,
}

/// How the decoder's convolutional branch doubles its resolution at each stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Upsample {
    /// A 4×4 transposed convolution of stride 2 (the study's decoder).
    #[default]
    Transposed,
    /// A 3×3 convolution to four times the channels, then a pixel shuffle by 2.
    Shuffle,
}

impl std::str::FromStr for Upsample {
    type Err = Error;

    /// `transposed` or `shuffle`, as `config.json` spells them.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "transposed" => Ok(Self::Transposed),
            "shuffle" => Ok(Self::Shuffle),
            other => Err(Error::InvalidConfig(format!(
                "upsampling {other:?}: expected transposed or shuffle"
            ))),
        }
    }
}

impl Default for ModelConfig {
    /// The shipped default: d = 64, k = 1024, 8 codebooks, 4×4 grid on 32×32 images.
    fn default() -> Self {
        Self {
            latent_dim: 64,
            codebook_size: 1024,
            num_codebooks: 8,
            grid_factor: 8,
            channels: vec![64, 128, 256],
            res_blocks: 2,
            res_channels: 64,
            quantize: true,
            linear_path: true,
            depth_input: false,
            upsample: Upsample::Transposed,
            up_res_blocks: 0,
        }
    }
}

impl ModelConfig {
    /// Checks every field against the ranges the model and the archive format support.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidConfig(msg));
        // The archive format's ranges are the model's: every model's archives must be writable.
        let (lo, hi) = (*LATENT_DIMS.start() as usize, *LATENT_DIMS.end() as usize);
        if !(lo..=hi).contains(&self.latent_dim) {
            return bad(format!(
                "latent_dim {} is outside {lo}..={hi}",
                self.latent_dim
            ));
        }
        if !GRID_FACTORS.iter().any(|&f| f as usize == self.grid_factor) {
            return bad(format!("grid_factor {} must be 8 or 4", self.grid_factor));
        }
        let stages = self.stages();
        if self.channels.len() != 3 {
            return bad(format!(
                "channels must list 3 widths (got {})",
                self.channels.len()
            ));
        }
        if self.channels.iter().any(|&c| c == 0 || c > 4096) {
            return bad("channel widths must be in 1..=4096".into());
        }
        if stages == 0
            || !(1..=4096).contains(&self.res_channels)
            || self.res_blocks > 16
            || self.up_res_blocks > 16
        {
            return bad(
                "res_channels must be in 1..=4096, res_blocks and up_res_blocks at most 16".into(),
            );
        }
        if self.quantize {
            if !u32::try_from(self.codebook_size).is_ok_and(|k| CODEBOOK_SIZES.contains(&k)) {
                return bad(format!(
                    "codebook_size {} is outside {}..={MAX_CODEBOOK_SIZE}",
                    self.codebook_size,
                    CODEBOOK_SIZES.start()
                ));
            }
            if !u32::try_from(self.num_codebooks).is_ok_and(|n| CODEBOOK_COUNTS.contains(&n)) {
                return bad(format!(
                    "num_codebooks {} is outside {}..={MAX_CODEBOOKS}",
                    self.num_codebooks,
                    CODEBOOK_COUNTS.start()
                ));
            }
        } else if self.num_codebooks != 0 {
            return bad("a plain autoencoder (quantize = false) has num_codebooks = 0".into());
        } else if self.depth_input {
            return bad("a plain autoencoder (quantize = false) has no depths to input".into());
        }
        Ok(())
    }

    /// Number of stride-2 stages: log2 of the grid factor.
    pub fn stages(&self) -> usize {
        self.grid_factor.trailing_zeros() as usize
    }

    /// The channel widths actually used, outermost first: the last `stages()` of `channels`.
    pub fn stage_channels(&self) -> &[usize] {
        &self.channels[self.channels.len() - self.stages()..]
    }

    /// The codebook geometry an archive's header records for this model.
    pub fn geometry(&self) -> rvq_archive::Geometry {
        rvq_archive::Geometry {
            latent_dim: self.latent_dim as u32,
            codebook_size: self.codebook_size as u32,
            num_codebooks: self.num_codebooks as u32,
            grid_factor: self.grid_factor as u8,
        }
    }

    /// Bits one codebook index takes: ceil(log2 k).
    pub fn bits_per_index(&self) -> u32 {
        bits_per_index(self.codebook_size)
    }

    /// Bits per image of `width`×`height` pixels when `m` codebooks are used.
    pub fn bits_per_image(&self, width: usize, height: usize, m: usize) -> u64 {
        let cells = width.div_ceil(self.grid_factor) * height.div_ceil(self.grid_factor);
        cells as u64 * m as u64 * self.bits_per_index() as u64
    }
}

/// ceil(log2 k) for k ≥ 2: the archive format's index width ([`rvq_archive::bits_per_index`]).
pub fn bits_per_index(k: usize) -> u32 {
    rvq_archive::bits_per_index(u32::try_from(k).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_index_is_ceil_log2() {
        assert_eq!(bits_per_index(2), 1);
        assert_eq!(bits_per_index(3), 2);
        assert_eq!(bits_per_index(1024), 10);
        assert_eq!(bits_per_index(1025), 11);
        assert_eq!(bits_per_index(65_536), 16);
    }

    #[test]
    fn default_config_is_valid_and_costs_1280_bits() {
        let c = ModelConfig::default();
        c.validate().unwrap();
        assert_eq!(c.bits_per_image(32, 32, 8), 1280);
        assert_eq!(c.bits_per_image(32, 32, 1), 160);
        assert_eq!(c.stage_channels(), &[64, 128, 256]);
    }

    #[test]
    fn out_of_range_configs_are_refused() {
        let mut c = ModelConfig {
            codebook_size: 1,
            ..ModelConfig::default()
        };
        assert!(c.validate().is_err());
        c.codebook_size = 65_537;
        assert!(c.validate().is_err());
        c.codebook_size = 16;
        c.num_codebooks = 65;
        assert!(c.validate().is_err());
        c.num_codebooks = 4;
        c.grid_factor = 2;
        assert!(c.validate().is_err());
        c.grid_factor = 4;
        c.validate().unwrap();
        assert_eq!(c.stage_channels(), &[128, 256]);
        // A plain autoencoder has no depths to take; at most 16 blocks per upsampling stage.
        let bad = ModelConfig {
            quantize: false,
            num_codebooks: 0,
            depth_input: true,
            ..ModelConfig::default()
        };
        assert!(bad.validate().is_err());
        c.up_res_blocks = 17;
        assert!(c.validate().is_err());
        assert_eq!("shuffle".parse::<Upsample>().unwrap(), Upsample::Shuffle);
        assert_eq!(
            "transposed".parse::<Upsample>().unwrap(),
            Upsample::Transposed
        );
        assert!("Shuffle".parse::<Upsample>().is_err());
    }
}
