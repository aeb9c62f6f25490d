//! Helpers shared by the test binaries (each uses some of them).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rvq::ModelConfig;
use rvq::Named;
use rvq::data::collect_images;
use rvq::data::{ImageSet, Splits};
use rvq::image_io::Limits;
use rvq::train::TrainOptions;
use safetensors::{Dtype, SafeTensors};

/// A model small enough to train in a test.
pub fn tiny_config() -> ModelConfig {
    ModelConfig {
        latent_dim: 8,
        codebook_size: 16,
        num_codebooks: 3,
        grid_factor: 8,
        channels: vec![8, 16, 16],
        res_blocks: 1,
        res_channels: 8,
        quantize: true,
        linear_path: false,
        depth_input: false,
        upsample: rvq::Upsample::Transposed,
        up_res_blocks: 0,
    }
}

/// Smooth colour gradients, 32×32.
pub fn synthetic(n: usize, seed: u64) -> ImageSet {
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

pub fn smoke_splits() -> Splits {
    Splits {
        train: synthetic(64, 1),
        valid: synthetic(16, 2),
        description: "synthetic gradients".into(),
    }
}

pub fn smoke_config() -> ModelConfig {
    ModelConfig {
        latent_dim: 16,
        channels: vec![16, 32, 32],
        res_channels: 16,
        ..tiny_config()
    }
}

pub fn smoke_options(config: ModelConfig, max_steps: usize) -> TrainOptions {
    TrainOptions {
        config,
        epochs: 100,
        batch_size: 16,
        learning_rate: 3e-3,
        kmeans_images: 64,
        checkpoint_every: 10,
        max_steps: Some(max_steps),
        ..TrainOptions::default()
    }
}

/// Every tensor of a safetensors file, by name, read with the `safetensors` crate (not with
/// rvq's own code): dtype, shape and bytes.
pub fn read_safetensors(bytes: &[u8]) -> BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)> {
    let file = SafeTensors::deserialize(bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, t)| (name, (t.dtype(), t.shape().to_vec(), t.data().to_vec())))
        .collect()
}

/// A safetensors file's metadata (`__metadata__`), read with the `safetensors` crate.
pub fn safetensors_metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

/// The photographs the project ships in `samples/`, read as `rvq encode` reads them.
pub fn sample_photographs() -> Vec<Named> {
    let samples =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../samples");
    let files = collect_images(std::slice::from_ref(&samples)).unwrap();
    files
        .iter()
        .map(|f| Named {
            name: f.file_name().unwrap().to_string_lossy().into_owned(),
            image: rvq::image_io::read_rgb(f, &Limits::default())
                .unwrap()
                .image,
        })
        .collect()
}

/// The header and records an encode of `images` with `opts` on `model` gives.
pub fn encode(
    model: &rvq::Model,
    images: &[Named],
    opts: &rvq::EncodeOptions,
) -> (rvq::archive::Header, Vec<rvq::archive::Record>) {
    let encoder = rvq::Encoder::new(model, opts.clone()).unwrap();
    let records = encoder.records(images).unwrap();
    (encoder.header().clone(), records)
}

/// The sum of squared 8-bit differences of two images of one size.
pub fn squared_error(a: &rvq::Rgb, b: &rvq::Rgb) -> u64 {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    a.pixels()
        .iter()
        .zip(b.pixels())
        .map(|(&p, &q)| u64::from(p.abs_diff(q)).pow(2))
        .sum()
}

/// `records` of an archive with `header` decoded on `model`, 64 images a pass at most.
pub fn decode(
    model: &rvq::Model,
    header: &rvq::archive::Header,
    records: &[rvq::archive::Record],
) -> Vec<rvq::Rgb> {
    rvq::Decoder::new(model, 64)
        .decode_records(header, records)
        .unwrap()
}
