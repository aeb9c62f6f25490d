//! Training: a smoke run whose loss falls, fine-tuning, the depth input, resumed runs.

use burn::prelude::*;
use rvq::config::ModelConfig;
use rvq::model::{Model, RvqVae};
use rvq::quantizer;
use rvq::train::{self, Event};

use super::common::{smoke_config, smoke_options, smoke_splits};
use super::test_images;

#[test]
fn training_smoke_loss_falls() {
    let device = Device::flex();
    let splits = smoke_splits();
    let opts = smoke_options(smoke_config(), 150);
    let dir = tempfile::TempDir::new().unwrap();
    let mut mses = Vec::new();
    let mut on_event = |e: Event| {
        if let Event::Step { mse, codebooks, .. } = e {
            assert_eq!(codebooks.len(), 3);
            mses.push(mse);
        }
    };
    let card = train::train(
        &opts,
        &splits,
        dir.path(),
        &device,
        "test",
        false,
        None,
        &mut on_event,
    )
    .unwrap()
    .expect("the run finished");
    assert_eq!(card.steps, 150);
    let first: f32 = mses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = mses[mses.len() - 10..].iter().sum::<f32>() / 10.0;
    println!("mse {first} -> {last}");
    assert!(last < first * 0.8, "loss did not fall: {first} -> {last}");
    assert_eq!(card.validation.len(), 4); // depths 1, 2, 3 and the unquantized path
    let model = Model::load(dir.path(), &device).unwrap();
    assert_eq!(rvq::model::hex(&model.fingerprint), card.fingerprint);
}

/// Trains `opts` on `splits` into `dir` to the end, quietly.
fn train_to(
    opts: &train::TrainOptions,
    splits: &rvq::data::Splits,
    dir: &std::path::Path,
    device: &Device,
) -> train::ModelCard {
    train::train(opts, splits, dir, device, "test", false, None, &mut |_| {})
        .unwrap()
        .expect("the run finished")
}

/// `start_from` continues a trained model: at step 0 the trainer's network and codebooks are
/// the model's (it validates exactly as the model's card says), and a model of another
/// configuration or malformed dropout odds are refused before any work.
#[test]
fn fine_tuning_starts_from_the_given_model() {
    let device = Device::flex();
    let splits = smoke_splits();
    let base = tempfile::TempDir::new().unwrap();
    let card = train_to(
        &smoke_options(smoke_config(), 10),
        &splits,
        base.path(),
        &device,
    );

    let opts = train::TrainOptions {
        start_from: Some(base.path().to_path_buf()),
        dropout_fraction: 1.0,
        dropout_weights: vec![4.0, 2.0, 1.0],
        ..smoke_options(smoke_config(), 5)
    };
    let out = tempfile::TempDir::new().unwrap();
    let mut trainer =
        train::Trainer::new(&opts, &splits.train, out.path(), &device, &mut |_| {}).unwrap();
    assert_eq!(trainer.validate(&splits.valid).unwrap(), card.validation);
    trainer.step(&splits.train);
    assert_ne!(
        trainer.validate(&splits.valid).unwrap(),
        card.validation,
        "a step changed nothing"
    );

    let other = train::TrainOptions {
        config: ModelConfig {
            latent_dim: 8,
            ..smoke_config()
        },
        ..opts.clone()
    };
    let err = train::Trainer::new(&other, &splits.train, out.path(), &device, &mut |_| {})
        .err()
        .expect("another configuration is refused")
        .to_string();
    assert!(err.contains("not the configuration asked for"), "{err}");
    for (fraction, weights, needle) in [
        (1.5, vec![], "must lie in [0, 1]"),
        (
            0.5,
            vec![1.0, 1.0],
            "2 dropout weights given for 3 codebooks",
        ),
        (0.5, vec![0.0, 0.0, 0.0], "not all zero"),
        (0.5, vec![1.0, f32::NAN, 1.0], "finite"),
    ] {
        let bad = train::TrainOptions {
            dropout_fraction: fraction,
            dropout_weights: weights,
            ..opts.clone()
        };
        let err = train::Trainer::new(&bad, &splits.train, out.path(), &device, &mut |_| {})
            .err()
            .expect("malformed dropout odds are refused");
        assert!(matches!(err, rvq::Error::InvalidOption(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
    for lr in [-1e-3, f64::NAN, f64::INFINITY] {
        let bad = train::TrainOptions {
            learning_rate: lr,
            ..opts.clone()
        };
        let err = train::Trainer::new(&bad, &splits.train, out.path(), &device, &mut |_| {})
            .err()
            .expect("a learning rate that cannot train is refused");
        assert!(matches!(err, rvq::Error::InvalidOption(_)), "{lr}: {err}");
        assert!(
            err.to_string().contains("finite and not negative"),
            "{lr}: {err}"
        );
    }
}

#[test]
fn a_depth_input_starts_silent_then_learns_to_tell_depths_apart() {
    let device = Device::flex();
    let splits = smoke_splits();
    let base = tempfile::TempDir::new().unwrap();
    train_to(
        &smoke_options(smoke_config(), 5),
        &splits,
        base.path(),
        &device,
    );
    let before = Model::load(base.path(), &device).unwrap();
    let n_q = before.config.num_codebooks;
    let x = test_images([2, 32, 32], 9, &device);
    let z = before.net.encode(x.clone());
    let [b, _, h, w] = z.dims();
    let decode = |net: &RvqVae, depth: usize| {
        quantizer::float_vec(net.decode(z.clone(), Some(&vec![depth; b * h * w])))
    };

    // Added to a trained model, the depth input changes nothing: the fine-tune starts from it.
    let mut with = before.net.clone();
    with.add_depth_input(&device);
    for depth in 1..=n_q {
        assert_eq!(
            decode(&with, depth),
            decode(&before.net, depth),
            "depth {depth}"
        );
    }

    // Fine-tuned with it, the decoder reads the depth, and the model saves and loads with it.
    let opts = train::TrainOptions {
        config: ModelConfig {
            depth_input: true,
            ..smoke_config()
        },
        start_from: Some(base.path().to_path_buf()),
        dropout_fraction: 1.0,
        ..smoke_options(smoke_config(), 5)
    };
    let out = tempfile::TempDir::new().unwrap();
    train_to(&opts, &splits, out.path(), &device);
    let tuned = Model::load(out.path(), &device).unwrap();
    assert!(tuned.config.depth_input);
    assert_ne!(decode(&tuned.net, 1), decode(&tuned.net, n_q));
    // Without depths, every cell counts as full depth.
    let full = quantizer::float_vec(tuned.net.decode(z.clone(), None));
    assert_eq!(full, decode(&tuned.net, n_q));

    // Depths follow the cells' order: two images of a non-square grid at different depths in
    // one batch decode as each does alone.
    let x = test_images([2, 16, 32], 4, &device);
    let z = tuned.net.encode(x);
    let [_, d, h, w] = z.dims();
    let cells = h * w;
    let mut depths = vec![1; cells];
    depths.extend(vec![n_q; cells]);
    depths[cells - 1] = 2;
    let both = quantizer::float_vec(tuned.net.decode(z.clone(), Some(&depths)));
    let alone = |i: usize| {
        let one = z.clone().slice([i..i + 1, 0..d, 0..h, 0..w]);
        quantizer::float_vec(
            tuned
                .net
                .decode(one, Some(&depths[i * cells..(i + 1) * cells])),
        )
    };
    let expected = [alone(0), alone(1)].concat();
    assert_eq!(both.len(), expected.len());
    let worst = both
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "batch and single decodes differ by {worst}");
}

/// The steps between checkpoints are the one option a resumed run may change, and it takes
/// the interval asked for, not the checkpoint's.
#[test]
fn a_resumed_run_checkpoints_at_the_interval_asked_for() {
    let device = Device::flex();
    let splits = smoke_splits();
    let out = tempfile::TempDir::new().unwrap();
    let run = |opts: &train::TrainOptions, resume: bool, stop_at: Option<usize>| {
        let mut at = Vec::new();
        train::train(
            opts,
            &splits,
            out.path(),
            &device,
            "test",
            resume,
            stop_at,
            &mut |e| {
                if let Event::Checkpoint { step } = e {
                    at.push(step);
                }
            },
        )
        .unwrap();
        at
    };
    // 64 images in batches of 16: epochs end at steps 4 and 8, which checkpoint too.
    let opts = train::TrainOptions {
        checkpoint_every: 100,
        ..smoke_options(smoke_config(), 8)
    };
    assert_eq!(run(&opts, false, Some(4)), vec![4]);
    let every3 = train::TrainOptions {
        checkpoint_every: 3,
        ..opts
    };
    assert_eq!(run(&every3, true, None), vec![6, 8]);
}

/// Extension options of the tests: five codebooks, a small k-means.
fn extend_to_five() -> train::ExtendOptions {
    train::ExtendOptions {
        codebooks: 5,
        iterations: 5,
        max_vectors: 100,
        seed: 3,
    }
}

#[test]
fn a_model_with_a_depth_input_is_refused_before_any_work() {
    let device = Device::flex();
    let config = ModelConfig {
        depth_input: true,
        ..super::common::tiny_config()
    };
    let dir = tempfile::TempDir::new().unwrap();
    let base = dir.path().join("base");
    Model::save_net(&RvqVae::new(&config, &device), &config, &base).unwrap();
    let model = Model::load(&base, &device).unwrap();
    let out = dir.path().join("extended");
    let opts = extend_to_five();
    let err = train::extend_codebooks(&model, &[], &opts, &out).unwrap_err();
    assert!(err.to_string().contains("depth input"), "{err}");
    assert!(!out.exists());
}

#[test]
fn an_extension_keeps_every_depth_the_model_had_and_its_new_levels_cut_the_residual() {
    let device = Device::flex();
    let config = super::common::tiny_config();
    let dir = tempfile::TempDir::new().unwrap();
    let base = dir.path().join("base");
    Model::save_net(&RvqVae::new(&config, &device), &config, &base).unwrap();
    let model = Model::load(&base, &device).unwrap();
    // Four 64×40 images: 160 cells, ten times the 16 entries of a codebook.
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    for seed in 0..4 {
        let png = rvq::image_io::encode_png(&rvq::data::synthetic(64, 40, seed).unwrap());
        std::fs::write(images.join(format!("{seed}.png")), png.unwrap()).unwrap();
    }
    let files = rvq::data::collect_images(&[images]).unwrap();
    let out = dir.path().join("extended");
    let opts = extend_to_five();
    let card = train::extend_codebooks(&model, &files, &opts, &out).unwrap();
    assert_eq!((card.vectors, card.residual.len()), (100, 5));
    // Each new level leaves less than the level before it (the untrained model's own levels
    // may not).
    assert!(
        card.residual[2..].windows(2).all(|w| w[1] < w[0]),
        "{:?}",
        card.residual
    );
    let extended = Model::load(&out, &device).unwrap();
    assert_eq!(extended.config.num_codebooks, 5);
    assert_eq!(rvq::model::hex(&extended.fingerprint), card.fingerprint);
    assert_eq!(card.parent, rvq::model::hex(&model.fingerprint));
    let (old, new) = (
        quantizer::float_vec(model.net.codebooks().unwrap()),
        quantizer::float_vec(extended.net.codebooks().unwrap()),
    );
    assert_eq!(
        new[..old.len()],
        old[..],
        "the model's own codebooks are kept"
    );
    // The network is kept: the same depth decodes the same images.
    let x = super::test_images([2, 16, 24], 9, &device);
    let indices = model.encode_indices(x.clone(), 3, 1).unwrap();
    let again = extended.encode_indices(x, 3, 1).unwrap();
    assert_eq!(indices.indices, again.indices);
    let a = model
        .decode_indices(&indices.indices, indices.grid, 3)
        .unwrap();
    let b = extended
        .decode_indices(&indices.indices, indices.grid, 3)
        .unwrap();
    assert_eq!(quantizer::float_vec(a), quantizer::float_vec(b));
    // No more codebooks than the model has, or fewer vectors than entries: refused by name.
    let fewer = train::ExtendOptions {
        codebooks: 3,
        ..opts.clone()
    };
    let err = train::extend_codebooks(&model, &files, &fewer, &dir.path().join("x"));
    assert!(err.unwrap_err().to_string().contains("4 to 64 codebooks"));
    let too_few = train::ExtendOptions {
        max_vectors: 8,
        ..opts
    };
    let err = train::extend_codebooks(&model, &files, &too_few, &dir.path().join("y"));
    assert!(err.unwrap_err().to_string().contains("16 vectors"));
}
