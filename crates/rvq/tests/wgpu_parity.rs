//! wgpu against the CPU: the same indices and (nearly) the same pixels. Needs a Vulkan (or
//! Metal/DX12) adapter, so it is ignored by default; `.ci/run` installs Mesa's software Vulkan
//! driver (lavapipe) and runs it with `--ignored`. The first run compiles shaders (tens of
//! seconds on lavapipe), so it encodes and decodes the samples once per backend, no more.

use burn::prelude::*;
use rvq::backend::{self, Backend};
use rvq::codec::{self, EncodeOptions};
use rvq::model::Model;
use rvq::rate::Rate;

mod common;
use common::sample_photographs;

#[test]
#[ignore = "needs a wgpu adapter: CI installs lavapipe (mesa-vulkan-drivers)"]
fn wgpu_and_cpu_choose_the_same_indices_and_decode_alike() {
    let found = backend::adapters();
    assert!(
        !found.is_empty(),
        "no wgpu adapter: install mesa-vulkan-drivers"
    );
    let gpu = backend::choose(Backend::Wgpu).unwrap();
    assert_eq!(gpu.backend, Backend::Wgpu);
    let cpu = Device::flex();
    let images = sample_photographs();
    // Every cell at every codebook: the indices alone, as the residual search chose them.
    let opts = EncodeOptions {
        rate: Rate::Codebooks(8),
        refine: 1,
        ..EncodeOptions::default()
    };
    let on_cpu = Model::load_default(&cpu).unwrap();
    let on_gpu = Model::load_default(&gpu.device).unwrap();
    let a = codec::encode_records(&on_cpu, &images, &opts).unwrap();
    let b = codec::encode_records(&on_gpu, &images, &opts).unwrap();
    assert_eq!((a.len(), b.len()), (images.len(), images.len()));
    let (mut same, mut total) = (0usize, 0usize);
    for (ra, rb) in a.iter().zip(&b) {
        total += ra.indices.len();
        same += ra
            .indices
            .iter()
            .zip(&rb.indices)
            .filter(|(x, y)| x == y)
            .count();
    }
    let agreement = same as f64 / total as f64;
    println!("index agreement wgpu vs cpu: {same}/{total} = {agreement:.5}");
    assert!(agreement >= 0.999, "only {agreement} of indices agree");

    let header = codec::header_for(&on_cpu, &opts).unwrap();
    let da = rvq::decode::decode_records(&on_cpu, &header, &a, 64).unwrap();
    let db = rvq::decode::decode_records(&on_gpu, &header, &a, 64).unwrap();
    let mut worst = 0u8;
    for (x, y) in da.iter().zip(&db) {
        assert_eq!((x.width(), x.height()), (y.width(), y.height()));
        for (p, q) in x.pixels().iter().zip(y.pixels()) {
            worst = worst.max(p.abs_diff(*q));
        }
    }
    println!("largest pixel difference wgpu vs cpu: {worst}/255");
    assert!(worst <= 1, "decoded pixels differ by {worst}/255");

    // The default encode chooses per-cell depths from decoded pixels: a cell at a near tie
    // may go the other way on the other backend, so compare the depth maps cell by cell.
    let q = EncodeOptions::default();
    let a = codec::encode_records(&on_cpu, &images, &q).unwrap();
    let b = codec::encode_records(&on_gpu, &images, &q).unwrap();
    assert_eq!((a.len(), b.len()), (images.len(), images.len()));
    let (mut same, mut total) = (0usize, 0usize);
    for (ra, rb) in a.iter().zip(&b) {
        let (da, db) = (ra.cell_depths(&header), rb.cell_depths(&header));
        total += da.len();
        same += da.iter().zip(&db).filter(|(x, y)| x == y).count();
    }
    println!("depth agreement wgpu vs cpu: {same}/{total}");
    assert!(total > 0, "no cells compared");
    assert!(
        same as f64 >= 0.99 * total as f64,
        "only {same} of {total} depths agree"
    );
}

/// The default encode on the first 100 CIFAR-10 test images. Rate control and refinement
/// decide from decoded pixels, which differ by 1/255 here and there between backends, so an
/// image near a tie can be coded differently. Measured on lavapipe (2026-12-04): 99 of 100
/// images decode identically, the other 0.097 dB apart (issue 26 asks for 0.05 dB: not met on
/// this JPEG-derived copy). The asserts guard against regressions with a margin for lavapipe's
/// autotuned kernels: at least 95 identical, none over 0.25 dB apart. `.ci/run` runs it when
/// the data is beside the clone:
///
///     RVQ_CIFAR_DIR=../shared/data/cifar-10-batches-bin cargo test --release --test wgpu_parity -- --ignored
#[test]
#[ignore = "needs a wgpu adapter and CIFAR-10: set RVQ_CIFAR_DIR"]
fn default_encodes_of_cifar_images_decode_alike_on_both_backends() {
    let dir = std::env::var("RVQ_CIFAR_DIR").expect("RVQ_CIFAR_DIR");
    let set = rvq::data::cifar_test(std::path::Path::new(&dir))
        .unwrap()
        .take(100);
    let images: Vec<rvq::Named> = (0..set.len())
        .map(|i| rvq::Named {
            name: format!("{i}.png"),
            image: set.rgb(i),
        })
        .collect();
    let gpu = backend::choose(Backend::Wgpu).unwrap();
    let on_cpu = Model::load_default(&Device::flex()).unwrap();
    let on_gpu = Model::load_default(&gpu.device).unwrap();
    let opts = EncodeOptions::default();
    let a = codec::encode_records(&on_cpu, &images, &opts).unwrap();
    let b = codec::encode_records(&on_gpu, &images, &opts).unwrap();
    let header = codec::header_for(&on_cpu, &opts).unwrap();
    // Both archives decoded on the CPU: what differs is what the encoders chose.
    let da = rvq::decode::decode_records(&on_cpu, &header, &a, 64).unwrap();
    let db = rvq::decode::decode_records(&on_cpu, &header, &b, 64).unwrap();
    let psnr = |x: &rvq::image_io::Rgb, y: &rvq::image_io::Rgb| {
        let se: f64 = x
            .pixels()
            .iter()
            .zip(y.pixels())
            .map(|(p, q)| ((*p as f64 - *q as f64) / 255.0).powi(2))
            .sum();
        rvq::eval::psnr(se / x.pixels().len() as f64)
    };
    let (mut same, mut worst) = (0usize, 0f64);
    for ((img, x), y) in images.iter().zip(&da).zip(&db) {
        same += usize::from(x.pixels() == y.pixels());
        worst = worst.max((psnr(&img.image, x) - psnr(&img.image, y)).abs());
    }
    println!(
        "CIFAR-10 0..100, default encode: {same}/100 decode identically; largest PSNR gap {worst:.4} dB"
    );
    assert!(same >= 95, "only {same} of 100 images decode identically");
    assert!(worst <= 0.25, "an image decodes {worst} dB apart");
}
