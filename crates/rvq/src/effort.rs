//! One knob for speed against compression, in the convention of cjxl's `-e` and cwebp's `-m`:
//! a small integer, higher searches harder. Each level names a beam width, a refinement, a
//! rate search and how many steps fit the latents to the decoder; docs/BENCHMARKS.md ("The
//! effort ladder") measures what each costs and gives.

use crate::error::{Error, Result};
use crate::rate::RateSearch;

/// Fitting steps of the highest effort: on 1,000 CIFAR-10 test images at 8 codebooks, 5, 10,
/// 20 and 40 steps gained 0.22, 0.33, 0.37 and 0.32 dB (docs/MODEL.md, "Latents fitted to the
/// decoder").
const FIT_STEPS: usize = 20;

/// How hard the encoder searches, from [`Effort::FASTEST`] to [`Effort::BEST`]. Archives of
/// every effort decode alike: only the indices chosen differ.
///
/// | level | beam | refine | rate search | fit steps |
/// |---|---|---|---|---|
/// | 0 | 1 (greedy) | 1 (none) | latent | 0 |
/// | 1 | 2 | 1 | latent | 0 |
/// | 2 | 4 | 1 | latent | 0 |
/// | 3 | 4 | 2 | latent | 0 |
/// | 4 (default) | 4 | 4 | linear | 0 |
/// | 5 | 8 | 4 | decoded | 20 |
///
/// The rate search matters only for a quality or PSNR target (a fixed depth has none).
/// Refinement measures its candidates as the rate search measures depths: by decoding each
/// with `decoded`, through the decoder's linear path otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Effort(u8);

impl Effort {
    /// Greedy residual search, depths chosen in the latent space, no refinement.
    pub const FASTEST: Effort = Effort(0);
    /// The widest search: latents fitted to the decoder, a beam of 8 and four candidates per
    /// cell.
    pub const BEST: Effort = Effort(5);

    /// Effort `level`, 0 ..= 5.
    pub fn new(level: u8) -> Result<Self> {
        if level > Self::BEST.0 {
            return Err(Error::InvalidEffort {
                level,
                max: Self::BEST.0,
            });
        }
        Ok(Self(level))
    }

    /// The level, 0 ..= 5.
    pub fn level(self) -> u8 {
        self.0
    }

    /// Beam width of the residual search (see [`crate::EncodeOptions::beam`]).
    pub fn beam(self) -> usize {
        [1, 2, 4, 4, 4, 8][self.0 as usize]
    }

    /// Candidates per cell that refinement decodes (1: none; [`crate::EncodeOptions::refine`]).
    pub fn refine(self) -> usize {
        [1, 1, 1, 2, 4, 4][self.0 as usize]
    }

    /// Adam steps that fit each image's latents to the decoder before quantization (0: none;
    /// [`crate::EncodeOptions::fit_steps`]).
    pub fn fit_steps(self) -> usize {
        [0, 0, 0, 0, 0, FIT_STEPS][self.0 as usize]
    }

    /// How rate control measures each cell's error.
    pub fn rate_search(self) -> RateSearch {
        match self.0 {
            0..=3 => RateSearch::Latent,
            4 => RateSearch::Linear,
            _ => RateSearch::Decoded,
        }
    }
}

impl Default for Effort {
    /// Level 4: beam 4, four candidates per cell, depths chosen in the latent space and checked
    /// through the linear path, each cell written with the path the beam found closest at its
    /// depth; at most four decodes of each batch for a quality target, at most three at a fixed depth.
    /// docs/BENCHMARKS.md ("The effort ladder") measures it against the searches before it.
    fn default() -> Self {
        Self(4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_level_searches_at_least_as_hard_as_the_one_below() {
        let levels: Vec<Effort> = (0..=Effort::BEST.level())
            .map(|l| Effort::new(l).unwrap())
            .collect();
        // Decodes a rate search costs: none, one, one per depth.
        let cost = |e: Effort| match e.rate_search() {
            RateSearch::Latent => 0,
            RateSearch::Linear => 1,
            RateSearch::Decoded => 2,
        };
        for w in levels.windows(2) {
            let (lo, hi) = (w[0], w[1]);
            assert!(
                hi.beam() >= lo.beam()
                    && hi.refine() >= lo.refine()
                    && hi.fit_steps() >= lo.fit_steps(),
                "{lo:?} {hi:?}"
            );
            assert!(cost(hi) >= cost(lo), "{lo:?} {hi:?}");
            assert_ne!(
                (lo.beam(), lo.refine(), cost(lo), lo.fit_steps()),
                (hi.beam(), hi.refine(), cost(hi), hi.fit_steps()),
                "two levels search alike"
            );
        }
        assert_eq!(Effort::FASTEST.beam(), 1);
        assert_eq!(Effort::FASTEST.refine(), 1);
        assert_eq!(Effort::default().fit_steps(), 0);
        let err = Effort::new(6).unwrap_err().to_string();
        assert_eq!(err, "effort 6 is outside 0..=5");
    }
}
