//! `rvq eval`: what each byte buys. Encodes a set of images with rvq at several numbers of
//! codebooks and with JPEG and WebP at ladders of qualities, decodes them, and reports size, bits per
//! pixel, MSE, PSNR, SSIM and compression ratios for each, computed on the same images.

use serde::{Deserialize, Serialize};

use rvq_archive::{Header, Record};

use rvq::Model;
use rvq::Rate;
use rvq::eval::{psnr, squared_error};
use rvq::image_io::{self, Rgb};
use rvq::{Decoder, EncodeOptions, Encoder, Named};
use rvq::{Error, Result};

use crate::classical::Classical;

/// The codec a point measures, written in lower case in JSON and tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// rvq.
    Rvq,
    /// JPEG (libjpeg-style, through `image`).
    Jpeg,
    /// WebP (lossy, through libwebp).
    Webp,
}

impl From<Classical> for Codec {
    fn from(c: Classical) -> Self {
        match c {
            Classical::Jpeg => Codec::Jpeg,
            Classical::Webp => Codec::Webp,
        }
    }
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Rvq => "rvq",
            Codec::Jpeg => "jpeg",
            Codec::Webp => "webp",
        })
    }
}

/// One codec at one setting, measured over a whole image set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Which codec.
    pub codec: Codec,
    /// "m=4" or "q=50".
    pub setting: String,
    /// Codebooks used (rvq).
    pub codebooks: Option<usize>,
    /// Quality (jpeg).
    pub quality: Option<u8>,
    /// Images measured.
    pub images: usize,
    /// Mean bytes per image of the image data alone: rvq's index payload, JPEG's
    /// entropy-coded scan (headers and tables excluded, as if shared across the set).
    pub payload_bytes_per_image: f64,
    /// Mean bytes per image of the real files: the archive (header shared over the set) for
    /// rvq, whole JPEG files for JPEG.
    pub file_bytes_per_image: f64,
    /// Payload bits per pixel.
    pub payload_bits_per_pixel: f64,
    /// File bits per pixel.
    pub file_bits_per_pixel: f64,
    /// Mean squared error per value on [0, 1], of the decoded 8-bit images.
    pub mse: f64,
    /// PSNR of `mse`, dB.
    pub psnr: f64,
    /// Mean SSIM over images and channels (11×11 Gaussian window, σ = 1.5).
    pub ssim: f64,
    /// Raw RGB bytes over file bytes.
    pub ratio_vs_raw: f64,
    /// Lossless PNG bytes over file bytes.
    pub ratio_vs_png: f64,
    /// For rvq: the JPEG quality whose payload is nearest in size.
    pub nearest_jpeg_quality: Option<u8>,
    /// For rvq: that JPEG's PSNR.
    pub nearest_jpeg_psnr: Option<f64>,
    /// For rvq: the WebP quality whose payload is nearest in size.
    pub nearest_webp_quality: Option<u8>,
    /// For rvq: that WebP's PSNR.
    pub nearest_webp_psnr: Option<f64>,
}

/// The `rvq encode --quality` settings `rvq eval` measures by default.
pub const QUALITY_LADDER: [u8; 8] = [0, 10, 25, 40, 55, 70, 85, 100];

/// Sizes of a set of images that every point is compared against.
#[derive(Clone, Copy, Debug)]
struct Reference {
    pixels: u64,
    raw_bytes: u64,
    png_bytes: u64,
}

/// Where the rvq points come from.
#[derive(Clone, Copy, Debug)]
pub enum RvqSource<'a> {
    /// Encode the images at each of these numbers of codebooks, then (with every codebook
    /// available) at each of these qualities.
    Encode(&'a [usize], &'a [u8]),
    /// An existing archive of the images (in the same order), and its size in bytes.
    Archive(&'a Header, &'a [Record], u64),
}

/// What every rvq point is measured with, gathered so that the helpers behind [`compare`] take
/// one argument for it rather than four.
struct RvqRun<'a> {
    model: &'a Model,
    images: &'a [Rgb],
    reference: Reference,
    encode: &'a EncodeOptions,
}

/// Measures rvq (from `source`, encoding with `encode`'s batch size and beam width), JPEG at
/// each of `jpeg` and WebP at each of `webp` qualities, on `images`.
pub fn compare(
    model: &Model,
    images: &[Rgb],
    source: RvqSource,
    jpeg: &[u8],
    webp: &[u8],
    encode: &EncodeOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Point>> {
    if images.is_empty() {
        return Err(Error::Other("no images to evaluate".into()));
    }
    let reference = reference_sizes(images)?;
    let mut classical = Vec::new();
    for (codec, ladder) in [(Classical::Jpeg, jpeg), (Classical::Webp, webp)] {
        for &q in ladder {
            progress(&format!("{} q={q}", codec.name()));
            classical.push(classical_point(images, codec, q, &reference)?);
        }
    }
    let run = RvqRun {
        model,
        images,
        reference,
        encode,
    };
    let mut points = match source {
        RvqSource::Archive(header, records, len) => {
            progress("rvq archive");
            vec![archive_point(&run, header, records, len)?]
        }
        RvqSource::Encode(codebooks, qualities) => {
            encoded_points(&run, codebooks, qualities, progress)?
        }
    };
    set_nearest(&mut points, &classical);
    points.extend(classical);
    Ok(points)
}

/// The sizes every point's ratios are taken against, computed once for the whole set rather
/// than for each codec and setting.
fn reference_sizes(images: &[Rgb]) -> Result<Reference> {
    let mut png_bytes = 0u64;
    for img in images {
        png_bytes += image_io::encode_png(img)?.len() as u64;
    }
    let pixels: u64 = images
        .iter()
        .map(|i| i.width() as u64 * i.height() as u64)
        .sum();
    Ok(Reference {
        pixels,
        raw_bytes: pixels * 3,
        png_bytes,
    })
}

/// rvq's point for an archive the user gave: its file sizes and ratios are those of that
/// archive as it is (names, embedded codebook and all), not of the nameless one
/// [`rvq_point`] rebuilds to measure the payload.
fn archive_point(run: &RvqRun, header: &Header, records: &[Record], len: u64) -> Result<Point> {
    let (model, images, reference) = (run.model, run.images, &run.reference);
    let batch_size = run.encode.batch_size;
    let mut p = rvq_point(model, header, records, images, reference, batch_size)?;
    p.file_bytes_per_image = len as f64 / images.len() as f64;
    p.file_bits_per_pixel = len as f64 * 8.0 / reference.pixels as f64;
    p.ratio_vs_raw = reference.raw_bytes as f64 / len as f64;
    p.ratio_vs_png = reference.png_bytes as f64 / len as f64;
    Ok(p)
}

/// rvq's points when it encodes the images itself: every fixed depth first, then every
/// quality with all codebooks available, so that the table lists them in that order.
fn encoded_points(
    run: &RvqRun,
    codebooks: &[usize],
    qualities: &[u8],
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Point>> {
    let (model, images, encode) = (run.model, run.images, run.encode);
    let (reference, batch_size) = (&run.reference, encode.batch_size);
    let named: Vec<Named> = images
        .iter()
        .enumerate()
        .map(|(i, img)| Named {
            name: format!("{i}.png"),
            image: img.clone(),
        })
        .collect();
    let depths = codebooks.iter().map(|&m| Rate::Codebooks(m));
    let by_quality = qualities.iter().map(|&quality| Rate::Quality {
        quality,
        max_codebooks: None,
    });
    let mut points = Vec::new();
    for rate in depths.chain(by_quality) {
        let m = rate.codebooks(model.config().num_codebooks);
        let opts = EncodeOptions {
            rate,
            names: false,
            embed_codebook: None,
            ..encode.clone()
        };
        let label = match rate {
            Rate::Quality { quality, .. } => format!("q={quality}"),
            _ => format!("m={m}"),
        };
        progress(&format!("rvq {label}"));
        let encoder = Encoder::new(model, opts.clone())?;
        let header = encoder.header().clone();
        let records = encoder.records(&named)?;
        let mut p = rvq_point(model, &header, &records, images, reference, batch_size)?;
        if let Rate::Quality { quality: q, .. } = rate {
            p.setting = label;
            p.quality = Some(q);
        }
        points.push(p);
    }
    Ok(points)
}

/// Pairs each rvq point with the JPEG and WebP settings nearest to it in payload size, so
/// that the table shows what the classical codecs reach for about the same bytes.
fn set_nearest(points: &mut [Point], classical: &[Point]) {
    for p in points {
        let nearest = |codec: Codec| {
            classical
                .iter()
                .filter(|c| c.codec == codec)
                .min_by(|a, b| {
                    (a.payload_bytes_per_image - p.payload_bytes_per_image)
                        .abs()
                        .total_cmp(&(b.payload_bytes_per_image - p.payload_bytes_per_image).abs())
                })
                .map(|c| (c.quality, Some(c.psnr)))
                .unwrap_or((None, None))
        };
        (p.nearest_jpeg_quality, p.nearest_jpeg_psnr) = nearest(Codec::Jpeg);
        (p.nearest_webp_quality, p.nearest_webp_psnr) = nearest(Codec::Webp);
    }
}

/// rvq's point for `records`. Its payload is the archive these records make with names off,
/// less its header: indices, depth maps, restoration filters, block lengths and checksums (about 0.1 byte an
/// image beyond the indices and depth maps); its file size is that archive's, header and all.
fn rvq_point(
    model: &Model,
    header: &Header,
    records: &[Record],
    images: &[Rgb],
    reference: &Reference,
    batch_size: usize,
) -> Result<Point> {
    let m = header.codebooks_used as usize;
    let nameless = Header {
        names: false,
        codebook: None,
        ..header.clone()
    };
    let unnamed: Vec<Record> = records
        .iter()
        .map(|r| Record {
            name: None,
            ..r.clone()
        })
        .collect();
    let archive_len = rvq_archive::write_archive(&nameless, &unnamed)?.len() as u64;
    let header_len = rvq_archive::write_header(&nameless, records.len() as u64)?.len() as u64;
    let payload = archive_len - header_len;
    for (r, img) in records.iter().zip(images) {
        if (r.width, r.height) != (img.width(), img.height()) {
            return Err(Error::Other(format!(
                "archive image {:?} is {}×{} but its original is {}×{}",
                r.name,
                r.width,
                r.height,
                img.width(),
                img.height()
            )));
        }
    }
    // Decoded only once every size matches an original the user gave: an archive cannot
    // make this decode more than those images.
    let decoded = Decoder::new(model, batch_size).decode_records(header, records)?;
    let mut p = point(
        Codec::Rvq,
        format!("m={m}"),
        images,
        &decoded,
        payload,
        archive_len,
        reference,
    );
    p.codebooks = Some(m);
    Ok(p)
}

fn classical_point(
    images: &[Rgb],
    codec: Classical,
    quality: u8,
    reference: &Reference,
) -> Result<Point> {
    let (mut file, mut payload) = (0u64, 0u64);
    let mut decoded = Vec::with_capacity(images.len());
    for img in images {
        let (bytes, data) = codec.encode(img, quality)?;
        file += bytes.len() as u64;
        payload += data as u64;
        decoded.push(codec.decode(&bytes)?);
    }
    let mut p = point(
        codec.into(),
        format!("q={quality}"),
        images,
        &decoded,
        payload,
        file,
        reference,
    );
    p.quality = Some(quality);
    Ok(p)
}

fn point(
    codec: Codec,
    setting: String,
    originals: &[Rgb],
    decoded: &[Rgb],
    payload: u64,
    file: u64,
    reference: &Reference,
) -> Point {
    let n = originals.len() as f64;
    let (mut se, mut values, mut ssim_sum) = (0f64, 0f64, 0f64);
    for (a, b) in originals.iter().zip(decoded) {
        se += squared_error(a, b);
        values += a.pixels().len() as f64;
        ssim_sum += ssim(a, b);
    }
    let mse = se / values;
    let px = reference.pixels as f64;
    Point {
        codec,
        setting,
        codebooks: None,
        quality: None,
        images: originals.len(),
        payload_bytes_per_image: payload as f64 / n,
        file_bytes_per_image: file as f64 / n,
        payload_bits_per_pixel: payload as f64 * 8.0 / px,
        file_bits_per_pixel: file as f64 * 8.0 / px,
        mse,
        psnr: psnr(mse),
        ssim: ssim_sum / n,
        ratio_vs_raw: reference.raw_bytes as f64 / file as f64,
        ratio_vs_png: reference.png_bytes as f64 / file as f64,
        nearest_jpeg_quality: None,
        nearest_jpeg_psnr: None,
        nearest_webp_quality: None,
        nearest_webp_psnr: None,
    }
}

/// Mean SSIM of two equally sized RGB images over the three channels, on values in [0, 1],
/// with an 11×11 Gaussian window (σ = 1.5; smaller for images under 11 pixels a side) over
/// every position where the window fits. Identical images give exactly 1.
pub fn ssim(a: &Rgb, b: &Rgb) -> f64 {
    let (w, h) = (a.width() as usize, a.height() as usize);
    let size = 11.min(w).min(h);
    let sigma = 1.5 * size as f64 / 11.0;
    let half = (size as f64 - 1.0) / 2.0;
    let kernel: Vec<f64> = {
        let k: Vec<f64> = (0..size)
            .map(|i| (-((i as f64 - half).powi(2)) / (2.0 * sigma * sigma)).exp())
            .collect();
        let s: f64 = k.iter().sum();
        k.into_iter().map(|v| v / s).collect()
    };
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let mut total = 0.0;
    let mut count = 0usize;
    for c in 0..3 {
        let px = |img: &Rgb, x: usize, y: usize| img.pixels()[(y * w + x) * 3 + c] as f64 / 255.0;
        for y0 in 0..=h - size {
            for x0 in 0..=w - size {
                let (mut ma, mut mb, mut vaa, mut vbb, mut vab) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (dy, ky) in kernel.iter().enumerate() {
                    for (dx, kx) in kernel.iter().enumerate() {
                        let k = ky * kx;
                        let (p, q) = (px(a, x0 + dx, y0 + dy), px(b, x0 + dx, y0 + dy));
                        ma += k * p;
                        mb += k * q;
                        vaa += k * p * p;
                        vbb += k * q * q;
                        vab += k * p * q;
                    }
                }
                let (va, vb, cov) = (vaa - ma * ma, vbb - mb * mb, vab - ma * mb);
                total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                    / ((ma * ma + mb * mb + c1) * (va + vb + c2));
                count += 1;
            }
        }
    }
    total / count as f64
}

/// The points as a Markdown table.
pub fn markdown(points: &[Point]) -> String {
    let mut s = String::from(
        "| codec | setting | bytes/image (payload) | bytes/image (file) | bpp (payload) | MSE | PSNR dB | SSIM | ratio vs raw | ratio vs PNG | JPEG of nearest size | WebP of nearest size |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in points {
        let near = |q: Option<u8>, db: Option<f64>| match (q, db) {
            (Some(q), Some(db)) => format!("q={q}: {db:.2} dB"),
            _ => String::new(),
        };
        s.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {:.3} | {:.5} | {:.2} | {:.4} | {:.1} | {:.1} | {} | {} |\n",
            p.codec,
            p.setting,
            p.payload_bytes_per_image,
            p.file_bytes_per_image,
            p.payload_bits_per_pixel,
            p.mse,
            p.psnr,
            p.ssim,
            p.ratio_vs_raw,
            p.ratio_vs_png,
            near(p.nearest_jpeg_quality, p.nearest_jpeg_psnr),
            near(p.nearest_webp_quality, p.nearest_webp_psnr),
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classical::{encode_jpeg, jpeg_scan_bytes, webp_payload_bytes};

    fn test_image(w: u32, h: u32, seed: u32) -> Rgb {
        let rgb = (0..w * h * 3)
            .map(|i| ((i * 37 + seed * 11) % 251) as u8)
            .collect();
        Rgb::new(w, h, rgb).unwrap()
    }

    #[test]
    fn identical_images_have_zero_error_infinite_psnr_and_ssim_one() {
        let a = test_image(16, 12, 1);
        assert_eq!(squared_error(&a, &a), 0.0);
        assert!(psnr(0.0).is_infinite());
        assert_eq!(ssim(&a, &a), 1.0);
    }

    /// Against scikit-image on photographs and distortions that
    /// `scripts/ssim_reference.py` wrote to `tests/data/ssim_reference.json`; the distortions
    /// are recomputed here by the same formulas.
    #[test]
    fn ssim_matches_scikit_image() {
        let root =
            std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"));
        let text = std::fs::read_to_string(root.join("tests/data/ssim_reference.json")).unwrap();
        let reference: serde_json::Value = serde_json::from_str(&text).unwrap();
        let load = |name: &str| {
            let path = root.join("samples").join(name);
            let bytes = std::fs::read(&path).unwrap();
            image_io::decode_rgb(&bytes, &path, &image_io::Limits::default())
                .unwrap()
                .image
        };
        let cases = reference["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 6);
        for case in cases {
            let a = load(case["a"].as_str().unwrap());
            let b = load(case["b"].as_str().unwrap());
            let kind = case["distortion"].as_str().unwrap();
            let (w, h) = (b.width(), b.height());
            let mut pixels = b.into_pixels();
            for (i, v) in pixels.iter_mut().enumerate() {
                let x = *v as i64;
                *v = match kind {
                    "none" => x,
                    "shift+10" => (x + 10).min(255),
                    "noise" => (x + (i as i64 * 7919 % 25) - 12).clamp(0, 255),
                    "posterize" => x / 32 * 32,
                    other => panic!("unknown distortion {other}"),
                } as u8;
            }
            let b = Rgb::new(w, h, pixels).unwrap();
            let want = case["ssim"].as_f64().unwrap();
            let got = ssim(&a, &b);
            assert!(
                (got - want).abs() < 1e-9,
                "{case}: rvq {got}, scikit-image {want}"
            );
        }
    }

    #[test]
    fn ssim_and_error_of_a_known_difference() {
        let a = Rgb::new(2, 1, vec![0, 0, 0, 255, 255, 255]).unwrap();
        let b = Rgb::new(2, 1, vec![0, 0, 0, 0, 0, 0]).unwrap();
        // Three of six values are off by 1.0.
        assert_eq!(squared_error(&a, &b) / 6.0, 0.5);
        // A uniform brightness shift lowers SSIM below 1.
        let base = test_image(24, 24, 3);
        let brighter = base.pixels().iter().map(|v| v.saturating_add(10)).collect();
        let shifted = Rgb::new(base.width(), base.height(), brighter).unwrap();
        assert!(ssim(&base, &shifted) < 1.0);
    }

    #[test]
    fn jpeg_scan_is_counted_without_headers() {
        let img = test_image(32, 32, 5);
        let jpeg = encode_jpeg(&img, 50).unwrap();
        let scan = jpeg_scan_bytes(&jpeg).unwrap();
        // The headers (quantization and Huffman tables, frame and scan headers) of a baseline
        // JPEG take hundreds of bytes; the scan is the rest, minus the 2-byte SOI and EOI.
        assert!(scan > 0);
        assert!(jpeg.len() - scan > 300, "headers: {}", jpeg.len() - scan);
        assert_eq!(&jpeg[jpeg.len() - 2..], &[0xFF, 0xD9]);
        // Locate the scan by hand: it starts after the SOS segment and ends at EOI.
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let sos_len = u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]) as usize;
        assert_eq!(scan, jpeg.len() - 2 - (sos + 2 + sos_len));
        assert_eq!(jpeg_scan_bytes(b"not a jpeg"), None);
    }

    #[test]
    fn webp_payload_is_the_vp8_chunk() {
        let img = test_image(32, 32, 9);
        let (file, payload) = Classical::Webp.encode(&img, 50).unwrap();
        assert_eq!(&file[..4], b"RIFF");
        // A simple lossy WebP is RIFF header (12 bytes), chunk header (8), then the bitstream.
        assert_eq!(payload, file.len() - 20);
        let back = Classical::Webp.decode(&file).unwrap();
        assert_eq!(
            (back.width(), back.height(), back.pixels().len()),
            (32, 32, 32 * 32 * 3)
        );
        assert_eq!(webp_payload_bytes(b"RIFF\0\0\0\0WEBPVP8L"), None);
    }

    #[test]
    fn points_round_trip_through_json() {
        let p = Point {
            codec: Codec::Jpeg,
            setting: "q=50".into(),
            codebooks: None,
            quality: Some(50),
            images: 3,
            payload_bytes_per_image: 100.5,
            file_bytes_per_image: 700.0,
            payload_bits_per_pixel: 0.78,
            file_bits_per_pixel: 5.4,
            mse: 0.002,
            psnr: 26.99,
            ssim: 0.9,
            ratio_vs_raw: 4.4,
            ratio_vs_png: 3.1,
            nearest_jpeg_quality: None,
            nearest_jpeg_psnr: None,
            nearest_webp_quality: None,
            nearest_webp_psnr: None,
        };
        let json = serde_json::to_string(std::slice::from_ref(&p)).unwrap();
        let back: Vec<Point> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vec![p]);
        assert!(json.contains("\"payload_bytes_per_image\":100.5"));
    }
}
