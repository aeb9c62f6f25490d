//! Decoder-aware refinement (`EncodeOptions::refine`, `rvq encode --refine K`) with the shipped
//! model on the shipped photographs: it changes only each cell's last index, keeps the depths
//! rate control chose, never decodes an image worse than the residual search alone, and does
//! better overall.

use burn::prelude::*;
use rvq::{EncodeOptions, Encoder, Model, Rate, RateSearch};

mod common;
use common::encode;
use common::{decode, sample_photographs, squared_error};

#[test]
fn refinement_changes_only_each_cells_last_level_and_never_decodes_worse() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = sample_photographs();
    assert!(
        images.len() >= 4,
        "the samples folder holds the photographs"
    );

    // Fixed depths, and a quality whose rate control gives cells different depths.
    let quality = Rate::Quality {
        quality: 40,
        max_codebooks: None,
    };
    // Refinement decoding every candidate, and estimating them through the linear path.
    let searches = [RateSearch::Decoded, RateSearch::Linear];
    for (rate, rate_search) in [Rate::Codebooks(1), Rate::Codebooks(3), quality]
        .into_iter()
        .flat_map(|r| searches.map(|s| (r, s)))
    {
        let m = rate.codebooks(model.config().num_codebooks);
        // Refinement alone: a restoration filter would change the decodes compared.
        let plain = EncodeOptions {
            rate,
            refine: 1,
            rate_search,
            filter: false,
            ..EncodeOptions::default()
        };
        let refined = EncodeOptions {
            refine: 8,
            ..plain.clone()
        };
        let (header, a) = encode(&model, &images, &plain);
        let (_, b) = encode(&model, &images, &refined);
        let (da, db) = (decode(&model, &header, &a), decode(&model, &header, &b));

        let (mut before, mut after, mut changed, mut shallow) = (0u64, 0u64, 0usize, 0usize);
        assert_eq!((a.len(), b.len()), (images.len(), images.len()));
        for (((ra, rb), (ia, ib)), img) in a.iter().zip(&b).zip(da.iter().zip(&db)).zip(&images) {
            let depths = ra.cell_depths(&header);
            assert_eq!(depths, rb.cell_depths(&header), "m = {m}: depths are kept");
            let (fa, fb) = (ra.full_indices(&header), rb.full_indices(&header));
            let cells = depths.len();
            for (c, &d) in depths.iter().enumerate() {
                shallow += usize::from((d as usize) < m);
                for level in 0..d as usize - 1 {
                    let at = level * cells + c;
                    assert_eq!(
                        fa[at], fb[at],
                        "m = {m}: only a cell's last level may change"
                    );
                }
                let last = (d as usize - 1) * cells + c;
                changed += usize::from(fa[last] != fb[last]);
            }
            let (ea, eb) = (squared_error(&img.image, ia), squared_error(&img.image, ib));
            assert!(
                eb <= ea,
                "m = {m}, {:?}: refined {eb} > plain {ea}",
                img.name
            );
            before += ea;
            after += eb;
        }
        if rate.target().is_some() {
            assert!(shallow > 0, "the quality target mixes depths");
        }
        assert!(
            changed > 0,
            "m = {m}, {rate_search:?}: refinement changed no index"
        );
        assert!(
            after < before,
            "m = {m}, {rate_search:?}: {after} not below {before}"
        );
    }
}

/// A `--psnr` target out of reach is reported with the PSNR the archive actually decodes to,
/// after refinement, not the one the search alone reached.
#[test]
fn a_missed_psnr_target_reports_the_refined_psnr() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = sample_photographs();
    let opts = EncodeOptions {
        rate: Rate::Psnr {
            db: 60.0,
            max_codebooks: None,
        },
        refine: 8,
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(&model, opts.clone()).unwrap();
    let (records, short) = encoder.records_reporting(&images).unwrap();
    assert_eq!(
        short.len(),
        images.len(),
        "60 dB is out of reach for every photograph"
    );
    let decoded = decode(&model, encoder.header(), &records);
    let plain = EncodeOptions {
        refine: 1,
        ..opts.clone()
    };
    let (_, unrefined) = Encoder::new(&model, plain.clone())
        .unwrap()
        .records_reporting(&images)
        .unwrap();
    let mut lifted = 0;
    for ((s, img), (out, u)) in short
        .iter()
        .zip(&images)
        .zip(decoded.iter().zip(&unrefined))
    {
        assert_eq!(s.name, img.name);
        let mse = squared_error(&img.image, out) as f64
            / (img.image.pixels().len() as f64 * 255.0 * 255.0);
        let got = rvq::eval::psnr(mse);
        assert!(
            (s.psnr - got).abs() < 1e-3,
            "{}: reported {} dB, decodes to {got}",
            s.name,
            s.psnr
        );
        lifted += usize::from(s.psnr > u.psnr + 1e-9);
    }
    assert!(lifted > 0, "refinement raised no image's PSNR");
}
