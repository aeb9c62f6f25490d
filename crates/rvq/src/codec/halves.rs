//! Half-size images (format version 4): which images an encode also tries at half size, where
//! the model's cells cover four times the area, and which size each keeps. On photographs that
//! comes closer at low rates (docs/RESULTS.md, "Half-size images").

use rvq_archive::Record;

use super::{EncodeOptions, Named, encode_at_size};
use crate::error::Result;
use crate::eval;
use crate::image_io::Rgb;
use crate::model::Model;
use crate::rate::Rate;
use crate::restore;
use crate::scale;

/// Qualities below this one try images at half size; above it the two ladders are level
/// (docs/results/half-size/above-60/).
const HALF_BELOW: u8 = 60;

/// The fewest pixels an image tried at half size has: its half still takes a restoration
/// filter.
const HALF_MIN_PIXELS: u64 = 4 * restore::MIN_PIXELS;

/// Under a PSNR target, the most dB a half is aimed above the target to leave room for what
/// upsampling alone loses: an image whose upsampling takes more than three quarters of the
/// target's error is not tried (its half would need close to every codebook).
const MOST_AIM_ABOVE: f64 = 6.0;

/// How an encode tries images at half size.
pub(super) enum Halves {
    /// Under a quality: each size weighed as squared error plus `lambda` times its bits, the
    /// halves encoded with `opts`, at a quality whose λ is a quarter of this one's (an error at
    /// half size stands for about four values' at full size, so both searches trade error for
    /// bits at one rate).
    Weighed { lambda: f64, opts: EncodeOptions },
    /// Under a PSNR target of `db` (cells using at most `max_codebooks`): a half is kept where
    /// it reaches the target as written (filtered and upsampled) in fewer bits, priced as rate
    /// control prices them.
    Target {
        db: f64,
        max_codebooks: Option<usize>,
    },
}

/// Whether and how `opts` tries images at half size: below quality [`HALF_BELOW`] or under a
/// PSNR target, with restoration filters and half sizes on.
pub(super) fn tries(opts: &EncodeOptions) -> Option<Halves> {
    if !(opts.filter && opts.half_size) {
        return None;
    }
    match opts.rate {
        Rate::Quality {
            quality,
            max_codebooks,
        } if quality < HALF_BELOW => {
            let quarter = (quality as f64 + 35.0 * 4f64.log10()).round() as u8;
            let opts = EncodeOptions {
                rate: Rate::Quality {
                    quality: quarter.min(100),
                    max_codebooks,
                },
                ..opts.clone()
            };
            let lambda = crate::rate::lambda_for_quality(quality);
            Some(Halves::Weighed { lambda, opts })
        }
        Rate::Psnr { db, max_codebooks } => Some(Halves::Target { db, max_codebooks }),
        _ => None,
    }
}

/// Tries every image of `images` of [`HALF_MIN_PIXELS`] or more again at half size, as
/// `halves` says, and replaces its record in `records` by the half-size one where that is
/// better. Both sizes are measured on the decodes their encodes made for the filters
/// (`written` at full size), as the decoder writes them, and priced as rate control prices
/// them (each index at the codebook's bits, a filter at its bytes).
pub(super) fn choose(
    model: &Model,
    images: &[Named],
    (records, written): (&mut [Record], Vec<Option<Rgb>>),
    halves: &Halves,
    opts: &EncodeOptions,
) -> Result<()> {
    let pixels = |img: &Named| img.image.width() as u64 * img.image.height() as u64;
    let price = |r: &Record| bits(model, r);
    let tried: Vec<usize> = (0..images.len())
        .filter(|&i| pixels(&images[i]) >= HALF_MIN_PIXELS)
        .collect();
    match halves {
        Halves::Weighed {
            lambda,
            opts: at_quarter,
        } => {
            let cost = |i: usize, r: &Record, decoded: &Rgb| {
                eval::squared_error(&images[i].image, decoded) + lambda * price(r)
            };
            let halved: Vec<Named> = tried.iter().map(|&i| halve(&images[i])).collect();
            let sizes: Vec<(u32, u32)> = tried.iter().map(|&i| size(&images[i])).collect();
            let coded = encode_halves(model, &halved, &sizes, at_quarter)?;
            for (&i, (half, small)) in tried.iter().zip(coded) {
                // A tried image is large enough for a filter, so its batch was decoded for
                // one; were either decode missing, the image would keep its size.
                let (Some(full), Some(up)) = (&written[i], small) else {
                    continue;
                };
                if cost(i, &half, &up) < cost(i, &records[i], full) {
                    records[i] = half;
                }
            }
        }
        &Halves::Target { db, max_codebooks } => {
            for i in tried {
                // One short of the target at full size has every codebook already; at half
                // size it would also lose what upsampling drops.
                let Some(full) = &written[i] else { continue };
                if eval::image_psnr(&images[i].image, full) < db {
                    continue;
                }
                let target = (db, max_codebooks);
                if let Some(half) = reach(model, &images[i], target, opts)?
                    && price(&half) < price(&records[i])
                {
                    records[i] = half;
                }
            }
        }
    }
    Ok(())
}

/// The bits of record `r` as rate control prices them: each index at the codebook's bits, a
/// filter at its bytes.
fn bits(model: &Model, r: &Record) -> f64 {
    let index_bits = rvq_archive::bits_per_index(model.config.codebook_size as u32) as f64;
    let filter = r.filter.as_ref().map_or(0, |f| f.stored_len());
    r.indices.len() as f64 * index_bits + 8.0 * filter as f64
}

/// `image` at half size ([`scale::halve`]), under its own name.
fn halve(image: &Named) -> Named {
    Named {
        name: image.name.clone(),
        image: scale::halve(&image.image),
    }
}

/// The width and height of `image`.
fn size(image: &Named) -> (u32, u32) {
    (image.image.width(), image.image.height())
}

/// Images at half size (`halved`, each of [`halve`]) encoded with `opts`: each one's record,
/// of its original's size in `sizes` and flagged half, and its decode as written, upsampled to
/// that size, where its batch was decoded for the filters.
fn encode_halves(
    model: &Model,
    halved: &[Named],
    sizes: &[(u32, u32)],
    opts: &EncodeOptions,
) -> Result<Vec<(Record, Option<Rgb>)>> {
    if halved.is_empty() {
        return Ok(Vec::new());
    }
    let (records, _, written) = encode_at_size(model, halved, opts, true)?;
    Ok(sizes
        .iter()
        .zip(records.into_iter().zip(written))
        .map(|(&(w, h), (r, small))| {
            let up = small.map(|small| scale::upsample(&small, w, h));
            (
                Record {
                    width: w,
                    height: h,
                    half: true,
                    ..r
                },
                up,
            )
        })
        .collect())
}

/// `image` encoded at half size so that, upsampled, it reaches `db`: the half is aimed at the
/// PSNR that leaves the target's error less what upsampling the exact half loses (their
/// errors are nearly orthogonal: one is the detail the half cannot hold, the other lies in
/// the band it can), then once more, the aim moved by what the first measured. Returns the
/// cheaper record that reaches `db` as written, if either does. Both are encoded with `opts`
/// but for the target: the aim, cells using at most `max_codebooks`.
fn reach(
    model: &Model,
    image: &Named,
    (db, max_codebooks): (f64, Option<usize>),
    opts: &EncodeOptions,
) -> Result<Option<Record>> {
    let original = &image.image;
    let values = original.pixels().len() as f64;
    let budget = 10f64.powf(-db / 10.0);
    let (w, h) = size(image);
    // Halved once: for the floor here and for each aim's encode.
    let halved = halve(image);
    let floor = {
        let exact = scale::upsample(&halved.image, w, h);
        eval::squared_error(original, &exact) / values
    };
    let mut aim = eval::psnr(budget - floor);
    let mut best: Option<Record> = None;
    for _ in 0..2 {
        if !(floor < budget && aim <= db + MOST_AIM_ABOVE) {
            break;
        }
        let at = EncodeOptions {
            rate: Rate::Psnr {
                db: aim,
                max_codebooks,
            },
            ..opts.clone()
        };
        let Some((half, Some(up))) =
            encode_halves(model, std::slice::from_ref(&halved), &[(w, h)], &at)?.pop()
        else {
            break;
        };
        let got = eval::squared_error(original, &up) / values;
        if got <= budget
            && best
                .as_ref()
                .is_none_or(|b| bits(model, &half) < bits(model, b))
        {
            best = Some(half);
        }
        // The half's own error scaled so that, with what upsampling adds, the total is the
        // target's; never aimed below the target, which would count on upsampling to hide
        // more of the half's error than what it drops adds.
        let own = 10f64.powf(-aim / 10.0) * (budget - floor) / (got - floor).max(1e-12);
        aim = eval::psnr(own.min(budget));
    }
    Ok(best)
}
