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
