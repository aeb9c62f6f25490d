//! The `.rvq` archive format (version 4; versions 1 to 3 are still read): the codebook
//! indices of many images under one shared header, bit-packed or (payload coder 1)
//! range-coded block by block where that is shorter, with a per-cell depth map where cells use different numbers
//! of codebooks. This crate deals in integers and bytes only (no tensors, no model), so it
//! builds, tests and fuzzes in seconds. The byte layout is specified in `docs/FORMAT.md`;
//! this code follows that text.
//!
//! ```
//! use rvq_archive::{Archive, Geometry, Header, Limits, Record, write_archive};
//! let geometry = Geometry {
//!     latent_dim: 64,
//!     codebook_size: 1024,
//!     num_codebooks: 8,
//!     grid_factor: 8,
//! };
//! let mut header = Header::new([7; 16], geometry, 2);
//! header.names = true;
//! let rec = Record {
//!     width: 32,
//!     height: 32,
//!     name: Some("cat.png".into()),
//!     indices: vec![5; 16 + 4], // level 0 for all 16 cells, level 1 for the 4 at depth 2
//!     depths: [2, 1, 1, 1].repeat(4),
//!     filter: None,
//!     half: false,
//! };
//! let bytes = write_archive(&header, &[rec.clone()]).unwrap();
//! let archive = Archive::parse(&bytes, &Limits::default()).unwrap();
//! assert_eq!(archive.records().unwrap(), vec![rec]);
//! ```

#![forbid(unsafe_code)]

mod adaptive;
mod archive;
pub mod bits;
mod block;
mod cursor;
mod depthmap;
mod entropy;
mod error;
mod filter;
mod header;
mod info;
mod neighbours;
mod record;
mod stream;
mod varint;

pub use archive::{Archive, merge, merge_streams, truncate, truncate_stream, write_archive};
pub use block::{BLOCK_RECORDS, BlockIndices, index_bytes};
pub(crate) use cursor::Cursor;
pub use entropy::{WORK_PER_BYTE, work};
pub use error::{ArchiveError, Result};
pub use filter::{CHANNEL_TAPS, Filter, IDENTITY, MIN_UNIT, UNIT_TAPS};
pub(crate) use header::parse_header;
pub use header::{
    CodebookDType, EmbeddedCodebook, Geometry, Header, bits_per_index, hex, write_header,
};
pub use info::{ArchiveInfo, EntryInfo, read_info};
pub use record::{Entry, Record, check_record, payload_bits, write_record};
pub(crate) use record::{decode_entry, parse_entry, parse_name, parse_size, put_name};
pub use stream::{ArchiveReader, ArchiveWriter};

/// The four bytes every archive starts with.
pub const MAGIC: [u8; 4] = *b"RVQA";
/// The newest format version, which this crate reads and writes: version 3 with images that
/// may be coded at half size and upsampled by the decoder (docs/FORMAT.md). Versions 1 to 3
/// are still read.
pub const VERSION: u8 = VERSION_4;
/// Version 4: version 3 with images that may be coded at half size (docs/FORMAT.md,
/// "Half-size images"): the version a half-size image needs, whatever the newest is.
pub const VERSION_4: u8 = 4;
/// Version 3: version 2 with a restoration filter per image; what an encoder with filters and
/// no half-size images writes, so that rvq from before version 4 reads it.
pub const VERSION_3: u8 = 3;
/// Version 2: blocks of records with per-cell depths and payload coders 0 to 2, and no
/// filters; what [`Header::new`] writes, so that rvq from before version 3 reads it.
pub const VERSION_2: u8 = 2;
/// The oldest version this crate reads (and writes, for a header that asks for it).
pub const VERSION_1: u8 = 1;
/// Bytes of the model fingerprint.
pub const FINGERPRINT_LEN: usize = 16;

/// Header flag: each record carries a file name.
pub const FLAG_NAMES: u8 = 1 << 0;
/// Header flag: the codebook vectors follow the header fields.
pub const FLAG_CODEBOOK: u8 = 1 << 1;
/// Header flag: payloads are entropy-coded (versions 2 to 4: payload coder 1 or 2, named by the
/// byte after the flags; no version-1 coder exists).
pub const FLAG_ENTROPY: u8 = 1 << 2;
const KNOWN_FLAGS: u8 = FLAG_NAMES | FLAG_CODEBOOK | FLAG_ENTROPY;

/// Latent channels d a header may state: the one source of this range (the model's
/// configuration checks against it too).
pub const LATENT_DIMS: std::ops::RangeInclusive<u32> = 1..=4096;
/// Entries per codebook k a header may state (indices of at most 16 bits).
pub const CODEBOOK_SIZES: std::ops::RangeInclusive<u32> = 2..=65_536;
/// Codebooks n_q a model, and so a header, may have.
pub const CODEBOOK_COUNTS: std::ops::RangeInclusive<u32> = 1..=64;
/// Grid factors f (pixels per latent cell side) a header may state.
pub const GRID_FACTORS: [u8; 2] = [4, 8];

/// Longest file name a record may carry, in bytes.
pub const MAX_NAME: usize = 4096;

/// Size limits enforced before allocating anything a header or record (or, in rvq, an
/// image file's header) asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest width or height.
    pub max_side: u32,
    /// Largest width × height.
    pub max_pixels: u64,
}

impl Default for Limits {
    /// 16,384 pixels per side and 64 megapixels: far beyond the small images rvq is for,
    /// small enough that a forged header cannot make it allocate gigabytes.
    fn default() -> Self {
        Self {
            max_side: 16_384,
            max_pixels: 1 << 26,
        }
    }
}

/// Checks a record name: relative, `/`-separated, no `..`, no control characters.
pub fn validate_name(name: &str) -> std::result::Result<(), String> {
    if name.len() > MAX_NAME {
        return Err(format!("name longer than {MAX_NAME} bytes"));
    }
    if name.starts_with('/') || name.contains('\\') {
        return Err(format!(
            "name {name:?} is not a relative '/'-separated path"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("name contains control characters".into());
    }
    if name
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
        && !name.is_empty()
    {
        return Err(format!("name {name:?} has an empty, '.' or '..' component"));
    }
    Ok(())
}
