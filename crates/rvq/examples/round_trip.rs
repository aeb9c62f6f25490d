//! The codec as a library: encode a PNG with the built-in model, decode it back.
//! `cargo run --release -p rvq --example round_trip -- samples/chelsea.png`

use rvq::image_io::{Limits, read_rgb};
use rvq::{Backend, Decoder, EncodeOptions, Encoder, Model, Named, Rgb};

/// The archive's bytes and the decoded image's PSNR (dB) for the PNG at `path`.
pub fn round_trip(path: &std::path::Path) -> rvq::Result<(usize, f64)> {
    let model = Model::load_default(&Backend::Cpu.choose()?.device)?;
    let image: Rgb = read_rgb(path, &Limits::default())?.image;
    let named = Named {
        name: "image.png".into(),
        image: image.clone(),
    };
    let bytes = Encoder::new(&model, EncodeOptions::default())?.encode(&[named])?;
    let decoded = Decoder::new(&model, 64).decode(&bytes, &Limits::default())?;
    let (name, back) = &decoded[0];
    assert_eq!(name.as_deref(), Some("image.png"));
    Ok((bytes.len(), rvq::eval::image_psnr(&image, back)))
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: round_trip IMAGE.png");
        std::process::exit(2);
    };
    match round_trip(path.as_ref()) {
        Ok((bytes, psnr)) => println!("{path}: {bytes} bytes, {psnr:.2} dB"),
        Err(e) => {
            eprintln!("round_trip: {e}");
            std::process::exit(1);
        }
    }
}
