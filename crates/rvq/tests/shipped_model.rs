//! Checks the committed default model against its own model card on real CIFAR-10 test images.
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
    let dir = std::env::var("RVQ_CIFAR_DIR").expect("RVQ_CIFAR_DIR");
    let card: ModelCard = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
                .join("../../models/default/card.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    assert_eq!(rvq::archive::hex(model.fingerprint()), card.fingerprint);
    let images = data::cifar_test(std::path::Path::new(&dir))
        .unwrap()
        .take(card.validation_images);
    let depths: Vec<usize> = card.validation.iter().map(|q| q.codebooks).collect();
    let measured = eval::quality(&model, &images, &depths, 250).unwrap();
    for (m, c) in measured.iter().zip(&card.validation) {
        let rel = (m.mse - c.mse).abs() / c.mse;
        assert!(
            rel < 1e-3,
            "depth {}: measured {} vs card {}",
            m.codebooks,
            m.mse,
            c.mse
        );
    }
}
