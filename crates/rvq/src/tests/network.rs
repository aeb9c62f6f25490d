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
    // Codebooks far larger than the weights file (64 × 65,536 × 4,096 values: 64 GiB) are
    // refused before they are made.
    let huge = ModelConfig {
        latent_dim: 4096,
        codebook_size: 65_536,
        num_codebooks: 64,
        ..tiny_config()
    };
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&huge).unwrap(),
    )
    .unwrap();
    let err = Model::load(dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("do not fit in the weights file"), "{err}");
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

/// The largest difference between two equally long lists of values.
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_cpu_path_computes_what_the_burn_layers_compute() {
    let device = Device::flex();
    let small = ModelConfig {
        linear_path: true,
        ..tiny_config()
    };
    let dir = tempfile::TempDir::new().unwrap();
    Model::save_net(&RvqVae::new(&small, &device), &small, dir.path()).unwrap();
    let models = [
        Model::load_default(&device).unwrap(),
        Model::load(dir.path(), &device).unwrap(),
    ];
    for model in &models {
        assert!(
            model.cpu.is_some(),
            "flex and a linear path: the CPU path is used"
        );
        // 37 images of 40×24 pixels: a grid of 5×3 cells, neither square nor a power of two, and
        // more images than one group of the CPU path holds (34 of this size).
        let x = Tensor::<4>::random(
            [37, 3, 24, 40],
            burn::tensor::Distribution::Default,
            &device,
        );
        let z = model.net.encode(x.clone());
        let ours = quantizer::float_vec(model.encode_pass(x));
        assert!(worst(&quantizer::float_vec(z.clone()), &ours) < 1e-4);
        // Only a depth-input network reads the cells' depths, and the path refuses those.
        let depths = vec![0; 37 * 5 * 3];
        let want = quantizer::float_vec(model.net.decode(z.clone(), Some(&depths)));
        let gap = worst(&want, &model.decode_pass(z, &depths));
        assert!(gap < 1e-5, "decoded pixels differ by {gap}");
    }
    // Layers the path does not have: burn's layers run them.
    for other in [
        ModelConfig {
            upsample: Upsample::Shuffle,
            ..small.clone()
        },
        ModelConfig {
            up_res_blocks: 1,
            ..small.clone()
        },
        ModelConfig {
            depth_input: true,
            ..small.clone()
        },
        tiny_config(),
    ] {
        Model::save_net(&RvqVae::new(&other, &device), &other, dir.path()).unwrap();
        assert!(
            Model::load(dir.path(), &device).unwrap().cpu.is_none(),
            "{other:?}"
        );
    }
}

#[test]
fn the_cpu_greedy_search_picks_what_the_tensor_search_picks() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let books = model.cpu.as_ref().and_then(|c| c.books.as_ref()).unwrap();
    // 56 × 24 cells: 1,344 rows, more than one block of the search.
    let image = rvq::data::synthetic(448, 192, 3).unwrap();
    let x = Tensor::<4>::from_data(
        TensorData::new(
            rvq::image_io::to_planar_padded(&image, 448, 192),
            [1, 3, 192, 448],
        ),
        &device,
    );
    let rows = rvq::model::latents_to_rows(model.net.encode(x));
    let codebooks = model.net.codebooks().unwrap();
    let (want, _) = quantizer::quantize(rows.clone(), &codebooks, 8);
    let want: Vec<Vec<u32>> = want.into_iter().map(quantizer::int_vec).collect();
    let got = books.greedy(&quantizer::float_vec(rows.clone()), 8);
    agree(&want, &got);
    // The beam with its dots on the CPU path, against the beam on tensors.
    let want = quantizer::quantize_beam(rows.clone(), &codebooks, (8, 4), None, true);
    let got = quantizer::quantize_beam(rows, &codebooks, (8, 4), Some(books), true);
    agree(&want.levels, &got.levels);
    assert_eq!((want.prefixes.len(), got.prefixes.len()), (7, 7));
    // And each shallower depth's own path, level by level.
    for (p, (w, g)) in (1..).zip(want.prefixes.iter().zip(&got.prefixes)) {
        let level = |v: &[u32], l: usize| v.iter().skip(l).step_by(p).copied().collect();
        let (w, g): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
            (0..p).map(|l| (level(w, l), level(g, l))).unzip();
        agree_levels(&w, &g);
    }
}

/// Eight levels of indices that agree but where sums in another order part a near tie (at
/// most one in a hundred): anything more is a bug.
fn agree(want: &[Vec<u32>], got: &[Vec<u32>]) {
    assert_eq!(got.len(), 8);
    agree_levels(want, got);
}

/// Levels of indices that agree but for near ties (at most one in a hundred).
fn agree_levels(want: &[Vec<u32>], got: &[Vec<u32>]) {
    assert_eq!(want.len(), got.len());
    for (level, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.len(), g.len());
        let same = w.iter().zip(g).filter(|(a, b)| a == b).count();
        assert!(
            same * 100 >= 99 * w.len(),
            "level {level}: {same} of {}",
            w.len()
        );
    }
}

#[test]
fn the_cpu_dequantization_sums_what_the_tensor_one_sums() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    assert!(model.cpu.is_some(), "the shipped model has the CPU path");
    let mut tensors = Model::load_default(&device).unwrap();
    tensors.cpu = None;
    let (grid, depth, k) = ((2, 3), 5, model.config.codebook_size as u32);
    let cells = 6;
    // Two images, five levels of six cells, depths 1..=5 and one cell at 3 of 5.
    let indices: Vec<Vec<u32>> = (0..2u32)
        .map(|i| {
            (0..(depth * cells) as u32)
                .map(|j| (j * 97 + i * 13) % k)
                .collect()
        })
        .collect();
    let depths: Vec<Vec<u8>> = vec![vec![1, 2, 3, 4, 5, 5], vec![5, 3, 5, 5, 2, 1]];
    let sums = |m: &Model, depths: Option<&[Vec<u8>]>| {
        quantizer::float_vec(m.dequantized(&indices, depths, grid, depth).unwrap())
    };
    let want = sums(&tensors, Some(&depths));
    assert_eq!(sums(&model, Some(&depths)), want);
    let full = sums(&tensors, None);
    assert_eq!(sums(&model, None), full);
    assert_ne!(want, full);
}
