//! Restoration filters (format version 3, docs/FORMAT.md "Restoration filter"): a small linear
//! filter per image, or per square unit of it, that the encoder fits to the decoded image
//! against the original and the decoder applies after the network. On photographs the
//! network's decode carries colour noise and a blur the model, trained on thumbnails, does
//! not undo; a least-squares filter over each pixel's 3×3 neighbourhood and the other two
//! channels takes much of it out for a few dozen bytes (docs/RESULTS.md measures it).
//!
//! The filter works on the 8-bit decode in integers only, so every machine and backend turns
//! the same decode into the same pixels.

use rayon::prelude::*;
use rvq_archive::{CHANNEL_TAPS, Filter, IDENTITY, MIN_UNIT, UNIT_TAPS};

use crate::image_io::Rgb;

/// Unit sides the encoder tries besides one unit for the whole image, largest first: every
/// multiple of 64 up to 512 but 320 and 448. Each is priced by its bytes, so a side that does
/// not pay is not taken.
const UNIT_SIDES: [u32; 6] = [512, 384, 256, 192, 128, 64];
/// Images of fewer pixels than a 64×64 square get no filter: on them its few dozen bytes
/// outweigh what it can gain, and the encoder does not decode them to find out.
pub(crate) const MIN_PIXELS: u64 = (MIN_UNIT * MIN_UNIT) as u64;

/// The features channel `c`'s filter weighs at column `x` of a row: the pixel, the four pairs'
/// sums, the other two channels (in order), and 1 for the bias, read from the unfiltered rows
/// above, at and below it (interleaved RGB; the row itself repeated where the image ends, the
/// edge column repeated beyond it: the format's clamped coordinates).
fn features([up, at, down]: [&[u8]; 3], x: usize, c: usize) -> [i64; CHANNEL_TAPS] {
    let w = at.len() / 3;
    let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
    let v = |row: &[u8], xx: usize| row[xx * 3 + c] as i64;
    let (a, b) = others(c);
    [
        v(at, x),
        v(at, r) + v(at, l),
        v(down, x) + v(up, x),
        v(down, r) + v(up, l),
        v(down, l) + v(up, r),
        at[x * 3 + a] as i64,
        at[x * 3 + b] as i64,
        1,
    ]
}

/// Row `y` of an interleaved image `h` rows tall, with the rows above and below it (the edge
/// row repeated).
fn neighbourhood(px: &[u8], (w, h): (usize, usize), y: usize) -> [&[u8]; 3] {
    let row = |y: usize| &px[y * w * 3..(y + 1) * w * 3];
    [row(y.saturating_sub(1)), row(y), row((y + 1).min(h - 1))]
}

/// The filtered value of one channel at one pixel: the weighted features in 1/256 of a level,
/// the bias in 1/4096 of full scale (255 levels), rounded half up and clamped to 8 bits.
fn filtered(f: &[i64; CHANNEL_TAPS], taps: &[i16]) -> u8 {
    let acc: i64 = (0..7).map(|i| f[i] * taps[i] as i64).sum();
    let v = (16 * acc + 255 * taps[7] as i64 + 2048).div_euclid(4096);
    v.clamp(0, 255) as u8
}

/// The unit (its number in raster order) of pixel (x, y) under unit side `unit` (0: one).
fn unit_of(unit: u32, w: usize, x: usize, y: usize) -> usize {
    if unit == 0 {
        0
    } else {
        let u = unit as usize;
        (y / u) * w.div_ceil(u) + x / u
    }
}

/// Rows one task filters in place, top to bottom, keeping copies of the unfiltered rows it
/// still needs: a reader holds the image and a few rows more, whatever the archive claims.
const BAND: usize = 64;

/// `image` (a decode) with `filter` applied, as docs/FORMAT.md defines it: each pixel from the
/// unfiltered decode, filtered in place.
pub(crate) fn apply(image: Rgb, filter: &Filter) -> Rgb {
    let (width, height) = (image.width(), image.height());
    let (w, h) = (width as usize, height as usize);
    let rb = w * 3;
    let mut px = image.into_pixels();
    // Each band's unfiltered neighbours beyond it, taken before any band is filtered: the row
    // above its first and the row below its last (the image's edge repeated).
    let edges: Vec<(Vec<u8>, Vec<u8>)> = (0..h.div_ceil(BAND))
        .map(|b| {
            let above = (b * BAND).saturating_sub(1);
            let below = ((b + 1) * BAND).min(h - 1);
            let row = |y: usize| px[y * rb..(y + 1) * rb].to_vec();
            (row(above), row(below))
        })
        .collect();
    let bands = px.par_chunks_mut(BAND * rb).zip(edges.par_iter());
    bands.enumerate().for_each(|(b, (band, (above, below)))| {
        let rows = band.len() / rb;
        let mut prev = above.clone();
        let mut cur = vec![0u8; rb];
        for i in 0..rows {
            let y = b * BAND + i;
            cur.copy_from_slice(&band[i * rb..(i + 1) * rb]);
            let (head, tail) = band.split_at_mut((i + 1) * rb);
            let next: &[u8] = if i + 1 < rows {
                &tail[..rb]
            } else if y + 1 < h {
                below
            } else {
                &cur
            };
            filter_row(&mut head[i * rb..], [&prev, &cur, next], y, filter);
            std::mem::swap(&mut prev, &mut cur);
        }
    });
    Rgb::new(width, height, px).expect("the image's own size")
}

/// Writes row `y`, filtered, into `out` from the unfiltered rows above it, at it and below it
/// (as [`features`] reads them).
fn filter_row(out: &mut [u8], rows: [&[u8]; 3], y: usize, filter: &Filter) {
    let w = rows[1].len() / 3;
    for x in 0..w {
        let unit = &filter.coefficients[unit_of(filter.unit, w, x, y) * UNIT_TAPS..];
        for c in 0..3 {
            let f = features(rows, x, c);
            out[x * 3 + c] = filtered(&f, &unit[c * CHANNEL_TAPS..(c + 1) * CHANNEL_TAPS]);
        }
    }
}

/// The two channels other than `c`, in order.
fn others(c: usize) -> (usize, usize) {
    match c {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

/// One channel's least-squares sums over some pixels, exact in integers: the features'
/// products (upper triangle, row-major), the features times the original, and the original
/// squared.
#[derive(Clone, Copy)]
struct Sums {
    ff: [i64; 36],
    fy: [i64; CHANNEL_TAPS],
    yy: i64,
}

impl Default for Sums {
    fn default() -> Self {
        Self {
            ff: [0; 36],
            fy: [0; CHANNEL_TAPS],
            yy: 0,
        }
    }
}

impl Sums {
    fn add(&mut self, f: &[i64; CHANNEL_TAPS], y: i64) {
        let mut k = 0;
        for i in 0..CHANNEL_TAPS {
            for j in i..CHANNEL_TAPS {
                self.ff[k] += f[i] * f[j];
                k += 1;
            }
            self.fy[i] += f[i] * y;
        }
        self.yy += y * y;
    }

    fn merge(&mut self, o: &Sums) {
        self.ff.iter_mut().zip(&o.ff).for_each(|(a, b)| *a += b);
        self.fy.iter_mut().zip(&o.fy).for_each(|(a, b)| *a += b);
        self.yy += o.yy;
    }

    // Each product fills a[i][j] and its mirror a[j][i]: indices, not an iterator.
    #[allow(clippy::needless_range_loop)]
    fn matrix(&self) -> [[f64; CHANNEL_TAPS]; CHANNEL_TAPS] {
        let mut a = [[0.0; CHANNEL_TAPS]; CHANNEL_TAPS];
        let mut k = 0;
        for i in 0..CHANNEL_TAPS {
            for j in i..CHANNEL_TAPS {
                a[i][j] = self.ff[k] as f64;
                a[j][i] = a[i][j];
                k += 1;
            }
        }
        a
    }

    /// The squared error of the filter with real weights `wt` (in levels) over these pixels,
    /// before rounding: yy − 2 wᵀ fy + wᵀ A w.
    fn sse(&self, wt: &[f64; CHANNEL_TAPS]) -> f64 {
        let a = self.matrix();
        let mut e = self.yy as f64;
        for i in 0..CHANNEL_TAPS {
            e -= 2.0 * wt[i] * self.fy[i] as f64;
            for j in 0..CHANNEL_TAPS {
                e += wt[i] * a[i][j] * wt[j];
            }
        }
        e
    }

    /// The channel's coefficients that fit these pixels best, in the format's integers: the
    /// taps solved and rounded to 1/256, then the bias solved again for the rounded taps.
    /// `None` when the pixels leave the taps undetermined (a flat unit).
    fn solve(&self) -> Option<[i16; CHANNEL_TAPS]> {
        let mut a = self.matrix();
        let mut b: [f64; CHANNEL_TAPS] = self.fy.map(|v| v as f64);
        let n = a[7][7];
        // A ridge of a millionth of the pixel count keeps near-flat units solvable without
        // moving a busy unit's solution.
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-6 * n * 255.0 * 255.0;
        }
        let wt = gauss(&mut a, &mut b)?;
        let mut taps = [0i16; CHANNEL_TAPS];
        for i in 0..7 {
            taps[i] = (wt[i] * 256.0).round().clamp(-32_768.0, 32_767.0) as i16;
        }
        // The bias that best fits the rounded taps: the mean of what they leave.
        let exact = self.matrix();
        let rest: f64 = (0..7).map(|i| exact[7][i] * taps[i] as f64 / 256.0).sum();
        let bias = (self.fy[7] as f64 - rest) / n;
        taps[7] = (bias * 4096.0 / 255.0).round().clamp(-32_768.0, 32_767.0) as i16;
        Some(taps)
    }
}

/// The real weights (levels per level, bias in levels) that `taps` stand for.
fn weights(taps: &[i16]) -> [f64; CHANNEL_TAPS] {
    let mut wt = [0.0; CHANNEL_TAPS];
    for i in 0..7 {
        wt[i] = taps[i] as f64 / 256.0;
    }
    wt[7] = taps[7] as f64 * 255.0 / 4096.0;
    wt
}

/// Solves a x = b by Gaussian elimination with partial pivoting; `None` if singular.
fn gauss(
    a: &mut [[f64; CHANNEL_TAPS]; CHANNEL_TAPS],
    b: &mut [f64; CHANNEL_TAPS],
) -> Option<[f64; CHANNEL_TAPS]> {
    const N: usize = CHANNEL_TAPS;
    for col in 0..N {
        let pivot = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..N {
            let k = a[row][col] / a[col][col];
            let (above, below) = a.split_at_mut(row);
            for (x, p) in below[0][col..].iter_mut().zip(&above[col][col..]) {
                *x -= k * p;
            }
            b[row] -= k * b[col];
        }
    }
    let mut x = [0.0; N];
    for row in (0..N).rev() {
        let s: f64 = (row + 1..N).map(|j| a[row][j] * x[j]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Each channel's sums over each block of [`MIN_UNIT`] pixels a side, blocks in raster order:
/// every unit side the encoder tries is a multiple of it, so a unit's sums are its blocks'.
fn block_sums(original: &Rgb, decoded: &Rgb) -> (Vec<[Sums; 3]>, usize) {
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    let b = MIN_UNIT as usize;
    let bw = w.div_ceil(b);
    let (px, orig) = (decoded.pixels(), original.pixels());
    let rows: Vec<Vec<[Sums; 3]>> = (0..h.div_ceil(b))
        .into_par_iter()
        .map(|by| {
            let mut row = vec![[Sums::default(); 3]; bw];
            for y in by * b..((by + 1) * b).min(h) {
                let rows = neighbourhood(px, (w, h), y);
                for x in 0..w {
                    let sums = &mut row[x / b];
                    for (c, s) in sums.iter_mut().enumerate() {
                        s.add(&features(rows, x, c), orig[(y * w + x) * 3 + c] as i64);
                    }
                }
            }
            row
        })
        .collect();
    (rows.into_iter().flatten().collect(), bw)
}

/// The filter with units of side `unit` (0: one) fitted from the blocks' sums, and its
/// estimated squared error (in levels², before rounding); `None` if no unit changes.
fn fit_units(
    blocks: &[[Sums; 3]],
    bw: usize,
    (w, h): (usize, usize),
    unit: u32,
) -> (Option<Filter>, f64) {
    // Blocks per unit side; with one unit every block falls in it whatever this is.
    let per = (unit / MIN_UNIT).max(1) as usize;
    let (uw, uh) = if unit == 0 {
        (1, 1)
    } else {
        (w.div_ceil(unit as usize), h.div_ceil(unit as usize))
    };
    let mut units = vec![[Sums::default(); 3]; uw * uh];
    for (i, block) in blocks.iter().enumerate() {
        let (bx, by) = (i % bw, i / bw);
        let u = &mut units[(by / per).min(uh - 1) * uw + (bx / per).min(uw - 1)];
        for c in 0..3 {
            u[c].merge(&block[c]);
        }
    }
    let identity = weights(&IDENTITY);
    let mut coefficients = Vec::with_capacity(uw * uh * UNIT_TAPS);
    let mut sse = 0.0;
    for u in &units {
        for s in u {
            let taps = s.solve().unwrap_or(IDENTITY);
            let (with, without) = (s.sse(&weights(&taps)), s.sse(&identity));
            // Rounding the filtered values adds about 1/12 of a level² a value.
            let rounding = s.ff[35] as f64 / 12.0;
            if with + rounding < without {
                coefficients.extend_from_slice(&taps);
                sse += with + rounding;
            } else {
                coefficients.extend_from_slice(&IDENTITY);
                sse += without;
            }
        }
    }
    let filter = Filter { unit, coefficients };
    let changes = filter.check(w as u32, h as u32).is_ok();
    (changes.then_some(filter), sse)
}

/// The filter for `decoded` (the decode of `original`'s indices) that minimises squared error
/// plus `lambda` (squared error per bit, values on [0, 1], as rate control prices bits) times
/// its bits, over one unit and the unit sides the encoder tries, with `decoded` filtered by
/// it; `None` where no filter pays for its bytes, where the filtered image (rounded, as the
/// decoder writes it) would not be closer to `original` than `decoded`, and for images under
/// [`MIN_PIXELS`].
pub(crate) fn fit(original: &Rgb, decoded: &Rgb, lambda: f64) -> Option<(Filter, Rgb)> {
    let (w, h) = (decoded.width() as usize, decoded.height() as usize);
    if ((w * h) as u64) < MIN_PIXELS {
        return None;
    }
    let (blocks, bw) = block_sums(original, decoded);
    let identity = weights(&IDENTITY);
    let plain: f64 = blocks
        .iter()
        .flat_map(|b| b.iter().map(|s| s.sse(&identity)))
        .sum();
    let price = lambda * 255.0 * 255.0;
    let mut best: (Option<Filter>, f64) = (None, plain);
    let sides = std::iter::once(0).chain(UNIT_SIDES.into_iter().filter(|&s| s < w.max(h) as u32));
    for unit in sides {
        if let (Some(filter), sse) = fit_units(&blocks, bw, (w, h), unit) {
            let bits = 8.0 * filter.stored_len() as f64;
            let cost = sse + price * bits;
            if cost < best.1 {
                best = (Some(filter), cost);
            }
        }
    }
    // The estimates leave out rounding's exact share: the written pixels decide.
    let filter = best.0?;
    let filtered = apply(decoded.clone(), &filter);
    (squared_error(original, &filtered) < squared_error(original, decoded))
        .then_some((filter, filtered))
}

fn squared_error(a: &Rgb, b: &Rgb) -> u64 {
    a.pixels()
        .iter()
        .zip(b.pixels())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)).pow(2))
        .sum()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An image whose value at (x, y) in channel c is f(x, y, c).
    pub(crate) fn image(w: u32, h: u32, f: impl Fn(u32, u32, usize) -> u8) -> Rgb {
        let mut px = Vec::new();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    px.push(f(x, y, c));
                }
            }
        }
        Rgb::new(w, h, px).unwrap()
    }

    use super::squared_error as sse;

    /// A textured image, deterministic.
    fn texture(w: u32, h: u32) -> Rgb {
        image(w, h, |x, y, c| {
            let v = (x * 7 + y * 13 + c as u32 * 31) ^ (x * y + 3 * c as u32);
            (v % 200 + 20) as u8
        })
    }

    #[test]
    fn the_identity_changes_no_pixel_and_the_arithmetic_is_the_formats() {
        let img = texture(70, 66);
        let identity = Filter {
            unit: 0,
            coefficients: IDENTITY.repeat(3),
        };
        assert_eq!(apply(img.clone(), &identity), img);
        // Red: 0.5 of the pixel and 0.25 of each pixel to its left and right, bias +1/16 of
        // full scale (255/16 = 15.9375 levels): a flat 100 becomes 100 + 15.9375 -> 116.
        let mut taps = IDENTITY.repeat(3);
        taps[..8].copy_from_slice(&[128, 64, 0, 0, 0, 0, 0, 256]);
        let flat = image(64, 64, |_, _, _| 100);
        let out = apply(
            flat,
            &Filter {
                unit: 0,
                coefficients: taps,
            },
        );
        assert!(out.pixels().chunks(3).all(|p| p == [116, 100, 100]));
    }

    /// docs/FORMAT.md's formula, read literally: coordinates clamped, every pixel from the
    /// unfiltered decode.
    fn reference(img: &Rgb, f: &Filter) -> Vec<u8> {
        let (w, h) = (img.width() as i64, img.height() as i64);
        let px = img.pixels();
        let x_k = |k: usize, x: i64, y: i64| -> i64 {
            let (x, y) = (x.clamp(0, w - 1), y.clamp(0, h - 1));
            px[((y * w + x) * 3) as usize + k] as i64
        };
        let mut out = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let unit = if f.unit == 0 {
                    0
                } else {
                    let u = f.unit as i64;
                    ((y / u) * ((w + u - 1) / u) + x / u) as usize
                };
                for k in 0..3 {
                    let t =
                        |i: usize| f.coefficients[unit * UNIT_TAPS + k * CHANNEL_TAPS + i] as i64;
                    let (a, b) = match k {
                        0 => (1, 2),
                        1 => (0, 2),
                        _ => (0, 1),
                    };
                    let acc = t(0) * x_k(k, x, y)
                        + t(1) * (x_k(k, x + 1, y) + x_k(k, x - 1, y))
                        + t(2) * (x_k(k, x, y + 1) + x_k(k, x, y - 1))
                        + t(3) * (x_k(k, x + 1, y + 1) + x_k(k, x - 1, y - 1))
                        + t(4) * (x_k(k, x - 1, y + 1) + x_k(k, x + 1, y - 1))
                        + t(5) * x_k(a, x, y)
                        + t(6) * x_k(b, x, y);
                    let v = (16 * acc + 255 * t(7) + 2048).div_euclid(4096);
                    out.push(v.clamp(0, 255) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn the_filter_is_the_formats_formula_across_units_bands_and_edges() {
        // Taller than two bands, units cut by both edges, every tap and negative sums.
        let (w, h) = (150u32, 140u32);
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) as i64
        };
        let img = image(w, h, |_, _, _| 0);
        let px: Vec<u8> = img.pixels().iter().map(|_| (next() % 256) as u8).collect();
        let img = Rgb::new(w, h, px).unwrap();
        let units = 3 * 3;
        let coefficients = (0..units * UNIT_TAPS)
            .map(|i| {
                let r = next() % 601 - 300;
                (if i % CHANNEL_TAPS == 0 { 256 + r } else { r }) as i16
            })
            .collect();
        let f = Filter {
            unit: 64,
            coefficients,
        };
        f.check(w, h).unwrap();
        assert_eq!(
            apply(img.clone(), &f).pixels(),
            reference(&img, &f).as_slice()
        );
        let one = Filter {
            unit: 0,
            coefficients: f.coefficients[..UNIT_TAPS].to_vec(),
        };
        assert_eq!(
            apply(img.clone(), &one).pixels(),
            reference(&img, &one).as_slice()
        );
    }

    #[test]
    fn a_fitted_filter_undoes_a_colour_cast_and_a_blur() {
        let original = texture(160, 96);
        // Green pulled halfway to red, blue darkened, and every channel blurred along rows
        // (a fifth of each neighbour).
        let w = 160usize;
        let px = original.pixels();
        let degraded = image(160, 96, |x, y, c| {
            let at = |xx: u32, cc: usize| px[(y as usize * w + xx as usize) * 3 + cc] as f64;
            let v = |xx| match c {
                0 => at(xx, 0),
                1 => 0.5 * at(xx, 1) + 0.5 * at(xx, 0),
                _ => 0.8 * at(xx, 2),
            };
            let (xl, xr) = (x.saturating_sub(1), (x + 1).min(159));
            (0.2 * v(xl) + 0.6 * v(x) + 0.2 * v(xr)).round() as u8
        });
        let (_, restored) = fit(&original, &degraded, 0.0).expect("a filter that helps");
        let (before, after) = (sse(&original, &degraded), sse(&original, &restored));
        assert!(after * 2 < before, "{before} -> {after}");
        // At a price no gain pays for, no filter.
        assert!(fit(&original, &degraded, 1e3).is_none());
    }

    #[test]
    fn exact_decodes_and_small_images_get_none() {
        let img = texture(128, 128);
        assert!(fit(&img, &img, 0.0).is_none());
        let small = texture(63, 64);
        let blurred = image(63, 64, |x, y, c| {
            small.pixels()[((y * 63 + x) * 3) as usize + c] / 2
        });
        assert!(fit(&small, &blurred, 0.0).is_none());
    }

    #[test]
    fn units_take_their_own_coefficients() {
        // Left half darkened, right half brightened: two units of 64 fit it, one cannot.
        let original = texture(128, 64);
        let px = original.pixels();
        let degraded = image(128, 64, |x, y, c| {
            let v = px[((y * 128 + x) * 3) as usize + c] as f64;
            (if x < 64 { v * 0.7 } else { v * 0.9 + 20.0 }).round() as u8
        });
        let whole = fit_units(&block_sums(&original, &degraded).0, 2, (128, 64), 0);
        let halves = fit_units(&block_sums(&original, &degraded).0, 2, (128, 64), 64);
        let f = halves.0.unwrap();
        assert_eq!(f.coefficients.len(), 2 * UNIT_TAPS);
        assert!(halves.1 * 4.0 < whole.1, "{} against {}", halves.1, whole.1);
        let restored = apply(degraded.clone(), &f);
        assert!(sse(&original, &restored) * 4 < sse(&original, &degraded));
    }
}
