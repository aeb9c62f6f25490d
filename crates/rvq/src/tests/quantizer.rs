//! Residual vector quantization on hand-made cases: nearest entries, residuals, per-row
//! depths, the beam search and the codebooks' moving averages.

use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rvq::codebooks::EmaCodebooks;
use rvq::quantizer;

use super::seeded;

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
    let back = quantizer::dequantize_masked(&indices, &codebooks, None);
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
fn beam_search_finds_what_greedy_misses() {
    let device = Device::flex();
    // 1-D, two levels of two entries. Greedy takes 1.0 for 0.9 and is left with −0.1, which
    // the second level can only move to −0.95; taking 0.0 first leaves 0.9 for 0.85.
    let books = Tensor::<3>::from_data(
        TensorData::new(vec![0.0, 1.0, 0.85, 5.0], [2, 2, 1]),
        &device,
    );
    let x = t2(vec![0.9], 1, 1, &device);
    let greedy = quantizer::quantize_beam(x.clone(), &books, (2, 1), None, true);
    assert_eq!(greedy.levels, vec![vec![1], vec![0]]);
    let beam = quantizer::quantize_beam(x.clone(), &books, (2, 2), None, true);
    assert_eq!(beam.levels, vec![vec![0], vec![0]]);
    // A cell that stops after the first level is better off with the beam's best there, 1.0
    // (0.1 away), than with the full path's start, 0.0 (0.9 away).
    assert_eq!(beam.prefixes, vec![vec![1]]);
    // Not kept where no cell stops early.
    let fixed = quantizer::quantize_beam(x, &books, (2, 2), None, false);
    assert!(fixed.prefixes.is_empty());
    assert_eq!(fixed.levels, beam.levels);
}

#[test]
fn a_depth_the_beam_lost_greedy_at_takes_greedys_path() {
    let device = Device::flex();
    // 1-D, four levels of two entries, x = 1. Greedy: 0.7, 0.38, -0.08, 0.08 leaves 0.3,
    // -0.08, 0, -0.08. A beam of 2 drops that path at level 2 (0.6 then 0.4 or 0.38 leave 0
    // and 0.02) and ends at 0 by 0.6, 0.4, -0.08, 0.08; but after three levels its best leaves
    // 0.08 where greedy's leaves nothing, so a cell stopping at 3 takes greedy's path.
    let books = vec![0.7, 0.6, 0.4, 0.38, -0.08, 0.5, 0.08, 0.5];
    let books = Tensor::<3>::from_data(TensorData::new(books, [4, 2, 1]), &device);
    let x = t2(vec![1.0], 1, 1, &device);
    let paths = quantizer::quantize_beam(x, &books, (4, 2), None, true);
    assert_eq!(paths.levels, vec![vec![1], vec![0], vec![0], vec![0]]);
    assert_eq!(paths.prefixes, vec![vec![0], vec![1, 0], vec![0, 1, 0]]);
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
        let q = quantizer::dequantize_masked(&tensors, &codebooks, None);
        quantizer::float_vec((x.clone() - q).square().sum_dim(1))
    };
    let greedy = quantizer::quantize_beam(x.clone(), &codebooks, (levels, 1), None, true).levels;
    let greedy_errors = errors(&greedy);
    let total = |e: &[f32]| e.iter().sum::<f32>();
    for width in [2, 4, 16] {
        let paths = quantizer::quantize_beam(x.clone(), &codebooks, (levels, width), None, true);
        let e = errors(&paths.levels);
        assert_eq!(paths.prefixes.len(), levels - 1);
        for depth in 1..=levels {
            // The path for `depth`, level by level; the full path at the full depth.
            let own: Vec<Vec<u32>> = match paths.prefixes.get(depth - 1) {
                None => paths.levels.clone(),
                Some(prefix) => (0..depth)
                    .map(|l| prefix.iter().skip(l).step_by(depth).copied().collect())
                    .collect(),
            };
            let mine = errors(&own);
            let theirs = errors(&greedy[..depth]);
            let start = errors(&paths.levels[..depth]);
            for (cell, ((m, g), s)) in mine.iter().zip(&theirs).zip(&start).enumerate() {
                assert!(
                    *m <= g + 1e-5 && *m <= s + 1e-5,
                    "width {width}, depth {depth}, cell {cell}: {m} against greedy {g}, start {s}"
                );
            }
            if depth < levels {
                // Not vacuous: some cells do better at this depth off the full path.
                let better = mine
                    .iter()
                    .zip(&start)
                    .filter(|(m, s)| *m + 1e-5 < **s)
                    .count();
                assert!(better > 0, "width {width}, depth {depth}");
            }
        }
        assert!(
            total(&e) < 0.97 * total(&greedy_errors),
            "width {width}: {} against greedy {}",
            total(&e),
            total(&greedy_errors)
        );
    }
}
