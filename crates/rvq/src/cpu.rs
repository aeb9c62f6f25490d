//! The trained network's inference on the CPU as matrix products over many images' pixels.
//!
//! burn's flex backend runs a convolution as one small product per image: on the 4×4 latent
//! grid that is 16 rows, and its 3×3 convolutions with many channels ran at half the rate of
//! PyTorch's (docs/BENCHMARKS.md, "Layer by layer"). Here each layer is one product over the
//! pixels of a group of images (im2col, in channels-last order) on the `gemm` crate that flex
//! itself builds, or, for the 3×3 convolutions of stride 1 and the wide transposed
//! convolutions, products over tiles by Winograd's minimal filtering (`cpu/winograd.rs`). The module deals in `f32` slices, not tensors: `model.rs` decides when to use
//! it and converts.
//!
//! Same function as the burn layers, not the same rounding: sums run in another order, so
//! outputs differ in the last bits (`crates/rvq/src/tests/network.rs` bounds the difference).

use std::mem::MaybeUninit;

use gemm::Parallelism as Par;
use rayon::prelude::*;

mod books;
mod upsample;
mod winograd;
pub(crate) use books::Books;
pub(crate) use upsample::Upsample;
use winograd::Winograd;

/// The largest im2col buffer in floats (16 MiB): a layer with more rows is computed in chunks, so
/// this path adds a fixed amount to the activations the memory budget plans for (the buffer is
/// kept between layers, one per thread that runs the network). The bound holds as well for a
/// transposed convolution's contributions and a band of Winograd products, except where one row
/// of the layer alone is more (`cpu/winograd.rs` gives the widest case).
const CHUNK_FLOATS: usize = 1 << 22;

/// An activation map in channels-last order: `data[((b·h + y)·w + x)·c + channel]`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Map {
    pub data: Vec<f32>,
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Map {
    fn relu(mut self) -> Self {
        each_value(&mut self.data, |v| *v = v.max(0.0));
        self
    }
}

/// Values per task of the element-wise passes below: a large image's layer is tens of MiB,
/// which one thread took alone while the others waited (docs/BENCHMARKS.md, "Serial passes").
const PASS_FLOATS: usize = 1 << 15;

/// `f` on every value of `data`, on every thread.
fn each_value(data: &mut [f32], f: impl Fn(&mut f32) + Sync) {
    data.par_chunks_mut(PASS_FLOATS)
        .for_each(|part| part.iter_mut().for_each(&f));
}

/// `f(a, b)` on every pair of values of `data` and `other` (of equal length), on every thread.
fn each_pair(data: &mut [f32], other: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    assert_eq!(data.len(), other.len());
    data.par_chunks_mut(PASS_FLOATS)
        .zip(other.par_chunks(PASS_FLOATS))
        .for_each(|(part, with)| part.iter_mut().zip(with).for_each(|(a, &b)| f(a, b)));
}

/// `dst[m×n] += lhs[m×k] · rhs[k×n]`, all row-major and contiguous.
fn matmul_add(dst: &mut [f32], lhs: &[f32], rhs: &[f32], m: usize, k: usize, n: usize) {
    matmul(dst, true, lhs, rhs, m, k, n)
}

/// `dst[m×n] = lhs[m×k] · rhs[k×n]`, plus what `dst` held if `add`; all row-major, contiguous.
pub(crate) fn matmul(
    dst: &mut [f32],
    add: bool,
    lhs: &[f32],
    rhs: &[f32],
    m: usize,
    k: usize,
    n: usize,
) {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout, and `product` writes only `f32` values, so
    // `dst` holds initialised floats throughout.
    let dst = unsafe { &mut *(std::ptr::from_mut(dst) as *mut [MaybeUninit<f32>]) };
    matmul_into(dst, add, lhs, rhs, (m, k, n));
}

/// [`matmul`] on memory that is initialised wherever `add` is true.
fn matmul_into(
    dst: &mut [MaybeUninit<f32>],
    add: bool,
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
) {
    // Checked products: a wrapped one could match a short buffer, and `product` trusts these.
    let size = |a: usize, b: usize| a.checked_mul(b);
    assert!(
        size(m, n) == Some(dst.len())
            && size(m, k) == Some(lhs.len())
            && size(k, n) == Some(rhs.len())
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !add {
            dst.fill(MaybeUninit::new(0.0));
        }
        return;
    }
    // Rows split over the threads, each product on one, when there are rows enough: gemm's own
    // threading shares out each product's panels, which costs more on these narrow products
    // (greedy encoding at batch 64 about a tenth faster split; docs/BENCHMARKS.md).
    let threads = rayon::current_num_threads();
    if threads > 1 && m >= SPLIT_ROWS * threads {
        let rows = m.div_ceil(threads);
        dst.par_chunks_mut(rows * n)
            .zip(lhs.par_chunks(rows * k))
            .for_each(|(d, l)| product(d, add, l, rhs, (l.len() / k, k, n), Par::None));
    } else {
        product(dst, add, lhs, rhs, (m, k, n), Par::Rayon(0));
    }
}

/// Rows of a product below which it is not split over threads.
const SPLIT_ROWS: usize = 64;

/// One `gemm` call, single-threaded or shared out by gemm as `par` says.
fn product(
    dst: &mut [MaybeUninit<f32>],
    add: bool,
    lhs: &[f32],
    rhs: &[f32],
    (m, k, n): (usize, usize, usize),
    par: Par,
) {
    // Checked products: a wrapped one could match a short buffer, and gemm trusts these sizes.
    let size = |a: usize, b: usize| a.checked_mul(b);
    assert!(
        size(m, n) == Some(dst.len())
            && size(m, k) == Some(lhs.len())
            && size(k, n) == Some(rhs.len())
            && k > 0
    );
    // SAFETY: the three buffers hold exactly the m×n, m×k and k×n row-major matrices the strides
    // describe (checked above), and `dst` is borrowed
    // mutably, so it aliases neither input. gemm reads `dst` only when `add` (its `read_dst`),
    // and then the caller has initialised it; otherwise it writes every element. (Read in
    // gemm-common 0.19: true of every kernel this build has. Its Apple AMX kernel copies edge
    // tiles of `dst` before looking at `read_dst`; it is built only with burn-flex's
    // `apple-amx` feature, which is off here, and would need the contributions zeroed first.)
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            n as isize,
            add,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// `rows` rows of `bias`, the starting point of a layer's output.
fn biased(bias: &[f32], rows: usize) -> Vec<f32> {
    // Written once, on every thread: zeroing first was a serial pass over tens of MiB.
    if bias.is_empty() {
        return Vec::new();
    }
    let len = rows * bias.len();
    let mut out = Vec::with_capacity(len);
    let per = (PASS_FLOATS / bias.len()).max(1) * bias.len();
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(per)
        .for_each(|part| {
            for row in part.chunks_exact_mut(bias.len()) {
                for (o, &b) in row.iter_mut().zip(bias) {
                    o.write(b);
                }
            }
        });
    // SAFETY: every one of the `len` elements was written just above.
    unsafe { out.set_len(len) };
    out
}

/// Runs `fill` for chunks of output rows of at most `chunk` floats (one row at least; each gets
/// its first row and a buffer of `row_len` floats per row, every one of which it must write:
/// the buffer is reused, not zeroed), each chunk's buffer then multiplied by `rhs` into `out`.
fn chunked_product(
    out: &mut [f32],
    chunk: usize,
    rows: usize,
    row_len: usize,
    rhs: &[f32],
    n: usize,
    fill: impl Fn(usize, &mut [f32]) + Sync,
) {
    let chunk = (chunk / row_len.max(1)).clamp(1, rows.max(1));
    // The thread's kept buffer, taken rather than borrowed: a rayon worker waiting inside the
    // products below may run another job that reaches here, and that one then starts from an
    // empty buffer instead of finding this one in use.
    let mut col = COL.take();
    for start in (0..rows).step_by(chunk) {
        let m = chunk.min(rows - start);
        if col.len() < m * row_len {
            col.reserve_exact(m * row_len - col.len());
            col.resize(m * row_len, 0.0);
        }
        let col = &mut col[..m * row_len];
        col.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, dst)| fill(start + i, dst));
        matmul_add(
            &mut out[start * n..(start + m) * n],
            col,
            rhs,
            m,
            row_len,
            n,
        );
    }
    // Only a layer one of whose rows alone exceeds the bound makes a larger buffer; it is not
    // kept, so what stays between calls is at most the bound.
    if col.capacity() <= CHUNK_FLOATS {
        COL.set(col);
    }
}

thread_local! {
    /// Each thread's im2col buffer, kept between layers and calls: a fresh one of several MiB
    /// cost its page faults and zeroing on every layer (docs/BENCHMARKS.md, "Memory written
    /// once"). Its contents are stale: [`chunked_product`]'s `fill` writes every element.
    static COL: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A convolution with a square kernel and equal padding on every side.
#[derive(Clone, Debug)]
pub(crate) struct Conv {
    /// `[(ky, kx, c_in), c_out]`: im2col rows times this are the output.
    rhs: Vec<f32>,
    bias: Vec<f32>,
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    /// A 3×3 convolution of stride 1 and padding 1 (the residual blocks') with
    /// [`winograd::MIN_OUT`] output channels or more, by Winograd's F(2×2, 3×3): 16 products
    /// per 4 outputs where the im2col product takes 36.
    winograd: Option<Winograd>,
}

impl Conv {
    /// From burn's (PyTorch's) layout: `weight` `[c_out, c_in, k, k]`, `bias` `[c_out]`.
    pub fn new(
        weight: &[f32],
        [c_out, c_in, k, k2]: [usize; 4],
        bias: Option<Vec<f32>>,
        stride: usize,
        pad: usize,
    ) -> Self {
        assert!(k == k2 && weight.len() == c_out * c_in * k * k);
        let mut rhs = vec![0.0; weight.len()];
        for (o, filter) in weight.chunks(c_in * k * k).enumerate() {
            for (i, tap) in filter.chunks(k * k).enumerate() {
                for (t, &v) in tap.iter().enumerate() {
                    rhs[(t * c_in + i) * c_out + o] = v;
                }
            }
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; c_out]);
        let winograd =
            (k == 3 && stride == 1 && pad == 1 && c_out >= winograd::MIN_OUT).then(|| {
                Winograd::new((1, 3), [c_in, c_out], bias.clone(), |_, ty, tx, i, o| {
                    rhs[((ty * 3 + tx) * c_in + i) * c_out + o]
                })
            });
        Self {
            rhs,
            bias,
            c_in,
            c_out,
            k,
            stride,
            pad,
            winograd,
        }
    }

    pub fn forward(&self, x: &Map) -> Map {
        match &self.winograd {
            Some(winograd) => winograd.forward(x, CHUNK_FLOATS, false),
            None => self.forward_in_chunks(x, CHUNK_FLOATS, false),
        }
    }

    /// The layer applied to relu(x): the relu is taken as the im2col buffer is filled or the
    /// Winograd patches are transformed, rather than on a copy of `x`.
    pub fn forward_relu(&self, x: &Map) -> Map {
        if self.k == 1 && self.stride == 1 && self.pad == 0 {
            return self.forward(&x.clone().relu());
        }
        match &self.winograd {
            Some(winograd) => winograd.forward(x, CHUNK_FLOATS, true),
            None => self.forward_in_chunks(x, CHUNK_FLOATS, true),
        }
    }

    /// [`Self::forward`] (of relu(x) if `relu`) with im2col buffers of at most `chunk` floats
    /// (one row at least).
    fn forward_in_chunks(&self, x: &Map, chunk: usize, relu: bool) -> Map {
        assert_eq!(x.c, self.c_in);
        let (k, s, p) = (self.k, self.stride, self.pad);
        let oh = (x.h + 2 * p - k) / s + 1;
        let ow = (x.w + 2 * p - k) / s + 1;
        let rows = x.b * oh * ow;
        let mut out = biased(&self.bias, rows);
        if k == 1 && s == 1 && p == 0 {
            assert!(!relu, "a 1×1 layer takes relu(x) from forward_relu");
            matmul_add(&mut out, &x.data, &self.rhs, rows, x.c, self.c_out);
        } else {
            let c = x.c;
            chunked_product(
                &mut out,
                chunk,
                rows,
                k * k * c,
                &self.rhs,
                self.c_out,
                |row, dst| {
                    let (b, oy, ox) = (row / (oh * ow), (row / ow) % oh, row % ow);
                    for ky in 0..k {
                        let Some(y) = (oy * s + ky).checked_sub(p).filter(|&y| y < x.h) else {
                            dst[ky * k * c..(ky + 1) * k * c].fill(0.0);
                            continue;
                        };
                        for kx in 0..k {
                            let Some(xx) = (ox * s + kx).checked_sub(p).filter(|&v| v < x.w) else {
                                dst[(ky * k + kx) * c..][..c].fill(0.0);
                                continue;
                            };
                            let src = &x.data[((b * x.h + y) * x.w + xx) * c..][..c];
                            let at = &mut dst[(ky * k + kx) * c..][..c];
                            if relu {
                                at.iter_mut().zip(src).for_each(|(d, v)| *d = v.max(0.0));
                            } else {
                                at.copy_from_slice(src);
                            }
                        }
                    }
                },
            );
        }
        Map {
            data: out,
            b: x.b,
            h: oh,
            w: ow,
            c: self.c_out,
        }
    }
}

/// x + conv1×1(relu(conv3×3(relu(x)))), as `model::ResBlock`.
#[derive(Clone, Debug)]
pub(crate) struct Residual {
    conv1: Conv,
    conv2: Conv,
}

impl Residual {
    pub fn new(conv1: Conv, conv2: Conv) -> Self {
        Self { conv1, conv2 }
    }

    fn forward(&self, x: Map) -> Map {
        let h = self.conv2.forward(&self.conv1.forward_relu(&x).relu());
        let mut x = x;
        each_pair(&mut x.data, &h.data, |a, b| *a += b);
        x
    }
}

/// The network of a model with the linear path and transposed-convolution upsampling (every
/// model trained since run 3), in the layers' own order: see `model::RvqVae`.
#[derive(Clone, Debug)]
pub(crate) struct Network {
    /// Pixels per cell side.
    pub grid: usize,
    /// Unshuffled patch → latent: a 1×1 convolution.
    pub lin_enc: Conv,
    /// Latent → patch values before the pixel shuffle: a 1×1 convolution.
    pub lin_dec: Conv,
    pub down: Vec<Conv>,
    pub enc_res: Vec<Residual>,
    pub to_latent: Conv,
    pub from_latent: Conv,
    pub dec_res: Vec<Residual>,
    pub up: Vec<Upsample>,
    /// The codebooks, for the greedy search; absent in a plain autoencoder.
    pub books: Option<Books>,
}

impl Network {
    /// Images (channels-last, 3 channels in [0, 1]) to latents (channels-last, one row per
    /// cell).
    pub fn encode(&self, images: &Map) -> Map {
        in_groups(images, 1, |x| self.encode_group(x))
    }

    fn encode_group(&self, images: &Map) -> Map {
        let linear = self.lin_enc.forward(&unshuffle(images, self.grid));
        let mut x = self.down[0].forward(images).relu();
        for conv in &self.down[1..] {
            x = conv.forward(&x).relu();
        }
        for block in &self.enc_res {
            x = block.forward(x);
        }
        let mut z = self.to_latent.forward(&x.relu());
        each_pair(&mut z.data, &linear.data, |a, b| *a += b);
        z
    }

    /// Latents to images in [0, 1], channels-last.
    pub fn decode(&self, latents: &Map) -> Map {
        in_groups(latents, self.grid * self.grid, |z| self.decode_group(z))
    }

    fn decode_group(&self, latents: &Map) -> Map {
        let linear = shuffle(self.lin_dec.forward(latents), self.grid);
        let mut x = self.from_latent.forward(latents);
        for block in &self.dec_res {
            x = block.forward(x);
        }
        for up in &self.up {
            x = up.forward(&x.relu());
        }
        each_pair(&mut x.data, &linear.data, |a, b| {
            *a = (*a + b).clamp(0.0, 1.0)
        });
        x
    }
}

/// Image pixels one group holds (32 images of 32×32; the encoder's input, the decoder's output):
/// the network runs group by group, so that a layer's activations stay in cache between
/// layers. Measured on 2 cores (docs/BENCHMARKS.md, "The CPU path"): batches of 256 and 1,024
/// images decode at batch 64's speed, where whole batches ran 30–40% slower.
const GROUP_PIXELS: usize = 1 << 15;

/// `f` over groups of `x`'s images of at most [`GROUP_PIXELS`] image pixels (one image at
/// least; each of `x`'s positions stands for `scale` of them), the outputs in order in one map.
fn in_groups(x: &Map, scale: usize, f: impl Fn(&Map) -> Map) -> Map {
    let per = (GROUP_PIXELS / (x.h * x.w * scale).max(1)).max(1);
    let size = x.h * x.w * x.c;
    if per >= x.b || size == 0 {
        return f(x);
    }
    let mut out: Option<Map> = None;
    for part in x.data.chunks(per * size) {
        let y = f(&Map {
            data: part.to_vec(),
            b: part.len() / size,
            h: x.h,
            w: x.w,
            c: x.c,
        });
        match &mut out {
            None => out = Some(y),
            Some(o) => {
                o.data.extend_from_slice(&y.data);
                o.b += y.b;
            }
        }
    }
    out.expect("a map with images")
}

/// Each f×f patch to one cell of 3·f² channels, in the order (channel, row, column), as
/// `model::pixel_unshuffle`.
pub(crate) fn unshuffle(x: &Map, f: usize) -> Map {
    let (h, w) = (x.h / f, x.w / f);
    let cc = x.c * f * f;
    let mut data = vec![0.0; x.b * h * w * cc];
    data.par_chunks_mut(cc).enumerate().for_each(|(cell, dst)| {
        let (b, gy, gx) = (cell / (h * w), (cell / w) % h, cell % w);
        for i in 0..f {
            for j in 0..f {
                let src = ((b * x.h + gy * f + i) * x.w + gx * f + j) * x.c;
                for ch in 0..x.c {
                    dst[(ch * f + i) * f + j] = x.data[src + ch];
                }
            }
        }
    });
    Map {
        data,
        b: x.b,
        h,
        w,
        c: cc,
    }
}

/// The inverse of [`unshuffle`].
fn shuffle(x: Map, f: usize) -> Map {
    let c = x.c / (f * f);
    let (h, w) = (x.h * f, x.w * f);
    let mut data = vec![0.0; x.b * h * w * c];
    data.par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(row, dst)| {
            let (b, y) = (row / h, row % h);
            let (gy, i) = (y / f, y % f);
            for xx in 0..w {
                let (gx, j) = (xx / f, xx % f);
                let src = ((b * x.h + gy) * x.w + gx) * x.c;
                for ch in 0..c {
                    dst[xx * c + ch] = x.data[src + (ch * f + i) * f + j];
                }
            }
        });
    Map {
        data,
        b: x.b,
        h,
        w,
        c,
    }
}

#[cfg(test)]
mod tests;
