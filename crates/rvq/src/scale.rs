//! Images coded at half size (format version 4, docs/FORMAT.md, "Half-size images"): the
//! decoder's twofold upsampling, which the format fixes to the bit, and the encoder's halving,
//! which it leaves to the encoder. At low rates a photograph coded at half size and upsampled
//! comes closer to the original than one coded at its size in as many bytes: the model's
//! cells then cover 16×16 pixels, and one codebook entry describes four times the area.

use rayon::prelude::*;

use crate::image_io::Rgb;

/// The upsampling taps, in 1/128: Catmull–Rom's cubic (a = −1/2) at a quarter and three
/// quarters of the way between two pixels, where it is exact in 1/128. Output pixel 2i takes
/// coded pixels i − 2 … i + 1, output pixel 2i + 1 takes i − 1 … i + 2.
const EVEN: [i32; 4] = [-3, 29, 111, -9];
const ODD: [i32; 4] = [-9, 111, 29, -3];

/// The coded pixels (clamped to the `n` there are) and taps of output coordinate `x`.
fn taps(x: usize, n: usize) -> ([usize; 4], &'static [i32; 4]) {
    let i = (x / 2) as isize;
    let (first, weights) = if x.is_multiple_of(2) {
        (i - 2, &EVEN)
    } else {
        (i - 1, &ODD)
    };
    let at = |k: isize| (first + k).clamp(0, n as isize - 1) as usize;
    ([at(0), at(1), at(2), at(3)], weights)
}

/// Upsamples a decoded half-size image twofold and crops it to `width × height` (each at
/// most twice the coded side): every output value is floor((Σ wy · wx · X + 8,192) / 16,384),
/// clamped to 0..=255, over the 4 × 4 coded pixels its taps name, in integers.
pub(crate) fn upsample(coded: &Rgb, width: u32, height: u32) -> Rgb {
    let (cw, ch) = (coded.width() as usize, coded.height() as usize);
    let (w, h) = (width as usize, height as usize);
    debug_assert!(w.div_ceil(2) == cw && h.div_ceil(2) == ch);
    let px = coded.pixels();
    let columns: Vec<_> = (0..w).map(|x| taps(x, cw)).collect();
    let mut out = vec![0u8; w * h * 3];
    out.par_chunks_mut(w * 3).enumerate().for_each_init(
        || vec![0i32; cw * 3],
        |column, (y, row)| {
            // The vertical sums are exact integers, so summing them again across is the
            // two-dimensional sum of the formula, rounded once.
            let (rows, wy) = taps(y, ch);
            column.fill(0);
            for (&r, &weight) in rows.iter().zip(wy) {
                let src = &px[r * cw * 3..(r + 1) * cw * 3];
                for (acc, &v) in column.iter_mut().zip(src) {
                    *acc += weight * v as i32;
                }
            }
            for (out, (cx, wx)) in row.chunks_exact_mut(3).zip(&columns) {
                for (c, value) in out.iter_mut().enumerate() {
                    let acc: i32 = (0..4).map(|k| wx[k] * column[cx[k] * 3 + c]).sum();
                    *value = ((acc + 8192) >> 14).clamp(0, 255) as u8;
                }
            }
        },
    );
    Rgb::new(width, height, out).expect("the upsampled buffer has the size asked for")
}

/// Lanczos-3 weights for halving: output pixel i is centred on input 2i + 1/2, and the
/// kernel, stretched twofold, reaches six input pixels to each side.
fn halving_weights() -> [f64; 12] {
    let sinc = |t: f64| {
        if t == 0.0 {
            1.0
        } else {
            (std::f64::consts::PI * t).sin() / (std::f64::consts::PI * t)
        }
    };
    let mut w = [0.0; 12];
    for (k, v) in w.iter_mut().enumerate() {
        let t = (k as f64 - 5.5) / 2.0;
        *v = sinc(t) * sinc(t / 3.0);
    }
    let sum: f64 = w.iter().sum();
    w.map(|v| v / sum)
}

/// Output rows halved per task: each task reads the 2 · BAND + 10 input rows they need.
const BAND: usize = 32;

/// The encoder's half-size image of `image` (⌈width / 2⌉ × ⌈height / 2⌉), by Lanczos-3: not
/// part of the format, which fixes only the upsampling. Bands of output rows at a time, so
/// that its scratch is a few rows of the image whatever its size.
pub(crate) fn halve(image: &Rgb) -> Rgb {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let (hw, hh) = (w.div_ceil(2), h.div_ceil(2));
    let weights = halving_weights().map(|v| v as f32);
    let px = image.pixels();
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut out = vec![0u8; hh * hw * 3];
    out.par_chunks_mut(BAND * hw * 3)
        .enumerate()
        .for_each(|(band, rows)| {
            let y0 = band * BAND;
            // Input rows first..=last, each halved across, three channels interleaved.
            let first = clamp(2 * y0 as isize - 5, h);
            let last = clamp(2 * (y0 + rows.len() / (hw * 3)) as isize + 6, h);
            let mut across = vec![0.0f32; (last - first + 1) * hw * 3];
            for (r, line) in across.chunks_exact_mut(hw * 3).enumerate() {
                let src = &px[(first + r) * w * 3..(first + r + 1) * w * 3];
                for (i, v) in line.chunks_exact_mut(3).enumerate() {
                    for (k, wt) in weights.iter().enumerate() {
                        let x = clamp(2 * i as isize - 5 + k as isize, w);
                        for (value, &s) in v.iter_mut().zip(&src[x * 3..x * 3 + 3]) {
                            *value += wt * s as f32;
                        }
                    }
                }
            }
            for (dy, row) in rows.chunks_exact_mut(hw * 3).enumerate() {
                let top = 2 * (y0 + dy) as isize - 5;
                for (i, value) in row.iter_mut().enumerate() {
                    let v: f32 = weights
                        .iter()
                        .enumerate()
                        .map(|(k, wt)| {
                            let r = clamp(top + k as isize, h) - first;
                            wt * across[r * hw * 3 + i]
                        })
                        .sum();
                    *value = v.round().clamp(0.0, 255.0) as u8;
                }
            }
        });
    Rgb::new(hw as u32, hh as u32, out).expect("the halved buffer has the size asked for")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::tests::image;

    /// The format's formula, read literally: a 4 × 4 sum of products per output value.
    fn reference(coded: &Rgb, w: u32, h: u32) -> Vec<u8> {
        let (cw, ch) = (coded.width() as i64, coded.height() as i64);
        let px = coded.pixels();
        let mut out = Vec::new();
        for y in 0..h as i64 {
            for x in 0..w as i64 {
                for c in 0..3 {
                    let mut acc = 0i64;
                    for j in 0..4 {
                        for i in 0..4 {
                            let (ry, wy) = if y & 1 == 0 {
                                (y / 2 - 2 + j, EVEN[j as usize])
                            } else {
                                (y / 2 - 1 + j, ODD[j as usize])
                            };
                            let (rx, wx) = if x & 1 == 0 {
                                (x / 2 - 2 + i, EVEN[i as usize])
                            } else {
                                (x / 2 - 1 + i, ODD[i as usize])
                            };
                            let (rx, ry) = (rx.clamp(0, cw - 1), ry.clamp(0, ch - 1));
                            let v = px[((ry * cw + rx) * 3 + c) as usize] as i64;
                            acc += (wy * wx) as i64 * v;
                        }
                    }
                    out.push((acc + 8192).div_euclid(16384).clamp(0, 255) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn upsampling_is_the_formats_formula_at_edges_odd_sides_and_overshoot() {
        // A checkerboard of extremes overshoots both ways, so the clamps and the floor of a
        // negative sum are exercised; odd sides crop the last coded column and row.
        let coded = image(5, 4, |x, y, c| {
            if (x + y + c as u32).is_multiple_of(2) {
                255
            } else {
                0
            }
        });
        for (w, h) in [(10, 8), (9, 7), (9, 8), (10, 7)] {
            let up = upsample(&coded, w, h);
            assert_eq!((up.width(), up.height()), (w, h));
            assert_eq!(up.pixels(), reference(&coded, w, h).as_slice(), "{w}×{h}");
        }
        let one = image(1, 1, |_, _, c| 40 * c as u8 + 7);
        assert_eq!(upsample(&one, 2, 1).pixels(), [7, 47, 87, 7, 47, 87]);
    }

    #[test]
    fn flat_and_linear_images_come_back_from_halving_and_upsampling() {
        let flat = image(37, 20, |_, _, c| 60 + 50 * c as u8);
        let half = halve(&flat);
        assert_eq!((half.width(), half.height()), (19, 10));
        assert!(half.pixels().chunks(3).all(|p| p == [60, 110, 160]));
        assert_eq!(upsample(&half, 37, 20), flat);
        // A gentle ramp survives the round trip within a level away from the edges.
        let ramp = image(64, 64, |x, y, _| (x + y) as u8 + 40);
        let back = upsample(&halve(&ramp), 64, 64);
        for y in 4..60usize {
            for x in 4..60usize {
                let (a, b) = (
                    ramp.pixels()[(y * 64 + x) * 3],
                    back.pixels()[(y * 64 + x) * 3],
                );
                assert!(a.abs_diff(b) <= 1, "({x}, {y}): {a} against {b}");
            }
        }
    }
}
