//! The decoder's 4×4 transposed convolutions of stride 2 on [`crate::cpu`]'s path, in two forms
//! with the same function: by contributions (one product over the input pixels, then a gather)
//! and by Winograd's minimal filtering (`winograd.rs`).

use rayon::prelude::*;

use super::winograd::{self, Winograd};
use super::{CHUNK_FLOATS, Map, matmul_into};

/// A 4×4 transposed convolution of stride 2 and padding 1, doubling the resolution: one product
/// gives each input pixel's 16 contributions, and each output pixel then sums the four that
/// reach it (output row 2a + py takes input rows a + py − 1 + ty through kernel row
/// 3 − py − 2·ty, ty = 0, 1; columns alike), so no output is written twice.
///
/// The contributions take 16·c_out floats per input pixel, four times the layer's output, so
/// they are computed band by band: at most [`CHUNK_FLOATS`] at a time (three input rows' where
/// those are more), whatever the image's size.
///
/// Layers with [`winograd::MIN_OUT`] output channels or more run as four 2×2 convolutions by
/// Winograd's minimal filtering instead ([`Winograd`]): the same sums with 9/16 of the
/// multiply-adds.
#[derive(Clone, Debug)]
pub(crate) struct Upsample {
    /// `[c_in, (ky, kx, c_out)]`.
    rhs: Vec<f32>,
    /// The layer as four 2×2 convolutions by Winograd's F(2×2, 2×2), where it has
    /// [`winograd::MIN_OUT`] output channels or more.
    pub(super) winograd: Option<Winograd>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

/// The kernel tap (3 − py − 2·ty, 3 − px − 2·tx), as `ky·4 + kx`, through which output pixel
/// (2a + py, 2c + px) takes input pixel (a + py − 1 + ty, c + px − 1 + tx).
pub(super) fn tap(py: usize, px: usize, ty: usize, tx: usize) -> usize {
    (3 - py - 2 * ty) * 4 + 3 - px - 2 * tx
}

impl Upsample {
    /// From burn's layout: `weight` `[c_in, c_out, 4, 4]`, `bias` `[c_out]`.
    pub fn new(weight: &[f32], [c_in, c_out, k, k2]: [usize; 4], bias: Option<Vec<f32>>) -> Self {
        assert!(k == 4 && k2 == 4 && weight.len() == c_in * c_out * 16);
        assert!(c_in > 0 && c_out > 0, "a layer without channels");
        let mut rhs = vec![0.0; weight.len()];
        for (i, per_in) in weight.chunks(c_out * 16).enumerate() {
            for (o, taps) in per_in.chunks(16).enumerate() {
                for (t, &v) in taps.iter().enumerate() {
                    rhs[(i * 16 + t) * c_out + o] = v;
                }
            }
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; c_out]);
        let winograd = (c_out >= winograd::MIN_OUT).then(|| {
            Winograd::new(
                (2, 2),
                [c_in, c_out],
                bias.clone(),
                |phase, ty, tx, i, o| {
                    let (py, px) = (phase / 2, phase % 2);
                    rhs[(i * 16 + tap(py, px, ty, tx)) * c_out + o]
                },
            )
        });
        Self {
            rhs,
            winograd,
            bias,
            c_in,
            c_out,
        }
    }

    /// The layer applied to `x`.
    pub fn forward(&self, x: &Map) -> Map {
        if let Some(winograd) = &self.winograd {
            winograd.forward(x, CHUNK_FLOATS, false)
        } else {
            self.forward_in_bands(x, CHUNK_FLOATS)
        }
    }

    /// [`Self::forward`] with the contributions of bands of input rows (across images: row g
    /// is image g / h's row g % h) computed in turn, each band's product with at most `chunk`
    /// floats where a band of one row allows it. An output row reads its input row and the
    /// rows either side, so the last two rows of contributions are kept for the next band:
    /// none is computed twice.
    pub(super) fn forward_in_bands(&self, x: &Map, chunk: usize) -> Map {
        assert_eq!(x.c, self.c_in);
        let n = self.c_out;
        let (oh, ow) = (2 * x.h, 2 * x.w);
        let mut out = vec![0.0; x.b * oh * ow * n];
        let rows = x.b * x.h;
        let row_floats = x.w * 16 * n;
        let band = (chunk / row_floats.max(1)).saturating_sub(2).max(1);
        // `parts` holds the contributions of input rows [lo, g1); output rows are written for
        // input rows [0, done).
        let (mut parts, mut lo, mut done) = (Vec::new(), 0, 0usize);
        for g0 in (0..rows).step_by(band) {
            let g1 = (g0 + band).min(rows);
            let keep = done.saturating_sub(1);
            parts.drain(..(keep - lo) * row_floats);
            lo = keep;
            let (old, new) = (parts.len(), (g1 - g0) * row_floats);
            parts.reserve(new);
            let lhs = &x.data[g0 * x.w * x.c..g1 * x.w * x.c];
            // Written by the product into spare capacity: the contributions are four times the
            // layer's output, and zero-filling them first only for the product to overwrite
            // them cost a pass over that memory.
            matmul_into(
                &mut parts.spare_capacity_mut()[..new],
                false,
                lhs,
                &self.rhs,
                ((g1 - g0) * x.w, x.c, 16 * n),
            );
            // SAFETY: with `add` false, `matmul_into` wrote all `new` floats after the first `old`.
            unsafe { parts.set_len(old + new) };
            // Input row a needs row a + 1's contributions: the band's last row waits for the
            // next band, unless it is the last of all.
            let end = if g1 == rows { rows } else { g1 - 1 };
            let dst = &mut out[2 * done * ow * n..2 * end * ow * n];
            dst.par_chunks_mut(ow * n).enumerate().for_each(|(i, dst)| {
                let row = 2 * done + i;
                let (b, py, a) = (row / oh, row % 2, (row % oh) / 2);
                self.output_row(
                    dst,
                    &parts,
                    |iy, ix| ((b * x.h + iy - lo) * x.w + ix) * 16,
                    py,
                    a,
                    x,
                );
            });
            done = end;
        }
        Map {
            data: out,
            b: x.b,
            h: oh,
            w: ow,
            c: n,
        }
    }

    /// One output row (phase `py` of input row `a`), from the contributions in `parts`, whose
    /// input pixel (iy, ix) of this image starts at `at(iy, ix)`·c_out.
    fn output_row(
        &self,
        dst: &mut [f32],
        parts: &[f32],
        at: impl Fn(usize, usize) -> usize,
        py: usize,
        a: usize,
        x: &Map,
    ) {
        let n = self.c_out;
        for (xo, pixel) in dst.chunks_mut(n).enumerate() {
            let (px, col) = (xo % 2, xo / 2);
            pixel.copy_from_slice(&self.bias);
            for ty in 0..2 {
                let Some(iy) = (a + py + ty).checked_sub(1).filter(|&v| v < x.h) else {
                    continue;
                };
                for tx in 0..2 {
                    let Some(ix) = (col + px + tx).checked_sub(1).filter(|&v| v < x.w) else {
                        continue;
                    };
                    let tap = tap(py, px, ty, tx);
                    let src = &parts[(at(iy, ix) + tap) * n..][..n];
                    pixel.iter_mut().zip(src).for_each(|(p, v)| *p += v);
                }
            }
        }
    }
}
