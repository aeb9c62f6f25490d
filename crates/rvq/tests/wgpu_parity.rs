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
