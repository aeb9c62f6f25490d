//! Pixel errors estimated through the decoder's linear path: from one decode, the error of
//! many variants of each cell's indices at once.
//!
//! On a model with the linear path (docs/MODEL.md), a cell's entries reach its own f×f patch
//! through a 1×1 convolution and a pixel shuffle: what a change of entries moves the patch by
//! is, on that path, the difference of the entries as the path draws them
//! ([`Model::drawn_books`]). The convolutional branch moves the patch too, and its
//! neighbours', and those moves are left out; the estimate is exact for the variant that was
//! decoded. The decode it starts from is clamped to [0, 1] already, so a pixel the network
//! drove past 0 or 1 is estimated to move off the bound at once, where the decoder would hold
//! it there until the move outweighed the excess: a bias in saturated regions only. Rate control reads each depth of a cell this way ([`crate::RateSearch::Linear`]),
//! and refinement each candidate entry, instead of decoding every variant.

use rayon::prelude::*;

use crate::error::Result;
use crate::image_io::{Rgb, to_u8};
use crate::model::Model;
use crate::quantizer::EncodedBatch;

/// A model's codebooks as its linear path draws them ([`Model::drawn_books`]), entry by entry.
pub(crate) struct Drawing<'a> {
    values: &'a [f32],
    k: usize,
    /// Values in a cell's patch (3 · f²).
    pub patch: usize,
}

impl<'a> Drawing<'a> {
    /// `model`'s drawing; `None` without the linear path.
    pub fn of(model: &'a Model) -> Option<Self> {
        let f = model.config.grid_factor;
        Some(Self {
            values: model.drawn_books()?,
            k: model.config.codebook_size,
            patch: 3 * f * f,
        })
    }

    /// What entry `e` of level `level` adds to a cell's patch on the linear path.
    pub fn entry(&self, level: usize, e: u32) -> &'a [f32] {
        &self.values[(level * self.k + e as usize) * self.patch..][..self.patch]
    }
}

/// Errors of one decode and of its variants, per image, cell-major.
pub(crate) struct Estimates {
    /// `[cell · variants + v]`: the estimated squared error (values on [0, 1], before
    /// rounding) of variant v of the cell.
    pub variants: Vec<Vec<f64>>,
    /// `[cell]`: the decode's own squared error per cell, rounded to 8 bits as written.
    pub written: Vec<Vec<f64>>,
}

/// Decodes `encoded` (each cell at its `depths`, or every cell at `m`) once and estimates, for
/// every cell, the error of `variants` variants of it: `shift(image, cell, buffer, scratch)`
/// fills `buffer` (`variants × 3·f²`, channels in pixel-unshuffle order) with how far each
/// variant moves the cell's patch through the linear path (`scratch` is its own, kept from
/// cell to cell on each thread). Each estimated value is clamped to [0, 1] as the decoder
/// clamps; pixels outside an image count for nothing.
pub(crate) fn estimate<F>(
    model: &Model,
    originals: &[&Rgb],
    (encoded, depths, m): (&EncodedBatch, Option<&[Vec<u8>]>, usize),
    variants: usize,
    shift: F,
) -> Result<Estimates>
where
    F: Fn(usize, usize, &mut [f32], &mut Vec<f32>) + Sync,
{
    // Rate control asks for one variant per depth and refinement for two or more.
    assert!(variants > 0, "an estimate of no variants");
    let grid = encoded.grid;
    let f = model.config.grid_factor;
    let patch = 3 * f * f;
    let gw = grid.1;
    let cells = grid.0 * gw;
    let mut out = Estimates {
        variants: vec![vec![0.0; cells * variants]; originals.len()],
        written: vec![vec![0.0; cells]; originals.len()],
    };
    model.decode_regions(&encoded.indices, depths, grid, m, &mut |r, y| {
        let img = originals[r.image];
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (rows, cols) = r.visible(w, h);
        if rows == 0 || cols == 0 {
            return;
        }
        // A row of cells per task: a large image's region is hundreds of thousands of cells.
        let (gy0, gy1) = (r.top / f, (r.top + rows - 1) / f);
        let estimates = out.variants[r.image][gy0 * gw * variants..(gy1 + 1) * gw * variants]
            .par_chunks_mut(gw * variants);
        let written = out.written[r.image][gy0 * gw..(gy1 + 1) * gw].par_chunks_mut(gw);
        let scratch = || (vec![0f32; variants * patch], Vec::new());
        let each = estimates.zip(written).enumerate();
        each.for_each_init(scratch, |(moves, kept), (i, (estimates, written))| {
            let gy = gy0 + i;
            for gx in r.left / f..=(r.left + cols - 1) / f {
                let cell = gy * gw + gx;
                shift(r.image, cell, moves, kept);
                let errors = &mut estimates[gx * variants..][..variants];
                let written = &mut written[gx];
                let ys = (gy * f).max(r.top)..((gy + 1) * f).min(r.top + rows);
                for py in ys {
                    let xs = (gx * f).max(r.left)..((gx + 1) * f).min(r.left + cols);
                    for px in xs {
                        for c in 0..3 {
                            let v = y[(c * r.height + py - r.top) * r.width + px - r.left];
                            let p = img.pixels()[(py * w + px) * 3 + c];
                            let e8 = (f64::from(to_u8(v)) - f64::from(p)) / 255.0;
                            *written += e8 * e8;
                            let p = f32::from(p) / 255.0;
                            let j = (c * f + py % f) * f + px % f;
                            for (e, s) in errors.iter_mut().zip(moves.chunks_exact(patch)) {
                                let d = (v + s[j]).clamp(0.0, 1.0) - p;
                                *e += f64::from(d * d);
                            }
                        }
                    }
                }
            }
        });
    })?;
    Ok(out)
}
