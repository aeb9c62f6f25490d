//! Winograd's minimal filtering, F(2×2, r×r), for [`crate::cpu`]'s convolutions: a 3×3
//! convolution of stride 1 (r = 3) and each output phase of a 4×4 transposed convolution of
//! stride 2 (four 2×2 convolutions, r = 2).
//!
//! Each tile of 2×2 outputs is computed from a patch of (r + 1)² input pixels: the patch is
//! transformed (`Bᵀ d B`, sums and differences), multiplied point by point with the
//! transformed kernel (`G g Gᵀ`, once, when the layer is built), and transformed back
//! (`Aᵀ m A`). The products over channels are the work: (r + 1)² per tile where the direct
//! sums take 4·r², so 16 against 36 for a 3×3 kernel and 9 against 16 for 2×2 (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). With these small tiles
//! the transforms' coefficients are 0, ±1 and ±½, and the results stay within float rounding
//! of the direct sums (`cpu/tests.rs` holds them to the definitions).

use gemm::Parallelism as Par;
use rayon::prelude::*;

use super::{CHUNK_FLOATS, Map, product};

/// Output channels from which a layer is computed by Winograd's method. Its products have
/// `c_out` columns each: the decoder's last layer's 3 leave the product kernels mostly idle, and
/// that layer took 2.5 ms a group of 32 images by Winograd against 0.53 ms by its
/// contributions' one product of 48 columns (docs/BENCHMARKS.md, "Winograd").
pub(super) const MIN_OUT: usize = 16;

/// The most floats of patches a thread transforms for one product (1 MiB): a band is cut so
/// that one point's patches fit, and each thread keeps its buffer between calls, so what stays
/// is this much per thread that computes products.
const SLAB_FLOATS: usize = CHUNK_FLOATS / 16;

thread_local! {
    /// Each thread's buffer of one point's transformed patches, kept between products (its
    /// contents are stale: every element is written before its product reads it).
    pub(super) static SLAB: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// One transform's tables, one dimension at a time: each row's nonzero terms as (index, factor).
struct Tables {
    /// Bᵀ: transformed patch point u from patch pixels.
    input: &'static [&'static [(usize, f32)]],
    /// G: transformed kernel point u from kernel taps (r of them).
    kernel: &'static [&'static [(usize, f32)]],
    /// Aᵀ: output a of the tile from transformed points.
    output: [&'static [(usize, f32)]; 2],
}

/// F(2, 2).
const F22: Tables = Tables {
    input: &[&[(0, 1.0), (1, -1.0)], &[(1, 1.0)], &[(2, 1.0), (1, -1.0)]],
    kernel: &[&[(0, 1.0)], &[(0, 1.0), (1, 1.0)], &[(1, 1.0)]],
    output: [&[(0, 1.0), (1, 1.0)], &[(1, 1.0), (2, 1.0)]],
};

/// F(2, 3).
const F23: Tables = Tables {
    input: &[
        &[(0, 1.0), (2, -1.0)],
        &[(1, 1.0), (2, 1.0)],
        &[(2, 1.0), (1, -1.0)],
        &[(1, 1.0), (3, -1.0)],
    ],
    kernel: &[
        &[(0, 1.0)],
        &[(0, 0.5), (1, 0.5), (2, 0.5)],
        &[(0, 0.5), (1, -0.5), (2, 0.5)],
        &[(2, 1.0)],
    ],
    output: [
        &[(0, 1.0), (1, 1.0), (2, 1.0)],
        &[(1, 1.0), (2, -1.0), (3, -1.0)],
    ],
};

/// A layer as `s²` correlations of an r×r kernel with the input ("phases"): output pixel
/// (s·a + py, s·c + px) is phase (py, px)'s output (a, c), the sum over taps (ty, tx) of input
/// pixel (a + py − 1 + ty, c + px − 1 + tx) (zero outside the image) times the phase's tap.
/// A 3×3 convolution of stride 1 and padding 1 is one phase (s = 1); a 4×4 transposed
/// convolution of stride 2 and padding 1 is four (s = 2, r = 2).
#[derive(Clone, Debug)]
pub(super) struct Winograd {
    /// Phases per dimension: the output is s times the input's size.
    s: usize,
    /// Kernel side.
    r: usize,
    /// Per phase and transformed point (row-major over the (r + 1)² points), `[c_in, c_out]`.
    points: Vec<f32>,
    /// Added to every output pixel.
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
}

impl Winograd {
    /// `tap(phase, ty, tx, i, o)`: the weight from input channel `i` to output channel `o` at
    /// tap (ty, tx) of phase `py·s + px`.
    pub fn new(
        (s, r): (usize, usize),
        [c_in, c_out]: [usize; 2],
        bias: Vec<f32>,
        tap: impl Fn(usize, usize, usize, usize, usize) -> f32,
    ) -> Self {
        assert!(
            matches!((s, r), (1, 3) | (2, 2)),
            "F(2, {r}) with {s} phases"
        );
        assert!(c_in > 0 && c_out > 0 && bias.len() == c_out);
        let t = Self::tables_for(r);
        let p = r + 1;
        let (c, n) = (c_in, c_out);
        let mut points = vec![0.0; s * s * p * p * c * n];
        for (q, point) in points.chunks_mut(c * n).enumerate() {
            let (phase, u, v) = (q / (p * p), (q / p) % p, q % p);
            for &(ty, gy) in t.kernel[u] {
                for &(tx, gx) in t.kernel[v] {
                    for (i, row) in point.chunks_mut(n).enumerate() {
                        for (o, w) in row.iter_mut().enumerate() {
                            *w += gy * gx * tap(phase, ty, tx, i, o);
                        }
                    }
                }
            }
        }
        Self {
            s,
            r,
            points,
            bias,
            c_in,
            c_out,
        }
    }

    /// The tables of F(2, r).
    fn tables_for(r: usize) -> &'static Tables {
        if r == 2 { &F22 } else { &F23 }
    }

    /// The layer applied to `x` (to relu(x) if `relu`), tiles taken in bands of tile rows
    /// (across images: tile row g is image g / ⌈h/2⌉'s row g % ⌈h/2⌉) whose products hold at
    /// most `chunk` floats and one point's patches at most [`SLAB_FLOATS`] (one tile row at
    /// least: at the widest image rvq reads, 16,384 pixels, a tile row of the second transposed
    /// convolution's products is 18 MiB).
    pub fn forward(&self, x: &Map, chunk: usize, relu: bool) -> Map {
        assert_eq!(x.c, self.c_in);
        let (c, n, s) = (self.c_in, self.c_out, self.s);
        let points = s * s * (self.r + 1).pow(2);
        let (oh, ow) = (s * x.h, s * x.w);
        let (th, tw) = (x.h.div_ceil(2), x.w.div_ceil(2));
        let mut out = vec![0.0; x.b * oh * ow * n];
        // No tile rows where there are no outputs: a band of zero-width rows has no tiles.
        let tile_rows = if out.is_empty() { 0 } else { x.b * th };
        let band = (chunk / (points * tw * n).max(1))
            .min(SLAB_FLOATS / (tw * c).max(1))
            .clamp(1, tile_rows.max(1));
        // The stand-in for terms a tile lacks (pixels outside the image, shorter sums).
        let zeros = vec![0.0; c.max(n)];
        // Tile row g's outputs begin at this output row (across images).
        let first_row = |g: usize| (g / th) * oh + 2 * s * (g % th);
        let mut sums: Vec<f32> = Vec::new();
        for g0 in (0..tile_rows).step_by(band) {
            let rows = g0..(g0 + band).min(tile_rows);
            self.band_products(x, rows.clone(), relu, &zeros, &mut sums);
            let (r0, r1) = (first_row(rows.start), first_row(rows.end));
            out[r0 * ow * n..r1 * ow * n]
                .par_chunks_mut(ow * n)
                .enumerate()
                .for_each(|(k, dst)| self.output_row(dst, r0 + k, x, &rows, &sums, &zeros));
        }
        Map {
            data: out,
            b: x.b,
            h: oh,
            w: ow,
            c: n,
        }
    }

    /// Into `sums`, the products of tile rows `rows` (across images), point after point: each
    /// thread transforms the patches of its point just before its product, so that they are
    /// still in cache (all points' patches first ran at memory's speed).
    fn band_products(
        &self,
        x: &Map,
        rows: std::ops::Range<usize>,
        relu: bool,
        zeros: &[f32],
        sums: &mut Vec<f32>,
    ) {
        let (c, n, s, p) = (self.c_in, self.c_out, self.s, self.r + 1);
        let t = Self::tables_for(self.r);
        let (th, tw) = (x.h.div_ceil(2), x.w.div_ceil(2));
        let tiles = rows.len() * tw;
        let size = s * s * p * p * tiles * n;
        sums.clear();
        sums.reserve_exact(size);
        sums.spare_capacity_mut()[..size]
            .par_chunks_mut(tiles * n)
            .zip(self.points.par_chunks(c * n))
            .enumerate()
            .for_each(|(q, (dst, rhs))| {
                // Taken rather than borrowed, as `chunked_product`'s buffer.
                let mut slab = SLAB.take();
                if slab.len() < tiles * c {
                    slab.reserve_exact(tiles * c - slab.len());
                    slab.resize(tiles * c, 0.0);
                }
                let (phase, u, v) = (q / (p * p), (q / p) % p, q % p);
                let (py, px) = (phase / s, phase % s);
                for (k, patch) in slab[..tiles * c].chunks_mut(c).enumerate() {
                    let (g, j) = (rows.start + k / tw, k % tw);
                    // The patch's first input row and column, plus one (unsigned).
                    let (y0, x0) = (2 * (g % th) + py, 2 * j + px);
                    let mut terms = [(&zeros[..c], 0.0); 4];
                    let rows = t.input[u].iter().filter_map(|&(ry, fy)| {
                        let iy = (y0 + ry).checked_sub(1).filter(|&y| y < x.h)?;
                        Some(((g / th) * x.h + iy, fy))
                    });
                    let mut used = 0;
                    for (row, fy) in rows {
                        for &(rx, fx) in t.input[v] {
                            let ix = (x0 + rx).checked_sub(1).filter(|&i| i < x.w);
                            let Some(ix) = ix else { continue };
                            let at = (row * x.w + ix) * c;
                            terms[used] = (&x.data[at..at + c], fy * fx);
                            used += 1;
                        }
                    }
                    if relu {
                        sum4::<true, false>(patch, &terms);
                    } else {
                        sum4::<false, false>(patch, &terms);
                    }
                }
                let lhs = &slab[..tiles * c];
                product(dst, false, lhs, rhs, (tiles, c, n), Par::None);
                if slab.capacity() <= SLAB_FLOATS {
                    SLAB.set(slab);
                }
            });
        // SAFETY: with `add` false, each product wrote all of its `tiles · n` floats, and the
        // products' destinations cover the `size` taken.
        unsafe { sums.set_len(size) };
    }

    /// Output row `row` (across images) from `sums`, the products of tile rows `rows`: each
    /// pixel is the bias plus its tile's points transformed back (`Aᵀ m A`).
    fn output_row(
        &self,
        dst: &mut [f32],
        row: usize,
        x: &Map,
        rows: &std::ops::Range<usize>,
        sums: &[f32],
        zeros: &[f32],
    ) {
        let (n, s, p) = (self.c_out, self.s, self.r + 1);
        let t = Self::tables_for(self.r);
        let (th, tw) = (x.h.div_ceil(2), x.w.div_ceil(2));
        let (b, y) = (row / (s * x.h), row % (s * x.h));
        let (py, a) = (y % s, y / s);
        let (g, tiles) = (b * th + a / 2 - rows.start, rows.len() * tw);
        for (col, pixel) in dst.chunks_mut(n).enumerate() {
            let (px, cc) = (col % s, col / s);
            let tile = g * tw + cc / 2;
            let base = (py * s + px) * p * p;
            pixel.copy_from_slice(&self.bias);
            let mut terms = [(&zeros[..n], 0.0); 12];
            let mut used = 0;
            for &(u, fy) in t.output[a % 2] {
                for &(v, fx) in t.output[cc % 2] {
                    let q = base + u * p + v;
                    terms[used] = (&sums[(q * tiles + tile) * n..][..n], fy * fx);
                    used += 1;
                }
            }
            for four in terms[..used].chunks(4) {
                let mut pass = [(&zeros[..n], 0.0); 4];
                pass[..four.len()].copy_from_slice(four);
                sum4::<false, true>(pixel, &pass);
            }
        }
    }
}

/// `dst[k]` = (`dst[k]` if `ADD`) + the sum of each term's `k`th value (its relu if `RELU`)
/// times its factor, in one pass.
fn sum4<const RELU: bool, const ADD: bool>(dst: &mut [f32], terms: &[(&[f32], f32); 4]) {
    let len = dst.len();
    let [(a, fa), (b, fb), (c, fc), (d, fd)] = *terms;
    let (a, b, c, d) = (&a[..len], &b[..len], &c[..len], &d[..len]);
    let act = |v: f32| if RELU { v.max(0.0) } else { v };
    for k in 0..len {
        let sum = fa * act(a[k]) + fb * act(b[k]) + fc * act(c[k]) + fd * act(d[k]);
        dst[k] = if ADD { dst[k] + sum } else { sum };
    }
}
