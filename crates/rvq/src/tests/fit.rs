//! Latents fitted to the decoder (`crate::fit`): the pixels it estimates between decodes.

use burn::prelude::*;

use crate::fit::fit_decoding_every;
use crate::quantizer::float_vec;

/// Two padded 40×24 images (the second 37×21 inside its padding), planar, values in
/// [0.3, 0.7].
fn values() -> Vec<f32> {
    let v = super::seeded(2 * 3 * 24 * 40, 0.2, 7);
    v.iter().map(|v| 0.5 + v).collect()
}

/// The images' latents, unfitted (`every` None) or after 20 steps with a decode every `every`.
fn latents(model: &crate::Model, every: Option<usize>) -> Vec<f32> {
    let values = values();
    let latents = model.encode_planar(&values, 2, 24, 40).unwrap();
    let Some(every) = every else {
        return float_vec(latents);
    };
    let visible = [(40, 24), (37, 21)];
    float_vec(fit_decoding_every(model, latents, (&values, &visible), 20, every).unwrap())
}

/// On a decoder that is its linear path alone, the pixels estimated between decodes are the
/// decoded ones: a decode every 10 steps fits as a decode every step does. On the shipped
/// model, whose convolutional branch the estimates leave out, they differ.
#[test]
fn between_decodes_the_estimates_are_the_decode_where_the_decoder_is_its_linear_path() {
    let device = Device::flex();
    let model = super::linear_only_model(&device);
    let start = latents(&model, Some(1));
    let largest = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    // Not vacuous: 20 steps move the latents by tens of thousandths.
    assert!(largest(&start, &latents(&model, None)) > 0.01);
    for every in [10, 20] {
        let d = largest(&latents(&model, Some(every)), &start);
        assert!(d < 1e-4, "a decode every {every} steps: {d}");
    }
    let shipped = crate::Model::load_default(&device).unwrap();
    let d = largest(&latents(&shipped, Some(10)), &latents(&shipped, Some(1)));
    assert!(d > 1e-4, "the shipped model: {d}");
}

/// The memory budget counts a fit's own buffers ([`crate::fit::bytes_per_pixel`]) with the
/// network's activations: at the least budget an image larger than a pass is fitted in tiles
/// whose passes hold both within it, not in the tiles a pass of the network alone would take.
#[test]
fn a_fitted_pass_holds_its_buffers_within_the_budget() {
    let device = Device::flex();
    let small = crate::Budget::new(crate::Budget::MIN_BYTES).unwrap();
    let load = || {
        let mut model = crate::Model::load_default(&device).unwrap();
        model.set_budget(small);
        model
    };
    let (encoder, fitter) = (load(), load());
    let (h, w) = (240, 320);
    let values: Vec<f32> = super::seeded(3 * h * w, 0.2, 5)
        .iter()
        .map(|v| 0.5 + v)
        .collect();
    let latents = encoder.encode_planar(&values, 1, h, w).unwrap();
    let before = float_vec(latents.clone());
    let fitted = fit_decoding_every(&fitter, latents, (&values, &[(w, h)]), 2, 1).unwrap();
    // Not vacuous: the fit ran, in passes smaller than the image.
    assert_ne!(float_vec(fitted), before);
    let largest = fitter.largest_pass();
    assert!(0 < largest && largest < (h * w) as u64, "{largest}");
    let extra = crate::fit::bytes_per_pixel(&fitter.config);
    let held = largest * (crate::budget::bytes_per_pixel(&fitter.config) + extra);
    assert!(held <= small.bytes(), "{largest} pixels hold {held} bytes");
}

/// A fit's decode comes as each cell's patch: the same values as the planar decode, value for
/// value on the CPU path (which takes them from its own layout) and within rounding on the
/// tensor path.
#[test]
fn a_decode_as_patches_is_the_planar_decode_rearranged_on_both_paths() {
    let device = Device::flex();
    let model = crate::Model::load_default(&device).unwrap();
    assert!(model.cpu.is_some(), "the shipped model has the CPU path");
    let mut tensors = crate::Model::load_default(&device).unwrap();
    tensors.cpu = None;
    let (b, gh, gw, d, f) = (2, 3, 4, model.config.latent_dim, model.config.grid_factor);
    let cells = super::seeded(b * gh * gw * d, 0.5, 9);
    let depths = vec![8; b * gh * gw];
    let latents = Tensor::<4>::from_data(TensorData::new(cells.clone(), [b, gh, gw, d]), &device)
        .permute([0, 3, 1, 2]);
    let planar = model.decode_pass(latents, &depths);
    let (h, w) = (gh * f, gw * f);
    let mut want = Vec::with_capacity(planar.len());
    for (i, gy, gx) in (0..b * gh * gw).map(|c| (c / (gh * gw), (c / gw) % gh, c % gw)) {
        for (c, py, px) in (0..3 * f * f).map(|v| (v / (f * f), (v / f) % f, v % f)) {
            want.push(planar[((i * 3 + c) * h + gy * f + py) * w + gx * f + px]);
        }
    }
    assert_eq!(
        model.decode_patches(cells.clone(), [b, gh, gw, d], &depths),
        want
    );
    let other = tensors.decode_patches(cells, [b, gh, gw, d], &depths);
    assert_eq!(other.len(), want.len());
    let worst = other
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "{worst}");
}
