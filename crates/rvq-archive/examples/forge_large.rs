//! Writes an archive that claims many large images at one codebook, every index 0, range-coded
//! to a few bytes each, each with a restoration filter of one unit (format version 4, the newest): the
//! decompression bomb of `bench/memory.sh`, which checks that `rvq decode` takes it in bounded
//! memory.
//!
//! ```sh
//! cargo run --release -p rvq-archive --example forge_large -- OUT.rvq FINGERPRINT_HEX [COUNT] [SIDE] [half]
//! ```
//! Defaults: 64 images of 8192×8192, for the default model's geometry (d = 64, k = 1024,
//! 8 codebooks, grid factor 8). With `half`, each image is coded at half its size (a quarter
//! of the indices for the same pixels), so the decoder must upsample it.

use rvq_archive::{
    ArchiveWriter, FINGERPRINT_LEN, Filter, Geometry, Header, IDENTITY, Record, VERSION,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, hex, rest @ ..] = args.as_slice() else {
        return Err("usage: forge_large OUT.rvq FINGERPRINT_HEX [COUNT] [SIDE] [half]".into());
    };
    let count: u64 = rest.first().map_or(Ok(64), |s| s.parse())?;
    let side: u32 = rest.get(1).map_or(Ok(8192), |s| s.parse())?;
    let half = match rest.get(2).map(String::as_str) {
        None => false,
        Some("half") => true,
        Some(other) => return Err(format!("the fifth argument is 'half', not {other:?}").into()),
    };
    if hex.len() != 2 * FINGERPRINT_LEN {
        return Err(format!("a fingerprint is {} hex digits", 2 * FINGERPRINT_LEN).into());
    }
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    for (i, b) in fingerprint.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?;
    }
    let mut header = Header::new(
        fingerprint,
        Geometry {
            latent_dim: 64,
            codebook_size: 1024,
            num_codebooks: 8,
            grid_factor: 8,
        },
        1,
    );
    header.names = false;
    header.entropy = true;
    header.version = VERSION;
    // A filter the decoder must apply: the red centre tap at 257/256.
    let mut coefficients = IDENTITY.repeat(3);
    coefficients[0] = 257;
    let coded = if half { side.div_ceil(2) } else { side };
    let cells = (coded as usize).div_ceil(8).pow(2);
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut writer = ArchiveWriter::new(file, &header, count)?;
    let record = Record {
        width: side,
        height: side,
        name: None,
        indices: vec![0; cells],
        depths: Vec::new(),
        filter: Some(Filter {
            unit: 0,
            coefficients,
        }),
        half,
    };
    for _ in 0..count {
        writer.write(&record)?;
    }
    writer.finish()?;
    Ok(())
}
