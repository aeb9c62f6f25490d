//! The model and quantizer on small hand-made cases, save/load, and a training smoke test.
//! Everything here runs on the CPU backend and needs no data set.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rvq::config::ModelConfig;
use rvq::data::{ImageSet, Splits};
use rvq::model::{Model, RvqVae};
use rvq::quantizer::{self, EmaCodebooks};
use rvq::train::{self, Event, TrainOptions};

fn tiny_config() -> ModelConfig {
    ModelConfig {
        latent_dim: 8,
        codebook_size: 16,
        num_codebooks: 3,
        grid_factor: 8,
        channels: vec![8, 16, 16],
        res_blocks: 1,
        res_channels: 8,
        quantize: true,
    }
}

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

#[test]
fn ema_moves_entries_to_their_means_and_restarts_dead_ones() {
    // One level, two entries in 1-D; every vector is assigned to entry 0.
    let mut ema = EmaCodebooks::from_entries(1, 2, 1, vec![0.0, 5.0], vec![1.0, 1.0]);
    ema.decay = 0.5;
    let latents = vec![2.0f32; 8];
    let indices = vec![vec![0u32; 8]];
    let depths = vec![1usize; 8];
    let mut rng = StdRng::seed_from_u64(1);
    let mut stats = Vec::new();
    for _ in 0..20 {
        stats = ema.update(&latents, &indices, &depths, &mut rng);
    }
    assert!(
        (ema.codebooks[0] - 2.0).abs() < 1e-3,
        "entry 0 at {}",
        ema.codebooks[0]
    );
    // Entry 1 was never used: it has been restarted onto an encoder output.
    assert_eq!(ema.codebooks[1], 2.0);
    assert!(stats[0].restarted >= 1 || ema.counts[1] > 0.0);
    // Vectors dropped by quantizer dropout (depth 0 here) do not move anything.
    let before = ema.codebooks.clone();
    ema.update(&[9.0; 8], &indices, &[0; 8], &mut rng);
    assert_eq!(ema.codebooks, before);
}

#[test]
fn save_then_load_gives_bit_identical_outputs() {
    let device = Device::flex();
    let config = tiny_config();
    let net = RvqVae::new(&config, &device);
    let dir = tempfile::TempDir::new().unwrap();
    let fp = Model::save_net(&net, &config, dir.path()).unwrap();
    let model = Model::load(dir.path(), &device).unwrap();
    assert_eq!(model.fingerprint, fp);
    let x = Tensor::<4>::random([2, 3, 16, 24], burn::tensor::Distribution::Default, &device);
    let a = quantizer::float_vec(net.decode(net.encode(x.clone())));
    let b = quantizer::float_vec(model.net.decode(model.net.encode(x)));
    assert_eq!(a, b);
}

#[test]
fn config_and_weights_that_disagree_are_a_clear_error() {
    let device = Device::flex();
    let config = tiny_config();
    let dir = tempfile::TempDir::new().unwrap();
    Model::save_net(&RvqVae::new(&config, &device), &config, dir.path()).unwrap();
    let other = ModelConfig {
        latent_dim: 12,
        ..tiny_config()
    };
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    let err = Model::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("do not fit config.json"), "{err}");
    std::fs::write(dir.path().join("config.json"), "{\"latent_dim\": 3}").unwrap();
    let err = Model::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("not a valid model configuration"), "{err}");
}

fn synthetic(n: usize, seed: u64) -> ImageSet {
    // Smooth colour gradients with a random direction and offset per image.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pixels = Vec::with_capacity(n * 3 * 32 * 32);
    for _ in 0..n {
        let a: [f32; 3] = std::array::from_fn(|_| rand::RngExt::random_range(&mut rng, 0.0..1.0));
        let b: [f32; 3] = std::array::from_fn(|_| rand::RngExt::random_range(&mut rng, -0.5..0.5));
        for c in 0..3 {
            for y in 0..32 {
                for x in 0..32 {
                    let v = a[c] + b[c] * (x as f32 - y as f32 * 0.5) / 32.0;
                    pixels.push((v.clamp(0.0, 1.0) * 255.0) as u8);
                }
            }
        }
    }
    ImageSet { size: 32, pixels }
}

#[test]
fn training_smoke_loss_falls_and_resume_continues() {
    let device = Device::flex();
    let config = ModelConfig {
        latent_dim: 16,
        channels: vec![16, 32, 32],
        res_channels: 16,
        ..tiny_config()
    };
    let splits = Splits {
        train: synthetic(64, 1),
        valid: synthetic(16, 2),
        description: "synthetic gradients".into(),
    };
    let opts = TrainOptions {
        config,
        epochs: 100,
        batch_size: 16,
        learning_rate: 3e-3,
        kmeans_images: 64,
        checkpoint_every: 10,
        max_steps: Some(150),
        ..TrainOptions::default()
    };
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
        &mut on_event,
    )
    .unwrap();
    assert_eq!(card.steps, 150);
    let first: f32 = mses[..10].iter().sum::<f32>() / 10.0;
    let last: f32 = mses[mses.len() - 10..].iter().sum::<f32>() / 10.0;
    println!("mse {first} -> {last}");
    assert!(last < first * 0.8, "loss did not fall: {first} -> {last}");
    assert_eq!(card.validation.len(), 4); // depths 1, 2, 3 and the unquantized path
    let model = Model::load(dir.path(), &device).unwrap();
    assert_eq!(rvq::model::hex(&model.fingerprint), card.fingerprint);

    // Resuming a finished run with a larger budget continues from step 150.
    let more = TrainOptions {
        max_steps: Some(160),
        ..opts.clone()
    };
    let state = dir.path().join("checkpoint/state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["options"]["max_steps"] = serde_json::json!(160);
    std::fs::write(&state, v.to_string()).unwrap();
    let mut steps = Vec::new();
    let card = train::train(
        &more,
        &splits,
        dir.path(),
        &device,
        "test",
        true,
        &mut |e| {
            if let Event::Step { step, .. } = e {
                steps.push(step);
            }
        },
    )
    .unwrap();
    assert_eq!(steps.first(), Some(&151));
    assert_eq!(card.steps, 160);
}

/// Reads a safetensors file the way a Python reader would: u64 header length, JSON, bytes.
fn read_safetensors(bytes: &[u8]) -> (serde_json::Value, &[u8]) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0, "data is 8-byte aligned");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, &bytes[8 + n..])
}

#[test]
fn the_reference_export_holds_what_the_model_computes() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("reference.safetensors");
    rvq::model::export_reference(&model, &path, 3).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (header, data) = read_safetensors(&bytes);
    let meta = &header["__metadata__"];
    assert_eq!(meta["rvq_fingerprint"], rvq::model::hex(&model.fingerprint));
    let (n_q, d) = (model.config.num_codebooks, model.config.latent_dim);
    let mut end = 0;
    let mut tensor = |name: &str, dtype: &str, shape: &[usize], width: usize| {
        let t = &header[name];
        assert_eq!(t["dtype"], dtype, "{name}");
        assert_eq!(t["shape"], serde_json::json!(shape), "{name}");
        let [a, b] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
        assert_eq!((a, b - a), (end, shape.iter().product::<usize>() * width));
        end = b;
        data[a..b].to_vec()
    };
    let images = tensor("images", "F32", &[3, 3, 32, 32], 4);
    tensor("latents", "F32", &[3, d, 4, 4], 4);
    let indices = tensor("indices", "I64", &[3, n_q, 4, 4], 8);
    let decoded = tensor("decoded", "F32", &[3, 3, 32, 32], 4);
    assert_eq!(end, data.len());

    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let expected: Vec<f32> = (0..3)
        .flat_map(|i| rvq::image_io::to_planar_padded(&rvq::bench::synthetic(32, 32, i), 32, 32))
        .collect();
    assert_eq!(f32s(&images), expected);
    let x = Tensor::<4>::from_data(TensorData::new(expected, [3, 3, 32, 32]), &device);
    let batch = model.encode_indices(x, n_q).unwrap();
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
