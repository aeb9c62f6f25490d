//! The codec as a library, in a few lines: encode a PNG into an `.rvq` archive with the
//! built-in model and decode it back.
//!
//! ```sh
//! cargo run --release -p rvq --example round_trip -- samples/chelsea.png
//! ```

use std::path::Path;

use rvq::archive::{Archive, Limits};
use rvq::backend::{self, Backend};
use rvq::codec::{self, EncodeOptions, Named};
use rvq::image_io;
use rvq::model::Model;

/// Encodes the PNG at `path` at the default quality and decodes it: the archive's bytes and
/// the decoded image's PSNR (dB).
pub fn round_trip(path: &Path) -> rvq::Result<(usize, f64)> {
    let device = backend::choose(Backend::Cpu)?.device;
    let model = Model::load_default(&device)?;
    let image = image_io::read_rgb(path, &image_io::Limits::default(), false)?.image;
    let named = [Named {
        name: "image.png".into(),
        image: image.clone(),
    }];
    let bytes = codec::encode(&model, &named, &EncodeOptions::default(), &mut |_| {})?;

    let archive = Archive::parse(&bytes, &Limits::default())?;
    let decoded = codec::decode_records(&model, &archive.header, &archive.records()?, 64)?;
    let se: f64 = image
        .rgb
        .iter()
        .zip(&decoded[0].rgb)
        .map(|(a, b)| ((*a as f64 - *b as f64) / 255.0).powi(2))
        .sum();
    Ok((bytes.len(), rvq::eval::psnr(se / image.rgb.len() as f64)))
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: round_trip IMAGE.png");
        std::process::exit(2);
    };
    match round_trip(Path::new(&path)) {
        Ok((bytes, psnr)) => println!("{path}: {bytes} bytes, {psnr:.2} dB"),
        Err(e) => {
            eprintln!("round_trip: {e}");
            std::process::exit(1);
        }
    }
}
