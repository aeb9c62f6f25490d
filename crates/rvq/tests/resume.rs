//! Exact resume of training, in a test binary of its own: model initialisation draws from the
//! backend's one random generator, which tests running beside it in the same process would
//! also draw from.

use burn::prelude::*;
use rvq::Model;
use rvq::ModelConfig;
use rvq::train::{self, Event};

mod common;
use common::{read_safetensors, smoke_config, smoke_options, smoke_splits};

/// A weights file's tensors by name: dtype, shape, bytes.
type Tensors = std::collections::BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>;

/// A run stopped at step 10 and resumed to step 20 ends with exactly the weights of the same
/// run trained 20 steps straight: the checkpoint holds everything (weights, optimizer
/// moments, EMA counts and sums, the weight average, step), and the data order and random
/// draws follow from seed and step. Also with AdamW, an L1 phase that ends after the
/// resumption and a weight average, each of which changes what is learnt.
#[test]
fn a_resumed_run_is_bit_for_bit_the_run_it_continues() {
    let base = smoke_options(
        ModelConfig {
            linear_path: true,
            ..smoke_config()
        },
        20,
    );
    let adam = resumes_exactly(&base);
    // Each option alone changes what is learnt, and all three together (the L1 phase ending
    // after the resumption at step 10) still resume exactly.
    let alone = [
        train::TrainOptions {
            weight_decay: 0.05,
            ..base.clone()
        },
        train::TrainOptions {
            l1_fraction: 0.75,
            ..base.clone()
        },
        train::TrainOptions {
            weight_average: 0.9,
            ..base.clone()
        },
    ];
    for (opts, name) in alone
        .iter()
        .zip(["AdamW", "the L1 phase", "the weight average"])
    {
        assert!(resumes_exactly(opts) != adam, "{name} changed nothing");
    }
    resumes_exactly(&train::TrainOptions {
        weight_decay: 0.05,
        l1_fraction: 0.75,
        weight_average: 0.9,
        ..base
    });
}

/// Trains `opts` straight and with a stop and resume at step 10, checks that both end with
/// the same weights and validation, and returns the weights.
fn resumes_exactly(opts: &train::TrainOptions) -> Tensors {
    let device = Device::flex();
    let splits = smoke_splits();
    let run = |dir: &std::path::Path, resume: bool, stop_at: Option<usize>| {
        let mut steps = Vec::new();
        let card = train::train(
            opts,
            &splits,
            dir,
            &device,
            "test",
            resume,
            stop_at,
            &mut |e| {
                if let Event::Step { step, .. } = e {
                    steps.push(step);
                }
            },
        )
        .unwrap();
        (card, steps)
    };
    let straight = tempfile::TempDir::new().unwrap();
    let (card, steps) = run(straight.path(), false, None);
    let straight_card = card.expect("the run finished");
    assert_eq!(steps, (1..=20).collect::<Vec<_>>());

    let split = tempfile::TempDir::new().unwrap();
    let (card, steps) = run(split.path(), false, Some(10));
    assert!(card.is_none(), "a stopped run writes no model");
    assert_eq!(steps, (1..=10).collect::<Vec<_>>());
    assert!(!split.path().join("model.bpk").exists());
    let (card, steps) = run(split.path(), true, None);
    let resumed_card = card.expect("the resumed run finished");
    assert_eq!(steps, (11..=20).collect::<Vec<_>>());
    assert_eq!(resumed_card.steps, 20);
    // The weights files differ (they carry burn's parameter ids, new in every run): compare
    // the weights themselves, every tensor byte for byte.
    let weights = |dir: &std::path::Path| {
        let file = dir.join("weights.safetensors");
        let model = Model::load(dir, &device).unwrap();
        model.export_safetensors(&file).unwrap();
        std::fs::read(file).unwrap()
    };
    let (a, b) = (weights(straight.path()), weights(split.path()));
    let (tensors_a, tensors_b) = (read_safetensors(&a), read_safetensors(&b));
    let values: usize = tensors_a.values().map(|(_, _, data)| data.len()).sum();
    assert!(values > 10_000, "{values} bytes of weights");
    assert!(
        tensors_a == tensors_b,
        "resumed weights differ from the straight run's"
    );
    assert_eq!(resumed_card.validation, straight_card.validation);
    tensors_a
}
