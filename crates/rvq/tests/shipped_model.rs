//! Checks the committed models (the default, and `models/photo`) against their own model cards
//! on real CIFAR-10 test images.
//! Ignored by default (users have no `../shared`); `.ci/run` runs it when the data is present:
//!
//!     RVQ_CIFAR_DIR=../shared/data/cifar-10-batches-bin cargo test --release --test shipped_model -- --ignored

use burn::prelude::*;
use rvq::Model;
use rvq::data;
use rvq::eval;
use rvq::train::ModelCard;

#[test]
#[ignore = "needs CIFAR-10: set RVQ_CIFAR_DIR"]
fn shipped_model_reproduces_its_card() {
    let device = Device::flex();
    reproduces_card(&Model::load_default(&device).unwrap(), "default");
}

/// The photograph model, built in as `photo` and shipped as a folder, validated on CIFAR-10 as
/// its card says.
#[test]
#[ignore = "needs CIFAR-10: set RVQ_CIFAR_DIR"]
fn photo_model_reproduces_its_card() {
    let device = Device::flex();
    let built_in = Model::load_built_in("photo", &device).unwrap();
    let folder = Model::load(&models().join("photo"), &device).unwrap();
    assert_eq!(built_in.fingerprint(), folder.fingerprint());
    reproduces_card(&built_in, "photo");
}

fn models() -> std::path::PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../models")
}

fn reproduces_card(model: &Model, name: &str) {
    let dir = std::env::var("RVQ_CIFAR_DIR").expect("RVQ_CIFAR_DIR");
    let card: ModelCard = serde_json::from_str(
        &std::fs::read_to_string(models().join(name).join("card.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rvq::archive::hex(model.fingerprint()), card.fingerprint);
    let images = data::cifar_test(std::path::Path::new(&dir))
        .unwrap()
        .take(card.validation_images);
    let depths: Vec<usize> = card.validation.iter().map(|q| q.codebooks).collect();
    let measured = eval::quality(model, &images, &depths, 250).unwrap();
    for (m, c) in measured.iter().zip(&card.validation) {
        let rel = (m.mse - c.mse).abs() / c.mse;
        assert!(
            rel < 1e-3,
            "{name}, depth {}: measured {} vs card {}",
            m.codebooks,
            m.mse,
            c.mse
        );
    }
}
