//! Latents fitted to the decoder: before quantization, each image's encoder outputs are moved
//! by Adam steps so that the decoder draws them closer to the image. The encoder is trained
//! to be a good inverse of the decoder on average; for one image, a few dozen steps find
//! latents the decoder draws better, and the quantizer then codes those. Each step takes the
//! gradient through the decoder's linear path alone (a cell's latent reaches its own patch
//! through one matrix), so no gradient pass through the network is needed, and every tenth
//! step decodes: in between, the same matrix carries each cell's move to its pixels. The
//! decoder, the codebooks and the format do not change: any rvq reads the archive.

use burn::prelude::*;
use rayon::prelude::*;

use crate::budget::{self, Tile};
use crate::config::ModelConfig;
use crate::cpu::matmul;
use crate::error::Result;
use crate::inference::{crop, paste};
use crate::model::Model;
use crate::quantizer::float_vec;

/// Adam's step size, in the latents' units (their values are of order 1).
const LEARNING_RATE: f32 = 0.003;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// How many steps each decode serves. Between decodes, each pixel is estimated from the last
/// decode plus its cell's move through the linear path (the convolutional branch held as it
/// was): 20 steps with a decode every 10 fit 1,000 CIFAR-10 test images within 0.02 dB of a
/// decode every step, at a tenth of the decodes (docs/MODEL.md, "A decode every ten steps,
/// and tiles").
const DECODE_EVERY: usize = 10;

/// Bytes a fit holds per padded pixel of its pass beside the network's activations, which
/// the memory budget counts with them, so that a fitted pass stays within the budget. In
/// floats: the image, its last decode and the estimate as patches (9), a tile's pixels (3),
/// the mask of visible values (3 bytes, counted as 2 for a float to spare); and per latent
/// value (d / f² a pixel, one for the default model) the decode's input, Adam's two moments,
/// the gradient, the latents decoded last, and a tile's latents as cut out and as turned
/// cell-major (7). On a GPU these are host memory counted against the device's budget all
/// the same: passes only get smaller.
pub(crate) fn bytes_per_pixel(config: &ModelConfig) -> u64 {
    let f2 = (config.grid_factor * config.grid_factor) as u64;
    4 * (14 + 7 * (config.latent_dim as u64).div_ceil(f2))
}

/// `latents` `[b, d, h/f, w/f]` of the padded planar images `values` (`[b][3][h][w]`, values
/// in [0, 1]; image i's own pixels the top-left `visible[i]` = (width, height), the rest
/// padding, which is cropped away on decode and so not fitted) after `steps` Adam steps on
/// each image's squared error, decoded unquantized. Unchanged where `steps` is 0 or the model
/// has no linear path. Passes are planned with the fit's own buffers ([`bytes_per_pixel`])
/// counted in the memory budget beside the network's activations, so an image larger than
/// such a pass is fitted tile by tile (tiles a little smaller than its encode's): each tile's
/// cells with its halo's, its own cells kept.
pub(crate) fn fit_latents(
    model: &Model,
    latents: Tensor<4>,
    values: &[f32],
    visible: &[(usize, usize)],
    steps: usize,
) -> Result<Tensor<4>> {
    fit_decoding_every(model, latents, (values, visible), steps, DECODE_EVERY)
}

/// [`fit_latents`] with a decode every `every` steps.
pub(crate) fn fit_decoding_every(
    model: &Model,
    latents: Tensor<4>,
    (values, visible): (&[f32], &[(usize, usize)]),
    steps: usize,
    every: usize,
) -> Result<Tensor<4>> {
    let [b, d, gh, gw] = latents.dims();
    if steps == 0 || b == 0 {
        return Ok(latents);
    }
    let f = model.config.grid_factor;
    debug_assert_eq!(values.len(), b * 3 * gh * f * gw * f);
    debug_assert_eq!(visible.len(), b);
    let Some(weight) = model.net.linear_decoder() else {
        return Ok(latents);
    };
    let lin = Linear::new(weight, d);
    let fitter = Fitter {
        model,
        lin,
        steps,
        every: every.max(1),
    };
    let device = latents.device();
    let tiles = model.tiles_holding((gh, gw), bytes_per_pixel(&model.config))?;
    if tiles.len() > 1 {
        let mut z = float_vec(latents);
        fitter.in_tiles(&mut z, (values, visible), (gh, gw), &tiles);
        return Ok(Tensor::from_data(
            TensorData::new(z, [b, d, gh, gw]),
            &device,
        ));
    }
    // Cell-major (`[b][gh][gw][d]`): the gradient writes a row of cells per task.
    let mut z = float_vec(latents.permute([0, 2, 3, 1]));
    let pixels = gh * f * gw * f;
    let (per_z, per_image) = (d * gh * gw, 3 * pixels);
    let pass = budget::images_per_pass(
        pixels as u64,
        model.pass_pixels_holding(bytes_per_pixel(&model.config)),
        usize::MAX,
    );
    let grid = Grid { d, f, gh, gw };
    let chunks = z.chunks_mut(pass * per_z);
    for ((z, values), visible) in chunks
        .zip(values.chunks(pass * per_image))
        .zip(visible.chunks(pass))
    {
        fitter.pass(z, (values, visible), &grid);
    }
    Ok(cells_to_latents(z, b, &grid, &device))
}

/// What fits the latents: the model, its linear path, and the schedule.
struct Fitter<'a> {
    model: &'a Model,
    lin: Linear,
    steps: usize,
    every: usize,
}

impl Fitter<'_> {
    /// Fits the cell-major latents `z` of images that the model decodes in one pass.
    fn pass(&self, z: &mut [f32], (values, visible): (&[f32], &[(usize, usize)]), g: &Grid) {
        let n = visible.len();
        let cells = z.len() / g.d;
        let depths = vec![0; cells];
        // Images as each cell's patch, the linear path's rows in order: each step is then two
        // products over every cell.
        let target = to_patches(values, g);
        let mask = visible_mask(visible, g);
        let mut m = vec![0f32; z.len()];
        let mut v = vec![0f32; z.len()];
        let mut grad = vec![0f32; z.len()];
        let mut decoded = Vec::new();
        let mut z0 = vec![0f32; z.len()];
        let mut estimate = vec![0f32; target.len()];
        for t in 1..=self.steps {
            if (t - 1) % self.every == 0 {
                self.model.note_pixels((cells * g.f * g.f) as u64);
                let shape = [n, g.gh, g.gw, g.d];
                // The last decode's patches go before the next decode's activations come.
                drop(std::mem::take(&mut decoded));
                decoded = self.model.decode_patches(z.to_vec(), shape, &depths);
                z0.copy_from_slice(z);
            }
            let images = (&decoded[..], &target[..], &mask[..]);
            gradient(images, (z, &z0), &self.lin, (&mut estimate, &mut grad));
            adam(z, &grad, (&mut m, &mut v), t);
        }
    }

    /// Fits the planar latents `z` (`[b][d][gh][gw]`) of images too large for one pass, tile
    /// by tile: a tile's halo is fitted with it (its pixels count) and then dropped, so a
    /// tile's halo holds its neighbours' cells as fitted where they came first.
    fn in_tiles(
        &self,
        z: &mut [f32],
        (values, visible): (&[f32], &[(usize, usize)]),
        (gh, gw): (usize, usize),
        tiles: &[Tile],
    ) {
        let f = self.model.config.grid_factor;
        let d = z.len() / visible.len() / (gh * gw);
        let (h, w) = (gh * f, gw * f);
        let images = z
            .chunks_exact_mut(d * gh * gw)
            .zip(values.chunks_exact(3 * h * w));
        for ((z, x), &(vw, vh)) in images.zip(visible) {
            for t in tiles {
                let (zh, zw) = (t.outer_rows.len(), t.outer_cols.len());
                let (top, left) = (t.outer_rows.start * f, t.outer_cols.start * f);
                let outer = crop(z, (gh, gw), t.outer_rows.clone(), t.outer_cols.clone());
                let mut cells = transpose(&outer, d, zh * zw);
                let pixels = crop(x, (h, w), top..top + zh * f, left..left + zw * f);
                let seen = (vw.saturating_sub(left), vh.saturating_sub(top));
                let grid = Grid {
                    d,
                    f,
                    gh: zh,
                    gw: zw,
                };
                self.pass(&mut cells, (&pixels, &[seen]), &grid);
                let fitted = transpose(&cells, zh * zw, d);
                let (dy, dx) = (
                    t.rows.start - t.outer_rows.start,
                    t.cols.start - t.outer_cols.start,
                );
                let (th, tw) = (t.rows.len(), t.cols.len());
                let own = crop(&fitted, (zh, zw), dy..dy + th, dx..dx + tw);
                paste(z, (gh, gw), &own, (th, tw), (t.rows.start, t.cols.start));
            }
        }
    }
}

/// `src` of `rows` × `cols` values, row-major, as `cols` × `rows`.
fn transpose(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| src[(i % rows) * cols + i / rows])
        .collect()
}

/// The latent grid's shape: `d` values a cell, cells of `f`×`f` pixels, `gh`×`gw` cells.
struct Grid {
    d: usize,
    f: usize,
    gh: usize,
    gw: usize,
}

/// Cell-major latents of `n` images as the network's `[n, d, gh, gw]`.
fn cells_to_latents(z: Vec<f32>, n: usize, g: &Grid, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(z, [n, g.gh, g.gw, g.d]), device).permute([0, 3, 1, 2])
}

/// The linear path's matrix both ways: `weight` `[3 · f², d]` (what a cell's latent adds to
/// each value of its patch, a row per value) and `transposed` `[d, 3 · f²]`.
struct Linear {
    weight: Vec<f32>,
    transposed: Vec<f32>,
    d: usize,
}

impl Linear {
    fn new(weight: Vec<f32>, d: usize) -> Self {
        let patch = weight.len() / d;
        let transposed = transpose(&weight, patch, d);
        Linear {
            weight,
            transposed,
            d,
        }
    }
}

/// Planar images `[n][3][h][w]` as each cell's patch, cell-major: `[n][gh][gw][3][f][f]`, the
/// order of the linear path's rows.
fn to_patches(planar: &[f32], g: &Grid) -> Vec<f32> {
    let Grid { f, gh, gw, .. } = *g;
    let (h, w, patch) = (gh * f, gw * f, 3 * f * f);
    let mut out = vec![0f32; planar.len()];
    // A row of cells per task: a photograph is one image of hundreds of rows.
    out.par_chunks_mut(gw * patch)
        .enumerate()
        .for_each(|(row, dst)| {
            let (image, gy) = (row / gh, row % gh);
            let src = &planar[image * 3 * h * w..][..3 * h * w];
            for (gx, cell) in dst.chunks_exact_mut(patch).enumerate() {
                for (cy, line) in cell.chunks_exact_mut(f).enumerate() {
                    let (c, py) = (cy / f, cy % f);
                    let at = (c * h + gy * f + py) * w + gx * f;
                    line.copy_from_slice(&src[at..at + f]);
                }
            }
        });
    out
}

/// Whether each value of [`to_patches`]' layout is inside its image's visible size (not
/// padding).
fn visible_mask(visible: &[(usize, usize)], g: &Grid) -> Vec<bool> {
    let Grid { f, gh, gw, .. } = *g;
    let patch = 3 * f * f;
    let mut out = vec![false; visible.len() * gh * gw * patch];
    out.par_chunks_mut(gw * patch)
        .enumerate()
        .for_each(|(row, dst)| {
            let (vw, vh) = visible[row / gh];
            let gy = row % gh;
            for (gx, cell) in dst.chunks_exact_mut(patch).enumerate() {
                for (cy, line) in cell.chunks_exact_mut(f).enumerate() {
                    let inside = gy * f + cy % f < vh;
                    for (px, m) in line.iter_mut().enumerate() {
                        *m = inside && gx * f + px < vw;
                    }
                }
            }
        });
    out
}

/// Each latent value's gradient of the squared error through the linear path, into `grad`
/// (cell-major latents): for a cell, `weightᵀ (estimate − image)` over its patch, padding
/// (`mask` false) counting for nothing. `decoded` (patches, as `target` and `mask`) is the decode of latents
/// `z0`; the estimate of `z` is decoded + `weight (z − z0)`, clamped to [0, 1] as the decoder
/// clamps, written to `estimate`.
fn gradient(
    (decoded, target, mask): (&[f32], &[f32], &[bool]),
    (z, z0): (&[f32], &[f32]),
    lin: &Linear,
    (estimate, grad): (&mut [f32], &mut [f32]),
) {
    let (cells, d) = (z.len() / lin.d, lin.d);
    let patch = target.len() / cells.max(1);
    // The moves since the decode, in `grad` until the gradient overwrites them.
    grad.par_iter_mut()
        .zip(z.par_iter().zip(z0))
        .for_each(|(o, (a, b))| *o = a - b);
    estimate.copy_from_slice(decoded);
    matmul(estimate, true, grad, &lin.transposed, cells, d, patch);
    estimate
        .par_iter_mut()
        .zip(target.par_iter().zip(mask))
        .for_each(|(e, (x, &m))| *e = if m { e.clamp(0.0, 1.0) - x } else { 0.0 });
    matmul(grad, false, estimate, &lin.weight, cells, patch, d);
}

/// One Adam step (`t` from 1) of `z` along `grad`.
fn adam(z: &mut [f32], grad: &[f32], (m, v): (&mut [f32], &mut [f32]), t: usize) {
    let c1 = 1.0 - BETA1.powi(t as i32);
    let c2 = 1.0 - BETA2.powi(t as i32);
    z.par_iter_mut()
        .zip(grad.par_iter())
        .zip(m.par_iter_mut().zip(v.par_iter_mut()))
        .for_each(|((z, &g), (m, v))| {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *z -= LEARNING_RATE * (*m / c1) / ((*v / c2).sqrt() + EPSILON);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One pixel decoded off by e moves each latent value of its cell by e times what that
    /// value adds to the pixel on the linear path, and no other cell; a pixel outside the
    /// visible size moves nothing.
    #[test]
    fn the_gradient_is_the_linear_paths_transpose_at_each_pixel() {
        let g = Grid {
            d: 2,
            f: 2,
            gh: 2,
            gw: 2,
        };
        let patch = 3 * g.f * g.f;
        // weight [patch][d]: value k adds k + 1 + j / 100 to patch value j.
        let weight: Vec<f32> = (0..patch * g.d)
            .map(|i| (i % g.d + 1) as f32 + (i / g.d) as f32 / 100.0)
            .collect();
        let lin = Linear::new(weight, g.d);
        let (h, w) = (g.gh * g.f, g.gw * g.f);
        let values = vec![0.5f32; 3 * h * w];
        let mut decoded = values.clone();
        // Channel 2, pixel (row 3, column 2): cell (1, 1), patch value (2·2 + 1)·2 + 0 = 10.
        decoded[(2 * h + 3) * w + 2] += 0.25;
        let (decoded, target) = (to_patches(&decoded, &g), to_patches(&values, &g));
        let z = vec![0f32; g.d * g.gh * g.gw];
        let mut grad = vec![1f32; z.len()];
        let mut estimate = vec![0f32; target.len()];
        for (visible, moved) in [((4, 4), true), ((4, 3), false)] {
            let mask = visible_mask(&[visible], &g);
            let images = (&decoded[..], &target[..], &mask[..]);
            gradient(images, (&z, &z), &lin, (&mut estimate, &mut grad));
            let cell = (g.gw + 1) * g.d;
            let want: &[f32] = if moved {
                &[0.25 * 1.10, 0.25 * 2.10]
            } else {
                &[0.0, 0.0]
            };
            assert_eq!(&grad[cell..cell + 2], want);
            assert!(grad[..cell].iter().all(|&v| v == 0.0));
        }
    }

    /// Between decodes a cell's pixels are the decode plus its move through the linear path,
    /// clamped to [0, 1]: with the image equal to that estimate the gradient is zero, and one
    /// pixel pushed past 1 counts only up to 1.
    #[test]
    fn between_decodes_a_moved_cells_pixels_are_estimated_through_the_linear_path() {
        let g = Grid {
            d: 2,
            f: 1,
            gh: 1,
            gw: 2,
        };
        // weight [3][2]: latent value k adds k + 1 + j / 10 to channel j.
        let weight: Vec<f32> = (0..3 * g.d)
            .map(|i| (i % g.d + 1) as f32 + (i / g.d) as f32 / 10.0)
            .collect();
        let lin = Linear::new(weight.clone(), g.d);
        // Planar [3][1][2]: cell 0's channels at 0, 2, 4; cell 1's at 1, 3, 5.
        let decoded = [0.5f32, 0.5, 0.5, 0.5, 0.5, 0.9];
        let (z0, z) = ([0f32; 4], [0.0f32, 0.0, 0.01, 0.02]);
        // Cell 1 moved by (0.01, 0.02): each channel by 0.01 (1 + j/10) + 0.02 (2 + j/10).
        let moved: Vec<f32> = (0..3)
            .map(|j| 0.01 * weight[j * 2] + 0.02 * weight[j * 2 + 1])
            .collect();
        let mut image = decoded;
        for j in 0..3 {
            image[2 * j + 1] = (decoded[2 * j + 1] + moved[j]).min(1.0);
        }
        let (decoded, target) = (to_patches(&decoded, &g), to_patches(&image, &g));
        let mask = visible_mask(&[(2, 1)], &g);
        let mut estimate = vec![0f32; target.len()];
        let mut grad = vec![1f32; z.len()];
        let images = (&decoded[..], &target[..], &mask[..]);
        gradient(images, (&z, &z0), &lin, (&mut estimate, &mut grad));
        assert!(grad.iter().all(|v| v.abs() < 1e-6), "{grad:?}");
        // The image one step further out: each channel off by its move, the last no further
        // than 1 (0.9 + 0.11 is clamped).
        let z2 = [0.0f32, 0.0, 0.02, 0.04];
        gradient(images, (&z2, &z0), &lin, (&mut estimate, &mut grad));
        let off = [moved[0], moved[1], 1.0 - image[5]];
        for k in 0..2 {
            let want: f32 = (0..3).map(|j| off[j] * weight[j * 2 + k]).sum();
            assert!(
                (grad[2 + k] - want).abs() < 1e-5,
                "{k}: {} {want}",
                grad[2 + k]
            );
        }
        assert_eq!(&grad[..2], &[0.0, 0.0]);
    }
}
