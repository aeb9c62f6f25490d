//! What an archive says about itself without a model: header fields, where the bytes go,
//! depths and ratios.

use std::io::Read;

use crate::{Archive, ArchiveReader, Header, Limits, Record, Result, VERSION_1, hex};

/// What an archive says about itself, read without a model: header fields, where the bytes
/// go, depths and ratios (what `rvq info` reports).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct ArchiveInfo {
    /// Format version.
    pub version: u8,
    /// Model fingerprint (hex).
    pub fingerprint: String,
    /// Latent channels d.
    pub latent_dim: u32,
    /// Entries per codebook k.
    pub codebook_size: u32,
    /// Codebooks in the model n_q.
    pub num_codebooks: u32,
    /// Codebooks used m.
    pub codebooks_used: u32,
    /// Pixels per latent cell side.
    pub grid_factor: u8,
    /// Bits per index.
    pub bits_per_index: u32,
    /// Whether names are stored.
    pub names: bool,
    /// Embedded codebook precision, if any.
    pub embedded_codebook: Option<String>,
    /// Number of images.
    pub images: u64,
    /// Bytes of the whole archive.
    pub total_bytes: u64,
    /// Bytes of the shared header.
    pub header_bytes: u64,
    /// Whether blocks may range-code their indices (payload coder 1 or 2).
    pub entropy: bool,
    /// The payload coder: 0 packed, 1 range-coded, 2 range-coded under neighbour contexts.
    pub payload_coder: u8,
    /// Blocks whose indices are range-coded.
    pub coded_blocks: u64,
    /// Bytes of index payloads (all images).
    pub payload_bytes: u64,
    /// Bytes of everything else: per-image fields, names, restoration filters, depth maps,
    /// block lengths and checksums.
    pub record_overhead_bytes: u64,
    /// Images that carry a restoration filter (format version 3).
    pub filtered_images: u64,
    /// Bytes of those filters' fields (within `record_overhead_bytes`).
    pub filter_bytes: u64,
    /// Images coded at half size and upsampled by the decoder (format version 4).
    pub half_images: u64,
    /// Codebooks a cell uses, on average over all cells.
    pub mean_depth: f64,
    /// Pixels over all images.
    pub pixels: u64,
    /// Payload bits per image (mean).
    pub payload_bits_per_image: f64,
    /// Archive bits per pixel, everything included.
    pub bits_per_pixel: f64,
    /// Raw RGB bytes (W·H·3 summed) over archive bytes.
    pub ratio_vs_raw_rgb: f64,
    /// Per image: name, width, height, record bytes.
    pub entries: Vec<EntryInfo>,
}

/// One image in [`ArchiveInfo`].
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EntryInfo {
    /// Stored name.
    pub name: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes of the record (version 2: its share of its block's index bytes, in proportion to
    /// its indices; sizes, names, depth maps and checksums are shared by its block).
    pub bytes: u64,
}

impl Archive<'_> {
    /// Reads the archive's structure (every record's checksum included): what it holds and
    /// where its bytes go.
    pub fn info(&self) -> Result<ArchiveInfo> {
        read_info(self.bytes, &self.limits)
    }
}

/// [`Archive::info`] of the archive read from `inner`, a block at a time: memory holds one
/// block of it (and every image's entry), however long the stream.
pub fn read_info<R: Read>(inner: R, limits: &Limits) -> Result<ArchiveInfo> {
    let mut reader = ArchiveReader::new(inner, limits)?;
    let header_len = reader.position();
    let h = reader.header().clone();
    let mut t = Totals::default();
    // A block at a time, its records dropped once counted: a forged block may claim hundreds
    // of indices per byte of the archive. Each record's bytes are its share of its block's
    // index bytes, in proportion to its indices (exact for packed blocks up to the padding, a
    // share for coded ones); a version-1 record is its own block, its bytes its own.
    while let Some((records, block, len)) = reader.next_step()? {
        t.payload += block.bytes;
        t.coded_blocks += block.coded as u64;
        if h.version == VERSION_1 {
            t.add(&h, &records[0], len);
            continue;
        }
        let total: u64 = records.iter().map(|r| r.index_count(&h)).sum();
        for r in &records {
            let share = (block.bytes as u128 * r.index_count(&h) as u128)
                .checked_div(total as u128)
                .unwrap_or(0);
            t.add(&h, r, share as u64);
        }
    }
    Ok(t.info(&h, reader.image_count(), header_len, reader.position()))
}

/// What [`read_info`] sums over the records, a block at a time.
#[derive(Default)]
struct Totals {
    payload: u64,
    coded_blocks: u64,
    index_count: u64,
    cells: u64,
    pixels: u64,
    filtered: u64,
    filter_bytes: u64,
    half: u64,
    entries: Vec<EntryInfo>,
}

impl Totals {
    fn add(&mut self, h: &Header, r: &Record, bytes: u64) {
        self.index_count += r.index_count(h);
        self.cells += r.cell_depths(h).len() as u64;
        self.pixels += r.width as u64 * r.height as u64;
        if let Some(f) = &r.filter {
            self.filtered += 1;
            self.filter_bytes += f.stored_len() as u64;
        }
        self.half += r.half as u64;
        self.entries.push(EntryInfo {
            name: r.name.clone(),
            width: r.width,
            height: r.height,
            bytes,
        });
    }

    /// What the archive of header `h`, `images` images, a header of `header_len` bytes and
    /// `total` bytes in all says of itself, with these sums.
    fn info(self, h: &Header, images: u64, header_len: u64, total: u64) -> ArchiveInfo {
        ArchiveInfo {
            version: h.version,
            fingerprint: hex(&h.fingerprint),
            latent_dim: h.latent_dim,
            codebook_size: h.codebook_size,
            num_codebooks: h.num_codebooks,
            codebooks_used: h.codebooks_used,
            grid_factor: h.grid_factor,
            bits_per_index: h.bits_per_index(),
            names: h.names,
            entropy: h.entropy,
            payload_coder: h.payload_coder(),
            coded_blocks: self.coded_blocks,
            embedded_codebook: h
                .codebook
                .as_ref()
                .map(|c| format!("{:?}", c.dtype).to_lowercase()),
            images,
            total_bytes: total,
            header_bytes: header_len,
            payload_bytes: self.payload,
            record_overhead_bytes: total - header_len - self.payload,
            filtered_images: self.filtered,
            filter_bytes: self.filter_bytes,
            half_images: self.half,
            mean_depth: mean(self.index_count, self.cells),
            pixels: self.pixels,
            payload_bits_per_image: mean(self.payload * 8, images),
            bits_per_pixel: mean(total * 8, self.pixels),
            ratio_vs_raw_rgb: self.pixels as f64 * 3.0 / total as f64,
            entries: self.entries,
        }
    }
}

/// `total / count`, or 0 for no count.
fn mean(total: u64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        total as f64 / count as f64
    }
}
