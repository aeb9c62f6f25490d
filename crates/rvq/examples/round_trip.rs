//! The codec as a library, in a few lines: encode a PNG into an `.rvq` archive with the
//! built-in model and decode it back.
//!
//! ```sh
//! cargo run --release -p rvq --example round_trip -- samples/chelsea.png
//! ```

use std::path::Path;

use rvq::archive::Limits;
use rvq::backend::{self, Backend};
use rvq::image_io;
use rvq::model::Model;
use rvq::{Decoder, EncodeOptions, Encoder, Named};

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
    let bytes = Encoder::new(&model, EncodeOptions::default())?.encode(&named)?;

    let decoded = Decoder::new(&model, 64).decode(&bytes, &Limits::default())?;
    let (name, back) = &decoded[0];
    assert_eq!(name.as_deref(), Some("image.png"));
    let se: f64 = image
        .pixels()
        .iter()
        .zip(back.pixels())
        .map(|(a, b)| ((*a as f64 - *b as f64) / 255.0).powi(2))
        .sum();
    Ok((
        bytes.len(),
        rvq::eval::psnr(se / image.pixels().len() as f64),
    ))
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
