//! The network: save and load, layout shuffles, the linear path and per-cell depths.

use burn::prelude::*;
use rvq::config::{ModelConfig, Upsample};
use rvq::model::{Model, RvqVae};
use rvq::quantizer;

use super::common::{synthetic, tiny_config};
use super::{mse, test_images};

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
