//! Half-size images (`EncodeOptions::half_size`, format version 4) with the shipped model:
//! below quality 60 an image of 16,384 pixels or more is also coded at half size, and keeps
//! whichever size costs less error plus λ times its bits; under a PSNR target, whichever
//! reaches it in fewer bits. It decodes at its own size, and every other image is written as
//! without the option.

use burn::prelude::*;
use rvq::archive::{Archive, Limits, Record, VERSION, VERSION_2, VERSION_3, write_archive};
use rvq::{EncodeOptions, Model, Named, Rate, Rgb};

mod common;
use common::{decode, encode, sample_photographs, squared_error};

/// A smooth 256×192 picture (gentle waves of colour) that loses little at half size.
fn smooth() -> Named {
    let (w, h) = (256u32, 192u32);
    let mut px = Vec::new();
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let (fx, fy) = (x as f32 / 29.0 + c as f32, y as f32 / 37.0);
                px.push((128.0 + 70.0 * fx.sin() * fy.cos()) as u8);
            }
        }
    }
    Named {
        name: "smooth.png".into(),
        image: Rgb::new(w, h, px).unwrap(),
    }
}

fn at(quality: u8, half_size: bool) -> EncodeOptions {
    EncodeOptions {
        rate: Rate::Quality {
            quality,
            max_codebooks: None,
        },
        half_size,
        ..EncodeOptions::default()
    }
}

/// Rate control's price of a record: each index at the codebook's 10 bits, a filter at its
/// bytes.
fn bits(r: &Record) -> f64 {
    let filter = r.filter.as_ref().map_or(0, |f| f.stored_len());
    (r.indices.len() * 10 + 8 * filter) as f64
}

#[test]
fn a_low_quality_codes_an_image_at_half_size_where_that_costs_less() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let mut images = sample_photographs();
    images.push(smooth());
    let (h, with) = encode(&model, &images, &at(10, true));
    let (h3, without) = encode(&model, &images, &at(10, false));
    assert_eq!((h.version, h3.version), (VERSION, VERSION_3));
    assert!(without.iter().all(|r| !r.half));
    let smooth = with.last().unwrap();
    assert!(smooth.half, "the smooth picture stayed at full size");
    assert_eq!((smooth.width, smooth.height), (256, 192));
    assert_eq!(smooth.coded_size(), (128, 96));
    let (out, out3) = (decode(&model, &h, &with), decode(&model, &h3, &without));
    let lambda = 0.3 * 10f64.powf(-10.0 / 35.0);
    for (((r, r3), (d, d3)), img) in with
        .iter()
        .zip(&without)
        .zip(out.iter().zip(&out3))
        .zip(&images)
    {
        assert_eq!(
            (d.width(), d.height()),
            (img.image.width(), img.image.height())
        );
        if r.half {
            let cost = |r: &Record, d: &Rgb| {
                squared_error(&img.image, d) as f64 / 65025.0 + lambda * bits(r)
            };
            assert!(
                cost(r, d) < cost(r3, d3),
                "{}: the half size costs more",
                img.name
            );
        } else {
            assert_eq!(
                r, r3,
                "{}: an image at its size is written as before",
                img.name
            );
            let pixels = u64::from(img.image.width()) * u64::from(img.image.height());
            if pixels < 16_384 {
                assert_eq!(d, d3);
            }
        }
    }
    let bytes = write_archive(&h, &with).unwrap();
    let back = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(back.records().unwrap(), with);
    // At quality 60 and above nothing is tried at half size, and the archive is version 3.
    let (h60, at60) = encode(&model, &images, &at(60, true));
    assert_eq!(h60.version, VERSION_3);
    assert!(at60.iter().all(|r| !r.half));
}

#[test]
fn a_psnr_target_codes_an_image_at_half_size_where_that_reaches_it_in_fewer_bits() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let mut images = sample_photographs();
    images.push(smooth());
    let target = |db, half_size| EncodeOptions {
        rate: Rate::Psnr {
            db,
            max_codebooks: None,
        },
        half_size,
        ..EncodeOptions::default()
    };
    let mut halves = 0;
    for db in [24.0, 27.0, 30.0, 33.0] {
        let (h, with) = encode(&model, &images, &target(db, true));
        let (h3, without) = encode(&model, &images, &target(db, false));
        assert_eq!((h.version, h3.version), (VERSION, VERSION_3));
        assert!(without.iter().all(|r| !r.half));
        let out = decode(&model, &h, &with);
        for ((r, r3), (d, img)) in with.iter().zip(&without).zip(out.iter().zip(&images)) {
            if r.half {
                halves += 1;
                let values = img.image.pixels().len() as f64;
                let mse = squared_error(&img.image, d) as f64 / values;
                let got = 10.0 * (65025.0 / mse).log10();
                assert!(
                    got >= db,
                    "{}: {got:.2} dB at half size, short of {db}",
                    img.name
                );
                assert!(bits(r) < bits(r3), "{}: the half size costs more", img.name);
            } else {
                assert_eq!(
                    r, r3,
                    "{}: an image at its size is written as before",
                    img.name
                );
            }
        }
        if db == 30.0 {
            assert!(
                with.last().unwrap().half,
                "the smooth picture stayed at full size"
            );
            // Half sizes need the filters: without them the archive is version 2, as before.
            let plain = EncodeOptions {
                filter: false,
                ..target(db, true)
            };
            let (h2, records) = encode(&model, &images, &plain);
            assert_eq!(h2.version, VERSION_2);
            assert!(records.iter().all(|r| !r.half && r.filter.is_none()));
        }
    }
    eprintln!("{halves} images at half size");
}
