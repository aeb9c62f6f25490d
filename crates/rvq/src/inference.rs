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

use crate::budget::{self, Budget, Tile};
use crate::error::{Error, Result};
use crate::image_io::{Rgb, to_u8};
use crate::model::{EncodedBatch, Model, rows_to_latents};
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
    fn visible(&self, w: usize, h: usize) -> (usize, usize) {
        (
            self.height.min(h.saturating_sub(self.top)),
            self.width.min(w.saturating_sub(self.left)),
        )
    }
}

impl Model {
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
        self.budget.pixels(&self.config)
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
        let pixels = (b * h * w * f * f) as u64;
        self.largest_pass.fetch_max(pixels, Ordering::Relaxed);
    }

    /// The tiles an image of `grid` cells is run in (one, without a halo, when it fits).
    fn tiles(&self, grid: (usize, usize)) -> Result<Vec<Tile>> {
        let f = self.config.grid_factor as u64;
        let capacity = (self.pass_pixels() / (f * f)) as usize;
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
                self.net.encode(x)
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
            let z = float_vec(self.net.encode(x));
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
    pub fn encode_indices(
        &self,
        images: Tensor<4>,
        depth: usize,
        beam: usize,
    ) -> Result<EncodedBatch> {
        self.check_depth(depth)?;
        let [b, _, h, w] = images.dims();
        let latents = self.encode_planar(&quantizer::float_vec(images), b, h, w)?;
        self.quantize_latents(latents, depth, beam)
    }

    /// Rebuilds images `[b, 3, h·f, w·f]` from indices laid out as [`Model::encode_indices`]
    /// returns them (each image: levels of `h·w` indices, of which the first `depth` are
    /// used).
    pub fn decode_indices(
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
    pub fn decode_cells(
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
            let y = float_vec(self.net.decode(latents, Some(&cell_depths)));
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
        let y = float_vec(self.net.decode(latents, Some(&cell_depths)));
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
    fn dequantized(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        (h, w): (usize, usize),
        depth: usize,
    ) -> Result<Tensor<4>> {
        let codebooks = self.net.codebooks().ok_or(Error::NotQuantized)?;
        let cells = h * w;
        let b = indices.len();
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

    /// Each image's squared error per cell (values on [0, 1], after rounding to 8 bits as
    /// written), decoding `indices` as [`Model::decode_cells`] does and comparing with
    /// `originals` (the images' own sizes: padding is not counted).
    pub(crate) fn cell_errors(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
        originals: &[&Rgb],
    ) -> Result<Vec<Vec<f64>>> {
        let f = self.config.grid_factor;
        let gw = grid.1;
        let mut sse = vec![vec![0f64; grid.0 * gw]; originals.len()];
        self.decode_regions(indices, depths, grid, depth, &mut |r, y| {
            let img = originals[r.image];
            let (w, h) = (img.width() as usize, img.height() as usize);
            let errs = &mut sse[r.image];
            let (rows, cols) = r.visible(w, h);
            for yy in 0..rows {
                let gy = r.top + yy;
                for xx in 0..cols {
                    let gx = r.left + xx;
                    let cell = (gy / f) * gw + gx / f;
                    for c in 0..3 {
                        let q = to_u8(y[(c * r.height + yy) * r.width + xx]);
                        let e = (q as f64 - img.pixels()[(gy * w + gx) * 3 + c] as f64) / 255.0;
                        errs[cell] += e * e;
                    }
                }
            }
        })?;
        Ok(sse)
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
            let (w, h) = (sizes[r.image].0 as usize, sizes[r.image].1 as usize);
            let rgb = &mut out[r.image];
            let (rows, cols) = r.visible(w, h);
            for yy in 0..rows {
                for xx in 0..cols {
                    let at = ((r.top + yy) * w + r.left + xx) * 3;
                    for c in 0..3 {
                        rgb[at + c] = to_u8(y[(c * r.height + yy) * r.width + xx]);
                    }
                }
            }
        })?;
        out.into_iter()
            .zip(sizes)
            .map(|(rgb, &(w, h))| Rgb::new(w, h, rgb))
            .collect()
    }
}

/// The `rows`×`cols` window of planar values `src` (`[channels][h][w]` for a `size` of
/// (h, w)), planar itself.
fn crop(src: &[f32], (h, w): (usize, usize), rows: Range<usize>, cols: Range<usize>) -> Vec<f32> {
    let channels = src.len() / (h * w);
    let mut out = Vec::with_capacity(channels * rows.len() * cols.len());
    for c in 0..channels {
        for y in rows.clone() {
            let row = (c * h + y) * w;
            out.extend_from_slice(&src[row + cols.start..row + cols.end]);
        }
    }
    out
}

/// Writes planar `block` (`[channels][bh][bw]`) into planar `dst` of `size` (h, w) with its
/// top left corner at `at` (row, column): [`crop`]'s inverse.
fn paste(
    dst: &mut [f32],
    (h, w): (usize, usize),
    block: &[f32],
    (bh, bw): (usize, usize),
    (top, left): (usize, usize),
) {
    for (c, plane) in block.chunks_exact(bh * bw).enumerate() {
        for (y, row) in plane.chunks_exact(bw).enumerate() {
            let at = (c * h + top + y) * w + left;
            dst[at..at + bw].copy_from_slice(row);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, Backend};
    use crate::{Decoder, EncodeOptions, Encoder, Named};
    use rvq_archive::{ArchiveWriter, Header, Limits, Record};

    /// The sample photographs side by side and mirrored into one 480×320 image: large enough
    /// for the smallest budget to cut it into tiles, real enough for near-ties to occur.
    fn mosaic() -> Rgb {
        let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
            .join("../../samples");
        let tiles: Vec<Rgb> = ["chelsea.png", "coffee.png", "rocket.png", "astronaut.png"]
            .iter()
            .map(|n| {
                crate::image_io::read_rgb(&dir.join(n), &Limits::default(), false)
                    .unwrap()
                    .image
            })
            .collect();
        let (w, h) = (480usize, 320usize);
        let mut rgb = vec![0u8; w * h * 3];
        for y in 0..h {
            for x in 0..w {
                let t = &tiles[(y / 160) * 2 + (x / 240) % 2];
                let (tw, th) = (t.width() as usize, t.height() as usize);
                // Mirrored repeats, so that no seam of the mosaic is a hard edge everywhere.
                let fold = |v: usize, n: usize| {
                    if (v / n).is_multiple_of(2) {
                        v % n
                    } else {
                        n - 1 - v % n
                    }
                };
                let (sx, sy) = (fold(x % 240, tw), fold(y % 160, th));
                rgb[(y * w + x) * 3..(y * w + x) * 3 + 3]
                    .copy_from_slice(&t.pixels()[(sy * tw + sx) * 3..(sy * tw + sx) * 3 + 3]);
            }
        }
        Rgb::new(w as u32, h as u32, rgb).unwrap()
    }

    fn cpu_model(budget: Budget) -> Model {
        let device = backend::choose(Backend::Cpu).unwrap().device;
        let mut model = Model::load_default(&device).unwrap();
        model.set_budget(budget);
        model
    }

    /// Encoding and decoding in tiles give the indices and pixels a whole-image pass gives,
    /// with the default encoder (rate control and refinement decode too), and no pass holds
    /// more than the budget.
    #[test]
    fn tiles_encode_and_decode_as_the_whole_image_does() {
        let image = mosaic();
        let named = [Named {
            name: "mosaic.png".into(),
            image: image.clone(),
        }];
        let small = Budget::new(Budget::MIN_BYTES).unwrap();
        let (whole, tiled) = (cpu_model(Budget::CPU), cpu_model(small));
        assert!(
            tiled.tiles((40, 60)).unwrap().len() > 4,
            "the mosaic must be tiled"
        );
        let a = Encoder::new(&whole, EncodeOptions::default())
            .unwrap()
            .encode(&named)
            .unwrap();
        let b = Encoder::new(&tiled, EncodeOptions::default())
            .unwrap()
            .encode(&named)
            .unwrap();
        assert_eq!(whole.largest_pass(), 480 * 320);
        assert!(
            tiled.largest_pass() <= tiled.pass_pixels(),
            "{}",
            tiled.largest_pass()
        );
        assert!(a == b, "tiled encoding chose other indices or depths");
        let da = Decoder::new(&whole, 64)
            .decode(&a, &Limits::default())
            .unwrap();
        let db = Decoder::new(&tiled, 64)
            .decode(&a, &Limits::default())
            .unwrap();
        assert!(
            da[0].1.pixels() == db[0].1.pixels(),
            "tiled decoding gave other pixels"
        );
    }

    /// A small random network, quick to run on large images.
    fn tiny_model(budget: Budget) -> Model {
        let device = backend::choose(Backend::Cpu).unwrap().device;
        let config = crate::config::ModelConfig {
            latent_dim: 8,
            codebook_size: 16,
            num_codebooks: 2,
            grid_factor: 8,
            channels: vec![8, 8, 8],
            res_blocks: 1,
            res_channels: 8,
            quantize: true,
            linear_path: false,
            depth_input: false,
            upsample: crate::config::Upsample::Transposed,
            up_res_blocks: 0,
        };
        let net = crate::model::RvqVae::new(&config, &device);
        let dir = tempfile::TempDir::new().unwrap();
        Model::save_net(&net, &config, dir.path()).unwrap();
        let mut model = Model::load(dir.path(), &device).unwrap();
        model.set_budget(budget);
        model
    }

    /// An archive of `count` images of `side`×`side` at one codebook, every index 0.
    fn zeros_archive(model: &Model, count: u64, side: u32) -> Vec<u8> {
        let mut header = Header::new(model.fingerprint, 8, 16, 2, 8, 1);
        header.names = false;
        header.entropy = true;
        let cells = (side as usize / 8).pow(2);
        let mut w = ArchiveWriter::new(Vec::new(), &header, count).unwrap();
        for _ in 0..count {
            let record = Record {
                width: side,
                height: side,
                name: None,
                indices: vec![0; cells],
                depths: Vec::new(),
            };
            w.write(&record).unwrap();
        }
        w.finish().unwrap()
    }

    /// An archive that claims many large images (here 2048×2048 at one codebook, all
    /// indices 0, range-coded to a few bytes each) is decoded a pass at a time: one image per
    /// pass and in tiles, each within the budget, and all its images come out.
    #[test]
    fn an_archive_of_large_images_decodes_within_the_budget() {
        let model = tiny_model(Budget::new(Budget::MIN_BYTES).unwrap());
        let side = 2048u32;
        let bytes = zeros_archive(&model, 3, side);
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
        let images: Vec<_> = Decoder::new(&model, 64)
            .decode(&bytes, &Limits::default())
            .unwrap();
        assert_eq!(images.len(), 3);
        assert!(
            images
                .iter()
                .all(|(_, img)| img.width() == side && img.height() == side)
        );
        let (most, pass) = (model.largest_pass(), model.pass_pixels());
        assert!(
            most <= pass && pass < (side * side) as u64,
            "{most} > {pass}"
        );
    }

    /// A stream whose second block is damaged yields the first block's images, then the
    /// error, and nothing after it.
    #[test]
    fn a_damaged_stream_yields_what_came_before_the_damage_then_the_error() {
        let model = tiny_model(Budget::CPU);
        let mut bytes = zeros_archive(&model, 70, 32);
        bytes.truncate(bytes.len() - 3);
        let reader = rvq_archive::ArchiveReader::new(&bytes[..], &Limits::default()).unwrap();
        let decoder = Decoder::new(&model, 16);
        let items: Vec<_> = decoder.images(reader).unwrap().collect();
        assert_eq!(
            items.len(),
            65,
            "64 images of the first block, then the error"
        );
        assert!(items[..64].iter().all(|i| i.is_ok()));
        assert!(items[64].is_err());
    }

    /// A writer whose output fails is abandoned: the pass that failed is not retried, and
    /// every later call says so instead of writing an archive with records missing.
    #[test]
    fn an_encoder_whose_output_failed_is_abandoned() {
        /// Takes `left` bytes (the header), then fails.
        struct Failing {
            left: usize,
        }
        impl std::io::Write for Failing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                if buf.len() > self.left {
                    return Err(std::io::Error::other("disk full"));
                }
                self.left -= buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let model = tiny_model(Budget::CPU);
        let opts = EncodeOptions {
            batch_size: 1,
            refine: 1,
            beam: 1,
            ..EncodeOptions::default()
        };
        let encoder = Encoder::new(&model, opts).unwrap();
        let image = |i: usize| Named {
            name: format!("{i}.png"),
            image: Rgb::new(32, 32, vec![(i * 3) as u8; 32 * 32 * 3]).unwrap(),
        };
        // Records go out a block (64) at a time, so the 65th push writes the first block.
        let count = 70;
        let left = rvq_archive::write_header(encoder.header(), count as u64)
            .unwrap()
            .len();
        let mut writer = encoder.writer(Failing { left }, count as u64).unwrap();
        let mut results: Vec<crate::Result<()>> =
            (0..count).map(|i| writer.push(image(i))).collect();
        results.push(writer.finish().map(|_| ()));
        let first = results
            .iter()
            .position(|r| r.is_err())
            .expect("a write failed");
        for r in &results[first + 1..] {
            assert!(matches!(r, Err(crate::Error::Abandoned)), "{r:?}");
        }
    }
}
