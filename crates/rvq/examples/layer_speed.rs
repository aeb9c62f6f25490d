//! Times each layer of the default model's shapes (random weights) at batch 64 on the CPU
//! backend, one line per layer with its multiply-adds per second; `bench/torch_layers.py` times
//! the same shapes in PyTorch, so the two say which layers hold rvq behind it
//! (docs/BENCHMARKS.md, "rvq against PyTorch, layer by layer"). A benchmark, not a test:
//!
//!     cargo run --release -p rvq --example layer_speed
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2dConfig, ConvTranspose2dConfig};
use burn::prelude::*;
use std::time::Instant;

fn time<F: FnMut() -> Tensor<4>>(name: &str, macs: f64, mut f: F) -> f64 {
    let dev = Device::flex();
    let _ = f().into_data();
    let runs = 20;
    let t = Instant::now();
    for _ in 0..runs {
        let y = f();
        dev.sync().unwrap();
        drop(y);
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / runs as f64;
    println!("{name:40} {ms:8.3} ms  {:6.1} GMAC/s", macs / ms / 1e6);
    ms
}

fn main() {
    let dev = Device::flex();
    let b = 64usize;
    let rnd = |c: usize, s: usize| {
        Tensor::<4>::random([b, c, s, s], burn::tensor::Distribution::Default, &dev)
    };
    let mut total = 0.0;
    // Encoder.
    for (cin, cout, s) in [(3usize, 64usize, 32usize), (64, 128, 16), (128, 256, 8)] {
        let x = rnd(cin, s);
        let c = Conv2dConfig::new([cin, cout], [3, 3])
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&dev);
        let o = (s / 2) * (s / 2);
        total += time(
            &format!("enc conv3x3 s2 {cin}->{cout} @{s}"),
            (9 * cin * cout * o * b) as f64,
            || c.forward(x.clone()),
        );
    }
    let x = rnd(256, 4);
    let r1 = Conv2dConfig::new([256, 64], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(&dev);
    let r2 = Conv2dConfig::new([64, 256], [1, 1]).init(&dev);
    let h = rnd(64, 4);
    // The two residual blocks (each side has two, at 4×4 and 256 channels).
    let res_blocks = || {
        2.0 * time(
            "res conv3x3 256->64 @4 (x2)",
            (9 * 256 * 64 * 16 * b) as f64,
            || r1.forward(x.clone()),
        ) + 2.0
            * time(
                "res conv1x1 64->256 @4 (x2)",
                (64 * 256 * 16 * b) as f64,
                || r2.forward(h.clone()),
            )
    };
    total += res_blocks();
    let tl = Conv2dConfig::new([256, 64], [1, 1]).init(&dev);
    total += time(
        "to_latent 1x1 256->64 @4",
        (256 * 64 * 16 * b) as f64,
        || tl.forward(x.clone()),
    );
    let img = rnd(3, 32);
    let le = Conv2dConfig::new([192, 64], [1, 1]).init(&dev);
    total += time(
        "unshuffle + lin_enc 192->64",
        (192 * 64 * 16 * b) as f64,
        || le.forward(unshuffle(img.clone(), 8)),
    );
    // The greedy search: entry scores and their argmin, per level, as `quantizer::nearest`
    // runs them (blocks of 512 rows).
    let rows = Tensor::<2>::random([512, 64], burn::tensor::Distribution::Default, &dev);
    let book = Tensor::<2>::random([64, 1024], burn::tensor::Distribution::Default, &dev);
    total += 16.0
        * time(
            "search 512x64 · 64x1024 (x16)",
            (512 * 64 * 1024) as f64,
            || rows.clone().matmul(book.clone()).reshape([1, 1, 512, 1024]),
        );
    total += 16.0
        * time("search + argmin (x16)", (512 * 64 * 1024) as f64, || {
            rows.clone()
                .matmul(book.clone())
                .argmin(1)
                .float()
                .reshape([1, 1, 512, 1])
        });
    println!("encoder layers total {total:.1} ms");
    // Decoder.
    let mut total = 0.0;
    let z = rnd(64, 4);
    let fl = Conv2dConfig::new([64, 256], [1, 1]).init(&dev);
    total += time(
        "from_latent 1x1 64->256 @4",
        (64 * 256 * 16 * b) as f64,
        || fl.forward(z.clone()),
    );
    total += res_blocks();
    for (cin, cout, s) in [(256usize, 128usize, 4usize), (128, 64, 8), (64, 3, 16)] {
        let x = rnd(cin, s);
        let tc = ConvTranspose2dConfig::new([cin, cout], [4, 4])
            .with_stride([2, 2])
            .with_padding([1, 1])
            .init(&dev);
        total += time(
            &format!("up transposed {cin}->{cout} @{s}"),
            (16 * cin * cout * s * s * b) as f64,
            || burn::tensor::activation::relu(tc.forward(x.clone())),
        );
        // The same upsampling in sub-pixel form (not in the totals): one 3×3 convolution to
        // four times the channels, or four 2×2 ones' worth, before a pixel shuffle by 2.
        let c3 = Conv2dConfig::new([cin, 4 * cout], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&dev);
        let c2 = Conv2dConfig::new([cin, 4 * cout], [2, 2]).init(&dev);
        let macs = (4 * cin * 4 * cout * s * s * b) as f64;
        time(
            &format!("  sub-pixel 3x3 {cin}->4x{cout} @{s}"),
            macs * 9.0 / 4.0,
            || shuffle(c3.forward(x.clone()), 2),
        );
        time(
            &format!("  sub-pixel 2x2 {cin}->4x{cout} @{s}"),
            macs,
            || c2.forward(x.clone()),
        );
    }
    let ld = Conv2dConfig::new([64, 192], [1, 1]).init(&dev);
    total += time(
        "lin_dec 64->192 + shuffle",
        (192 * 64 * 16 * b) as f64,
        || shuffle(ld.forward(z.clone()), 8),
    );
    let y = rnd(3, 32);
    total += time("add + clamp", 0.0, || {
        (y.clone() + y.clone()).clamp(0.0, 1.0)
    });
    println!("decoder layers total {total:.1} ms");
}

fn unshuffle(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / f, f, w / f, f])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([b, c * f * f, h / f, w / f])
}

fn shuffle(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, cff, h, w] = x.dims();
    let c = cff / (f * f);
    x.reshape([b, c, f, f, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, h * f, w * f])
}
