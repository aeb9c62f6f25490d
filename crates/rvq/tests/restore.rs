//! Restoration filters (`EncodeOptions::filter`, format version 3) with the shipped model on
//! the shipped photographs: they change no index, only images large enough carry one, every
//! filtered image decodes closer to its original than the same indices unfiltered, and the
//! archive stores and reads them back.

use burn::prelude::*;
use rvq::archive::{Archive, Limits, VERSION, VERSION_2, write_archive};
use rvq::{EncodeOptions, Model, Rate};

mod common;
use common::{decode, encode, sample_photographs, squared_error};

#[test]
fn filters_change_no_index_and_bring_each_decode_closer() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = sample_photographs();
    let with = EncodeOptions {
        rate: Rate::Quality {
            quality: 50,
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
    assert_eq!((h.version, h2.version), (VERSION, VERSION_2));
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
