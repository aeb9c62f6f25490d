//! Tests of the model, the quantizer and training on small hand-made cases. They live in the
//! crate because they reach its internals (the network, the quantizer, saving a network);
//! everything here runs on the CPU backend and needs no data set.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[path = "../../tests/common/mod.rs"]
mod common;

mod api;
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
