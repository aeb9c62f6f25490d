//! The model and quantizer on small hand-made cases, save/load, and a training smoke test.
//! Everything here runs on the CPU backend and needs no data set.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rvq::config::{ModelConfig, Upsample};
use rvq::model::{Model, RvqVae};
use rvq::quantizer::{self, EmaCodebooks};
use rvq::train::{self, Event};

mod common;
use common::{
    read_safetensors, safetensors_metadata, smoke_config, smoke_options, smoke_splits, synthetic,
    tiny_config,
};
use safetensors::Dtype;

fn t2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

#[test]
fn an_input_equal_to_an_entry_maps_to_it() {
    let device = Device::flex();
    let book = vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0, -3.0, 2.5];
    let codebook = t2(book.clone(), 4, 2, &device);
    for (i, entry) in book.chunks(2).enumerate() {
        let x = t2(entry.to_vec(), 1, 2, &device);
        assert_eq!(
            quantizer::int_vec(quantizer::nearest(x, codebook.clone())),
            vec![i as u32]
        );
    }
    // Nearest, not merely close: (0.9, 0.2) is nearer (1, 0) than (0, 0).
    let x = t2(vec![0.9, 0.2], 1, 2, &device);
    assert_eq!(quantizer::int_vec(quantizer::nearest(x, codebook)), vec![1]);
}

#[test]
fn residual_norm_never_grows_with_depth_and_indices_stay_below_k() {
    let device = Device::flex();
    let (n, d, k, levels) = (200, 6, 10, 5);
    let mut rng = StdRng::seed_from_u64(7);
    let data: Vec<f32> = (0..n * d)
        .map(|_| rand::RngExt::random_range(&mut rng, -1.0..1.0))
        .collect();
    // Codebooks that contain the zero vector can never make a residual longer.
    let mut books = Vec::new();
    for _ in 0..levels {
        books.extend(std::iter::repeat_n(0.0f32, d));
        books.extend((0..(k - 1) * d).map(|_| rand::RngExt::random_range(&mut rng, -0.7f32..0.7)));
    }
    let codebooks = Tensor::<3>::from_data(TensorData::new(books, [levels, k, d]), &device);
    let x = t2(data, n, d, &device);
    let mut last = f32::INFINITY;
    for depth in 1..=levels {
        let (indices, q) = quantizer::quantize(x.clone(), &codebooks, depth);
        assert_eq!(indices.len(), depth);
        for idx in indices {
            assert!(quantizer::int_vec(idx).iter().all(|&i| (i as usize) < k));
        }
        let err: f32 = (x.clone() - q).square().sum().into_scalar::<f32>();
        assert!(err <= last + 1e-4, "depth {depth}: {err} > {last}");
        last = err;
    }
}

#[test]
fn dequantize_inverts_quantize() {
    let device = Device::flex();
    let codebooks = Tensor::<3>::random([2, 8, 4], burn::tensor::Distribution::Default, &device);
    let x = Tensor::<2>::random([30, 4], burn::tensor::Distribution::Default, &device);
    let (indices, q) = quantizer::quantize(x, &codebooks, 2);
    let back = quantizer::dequantize(&indices, &codebooks);
    let diff: f32 = (q - back).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-6);
}

/// Quantizer dropout's per-row depths: each row is quantized exactly as `quantize` would at
/// that row's depth.
#[test]
fn per_row_depths_match_quantize_at_each_depth() {
    let device = Device::flex();
    let codebooks = Tensor::<3>::from_data(TensorData::new(seeded(96, 1.0, 5), [3, 8, 4]), &device);
    let x = t2(seeded(24, 1.0, 6), 6, 4, &device);
    let depths = [1, 3, 2, 3, 1, 2];
    let (indices, q) = quantizer::quantize_to_depths(x.clone(), &codebooks, &depths);
    assert_eq!(indices.len(), 3);
    let q = quantizer::float_vec(q);
    for depth in 1..=3 {
        let (_, alone) = quantizer::quantize(x.clone(), &codebooks, depth);
        let alone = quantizer::float_vec(alone);
        for (row, _) in depths.iter().enumerate().filter(|(_, d)| **d == depth) {
            assert_eq!(
                q[row * 4..row * 4 + 4],
                alone[row * 4..row * 4 + 4],
                "row {row}"
            );
        }
    }
}

#[test]
fn ema_moves_entries_to_their_means_and_restarts_dead_ones() {
    // One level, two entries in 1-D; every vector is assigned to entry 0.
    let mut ema = EmaCodebooks::from_entries(1, 2, 1, vec![0.0, 5.0], vec![1.0, 1.0])
        .unwrap()
        .with_rates(0.5, 0.1)
        .unwrap();
    let latents = vec![2.0f32; 8];
    let indices = vec![vec![0u32; 8]];
    let depths = vec![1usize; 8];
    let mut rng = StdRng::seed_from_u64(1);
    let mut restarts = Vec::new();
    for _ in 0..20 {
        let stats = ema.update(&latents, &indices, &depths, &mut rng);
        restarts.push(stats[0].restarted);
    }
    assert!(
        (ema.entries()[0] - 2.0).abs() < 1e-3,
        "entry 0 at {}",
        ema.entries()[0]
    );
    // Entry 1 was never used: it has been restarted onto an encoder output.
    assert_eq!(ema.entries()[1], 2.0);
    // Its count falls below the threshold (0.1 × 8 vectors / 2 entries = 0.4) at the second
    // update (1 → 0.5 → 0.25), is restarted at the threshold, and, still never chosen, halves
    // below it again at every later update.
    assert_eq!(restarts[0], 0, "{restarts:?}");
    assert!(restarts[1..].iter().all(|&r| r == 1), "{restarts:?}");
    assert!((ema.counts()[1] - 0.4).abs() < 1e-6, "{}", ema.counts()[1]);
    // Vectors dropped by quantizer dropout (depth 0 here) do not move anything.
    let before = ema.entries().to_vec();
    ema.update(&[9.0; 8], &indices, &[0; 8], &mut rng);
    assert_eq!(ema.entries(), before);
    // Buffers that do not match the shape, and rates out of range, are refused.
    assert!(EmaCodebooks::from_entries(1, 2, 1, vec![0.0; 3], vec![1.0; 2]).is_err());
    assert!(EmaCodebooks::from_entries(1, 2, 1, vec![0.0; 2], vec![1.0; 1]).is_err());
    assert!(EmaCodebooks::from_state(1, 2, 1, vec![0.0; 2], vec![1.0; 2], vec![0.0]).is_err());
    for (decay, dead) in [(0.0, 0.1), (1.5, 0.1), (f32::NAN, 0.1), (0.9, -1.0)] {
        assert!(
            ema.clone().with_rates(decay, dead).is_err(),
            "{decay} {dead}"
        );
    }
}

#[test]
fn save_then_load_gives_bit_identical_outputs() {
    let device = Device::flex();
    for (upsample, up_res_blocks) in [
        (Upsample::Transposed, 0),
        (Upsample::Shuffle, 0),
        (Upsample::Transposed, 2),
    ] {
        let config = ModelConfig {
            upsample,
            up_res_blocks,
            ..tiny_config()
        };
        let net = RvqVae::new(&config, &device);
        let dir = tempfile::TempDir::new().unwrap();
        let fp = Model::save_net(&net, &config, dir.path()).unwrap();
        let model = Model::load(dir.path(), &device).unwrap();
        assert_eq!(model.fingerprint, fp);
        let x = Tensor::<4>::random([2, 3, 16, 24], burn::tensor::Distribution::Default, &device);
        let y = net.decode(net.encode(x.clone()), None);
        assert_eq!(y.dims(), [2, 3, 16, 24], "{upsample:?}");
        let a = quantizer::float_vec(y);
        let b = quantizer::float_vec(model.net.decode(model.net.encode(x), None));
        assert_eq!(a, b, "{upsample:?}");
    }
}

#[test]
fn config_and_weights_that_disagree_are_a_clear_error() {
    let device = Device::flex();
    let config = tiny_config();
    let dir = tempfile::TempDir::new().unwrap();
    Model::save_net(&RvqVae::new(&config, &device), &config, dir.path()).unwrap();
    // Other widths, or (same tensors' shapes aside) another way to upsample.
    for other in [
        ModelConfig {
            latent_dim: 12,
            ..tiny_config()
        },
        ModelConfig {
            upsample: Upsample::Shuffle,
            ..tiny_config()
        },
    ] {
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        let err = Model::load(dir.path(), &device).unwrap_err().to_string();
        assert!(err.contains("do not fit config.json"), "{err}");
    }
    std::fs::write(dir.path().join("config.json"), "{\"latent_dim\": 3}").unwrap();
    let err = Model::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("not a valid model configuration"), "{err}");
}

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

#[test]
fn the_reference_export_holds_what_the_model_computes() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("reference.safetensors");
    rvq::export::export_reference(&model, &path, 3).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let meta = safetensors_metadata(&bytes);
    assert_eq!(meta["rvq_fingerprint"], rvq::model::hex(&model.fingerprint));
    let tensors = read_safetensors(&bytes);
    let (n_q, d) = (model.config.num_codebooks, model.config.latent_dim);
    let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert_eq!(names, ["decoded", "images", "indices", "latents"]);
    let tensor = |name: &str, dtype: Dtype, shape: &[usize]| {
        let (t, s, data) = &tensors[name];
        assert_eq!((*t, s.as_slice()), (dtype, shape), "{name}");
        data.clone()
    };
    let images = tensor("images", Dtype::F32, &[3, 3, 32, 32]);
    tensor("latents", Dtype::F32, &[3, d, 4, 4]);
    let indices = tensor("indices", Dtype::I64, &[3, n_q, 4, 4]);
    let decoded = tensor("decoded", Dtype::F32, &[3, 3, 32, 32]);

    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let expected: Vec<f32> = (0..3)
        .flat_map(|i| {
            rvq::image_io::to_planar_padded(&rvq::data::synthetic(32, 32, i).unwrap(), 32, 32)
        })
        .collect();
    assert_eq!(f32s(&images), expected);
    let x = Tensor::<4>::from_data(TensorData::new(expected, [3, 3, 32, 32]), &device);
    let batch = model.encode_indices(x, n_q, 1).unwrap();
    let ours: Vec<i64> = batch.indices.iter().flatten().map(|&v| v as i64).collect();
    let stored: Vec<i64> = indices
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(stored, ours);
    assert!(
        ours.iter().any(|&v| v != ours[0]),
        "real codebooks pick varied entries"
    );
    let out = model
        .decode_indices(&batch.indices, batch.grid, n_q)
        .unwrap();
    assert_eq!(f32s(&decoded), quantizer::float_vec(out));
}

/// `b` images of `h`×`w` pixels in [0, 1], the same for the same seed.
fn test_images([b, h, w]: [usize; 3], seed: u64, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = seeded(b * 3 * h * w, 0.5, seed)
        .iter()
        .map(|v| v.abs().min(1.0))
        .collect();
    Tensor::<4>::from_data(TensorData::new(values, [b, 3, h, w]), device)
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

fn mse(a: Tensor<4>, b: Tensor<4>) -> f32 {
    (a - b).square().mean().into_scalar::<f32>()
}

#[test]
fn pixel_shuffle_inverts_unshuffle_in_pytorchs_channel_order() {
    let device = Device::flex();
    let values: Vec<f32> = (0..2 * 3 * 8 * 8).map(|v| v as f32).collect();
    let x = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 8, 8]), &device);
    let u = rvq::model::pixel_unshuffle(x.clone(), 4);
    assert_eq!(u.dims(), [2, 48, 2, 2]);
    // Channel c·16 + i·4 + j of cell (y, x) is pixel (4y + i, 4x + j) of colour c.
    let u_host = quantizer::float_vec(u.clone());
    let x_host = quantizer::float_vec(x.clone());
    let (img, c, i, j, cy, cx) = (1, 2, 3, 1, 1, 0);
    let got = u_host[((img * 48 + c * 16 + i * 4 + j) * 2 + cy) * 2 + cx];
    let want = x_host[((img * 3 + c) * 8 + 4 * cy + i) * 8 + 4 * cx + j];
    assert_eq!(got, want);
    assert_eq!(mse(rvq::model::pixel_shuffle(u, 4), x), 0.0);
}

fn linear_config(latent_dim: usize) -> ModelConfig {
    ModelConfig {
        latent_dim,
        grid_factor: 4,
        linear_path: true,
        ..tiny_config()
    }
}

#[test]
fn an_untrained_linear_path_is_the_pca_codec() {
    let device = Device::flex();
    let images = synthetic(40, 9);
    let x = images.batch(&(0..40).collect::<Vec<_>>(), None, &device);
    let pca = rvq::pca::PatchPca::fit(&images, 4, 40, &device);
    // All 48 components of a 4×4×3 patch: the path is orthonormal, so it rebuilds the input.
    let mut net = RvqVae::new(&linear_config(48), &device);
    net.set_linear_basis(&pca.basis(48), &pca.mean);
    let back = net.decode(net.encode(x.clone()), None);
    assert!(mse(back, x.clone()) < 1e-9);
    // Three components: the error is the variance the others held.
    let mut net = RvqVae::new(&linear_config(3), &device);
    net.set_linear_basis(&pca.basis(3), &pca.mean);
    let got = mse(net.decode(net.encode(x.clone()), None), x.clone()) as f64;
    let want = pca.truncation_mse(3);
    assert!(
        want > 1e-5,
        "the test images must need more than 3 components"
    );
    assert!((got - want).abs() < 0.02 * want, "{got} vs {want}");
    // Without the basis the path is random and far from it.
    let raw = RvqVae::new(&linear_config(3), &device);
    assert!(mse(raw.decode(raw.encode(x.clone()), None), x) as f64 > 10.0 * want);
}

#[test]
fn beam_search_finds_what_greedy_misses() {
    let device = Device::flex();
    // 1-D, two levels of two entries. Greedy takes 1.0 for 0.9 and is left with −0.1, which
    // the second level can only move to −0.95; taking 0.0 first leaves 0.9 for 0.85.
    let books = Tensor::<3>::from_data(
        TensorData::new(vec![0.0, 1.0, 0.85, 5.0], [2, 2, 1]),
        &device,
    );
    let x = t2(vec![0.9], 1, 1, &device);
    let greedy = quantizer::quantize_beam(x.clone(), &books, 2, 1);
    assert_eq!(greedy, vec![vec![1], vec![0]]);
    let beam = quantizer::quantize_beam(x, &books, 2, 2);
    assert_eq!(beam, vec![vec![0], vec![0]]);
}

/// Random data from a seeded generator: the thresholds below are checked on the same numbers
/// every run.
fn seeded(len: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| scale * rand::RngExt::random_range(&mut rng, -1.0f32..1.0))
        .collect()
}

#[test]
fn wider_beams_never_lose_to_greedy_and_win_overall() {
    let device = Device::flex();
    let (n, d, k, levels) = (300, 4, 8, 4);
    let books = seeded(levels * k * d, 0.8, 3);
    let codebooks = Tensor::<3>::from_data(TensorData::new(books, [levels, k, d]), &device);
    let x = t2(seeded(n * d, 1.5, 4), n, d, &device);
    // Per-cell squared error of an index choice.
    let errors = |indices: &[Vec<u32>]| -> Vec<f32> {
        let tensors: Vec<Tensor<1, Int>> = indices
            .iter()
            .map(|l| {
                let v: Vec<i64> = l.iter().map(|&i| i64::from(i)).collect();
                Tensor::<1, Int>::from_data(TensorData::new(v, [n]), &device)
            })
            .collect();
        let q = quantizer::dequantize(&tensors, &codebooks);
        quantizer::float_vec((x.clone() - q).square().sum_dim(1))
    };
    let greedy = errors(&quantizer::quantize_beam(x.clone(), &codebooks, levels, 1));
    let total = |e: &[f32]| e.iter().sum::<f32>();
    for width in [2, 4, 16] {
        let e = errors(&quantizer::quantize_beam(
            x.clone(),
            &codebooks,
            levels,
            width,
        ));
        for (cell, (b, g)) in e.iter().zip(&greedy).enumerate() {
            assert!(
                *b <= g + 1e-5,
                "width {width}, cell {cell}: {b} > greedy {g}"
            );
        }
        assert!(
            total(&e) < 0.97 * total(&greedy),
            "width {width}: {} against greedy {}",
            total(&e),
            total(&greedy)
        );
    }
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
fn per_cell_depths_decode_exactly_as_uniform_depths_do() {
    // A cell at depth k adds exact zeros for the levels it skips, so an image whose cells all
    // stop at k decodes bit for bit as a decode of k levels, and one at full depth as a plain
    // decode; mixed depths differ from both.
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let n_q = model.config.num_codebooks;
    let x = test_images([2, 32, 32], 3, &device);
    let batch = model.encode_indices(x, n_q, 1).unwrap();
    let at = |depths: Vec<Vec<u8>>| {
        quantizer::float_vec(
            model
                .decode_cells(&batch.indices, Some(&depths), batch.grid, n_q)
                .unwrap(),
        )
    };
    let plain = |k: usize| {
        let cut: Vec<Vec<u32>> = batch.indices.iter().map(|i| i[..k * 16].to_vec()).collect();
        quantizer::float_vec(model.decode_indices(&cut, batch.grid, k).unwrap())
    };
    for k in [1, 3, n_q] {
        assert_eq!(at(vec![vec![k as u8; 16]; 2]), plain(k), "k = {k}");
    }
    let mut mixed = vec![vec![n_q as u8; 16]; 2];
    mixed[0][5] = 1;
    let y = at(mixed);
    let full = plain(n_q);
    assert_ne!(y[..3 * 1024], full[..3 * 1024]);
    assert_eq!(
        y[3 * 1024..],
        full[3 * 1024..],
        "the other image is untouched"
    );
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

#[test]
fn the_codec_api_refuses_depths_and_headers_that_do_not_fit_the_model() {
    use rvq::codec::{self, EncodeOptions, Named};
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = [Named {
        name: "a".into(),
        image: rvq::data::synthetic(32, 32, 1).unwrap(),
    }];
    let capped = |m| EncodeOptions {
        rate: rvq::Rate::Quality {
            quality: 90,
            max_codebooks: Some(m),
        },
        ..EncodeOptions::default()
    };
    for m in [0, 9] {
        let err = codec::encode_records(&model, &images, &capped(m)).unwrap_err();
        assert!(
            matches!(err, rvq::Error::Codebooks { asked, available: 8 } if asked == m),
            "m = {m}: {err}"
        );
    }
    let records = codec::encode_records(&model, &images, &capped(2)).unwrap();
    let header = codec::header_for(&model, &capped(2)).unwrap();
    assert_eq!(
        rvq::decode::decode_records(&model, &header, &records, 8)
            .unwrap()
            .len(),
        1
    );
    let mut other = header.clone();
    other.fingerprint[0] ^= 1;
    let err = rvq::decode::decode_records(&model, &other, &records, 8).unwrap_err();
    assert!(matches!(err, rvq::Error::ModelMismatch { .. }), "{err}");
    let mut deeper = header.clone();
    deeper.codebooks_used = 9;
    let err = rvq::decode::decode_records(&model, &deeper, &records, 8).unwrap_err();
    assert!(
        matches!(err, rvq::Error::Codebooks { asked: 9, .. }),
        "{err}"
    );
}

#[test]
fn the_model_api_refuses_indices_that_do_not_fit_it() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let x = test_images([1, 32, 32], 5, &device);
    let batch = model.encode_indices(x.clone(), 2, 1).unwrap();
    assert!(model.decode_indices(&batch.indices, batch.grid, 2).is_ok());
    for depth in [0, 9] {
        let err = model.encode_indices(x.clone(), depth, 4).unwrap_err();
        assert!(
            matches!(err, rvq::Error::Codebooks { asked, .. } if asked == depth),
            "{depth}: {err}"
        );
    }
    let bad = |err: rvq::Error, needle: &str| {
        assert!(matches!(err, rvq::Error::BadIndices { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    };
    // Three levels asked of two levels' indices, a partial level, an index past the codebook
    // (but not one in a level left unused), an empty grid.
    bad(
        model
            .decode_indices(&batch.indices, batch.grid, 3)
            .unwrap_err(),
        "not 3 or more levels of 16",
    );
    let mut partial = batch.indices.clone();
    partial[0].pop();
    bad(
        model.decode_indices(&partial, batch.grid, 1).unwrap_err(),
        "31 indices",
    );
    let mut past = batch.indices.clone();
    past[0][20] = 1024;
    assert!(model.decode_indices(&past, batch.grid, 1).is_ok());
    past[0][5] = 1024;
    bad(
        model.decode_indices(&past, batch.grid, 2).unwrap_err(),
        "index 1024",
    );
    bad(
        model.decode_indices(&[vec![]], (0, 4), 2).unwrap_err(),
        "no cells",
    );
    // Cell depths: one map per image, one depth per cell, each in 1..=depth.
    for maps in [
        vec![],
        vec![vec![2u8; 15]],
        vec![vec![3u8; 16]],
        vec![vec![0u8; 16]],
    ] {
        bad(
            model
                .decode_cells(&batch.indices, Some(&maps), batch.grid, 2)
                .unwrap_err(),
            "depth map",
        );
    }
    let images = synthetic(2, 3);
    let err =
        rvq::eval::quality(&model.net, &model.config, &images, &[1, 9], 2, &device).unwrap_err();
    assert!(
        matches!(err, rvq::Error::Codebooks { asked: 9, .. }),
        "{err}"
    );
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
