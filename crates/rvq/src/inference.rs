//! The network's passes under the memory budget ([`crate::budget`]): images to latents and
//! indices to pixels, in batches of images that fit the budget and, for an image that does not
//! fit alone, in tiles with a halo. Every caller that runs the network on images of any size
//! (the codec, rate control, refinement, the model's public encode and decode) goes through
//! here; only training, evaluation on CIFAR-10 and the PyTorch reference run the network
//! directly, on batches of 32×32 images they size themselves. Outside the passes, an encode
//! holds its pass's images as planar floats (12 bytes a pixel) and their latents, and a decode
//! its pass's 8-bit images.

use std::ops::Range;
use std::sync::atomic::Ordering;

use burn::prelude::*;
use rayon::prelude::*;

use crate::budget::{self, Budget, Tile};
use crate::cpu;
use crate::error::{Error, Result};
use crate::image_io::{Rgb, to_u8};
use crate::model::{Model, pixel_unshuffle, rows_to_latents};
use crate::quantizer::EncodedBatch;
use crate::quantizer::{self, float_vec};

/// Where a block of decoded pixels lies: image `image` of the batch, from pixel row `top` and
/// column `left` of its padded size, `height`×`width` pixels.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Region {
    pub image: usize,
    pub top: usize,
    pub left: usize,
    pub height: usize,
    pub width: usize,
}

impl Region {
    /// Rows and columns of the block that fall inside an image of `w`×`h` pixels (the rest is
    /// padding).
    pub(crate) fn visible(&self, w: usize, h: usize) -> (usize, usize) {
        (
            self.height.min(h.saturating_sub(self.top)),
            self.width.min(w.saturating_sub(self.left)),
        )
    }
}

/// Each image's squared error per cell (values on [0, 1]), measured two ways from one decode.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CellErrors {
    /// Decoded samples clamped to [0, 1] but not rounded. The encoder's choices (depths,
    /// refined entries) are made on these: backends compute them a few ulps apart, where a
    /// rounded sample can land a whole 1/255 apart, so a near tie rarely goes one way on the
    /// CPU and the other on a GPU.
    pub unrounded: Vec<Vec<f64>>,
    /// Samples rounded to 8 bits, as written: what a reader gets, so PSNR targets are checked,
    /// and refinement proves it never loses, on these.
    pub written: Vec<Vec<f64>>,
    /// The decoded images in 8 bits, as a reader gets them, where asked for
    /// ([`Model::cell_errors`] with `keep`); empty otherwise.
    pub images: Vec<Rgb>,
}

impl Model {
    /// Every codebook entry as the decoder's linear path draws it: `[n_q · k, 3 · f²]`,
    /// channels in pixel-unshuffle order (colour, row, column), without the bias. `None`
    /// without the linear path.
    pub(crate) fn drawn_books(&self) -> Option<&[f32]> {
        self.drawn
            .0
            .get_or_init(|| self.net.drawn_books())
            .as_deref()
    }

    /// The memory budget the network's passes are planned under.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Plans every later pass under `budget` (the default: [`Budget::CPU`] on the CPU,
    /// [`Budget::GPU`] on a GPU).
    pub fn set_budget(&mut self, budget: Budget) {
        self.budget = budget;
    }

    /// Padded pixels one pass may hold.
    pub(crate) fn pass_pixels(&self) -> u64 {
        self.pass_pixels_holding(0)
    }

    /// Padded pixels one pass may hold where each pixel also holds `extra` bytes of the
    /// caller's own buffers beside the network's activations.
    pub(crate) fn pass_pixels_holding(&self, extra: u64) -> u64 {
        self.budget.pixels(&self.config, extra)
    }

    /// How many images of `padded` pixels each go through the network together: at most
    /// `batch_size`, as many as the budget holds, and always at least one.
    pub(crate) fn images_per_pass(&self, padded: u64, batch_size: usize) -> usize {
        budget::images_per_pass(padded, self.pass_pixels(), batch_size)
    }

    /// The most padded pixels one pass of the network has held since the model was loaded:
    /// at most what the budget holds (a budget too small for one tile is refused).
    pub fn largest_pass(&self) -> u64 {
        self.largest_pass.load(Ordering::Relaxed)
    }

    /// Records a pass over `x`: images, or (`latent`) latents, which count by the pixels
    /// they decode to.
    fn note_pass(&self, x: &Tensor<4>, latent: bool) {
        let [b, _, h, w] = x.dims();
        let f = if latent { self.config.grid_factor } else { 1 };
        self.note_pixels((b * h * w * f * f) as u64);
    }

    /// Records a pass over `pixels` padded pixels.
    pub(crate) fn note_pixels(&self, pixels: u64) {
        self.largest_pass.fetch_max(pixels, Ordering::Relaxed);
    }

    /// The tiles an image of `grid` cells is run in (one, without a halo, when it fits).
    pub(crate) fn tiles(&self, grid: (usize, usize)) -> Result<Vec<Tile>> {
        self.tiles_holding(grid, 0)
    }

    /// [`Model::tiles`] for passes whose pixels each hold `extra` bytes more
    /// ([`Model::pass_pixels_holding`]).
    pub(crate) fn tiles_holding(&self, grid: (usize, usize), extra: u64) -> Result<Vec<Tile>> {
        let f = self.config.grid_factor as u64;
        let capacity = (self.pass_pixels_holding(extra) / (f * f)) as usize;
        budget::tiles(grid, capacity, budget::halo(&self.config))
    }

    /// Latents `[b, d, h/f, w/f]` of `b` images given planar (`[b][3][h][w]` values in [0, 1],
    /// sides multiples of the grid factor).
    pub(crate) fn encode_planar(
        &self,
        values: &[f32],
        b: usize,
        h: usize,
        w: usize,
    ) -> Result<Tensor<4>> {
        let per = 3 * h * w;
        let f = self.config.grid_factor;
        let tiles = self.tiles((h / f, w / f))?;
        let n = self.images_per_pass((h * w) as u64, usize::MAX);
        let parts: Vec<Tensor<4>> = (0..b)
            .step_by(n)
            .map(|i0| {
                let part = &values[i0 * per..(i0 + n).min(b) * per];
                if tiles.len() > 1 {
                    return self.encode_tiled(part, h, w, &tiles);
                }
                let data = TensorData::new(part.to_vec(), [part.len() / per, 3, h, w]);
                let x = Tensor::from_data(data, &self.device);
                self.note_pass(&x, false);
                self.encode_pass(x)
            })
            .collect();
        Ok(Tensor::cat(parts, 0))
    }

    /// One image's latents, tile by tile: each tile's pixels (halo included) through the
    /// encoder, its own cells kept.
    fn encode_tiled(&self, image: &[f32], h: usize, w: usize, tiles: &[Tile]) -> Tensor<4> {
        let f = self.config.grid_factor;
        let d = self.config.latent_dim;
        let (gh, gw) = (h / f, w / f);
        let mut out = vec![0f32; d * gh * gw];
        for t in tiles {
            let (zh, zw) = (t.outer_rows.len(), t.outer_cols.len());
            let (top, left) = (t.outer_rows.start * f, t.outer_cols.start * f);
            let pixels = crop(image, (h, w), top..top + zh * f, left..left + zw * f);
            let x = Tensor::from_data(
                TensorData::new(pixels, [1, 3, zh * f, zw * f]),
                &self.device,
            );
            self.note_pass(&x, false);
            let z = float_vec(self.encode_pass(x));
            let (dy, dx) = (
                t.rows.start - t.outer_rows.start,
                t.cols.start - t.outer_cols.start,
            );
            let (th, tw) = (t.rows.len(), t.cols.len());
            let own = crop(&z, (zh, zw), dy..dy + th, dx..dx + tw);
            paste(
                &mut out,
                (gh, gw),
                &own,
                (th, tw),
                (t.rows.start, t.cols.start),
            );
        }
        Tensor::from_data(TensorData::new(out, [1, d, gh, gw]), &self.device)
    }

    /// Quantizes images `[b, 3, h, w]` with the first `depth` codebooks, by a beam search of
    /// width `beam` (1: greedy; see [`quantizer::quantize_beam`]). Returns, per image, the
    /// indices level by level, each level in row-major grid order, and the grid size.
    pub(crate) fn encode_indices(
        &self,
        images: Tensor<4>,
        depth: usize,
        beam: usize,
    ) -> Result<EncodedBatch> {
        self.check_depth(depth)?;
        let [b, _, h, w] = images.dims();
        let latents = self.encode_planar(&quantizer::float_vec(images), b, h, w)?;
        self.quantize_latents(latents, (depth, beam), false)
    }

    /// Rebuilds images `[b, 3, h·f, w·f]` from indices laid out as [`Model::encode_indices`]
    /// returns them (each image: levels of `h·w` indices, of which the first `depth` are
    /// used).
    pub(crate) fn decode_indices(
        &self,
        indices: &[Vec<u32>],
        grid: (usize, usize),
        depth: usize,
    ) -> Result<Tensor<4>> {
        self.decode_cells(indices, None, grid, depth)
    }

    /// [`Model::decode_indices`] where cell c of image i sums only its first `depths[i][c]`
    /// codebooks (its later indices, present in the layout, are ignored but must still be
    /// indices of the codebook, as the encoder and the archive reader leave them). The levels a cell
    /// skips add exact zeros, so a cell at full depth decodes as [`Model::decode_indices`]
    /// decodes it.
    pub(crate) fn decode_cells(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
    ) -> Result<Tensor<4>> {
        let f = self.config.grid_factor;
        let (ph, pw) = (grid.0 * f, grid.1 * f);
        let per = 3 * ph * pw;
        let mut y = vec![0f32; indices.len() * per];
        self.decode_regions(indices, depths, grid, depth, &mut |r, block| {
            let image = &mut y[r.image * per..(r.image + 1) * per];
            paste(image, (ph, pw), block, (r.height, r.width), (r.top, r.left));
        })?;
        let shape = [indices.len(), 3, ph, pw];
        Ok(Tensor::from_data(TensorData::new(y, shape), &self.device))
    }

    /// Decodes `indices` as [`Model::decode_cells`] does, handing each block of decoded planar
    /// pixels (`[3][height][width]`) to `each` with where it lies, instead of one tensor of the
    /// whole batch: images go through the network as many at a time as the budget holds, and
    /// an image larger than that in tiles.
    pub(crate) fn decode_regions(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
        each: &mut dyn FnMut(Region, &[f32]),
    ) -> Result<()> {
        self.check_cells(indices, depths, grid, depth)?;
        let f = self.config.grid_factor;
        let (gh, gw) = grid;
        let (ph, pw) = (gh * f, gw * f);
        let tiles = self.tiles(grid)?;
        let n = self.images_per_pass((ph * pw) as u64, usize::MAX);
        for i0 in (0..indices.len()).step_by(n) {
            let i1 = (i0 + n).min(indices.len());
            let part = depths.map(|d| &d[i0..i1]);
            if tiles.len() > 1 {
                for t in &tiles {
                    let depths = part.map(|d| d[0].as_slice());
                    self.decode_tile(&indices[i0], depths, grid, depth, t, i0, each)?;
                }
                continue;
            }
            let latents = self.dequantized(&indices[i0..i1], part, grid, depth)?;
            let cell_depths = cell_depths(part, i1 - i0, gh * gw, depth);
            self.note_pass(&latents, true);
            let y = self.decode_pass(latents, &cell_depths);
            for (j, block) in y.chunks_exact(3 * ph * pw).enumerate() {
                let region = Region {
                    image: i0 + j,
                    top: 0,
                    left: 0,
                    height: ph,
                    width: pw,
                };
                each(region, block);
            }
        }
        Ok(())
    }

    /// Decodes tile `t` of image `image` (its `indices` and cell `depths` on a grid of `grid`
    /// cells): only the cells the tile reads are dequantized, so no tensor of the whole image
    /// is made, and `each` is handed the tile's own cells' pixels.
    #[allow(clippy::too_many_arguments)]
    fn decode_tile(
        &self,
        indices: &[u32],
        depths: Option<&[u8]>,
        (gh, gw): (usize, usize),
        depth: usize,
        t: &Tile,
        image: usize,
        each: &mut dyn FnMut(Region, &[f32]),
    ) -> Result<()> {
        let f = self.config.grid_factor;
        let cells = gh * gw;
        let outer: Vec<usize> = t
            .outer_rows
            .clone()
            .flat_map(|r| t.outer_cols.clone().map(move |c| r * gw + c))
            .collect();
        let sub: Vec<u32> = (0..depth)
            .flat_map(|l| outer.iter().map(move |&c| indices[l * cells + c]))
            .collect();
        let sub_depths: Option<Vec<u8>> = depths.map(|d| outer.iter().map(|&c| d[c]).collect());
        let sub_depths = sub_depths.as_ref().map(std::slice::from_ref);
        let og = (t.outer_rows.len(), t.outer_cols.len());
        let latents = self.dequantized(std::slice::from_ref(&sub), sub_depths, og, depth)?;
        let cell_depths = cell_depths(sub_depths, 1, outer.len(), depth);
        self.note_pass(&latents, true);
        let y = self.decode_pass(latents, &cell_depths);
        let (oh, ow) = (og.0 * f, og.1 * f);
        let (th, tw) = (t.rows.len() * f, t.cols.len() * f);
        let dy = (t.rows.start - t.outer_rows.start) * f;
        let dx = (t.cols.start - t.outer_cols.start) * f;
        let block = crop(&y, (oh, ow), dy..dy + th, dx..dx + tw);
        let region = Region {
            image,
            top: t.rows.start * f,
            left: t.cols.start * f,
            height: th,
            width: tw,
        };
        each(region, &block);
        Ok(())
    }

    /// Latents `[b, d, h, w]` of the first `depth` levels of `indices`, each cell summing only
    /// the levels its depth (if given) uses.
    pub(crate) fn dequantized(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        (h, w): (usize, usize),
        depth: usize,
    ) -> Result<Tensor<4>> {
        let codebooks = self.net.codebooks().ok_or(Error::NotQuantized)?;
        let cells = h * w;
        let b = indices.len();
        if let Some(books) = self.cpu.as_ref().and_then(|c| c.books.as_ref()) {
            let rows = books.dequantize(indices, depths, cells, depth);
            let d = self.config.latent_dim;
            let latents = Tensor::<4>::from_data(TensorData::new(rows, [b, h, w, d]), &self.device);
            return Ok(latents.permute([0, 3, 1, 2]));
        }
        let levels: Vec<Tensor<1, Int>> = (0..depth)
            .map(|lvl| {
                let flat: Vec<i64> = indices
                    .iter()
                    .flat_map(|img| {
                        img[lvl * cells..(lvl + 1) * cells]
                            .iter()
                            .map(|&v| v as i64)
                    })
                    .collect();
                Tensor::<1, Int>::from_data(TensorData::new(flat, [b * cells]), &self.device)
            })
            .collect();
        let masks = depths.map(|depths| {
            (0..depth)
                .map(|lvl| {
                    let used: Vec<f32> = depths
                        .iter()
                        .flatten()
                        .map(|&c| if c as usize > lvl { 1.0 } else { 0.0 })
                        .collect();
                    Tensor::<2>::from_data(TensorData::new(used, [b * cells, 1]), &self.device)
                })
                .collect::<Vec<_>>()
        });
        let rows = quantizer::dequantize_masked(&levels, &codebooks, masks.as_deref());
        Ok(rows_to_latents(rows, b, h, w))
    }

    /// Each image's squared error per cell, both ways (see [`CellErrors`]), decoding
    /// `indices` as [`Model::decode_cells`] does and comparing with `originals` (the images'
    /// own sizes: padding is not counted); with `keep`, also each decoded image in 8 bits
    /// ([`CellErrors::images`]).
    pub(crate) fn cell_errors(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
        originals: &[&Rgb],
        keep: bool,
    ) -> Result<CellErrors> {
        let f = self.config.grid_factor;
        let gw = grid.1;
        let mut sse = vec![vec![0f64; grid.0 * gw]; originals.len()];
        let mut written = sse.clone();
        let mut kept: Vec<Vec<u8>> = if keep {
            originals
                .iter()
                .map(|o| vec![0; o.pixels().len()])
                .collect()
        } else {
            Vec::new()
        };
        self.decode_regions(indices, depths, grid, depth, &mut |r, y| {
            let img = originals[r.image];
            let (w, h) = (img.width() as usize, img.height() as usize);
            let (rows, cols) = r.visible(w, h);
            if rows == 0 || cols == 0 {
                return;
            }
            if let Some(rgb) = kept.get_mut(r.image) {
                write_region(rgb, w, &r, y);
            }
            // A row of cells per task, each cell's pixels summed in the same order as in one.
            let cell_rows = r.top / f * gw..((r.top + rows - 1) / f + 1) * gw;
            let errs = sse[r.image][cell_rows.clone()].par_chunks_mut(gw);
            let errs8 = written[r.image][cell_rows].par_chunks_mut(gw);
            errs.zip(errs8).enumerate().for_each(|(i, (errs, errs8))| {
                let gy = r.top / f + i;
                for py in (gy * f).max(r.top)..((gy + 1) * f).min(r.top + rows) {
                    let yy = py - r.top;
                    for xx in 0..cols {
                        let gx = r.left + xx;
                        let cell = gx / f;
                        for c in 0..3 {
                            let v = y[(c * r.height + yy) * r.width + xx];
                            let p = img.pixels()[(py * w + gx) * 3 + c] as f64;
                            let e = v.clamp(0.0, 1.0) as f64 - p / 255.0;
                            errs[cell] += e * e;
                            let e8 = (to_u8(v) as f64 - p) / 255.0;
                            errs8[cell] += e8 * e8;
                        }
                    }
                }
            });
        })?;
        let images = kept
            .into_iter()
            .zip(originals)
            .map(|(rgb, o)| Rgb::new(o.width(), o.height(), rgb))
            .collect::<Result<_>>()?;
        Ok(CellErrors {
            unrounded: sse,
            written,
            images,
        })
    }

    /// Decodes `indices` as [`Model::decode_cells`] does into 8-bit images of the given
    /// `sizes` (each at most the padded grid, cropped from its top left), never holding more
    /// than one pass of the network's activations: how archives are decoded.
    pub fn decode_images(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
        sizes: &[(u32, u32)],
    ) -> Result<Vec<Rgb>> {
        let f = self.config.grid_factor;
        if sizes.len() != indices.len()
            || sizes.iter().any(|&(w, h)| {
                w == 0 || h == 0 || w as usize > grid.1 * f || h as usize > grid.0 * f
            })
        {
            return Err(Error::BadIndices {
                reason: format!(
                    "{} image sizes for {} images on a {}×{} grid",
                    sizes.len(),
                    indices.len(),
                    grid.1,
                    grid.0
                ),
            });
        }
        let mut out: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&(w, h)| vec![0u8; w as usize * h as usize * 3])
            .collect();
        self.decode_regions(indices, depths, grid, depth, &mut |r, y| {
            write_region(&mut out[r.image], sizes[r.image].0 as usize, &r, y);
        })?;
        out.into_iter()
            .zip(sizes)
            .map(|(rgb, &(w, h))| Rgb::new(w, h, rgb))
            .collect()
    }
}

/// Writes the part of decoded planar block `y` (region `r`) that lies inside an image of width
/// `w` into its interleaved 8-bit pixels `rgb`, a row per task.
fn write_region(rgb: &mut [u8], w: usize, r: &Region, y: &[f32]) {
    let (rows, cols) = r.visible(w, rgb.len() / 3 / w.max(1));
    if rows == 0 || cols == 0 {
        return;
    }
    let band = &mut rgb[r.top * w * 3..(r.top + rows) * w * 3];
    // Rows in tasks of 64 at least: a thumbnail's region is one task.
    band.par_chunks_mut(w * 3)
        .with_min_len(64)
        .enumerate()
        .for_each(|(yy, row)| {
            for xx in 0..cols {
                for c in 0..3 {
                    row[(r.left + xx) * 3 + c] = to_u8(y[(c * r.height + yy) * r.width + xx]);
                }
            }
        });
}

/// The `rows`×`cols` window of planar values `src` (`[channels][h][w]` for a `size` of
/// (h, w)), planar itself.
pub(crate) fn crop(
    src: &[f32],
    (h, w): (usize, usize),
    rows: Range<usize>,
    cols: Range<usize>,
) -> Vec<f32> {
    let channels = src.len() / (h * w);
    let mut out = vec![0.0; channels * rows.len() * cols.len()];
    let (n, width) = (rows.len().max(1), cols.len().max(1));
    out.par_chunks_mut(width)
        .with_min_len(64)
        .enumerate()
        .for_each(|(i, dst)| {
            let (c, y) = (i / n, rows.start + i % n);
            let row = (c * h + y) * w;
            dst.copy_from_slice(&src[row + cols.start..row + cols.end]);
        });
    out
}

/// Writes planar `block` (`[channels][bh][bw]`) into planar `dst` of `size` (h, w) with its
/// top left corner at `at` (row, column): [`crop`]'s inverse.
pub(crate) fn paste(
    dst: &mut [f32],
    (h, w): (usize, usize),
    block: &[f32],
    (bh, bw): (usize, usize),
    (top, left): (usize, usize),
) {
    if bw == 0 || bh == 0 {
        return;
    }
    for (c, plane) in block.chunks_exact(bh * bw).enumerate() {
        let rows = &mut dst[(c * h + top) * w..(c * h + top + bh) * w];
        let each = rows.par_chunks_mut(w).zip(plane.par_chunks(bw));
        each.with_min_len(64).for_each(|(row, from)| {
            row[left..left + bw].copy_from_slice(from);
        });
    }
}

/// Every cell's depth, image-major (the network's depth input reads them): a depth map's
/// where given, else `depth` everywhere.
fn cell_depths(depths: Option<&[Vec<u8>]>, b: usize, cells: usize, depth: usize) -> Vec<usize> {
    match depths {
        Some(depths) => depths.iter().flatten().map(|&d| d as usize).collect(),
        None => vec![depth; b * cells],
    }
}

impl Model {
    /// The encoder on one pass of images `[b, 3, h, w]`, on [`crate::cpu`]'s path where the
    /// model has one.
    pub(crate) fn encode_pass(&self, x: Tensor<4>) -> Tensor<4> {
        let Some(cpu) = &self.cpu else {
            return self.net.encode(x);
        };
        let [b, c, h, w] = x.dims();
        let images = cpu::Map {
            data: float_vec(x.permute([0, 2, 3, 1])),
            b,
            h,
            w,
            c,
        };
        let z = cpu.encode(&images);
        let data = TensorData::new(z.data, [z.b, z.h, z.w, z.c]);
        Tensor::<4>::from_data(data, &self.device).permute([0, 3, 1, 2])
    }

    /// The decoder on one pass of latents, each cell at its depth in `cell_depths`: the images,
    /// planar (`[b][3][h][w]`).
    pub(crate) fn decode_pass(&self, latents: Tensor<4>, cell_depths: &[usize]) -> Vec<f32> {
        let Some(cpu) = &self.cpu else {
            return float_vec(self.net.decode(latents, Some(cell_depths)));
        };
        let [b, c, h, w] = latents.dims();
        let z = cpu::Map {
            data: float_vec(latents.permute([0, 2, 3, 1])),
            b,
            h,
            w,
            c,
        };
        let y = cpu.decode(&z);
        let mut planar = vec![0.0; y.data.len()];
        // Row by row of each plane, on every thread: a large image's output is tens of MiB.
        planar
            .par_chunks_mut(y.w.max(1))
            .enumerate()
            .for_each(|(row, dst)| {
                let (plane, yy) = (row / y.h, row % y.h);
                let (image, ch) = (plane / y.c, plane % y.c);
                let src = &y.data[((image * y.h + yy) * y.w) * y.c..][..y.w * y.c];
                for (d, pixel) in dst.iter_mut().zip(src.chunks_exact(y.c)) {
                    *d = pixel[ch];
                }
            });
        planar
    }

    /// The decoder on cell-major latents (`cells` `[b][h][w][c]`, each cell at its depth in
    /// `cell_depths`): each cell's f×f patch of the images, cell-major (`[b][h][w][3][f][f]`,
    /// [`crate::model::pixel_unshuffle`]'s order), what a fit compares with its image. On the
    /// CPU path the latents go in and the patches come out of its own layouts, without a copy
    /// to planar images between.
    pub(crate) fn decode_patches(
        &self,
        cells: Vec<f32>,
        [b, h, w, c]: [usize; 4],
        cell_depths: &[usize],
    ) -> Vec<f32> {
        let f = self.config.grid_factor;
        let Some(cpu) = &self.cpu else {
            let x = Tensor::<4>::from_data(TensorData::new(cells, [b, h, w, c]), &self.device);
            let y = self.net.decode(x.permute([0, 3, 1, 2]), Some(cell_depths));
            return float_vec(pixel_unshuffle(y, f).permute([0, 2, 3, 1]));
        };
        let z = cpu::Map {
            data: cells,
            b,
            h,
            w,
            c,
        };
        cpu::unshuffle(&cpu.decode(&z), f).data
    }
}
