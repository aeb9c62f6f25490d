//! Passes under the memory budget: tiles give the pixels and archives of a whole-image pass,
//! large archives decode within the budget, streams stop cleanly.

use crate::backend::Backend;
use crate::budget::Budget;
use crate::image_io::Rgb;
use crate::model::Model;
use crate::{Decoder, EncodeOptions, Encoder, Named};
use rvq_archive::{ArchiveWriter, Geometry, Header, Limits, Record};

/// The sample photographs side by side and mirrored into one 480×320 image: large enough
/// for the smallest budget to cut it into tiles, real enough for near-ties to occur.
fn mosaic() -> Rgb {
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap())
        .join("../../samples");
    let tiles: Vec<Rgb> = ["chelsea.png", "coffee.png", "rocket.png", "astronaut.png"]
        .iter()
        .map(|n| {
            crate::image_io::read_rgb(&dir.join(n), &Limits::default())
                .unwrap()
                .image
        })
        .collect();
    let (w, h) = (480usize, 320usize);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let t = &tiles[(y / 160) * 2 + (x / 240) % 2];
            let (tw, th) = (t.width() as usize, t.height() as usize);
            // Mirrored repeats, so that no seam of the mosaic is a hard edge everywhere.
            let fold = |v: usize, n: usize| {
                if (v / n).is_multiple_of(2) {
                    v % n
                } else {
                    n - 1 - v % n
                }
            };
            let (sx, sy) = (fold(x % 240, tw), fold(y % 160, th));
            rgb[(y * w + x) * 3..(y * w + x) * 3 + 3]
                .copy_from_slice(&t.pixels()[(sy * tw + sx) * 3..(sy * tw + sx) * 3 + 3]);
        }
    }
    Rgb::new(w as u32, h as u32, rgb).unwrap()
}

fn cpu_model(budget: Budget) -> Model {
    let device = Backend::Cpu.choose().unwrap().device;
    let mut model = Model::load_default(&device).unwrap();
    model.set_budget(budget);
    model
}

/// Encoding and decoding in tiles give the indices and pixels a whole-image pass gives,
/// with the default encoder (rate control and refinement decode too), and no pass holds
/// more than the budget.
#[test]
fn tiles_encode_and_decode_as_the_whole_image_does() {
    let image = mosaic();
    let named = [Named {
        name: "mosaic.png".into(),
        image: image.clone(),
    }];
    let small = Budget::new(Budget::MIN_BYTES).unwrap();
    let (whole, tiled) = (cpu_model(Budget::CPU), cpu_model(small));
    assert!(
        tiled.tiles((40, 60)).unwrap().len() > 4,
        "the mosaic must be tiled"
    );
    let a = Encoder::new(&whole, EncodeOptions::default())
        .unwrap()
        .encode(&named)
        .unwrap();
    let b = Encoder::new(&tiled, EncodeOptions::default())
        .unwrap()
        .encode(&named)
        .unwrap();
    assert_eq!(whole.largest_pass(), 480 * 320);
    assert!(
        tiled.largest_pass() <= tiled.pass_pixels(),
        "{}",
        tiled.largest_pass()
    );
    assert!(a == b, "tiled encoding chose other indices or depths");
    let da = Decoder::new(&whole, 64)
        .decode(&a, &Limits::default())
        .unwrap();
    let db = Decoder::new(&tiled, 64)
        .decode(&a, &Limits::default())
        .unwrap();
    assert!(
        da[0].1.pixels() == db[0].1.pixels(),
        "tiled decoding gave other pixels"
    );
}

/// An image in tiles is fitted tile by tile (`EncodeOptions::fit_steps`): at 8 codebooks its
/// decode comes closer than unfitted by at least half what fitting it whole gains, and no
/// pass, the fit's decodes included, holds more than the budget.
#[test]
fn an_image_in_tiles_is_fitted_within_the_budget() {
    let named = [Named {
        name: "mosaic.png".into(),
        image: mosaic(),
    }];
    let small = Budget::new(Budget::MIN_BYTES).unwrap();
    let (whole, tiled) = (cpu_model(Budget::CPU), cpu_model(small));
    assert!(
        tiled.tiles((40, 60)).unwrap().len() > 1,
        "the mosaic must be tiled"
    );
    let error = |model: &Model, fit_steps| {
        let opts = EncodeOptions {
            rate: crate::Rate::Codebooks(8),
            fit_steps,
            ..EncodeOptions::default()
        };
        let (header, records) = super::common::encode(model, &named, &opts);
        let decoded = super::common::decode(model, &header, &records);
        super::common::squared_error(&decoded[0], &named[0].image) as f64
    };
    let (plain, fitted) = (error(&tiled, 0), error(&tiled, 20));
    assert!(
        tiled.largest_pass() <= tiled.pass_pixels(),
        "{}",
        tiled.largest_pass()
    );
    let gain = error(&whole, 0) - error(&whole, 20);
    assert!(gain > 0.03 * plain, "fitted whole: {gain} of {plain}");
    assert!(
        plain - fitted > 0.5 * gain,
        "in tiles {plain} -> {fitted}, whole gains {gain}"
    );
}

/// A small random network, quick to run on large images.
fn tiny_model(budget: Budget) -> Model {
    let device = Backend::Cpu.choose().unwrap().device;
    let config = crate::config::ModelConfig {
        latent_dim: 8,
        codebook_size: 16,
        num_codebooks: 2,
        grid_factor: 8,
        channels: vec![8, 8, 8],
        res_blocks: 1,
        res_channels: 8,
        quantize: true,
        linear_path: false,
        depth_input: false,
        upsample: crate::config::Upsample::Transposed,
        up_res_blocks: 0,
    };
    let net = crate::model::RvqVae::new(&config, &device);
    let dir = tempfile::TempDir::new().unwrap();
    Model::save_net(&net, &config, dir.path()).unwrap();
    let mut model = Model::load(dir.path(), &device).unwrap();
    model.set_budget(budget);
    model
}

/// An archive of `count` images of `side`×`side` at one codebook, every index 0 but one cell's
/// in 97: coded at about 100 indices a byte, within the reader's 512, where a constant block
/// at k = 16 would be packed.
fn sparse_archive(model: &Model, count: u64, side: u32) -> Vec<u8> {
    let mut header = Header::new(
        model.fingerprint,
        Geometry {
            latent_dim: 8,
            codebook_size: 16,
            num_codebooks: 2,
            grid_factor: 8,
        },
        1,
    );
    header.names = false;
    header.entropy = true;
    let cells = (side as usize / 8).pow(2);
    let mut w = ArchiveWriter::new(Vec::new(), &header, count).unwrap();
    for _ in 0..count {
        let record = Record {
            width: side,
            height: side,
            name: None,
            indices: (0..cells).map(|c| u32::from(c % 97 == 0)).collect(),
            depths: Vec::new(),
            filter: None,
            half: false,
        };
        w.write(&record).unwrap();
    }
    w.finish().unwrap()
}

/// An archive that claims many large images (here 2048×2048 at one codebook, nearly all
/// indices 0, range-coded to about a kilobyte each) is decoded a pass at a time: one image per
/// pass and in tiles, each within the budget, and all its images come out.
#[test]
fn an_archive_of_large_images_decodes_within_the_budget() {
    let model = tiny_model(Budget::new(Budget::MIN_BYTES).unwrap());
    let side = 2048u32;
    let bytes = sparse_archive(&model, 3, side);
    assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    let images: Vec<_> = Decoder::new(&model, 64)
        .decode(&bytes, &Limits::default())
        .unwrap();
    assert_eq!(images.len(), 3);
    assert!(
        images
            .iter()
            .all(|(_, img)| img.width() == side && img.height() == side)
    );
    let (most, pass) = (model.largest_pass(), model.pass_pixels());
    assert!(
        most <= pass && pass < (side * side) as u64,
        "{most} > {pass}"
    );
}

/// A stream whose second block is damaged yields the first block's images, then the
/// error, and nothing after it.
#[test]
fn a_damaged_stream_yields_what_came_before_the_damage_then_the_error() {
    let model = tiny_model(Budget::CPU);
    let mut bytes = sparse_archive(&model, 70, 32);
    bytes.truncate(bytes.len() - 3);
    let reader = rvq_archive::ArchiveReader::new(&bytes[..], &Limits::default()).unwrap();
    let decoder = Decoder::new(&model, 16);
    let items: Vec<_> = decoder.images(reader).unwrap().collect();
    assert_eq!(
        items.len(),
        65,
        "64 images of the first block, then the error"
    );
    assert!(items[..64].iter().all(|i| i.is_ok()));
    assert!(items[64].is_err());
}

/// A writer whose output fails is abandoned: the pass that failed is not retried, and
/// every later call says so instead of writing an archive with records missing.
#[test]
fn an_encoder_whose_output_failed_is_abandoned() {
    /// Takes `left` bytes (the header), then fails.
    struct Failing {
        left: usize,
    }
    impl std::io::Write for Failing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.left {
                return Err(std::io::Error::other("disk full"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let model = tiny_model(Budget::CPU);
    let opts = EncodeOptions {
        batch_size: 1,
        refine: 1,
        beam: 1,
        ..EncodeOptions::default()
    };
    let encoder = Encoder::new(&model, opts).unwrap();
    let image = |i: usize| Named {
        name: format!("{i}.png"),
        image: Rgb::new(32, 32, vec![(i * 3) as u8; 32 * 32 * 3]).unwrap(),
    };
    // Records go out a block (64) at a time, so the 65th push writes the first block.
    let count = 70;
    let left = rvq_archive::write_header(encoder.header(), count as u64)
        .unwrap()
        .len();
    let mut writer = encoder.writer(Failing { left }, count as u64).unwrap();
    let mut results: Vec<crate::Result<()>> = (0..count).map(|i| writer.push(image(i))).collect();
    results.push(writer.finish().map(|_| ()));
    let first = results
        .iter()
        .position(|r| r.is_err())
        .expect("a write failed");
    for r in &results[first + 1..] {
        assert!(matches!(r, Err(crate::Error::Abandoned)), "{r:?}");
    }
}

/// Tiles compute exactly what a whole-image pass computes, before any rounding to pixels: the
/// mosaic's latents, and the decoded values of random indices at random cell depths, bit for
/// bit. (The CPU path's Winograd convolutions work in blocks of 2×2 outputs counted from a
/// pass's origin, so tiles must start at even cells to round as the whole image does.)
#[test]
fn tiles_compute_the_whole_image_pass_bit_for_bit() {
    let small = Budget::new(Budget::MIN_BYTES).unwrap();
    let (whole, tiled) = (cpu_model(Budget::CPU), cpu_model(small));
    let (h, w, grid) = (320, 480, (40, 60));
    assert!(
        tiled.tiles(grid).unwrap().len() > 4,
        "the mosaic must be tiled"
    );
    let differing = |a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count()
    };

    let planar = crate::image_io::to_planar_padded(&mosaic(), w, h);
    let za = crate::quantizer::float_vec(whole.encode_planar(&planar, 1, h, w).unwrap());
    let zb = crate::quantizer::float_vec(tiled.encode_planar(&planar, 1, h, w).unwrap());
    let n = differing(&za, &zb);
    assert_eq!(n, 0, "{n} of {} latent values differ", za.len());

    let (depth, k, cells) = (8, whole.config.codebook_size as u64, grid.0 * grid.1);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let indices = vec![
        (0..depth * cells)
            .map(|_| next(k) as u32)
            .collect::<Vec<_>>(),
    ];
    let depths = vec![
        (0..cells)
            .map(|_| 1 + next(depth as u64) as u8)
            .collect::<Vec<_>>(),
    ];
    let decode = |m: &Model| {
        let y = m
            .decode_cells(&indices, Some(&depths), grid, depth)
            .unwrap();
        crate::quantizer::float_vec(y)
    };
    let (ya, yb) = (decode(&whole), decode(&tiled));
    let n = differing(&ya, &yb);
    assert_eq!(n, 0, "{n} of {} decoded values differ", ya.len());
}
