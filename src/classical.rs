//! The classical codecs `rvq eval` measures rvq against, JPEG and WebP: encoding at a quality,
//! decoding, and the bytes of their payloads (the entropy-coded data, without the headers that
//! an archive of many images would share).

use rvq::image_io::Rgb;
use rvq::{Error, Result};

/// The classical codecs `rvq eval` compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Classical {
    /// Baseline JPEG from the `image` crate's encoder.
    Jpeg,
    /// Lossy WebP from libwebp (the `webp` crate).
    Webp,
}

impl Classical {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Classical::Jpeg => "jpeg",
            Classical::Webp => "webp",
        }
    }

    /// Encodes `img` at `quality` (0–100); returns the file and its payload length.
    pub fn encode(self, img: &Rgb, quality: u8) -> Result<(Vec<u8>, usize)> {
        let bytes = match self {
            Classical::Jpeg => encode_jpeg(img, quality)?,
            Classical::Webp => encode_webp(img, quality)?,
        };
        let payload = match self {
            Classical::Jpeg => jpeg_scan_bytes(&bytes),
            Classical::Webp => webp_payload_bytes(&bytes),
        }
        .ok_or_else(|| Error::Other(format!("{} encoder wrote no image data", self.name())))?;
        Ok((bytes, payload))
    }

    /// Decodes a file made by [`Classical::encode`].
    pub fn decode(self, bytes: &[u8]) -> Result<Rgb> {
        match self {
            Classical::Jpeg => {
                let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
                    .map_err(|e| Error::Other(format!("JPEG decoding failed: {e}")))?
                    .to_rgb8();
                Ok(Rgb::new(img.width(), img.height(), img.into_raw())?)
            }
            Classical::Webp => {
                let img = webp::Decoder::new(bytes)
                    .decode()
                    .ok_or_else(|| Error::Other("WebP decoding failed".into()))?;
                let (width, height) = (img.width(), img.height());
                let channels = if img.is_alpha() { 4 } else { 3 };
                let rgb = img
                    .chunks_exact(channels)
                    .flat_map(|p| [p[0], p[1], p[2]])
                    .collect();
                Ok(Rgb::new(width, height, rgb)?)
            }
        }
    }
}

/// The JPEG qualities `rvq eval` tries by default.
pub const JPEG_LADDER: [u8; 8] = [5, 10, 20, 30, 50, 70, 85, 95];

/// The WebP qualities `rvq eval` tries by default.
pub const WEBP_LADDER: [u8; 7] = [0, 5, 10, 25, 50, 75, 90];

/// Encodes `img` as a baseline JPEG of `quality` (1–100) with the `image` crate's encoder.
pub fn encode_jpeg(img: &Rgb, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode(
            img.pixels(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| Error::Other(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

/// Encodes `img` as lossy WebP of `quality` (0–100) with libwebp.
pub fn encode_webp(img: &Rgb, quality: u8) -> Result<Vec<u8>> {
    webp::Encoder::from_rgb(img.pixels(), img.width(), img.height())
        .encode_simple(false, quality as f32)
        .map(|m| m.to_vec())
        .map_err(|e| Error::Other(format!("WebP encoding failed: {e:?}")))
}

/// Bytes of a lossy WebP's VP8 bitstream: the file less its RIFF and chunk headers (and any
/// other chunks). `None` if there is no `VP8 ` chunk.
pub fn webp_payload_bytes(webp: &[u8]) -> Option<usize> {
    if webp.len() < 12 || &webp[..4] != b"RIFF" || &webp[8..12] != b"WEBP" {
        return None;
    }
    let mut pos = 12;
    while pos + 8 <= webp.len() {
        let size = u32::from_le_bytes(webp[pos + 4..pos + 8].try_into().ok()?) as usize;
        if &webp[pos..pos + 4] == b"VP8 " {
            return Some(size);
        }
        pos += 8 + size + (size & 1);
    }
    None
}

/// Bytes of a JPEG's entropy-coded data: everything after the start-of-scan header up to the
/// end-of-image marker, summed over scans. Headers and tables (which a collection could share)
/// are left out. `None` if the bytes hold no scan.
pub fn jpeg_scan_bytes(jpeg: &[u8]) -> Option<usize> {
    let mut pos = 2; // SOI
    let mut total = 0;
    let mut found = false;
    while pos + 4 <= jpeg.len() {
        if jpeg[pos] != 0xFF {
            return None;
        }
        let marker = jpeg[pos + 1];
        if marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]) as usize;
        pos += 2 + len;
        if marker == 0xDA {
            found = true;
            // Entropy-coded data runs to the next marker that is neither a stuffed 0xFF00
            // nor a restart marker.
            let start = pos;
            while pos + 1 < jpeg.len() {
                if jpeg[pos] == 0xFF
                    && jpeg[pos + 1] != 0
                    && !(0xD0..=0xD7).contains(&jpeg[pos + 1])
                {
                    break;
                }
                pos += 1;
            }
            total += pos - start;
        }
    }
    found.then_some(total)
}
