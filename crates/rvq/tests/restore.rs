//! Restoration filters (`EncodeOptions::filter`, format version 3) with the shipped model on
//! the shipped photographs: they change no index, only images large enough carry one, every
//! filtered image decodes closer to its original than the same indices unfiltered, and the
//! archive stores and reads them back.

use burn::prelude::*;
use rvq::archive::{Archive, Header, Limits, Record, VERSION_2, VERSION_3, write_archive};
use rvq::{EncodeOptions, Model, Named, Rate};

mod common;
use common::{decode, encode, sample_photographs, squared_error};

#[test]
fn filters_change_no_index_and_bring_each_decode_closer() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = sample_photographs();
    // Quality 60: the lowest that tries no image at half size (tests/half.rs).
    let with = EncodeOptions {
        rate: Rate::Quality {
            quality: 60,
            max_codebooks: None,
        },
        ..EncodeOptions::default()
    };
    let without = EncodeOptions {
        filter: false,
        ..with.clone()
    };
    let (h, a) = encode(&model, &images, &with);
    let (h2, b) = encode(&model, &images, &without);
    assert_eq!((h.version, h2.version), (VERSION_3, VERSION_2));
    let (da, db) = (decode(&model, &h, &a), decode(&model, &h2, &b));
    let mut filtered = 0;
    for (((ra, rb), (ia, ib)), img) in a.iter().zip(&b).zip(da.iter().zip(&db)).zip(&images) {
        assert_eq!((&ra.indices, &ra.depths), (&rb.indices, &rb.depths));
        assert!(rb.filter.is_none());
        let pixels = u64::from(img.image.width()) * u64::from(img.image.height());
        match &ra.filter {
            Some(f) => {
                assert!(pixels >= 4096, "{}: a filter on a small image", img.name);
                f.check(img.image.width(), img.image.height()).unwrap();
                let (ea, eb) = (squared_error(&img.image, ia), squared_error(&img.image, ib));
                assert!(ea < eb, "{}: filtered {ea} against {eb}", img.name);
                filtered += 1;
            }
            None => assert_eq!(ia, ib, "{}: no filter, the same decode", img.name),
        }
    }
    assert!(filtered > 0, "no photograph of samples/ took a filter");
    let bytes = write_archive(&h, &a).unwrap();
    let back = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(back.records().unwrap(), a);
}

/// Under a PSNR target the filter counts: each image still reaches the target as the decoder
/// writes it, on fewer index bytes and fewer bytes in all than without filters where its filter
/// lifts it, and no more where it does not (the photographs of samples/ are too small for one
/// to pay there).
#[test]
fn a_psnr_target_is_met_as_written_in_fewer_bytes() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let large: Vec<Named> = (1..=2)
        .map(|seed| Named {
            name: format!("synthetic-{seed}.png"),
            image: rvq::data::synthetic(384, 256, seed).unwrap(),
        })
        .collect();
    let at = |db: f64, filter: bool| EncodeOptions {
        rate: Rate::Psnr {
            db,
            max_codebooks: None,
        },
        filter,
        // The filter's effect alone: half sizes would change the records it is weighed on.
        half_size: false,
        ..EncodeOptions::default()
    };
    let psnrs = |images: &[Named], (h, r): &(Header, Vec<Record>)| -> Vec<f64> {
        let out = decode(&model, h, r);
        images
            .iter()
            .zip(&out)
            .map(|(img, o)| rvq::eval::image_psnr(&img.image, o))
            .collect()
    };
    // A target the decode alone reaches below the full depth.
    let full = psnrs(&large, &encode(&model, &large, &at(99.0, false)));
    let db = full.iter().copied().fold(f64::INFINITY, f64::min) - 1.5;
    for (images, fewer) in [(large, true), (sample_photographs(), false)] {
        let (with, without) = (
            encode(&model, &images, &at(db, true)),
            encode(&model, &images, &at(db, false)),
        );
        let (pa, pb) = (psnrs(&images, &with), psnrs(&images, &without));
        for (img, (a, b)) in images.iter().zip(pa.iter().zip(&pb)) {
            // One the model cannot bring there without filters may fall short with them too.
            assert!(
                *a >= db || *b < db,
                "{}: {a} dB at {db} ({b} without filters)",
                img.name
            );
        }
        let size = |(h, r): &(Header, Vec<Record>)| write_archive(h, r).unwrap().len();
        let indices =
            |(_, r): &(Header, Vec<Record>)| r.iter().map(|x| x.indices.len()).sum::<usize>();
        let (sa, sb, ia, ib) = (
            size(&with),
            size(&without),
            indices(&with),
            indices(&without),
        );
        if fewer {
            assert!(
                ia < ib && sa < sb,
                "{sa} bytes ({ia} indices) with filters, {sb} ({ib}) without"
            );
        } else {
            assert!(
                sa <= sb,
                "{sa} bytes with filters, {sb} without, at {db} dB"
            );
        }
    }
}
