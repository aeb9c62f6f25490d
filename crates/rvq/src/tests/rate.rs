//! Rate control on the sample photographs, through the encoder's front: qualities spend
//! codebooks where they pay, PSNR targets are met or the shortfall is reported.

use burn::prelude::*;

use super::common::sample_photographs;
use crate::image_io::Rgb;
use crate::quantizer::EncodedBatch;
use crate::rate::{Distortion, decoded_tables, linear_tables};
use crate::{Decoder, EncodeOptions, Encoder, Model, Named, Rate, RateSearch};

/// An encode of `images` at `rate`: archive bytes, each image's PSNR as it decodes, the mean
/// depth of a cell, and the names of the images a PSNR target was out of reach for.
fn encode_at(model: &Model, images: &[Named], rate: Rate) -> (usize, Vec<f64>, f64, Vec<String>) {
    let opts = EncodeOptions {
        rate,
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(model, opts).unwrap();
    let (records, short) = encoder.records_reporting(images).unwrap();
    let header = encoder.header();
    let bytes = rvq_archive::write_archive(header, &records).unwrap().len();
    let decoded = Decoder::new(model, 64)
        .decode_records(header, &records)
        .unwrap();
    let psnrs = images
        .iter()
        .zip(&decoded)
        .map(|(img, out)| crate::eval::image_psnr(&img.image, out))
        .collect();
    let (cells, levels) = records.iter().fold((0usize, 0usize), |(c, l), r| {
        let d = r.cell_depths(header);
        (
            c + d.len(),
            l + d.iter().map(|&x| x as usize).sum::<usize>(),
        )
    });
    let names = short.into_iter().map(|s| s.name).collect();
    (bytes, psnrs, levels as f64 / cells as f64, names)
}

#[test]
fn quality_spends_codebooks_where_they_pay_and_is_monotone() {
    let model = Model::load_default(&Device::flex()).unwrap();
    let images = sample_photographs();
    let (mut last_size, mut last_psnr) = (0usize, 0f64);
    for quality in [5, 35, 65, 100] {
        let rate = Rate::Quality {
            quality,
            max_codebooks: None,
        };
        let (size, psnrs, depth, _) = encode_at(&model, &images, rate);
        let pooled = -10.0
            * (psnrs.iter().map(|p| 10f64.powf(-p / 10.0)).sum::<f64>() / psnrs.len() as f64)
                .log10();
        assert!(
            size > last_size,
            "q = {quality}: {size} bytes, not above {last_size}"
        );
        assert!(
            pooled > last_psnr,
            "q = {quality}: {pooled} dB, not above {last_psnr}"
        );
        if quality == 35 {
            // Cells differ: some stop early, some go deep.
            assert!(depth > 1.5 && depth < 6.5, "mean depth {depth}");
        }
        (last_size, last_psnr) = (size, pooled);
    }
}

#[test]
fn psnr_targets_are_reached_or_the_shortfall_is_reported() {
    let model = Model::load_default(&Device::flex()).unwrap();
    let images = sample_photographs();
    for target in [24.0, 29.0] {
        let rate = Rate::Psnr {
            db: target,
            max_codebooks: None,
        };
        let (_, psnrs, depth, short) = encode_at(&model, &images, rate);
        for (img, got) in images.iter().zip(psnrs) {
            assert!(
                got >= target || short.contains(&img.name),
                "{}: {got} dB at a {target} dB target, not reported",
                img.name
            );
        }
        if target == 24.0 {
            // Only the two busiest 32×32 crops need every codebook (and still fall short).
            assert_eq!(short.len(), 2, "{short:?}");
            assert!(depth < 8.0, "mean depth {depth}");
        }
    }
}

/// An encode of `images` at `rate` with rate search `search` and no refinement: archive bytes,
/// each image's PSNR as it decodes, and how many depths its cells use.
fn searched(
    model: &Model,
    images: &[Named],
    rate: Rate,
    search: RateSearch,
) -> (usize, Vec<f64>, usize) {
    let opts = EncodeOptions {
        rate,
        rate_search: search,
        refine: 1,
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(model, opts).unwrap();
    let records = encoder.records(images).unwrap();
    let header = encoder.header();
    let size = rvq_archive::write_archive(header, &records).unwrap().len();
    let depths: std::collections::BTreeSet<u8> =
        records.iter().flat_map(|r| r.cell_depths(header)).collect();
    let decoded = Decoder::new(model, 64)
        .decode_records(header, &records)
        .unwrap();
    let psnrs = images
        .iter()
        .zip(&decoded)
        .map(|(img, out)| crate::eval::image_psnr(&img.image, out))
        .collect();
    (size, psnrs, depths.len())
}

/// Rate searches that decode less pick depths close to the decoded search's, with cells at
/// several depths: per image within 1 dB, and in total within a quarter of the bytes in the
/// latent space (no decode), a tenth through the linear path (one decode; docs/BENCHMARKS.md
/// measures both at equal bits).
#[test]
fn cheaper_rate_searches_stay_close_to_the_decoded_one() {
    let model = Model::load_default(&Device::flex()).unwrap();
    let images = sample_photographs();
    let rate = Rate::Quality {
        quality: 50,
        max_codebooks: None,
    };
    let (bytes, psnrs, _) = searched(&model, &images, rate, RateSearch::Decoded);
    for (search, size_apart, db_apart) in [
        (RateSearch::Latent, 0.25, 1.0),
        (RateSearch::Linear, 0.1, 1.0),
    ] {
        let (size, got, depths) = searched(&model, &images, rate, search);
        assert!(
            (size as f64 - bytes as f64).abs() < size_apart * bytes as f64,
            "{search:?}: {size} bytes against {bytes}"
        );
        assert!(depths > 2, "{search:?}: {depths} depths");
        for ((img, got), want) in images.iter().zip(&got).zip(&psnrs) {
            assert!(
                (got - want).abs() < db_apart,
                "{search:?}, {}: {got} dB against {want}",
                img.name
            );
        }
    }
}

/// A batch of two images of one padded size (40×24, the first with partial cells), encoded at
/// `m` codebooks by `model` with a beam of `beam`, and their tables of every depth's error, all
/// zero.
fn batch(model: &Model, m: usize, beam: usize) -> (Vec<Rgb>, EncodedBatch, Vec<Distortion>) {
    let image = |w: u32, h: u32, seed: u32| {
        let px = (0..w * h * 3).map(|i| ((i * 37 + seed * 101) % 251) as u8 + (i % 5) as u8);
        Rgb::new(w, h, px.collect()).unwrap()
    };
    let images = vec![image(37, 21, 1), image(40, 24, 2)];
    let mut values = Vec::new();
    for img in &images {
        values.extend(crate::image_io::to_planar_padded(img, 40, 24));
    }
    let latents = model.encode_planar(&values, 2, 24, 40).unwrap();
    let encoded = model.quantize_latents(latents, (m, beam), true).unwrap();
    let tables = images
        .iter()
        .map(|img| Distortion {
            m,
            columns: 5,
            sse: vec![0.0; 15 * m],
            values: img.pixels().len() as f64,
        })
        .collect();
    (images, encoded, tables)
}

/// The linear rate search's tables against decoding at every depth: on a decoder that is its
/// linear path alone they are the decoded ones at every depth, around any anchor, and tell the
/// depths apart, whether each depth's path starts the full one or not; on the shipped model
/// they are exact at the decoded depth and estimates elsewhere.
#[test]
fn the_linear_tables_are_the_decode_where_the_decoder_is_its_linear_path() {
    let device = Device::flex();
    let linear_only = super::linear_only_model(&device);
    let shipped = Model::load_default(&device).unwrap();
    // With a beam, each depth has its own path; the tables must follow each.
    for (model, m, beam) in [(&linear_only, 3, 1), (&linear_only, 3, 4), (&shipped, 8, 4)] {
        let (images, encoded, zero) = batch(model, m, beam);
        let originals: Vec<&Rgb> = images.iter().collect();
        let mut decoded = zero.clone();
        decoded_tables(model, &originals, &encoded, m, &mut decoded).unwrap();
        if beam > 1 {
            // Not vacuous: the full path's starts decode otherwise.
            let mut starts = encoded.clone();
            starts.prefixes.clear();
            let mut theirs = zero.clone();
            decoded_tables(model, &originals, &starts, m, &mut theirs).unwrap();
            let differ = theirs.iter().zip(&decoded).any(|(a, b)| a.sse != b.sse);
            assert!(differ, "no depth's path leaves the full one");
        }
        let drawn = crate::linear::Drawing::of(model).unwrap();
        let anchor: Vec<Vec<u8>> = (0..2)
            .map(|i| (0..15).map(|c| ((c + i) % m + 1) as u8).collect())
            .collect();
        for anchor in [None, Some(anchor.as_slice())] {
            let mut linear = zero.clone();
            linear_tables(model, &drawn, &originals, &encoded, m, anchor, &mut linear).unwrap();
            let mut apart = 0;
            for (i, (lin, dec)) in linear.iter().zip(&decoded).enumerate() {
                for (at, (&l, &d)) in lin.sse.iter().zip(&dec.sse).enumerate() {
                    let (cell, depth) = (at / m, at % m + 1);
                    let close = (l - d).abs() <= 1e-5 * d.max(1.0);
                    // Around a mixed anchor even the anchor's own depth differs a little on the
                    // shipped model: there, a cell's neighbours sit at other depths.
                    if std::ptr::eq(model, &linear_only) || (anchor.is_none() && depth == m) {
                        assert!(
                            close,
                            "image {i} cell {cell} depth {depth}: {l} against {d}"
                        );
                    }
                    apart += usize::from(!close);
                }
            }
            if std::ptr::eq(model, &shipped) {
                assert!(apart > 0, "the shipped decoder is not its linear path");
            } else {
                // Not a vacuous match: each cell's depths cost different errors.
                let spread = linear[0].sse.chunks(m).filter(|d| d[0] != d[m - 1]).count();
                assert!(spread > 10, "{spread} of 15 cells tell depths apart");
            }
        }
    }
}

/// A cell's path for a depth is its own where the search kept one, the full path's start
/// otherwise, and applying depths writes each cell's path into its first levels.
#[test]
fn each_depth_reads_and_writes_its_own_path() {
    // One image of two cells, three levels: level-major full paths, cell-major shorter ones.
    let encoded = EncodedBatch {
        grid: (1, 2),
        indices: vec![vec![10, 11, 20, 21, 30, 31]],
        prefixes: vec![vec![vec![100, 101]], vec![vec![200, 201, 210, 211]]],
    };
    let path = |c: usize, d: usize| encoded.path(0, c, d).collect::<Vec<_>>();
    assert_eq!(path(0, 1), [100]);
    assert_eq!(path(1, 1), [101]);
    assert_eq!(path(1, 2), [210, 211]);
    assert_eq!(path(0, 3), [10, 20, 30]);
    assert_eq!(path(1, 3), [11, 21, 31]);
    let at = encoded.at_depths(&[vec![2, 3]]);
    assert_eq!(at.indices, [vec![200, 11, 201, 21, 30, 31]]);
    assert!(at.prefixes.is_empty());
    assert_eq!(
        encoded.at_depth(1).indices,
        [vec![100, 101, 20, 21, 30, 31]]
    );
    // Without shorter paths, every depth reads the full path's start.
    let plain = EncodedBatch {
        prefixes: Vec::new(),
        ..encoded.clone()
    };
    assert_eq!(plain.path(0, 1, 2).collect::<Vec<_>>(), [11, 21]);
    assert_eq!(plain.at_depths(&[vec![1, 2]]).indices, plain.indices);
}

/// Cells that stop early are written with the path the beam found closest at their depth,
/// which is often not the start of its closest full path.
#[test]
fn cells_that_stop_early_take_the_path_closest_at_their_depth() {
    let model = Model::load_default(&Device::flex()).unwrap();
    let (f, m) = (model.config.grid_factor, model.config.num_codebooks);
    let opts = EncodeOptions {
        rate: Rate::Quality {
            quality: 30,
            max_codebooks: None,
        },
        beam: 4,
        // Refinement would move the last entries: the search's own choice is what is checked.
        refine: 1,
        // Each record is compared with its full-size latents.
        half_size: false,
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(&model, opts).unwrap();
    let (mut shallow, mut off_the_full_path) = (0, 0);
    for img in sample_photographs() {
        // One image at a time, as the encoder then runs it: a batch of one.
        let record = &encoder.records(std::slice::from_ref(&img)).unwrap()[0];
        let (w, h) = (img.image.width() as usize, img.image.height() as usize);
        let (pw, ph) = (w.div_ceil(f) * f, h.div_ceil(f) * f);
        let values = crate::image_io::to_planar_padded(&img.image, pw, ph);
        let latents = model.encode_planar(&values, 1, ph, pw).unwrap();
        let searched = model.quantize_latents(latents, (m, 4), true).unwrap();
        let depths = record.cell_depths(encoder.header());
        let full = record.full_indices(encoder.header());
        let cells = depths.len();
        for (c, &d) in depths.iter().enumerate() {
            let d = d as usize;
            if d == m {
                continue;
            }
            shallow += 1;
            let written: Vec<u32> = (0..d).map(|l| full[l * cells + c]).collect();
            let own = &searched.prefixes[d - 1][0][c * d..(c + 1) * d];
            let start: Vec<u32> = (0..d).map(|l| searched.indices[0][l * cells + c]).collect();
            assert_eq!(written, own, "{} cell {c} at depth {d}", img.name);
            off_the_full_path += usize::from(own != start.as_slice());
        }
    }
    assert!(
        shallow > 0 && off_the_full_path > 0,
        "{off_the_full_path} of {shallow}"
    );
}
