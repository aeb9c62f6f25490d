//! Tests of the model, the quantizer and training on small hand-made cases. They live in the
//! crate because they reach its internals (the network, the quantizer, saving a network);
//! everything here runs on the CPU backend and needs no data set.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[path = "../../tests/common/mod.rs"]
mod common;

mod api;
mod fit;
mod inference;
mod network;
mod quantizer;
mod rate;
mod training;

/// `b` images of `h`×`w` pixels in [0, 1], the same for the same seed.
fn test_images([b, h, w]: [usize; 3], seed: u64, device: &Device) -> Tensor<4> {
    let values: Vec<f32> = seeded(b * 3 * h * w, 0.5, seed)
        .iter()
        .map(|v| v.abs().min(1.0))
        .collect();
    Tensor::<4>::from_data(TensorData::new(values, [b, 3, h, w]), device)
}

fn mse(a: Tensor<4>, b: Tensor<4>) -> f32 {
    (a - b).square().mean().into_scalar::<f32>()
}

/// Random data from a seeded generator: the thresholds below are checked on the same numbers
/// every run.
fn seeded(len: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| scale * rand::RngExt::random_range(&mut rng, -1.0f32..1.0))
        .collect()
}

/// A model whose decoder is its linear path alone: its convolutional branch ends in zeros;
/// entries and map made up (an untrained network's codebooks are zero), small enough that no
/// pixel leaves (0, 1) to be clamped.
pub(crate) fn linear_only_model(device: &Device) -> crate::model::Model {
    let config = crate::ModelConfig {
        latent_dim: 8,
        codebook_size: 16,
        num_codebooks: 3,
        grid_factor: 8,
        channels: vec![8, 8, 8],
        res_blocks: 1,
        res_channels: 8,
        quantize: true,
        linear_path: true,
        depth_input: false,
        upsample: crate::config::Upsample::Transposed,
        up_res_blocks: 0,
    };
    let mut net = crate::model::RvqVae::new(&config, device);
    net.set_linear_basis(&seeded(8 * 192, 0.05, 1), &vec![0.5; 192]);
    let books = seeded(3 * 16 * 8, 0.3, 2);
    net.set_codebooks(Tensor::from_data(
        TensorData::new(books, [3, 16, 8]),
        device,
    ));
    let dir = tempfile::TempDir::new().unwrap();
    crate::model::Model::save_net(&net, &config, dir.path()).unwrap();
    crate::model::Model::load(dir.path(), device).unwrap()
}
