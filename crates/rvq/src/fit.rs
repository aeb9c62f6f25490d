//! Latents fitted to the decoder: before quantization, each image's encoder outputs are moved
//! by Adam steps so that the decoder draws them closer to the image. The encoder is trained
//! to be a good inverse of the decoder on average; for one image, a few dozen steps find
//! latents the decoder draws better, and the quantizer then codes those. Each step decodes
//! once and takes the gradient through the decoder's linear path alone (a cell's latent
//! reaches its own patch through one matrix), so no gradient pass through the network is
//! needed. The decoder, the codebooks and the format do not change: any rvq reads the
//! archive.

use burn::prelude::*;
use rayon::prelude::*;

use crate::error::Result;
use crate::model::Model;
use crate::quantizer::float_vec;

/// Adam's step size, in the latents' units (their values are of order 1).
const LEARNING_RATE: f32 = 0.003;
const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPSILON: f32 = 1e-8;

/// `latents` `[b, d, h/f, w/f]` of the padded planar images `values` (`[b][3][h][w]`, values
/// in [0, 1]; image i's own pixels the top-left `visible[i]` = (width, height), the rest
/// padding, which is cropped away on decode and so not fitted) after `steps` Adam steps on
/// each image's squared error, decoded unquantized. Unchanged where `steps` is 0, the model
/// has no linear path, or an image does not fit one pass of the memory budget (it is encoded
/// in tiles, and a step's decode would have to be tiled too).
pub(crate) fn fit_latents(
    model: &Model,
    latents: Tensor<4>,
    values: &[f32],
    visible: &[(usize, usize)],
    steps: usize,
) -> Result<Tensor<4>> {
    let [b, d, gh, gw] = latents.dims();
    if steps == 0 || b == 0 || model.tiles((gh, gw))?.len() > 1 {
        return Ok(latents);
    }
    let f = model.config.grid_factor;
    let (h, w) = (gh * f, gw * f);
    debug_assert_eq!(values.len(), b * 3 * h * w);
    debug_assert_eq!(visible.len(), b);
    let Some(weight) = model.net.linear_decoder() else {
        return Ok(latents);
    };
    // Row k: what latent value k adds to each value of the patch, so that each dot product
    // reads one contiguous row.
    let patch = weight.len() / d;
    let weight: Vec<f32> = (0..d * patch)
        .map(|i| weight[(i % patch) * d + i / patch])
        .collect();
    let device = latents.device();
    // Cell-major (`[b][gh][gw][d]`): the gradient writes a row of cells per task.
    let mut z = float_vec(latents.permute([0, 2, 3, 1]));
    let per_z = d * gh * gw;
    let per_image = 3 * h * w;
    let pass = model.images_per_pass((h * w) as u64, usize::MAX).max(1);
    let depths = vec![0; pass * gh * gw];
    let grid = Grid { d, f, gh, gw };
    let chunks = z.chunks_mut(pass * per_z);
    for ((z, values), visible) in chunks
        .zip(values.chunks(pass * per_image))
        .zip(visible.chunks(pass))
    {
        let n = z.len() / per_z;
        let mut m = vec![0f32; z.len()];
        let mut v = vec![0f32; z.len()];
        let mut grad = vec![0f32; z.len()];
        for t in 1..=steps {
            let x = cells_to_latents(z.to_vec(), n, &grid, &device);
            let y = model.decode_pass(x, &depths[..n * gh * gw]);
            gradient((&y, values, visible), &weight, &grid, &mut grad);
            adam(z, &grad, (&mut m, &mut v), t);
        }
    }
    Ok(cells_to_latents(z, b, &grid, &device))
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

/// Each latent value's gradient of the squared error through the linear path: for a cell,
/// `weightᵀ (decoded − image)` over its patch (`weight` `[d, 3 · f²]`, the linear path's
/// matrix transposed), pixels outside each image's visible size counting for nothing.
/// Latents cell-major, images planar.
fn gradient(
    (decoded, values, visible): (&[f32], &[f32], &[(usize, usize)]),
    weight: &[f32],
    g: &Grid,
    grad: &mut [f32],
) {
    let Grid { d, f, gh, gw } = *g;
    let (h, w) = (gh * f, gw * f);
    let patch = 3 * f * f;
    // A row of cells per task: a photograph is one image of hundreds of rows.
    grad.par_chunks_mut(gw * d).enumerate().for_each_init(
        || vec![0f32; patch],
        |r, (row, out)| {
            let (image, gy) = (row / gh, row % gh);
            let (vw, vh) = visible[image];
            let y = &decoded[image * 3 * h * w..][..3 * h * w];
            let x = &values[image * 3 * h * w..][..3 * h * w];
            for (gx, cell) in out.chunks_exact_mut(d).enumerate() {
                for c in 0..3 {
                    for py in 0..f {
                        let at = (c * h + gy * f + py) * w + gx * f;
                        let inside = gy * f + py < vh;
                        for px in 0..f {
                            r[(c * f + py) * f + px] = if inside && gx * f + px < vw {
                                y[at + px] - x[at + px]
                            } else {
                                0.0
                            };
                        }
                    }
                }
                for (gk, row) in cell.iter_mut().zip(weight.chunks_exact(patch)) {
                    *gk = dot(row, r);
                }
            }
        },
    );
}

/// `a · b` in eight running sums, which the compiler keeps in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut sums = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
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
        // weight [d][patch]: value k adds k + 1 + j / 100 to patch value j.
        let weight: Vec<f32> = (0..g.d * patch)
            .map(|i| (i / patch + 1) as f32 + (i % patch) as f32 / 100.0)
            .collect();
        let (h, w) = (g.gh * g.f, g.gw * g.f);
        let values = vec![0.5f32; 3 * h * w];
        let mut decoded = values.clone();
        // Channel 2, pixel (row 3, column 2): cell (1, 1), patch value (2·2 + 1)·2 + 0 = 10.
        decoded[(2 * h + 3) * w + 2] += 0.25;
        let mut grad = vec![1f32; g.d * g.gh * g.gw];
        gradient((&decoded, &values, &[(4, 4)]), &weight, &g, &mut grad);
        let cell = (g.gw + 1) * g.d;
        assert_eq!(&grad[cell..cell + 2], &[0.25 * 1.10, 0.25 * 2.10]);
        assert!(grad[..cell].iter().all(|&v| v == 0.0));
        gradient((&decoded, &values, &[(4, 3)]), &weight, &g, &mut grad);
        assert!(grad.iter().all(|&v| v == 0.0));
    }
}
