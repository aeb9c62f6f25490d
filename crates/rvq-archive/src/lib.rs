//! The `.rvq` archive format (version 2; version 1 is still read): the codebook indices of
//! many images under one shared header, bit-packed or (payload coder 1) range-coded block by
//! block where that is shorter, with a per-cell depth map where cells use different numbers
//! of codebooks. This crate deals in integers and bytes only (no tensors, no model), so it
//! builds, tests and fuzzes in seconds. The byte layout is specified in `docs/FORMAT.md`;
//! this code follows that text.
//!
//! ```
//! use rvq_archive::{Header, Record, write_archive, Archive, Limits};
//! let mut header = Header::new([7; 16], 64, 1024, 8, 8, 2);
//! header.names = true;
//! let rec = Record {
//!     width: 32,
//!     height: 32,
//!     name: Some("cat.png".into()),
//!     indices: vec![5; 16 + 4], // level 0 for all 16 cells, level 1 for the 4 at depth 2
//!     depths: [2, 1, 1, 1].repeat(4),
//! };
//! let bytes = write_archive(&header, &[rec.clone()]).unwrap();
//! let archive = Archive::parse(&bytes, &Limits::default()).unwrap();
//! assert_eq!(archive.records().unwrap(), vec![rec]);
//! ```

#![forbid(unsafe_code)]

mod adaptive;
pub mod bits;
mod block;
mod depthmap;
mod entropy;
mod stream;
mod varint;

pub use block::{BLOCK_RECORDS, BlockIndices, index_bytes};
pub use entropy::{WORK_PER_BYTE, work};
pub use stream::{ArchiveReader, ArchiveWriter};

use bits::{BitCounter, BitPacker, BitSink};

/// The four bytes every archive starts with.
pub const MAGIC: [u8; 4] = *b"RVQA";
/// The format version this crate writes (it reads versions 1 and 2).
pub const VERSION: u8 = 2;
/// The oldest version this crate reads (and writes, for a header that asks for it).
pub const VERSION_1: u8 = 1;
/// Bytes of the model fingerprint.
pub const FINGERPRINT_LEN: usize = 16;

/// Header flag: each record carries a file name.
pub const FLAG_NAMES: u8 = 1 << 0;
/// Header flag: the codebook vectors follow the header fields.
pub const FLAG_CODEBOOK: u8 = 1 << 1;
/// Header flag: payloads are entropy-coded (reserved; no version-1 coder exists).
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

/// Errors reading or writing an archive. Every one is final: the archive is not decoded.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The bytes end before the structure does.
    #[error("truncated archive: {what} runs past the end at byte {offset}")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
    },
    /// The first four bytes are not `RVQA`.
    #[error("not an rvq archive (bad magic)")]
    BadMagic,
    /// A version this reader does not know.
    #[error(
        "archive format version {0} is newer than this rvq reads (version {VERSION}); upgrade rvq"
    )]
    UnsupportedVersion(u8),
    /// A payload coder this version does not define.
    #[error("archive uses payload coder {0}, which this rvq cannot read; upgrade rvq")]
    UnsupportedCoder(u8),
    /// A header field is out of range or inconsistent.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// The header's checksum does not match its bytes.
    #[error("corrupt archive: header checksum mismatch")]
    HeaderChecksum,
    /// A record's checksum does not match its bytes.
    #[error("corrupt archive: checksum mismatch in image {index}")]
    RecordChecksum {
        /// Record number, from 0.
        index: u64,
    },
    /// A version-2 block's checksum does not match its bytes.
    #[error("corrupt archive: checksum mismatch in the block of images {first} to {last}")]
    BlockChecksum {
        /// First record of the block, from 0.
        first: u64,
        /// Last record of the block.
        last: u64,
    },
    /// A record field is out of range.
    #[error("invalid image {index}: {reason}")]
    InvalidRecord {
        /// Record number, from 0.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// Bytes follow the last record.
    #[error("corrupt archive: {0} unexpected bytes after the last image")]
    TrailingBytes(usize),
    /// Truncation to more codebooks than the archive stores (or to none).
    #[error(
        "cannot truncate to {asked} codebooks: the archive stores {stored} (ask for 1..={stored})"
    )]
    TruncateBeyond {
        /// Codebooks asked for.
        asked: u32,
        /// Codebooks the archive uses.
        stored: u32,
    },
    /// Archives to merge do not share what their header says all images share.
    #[error(
        "cannot merge archive {index} into the first: its {what} differs ({theirs} against {ours})"
    )]
    MergeMismatch {
        /// The archive that differs, from 0 in the order given.
        index: usize,
        /// The header field.
        what: &'static str,
        /// The first archive's value.
        ours: String,
        /// This archive's value.
        theirs: String,
    },
    /// Two images of a merge carry the same name, so decoding would write one over the other.
    #[error("cannot merge: the name {name:?} of archive {index} occurs in an earlier image")]
    DuplicateName {
        /// The name.
        name: String,
        /// The archive holding the second occurrence, from 0 in the order given.
        index: usize,
    },
    /// Merging was asked of no archive.
    #[error("nothing to merge: give at least one archive")]
    NothingToMerge,
    /// Reading or writing the underlying stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A record handed to the writer does not fit the header.
    #[error("cannot write image {index}: {reason}")]
    Unwritable {
        /// Record number, from 0.
        index: u64,
        /// What does not fit.
        reason: String,
    },
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, ArchiveError>;

/// How embedded codebook values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodebookDType {
    /// IEEE half precision, little-endian.
    F16 = 1,
    /// IEEE single precision, little-endian.
    F32 = 2,
}

/// Codebook vectors embedded in the header: `codebooks_used × codebook_size × latent_dim`
/// values, level-major, then entry, then dimension.
#[derive(Clone, Debug, PartialEq)]
pub struct EmbeddedCodebook {
    /// Storage precision.
    pub dtype: CodebookDType,
    /// The values (already rounded to `dtype` when read back).
    pub values: Vec<f32>,
}

/// What all images in an archive share.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Fingerprint of the model's weights.
    pub fingerprint: [u8; FINGERPRINT_LEN],
    /// Latent channels d (1..=4096).
    pub latent_dim: u32,
    /// Entries per codebook k (2..=65,536).
    pub codebook_size: u32,
    /// Codebooks in the model n_q (1..=64).
    pub num_codebooks: u32,
    /// Pixels per latent cell side: 4 or 8.
    pub grid_factor: u8,
    /// Codebooks used by this archive, m (1..=n_q).
    pub codebooks_used: u32,
    /// Whether records carry file names.
    pub names: bool,
    /// Embedded codebook vectors, if any.
    pub codebook: Option<EmbeddedCodebook>,
    /// Format version to write: [`VERSION`] (blocks of records, per-cell depths) unless set to
    /// [`VERSION_1`]; a reader sets it to the version it read.
    pub version: u8,
    /// Whether indices may be range-coded (the `ENTROPY` flag and payload coder 1, version 2
    /// only): each block is then coded exactly when that is shorter than bit packing. Off
    /// in [`Header::new`]; a reader sets it as the archive says.
    pub entropy: bool,
}

impl Header {
    /// A header without names or embedded codebook.
    pub fn new(
        fingerprint: [u8; FINGERPRINT_LEN],
        latent_dim: u32,
        codebook_size: u32,
        num_codebooks: u32,
        grid_factor: u8,
        codebooks_used: u32,
    ) -> Self {
        Self {
            fingerprint,
            latent_dim,
            codebook_size,
            num_codebooks,
            grid_factor,
            codebooks_used,
            names: false,
            codebook: None,
            version: VERSION,
            entropy: false,
        }
    }

    /// Bits per index: ceil(log2 k).
    pub fn bits_per_index(&self) -> u32 {
        u32::BITS - (self.codebook_size.max(2) - 1).leading_zeros()
    }

    /// Latent grid (columns, rows) of a `width`×`height` image.
    pub fn grid(&self, width: u32, height: u32) -> (u64, u64) {
        let f = self.grid_factor as u64;
        ((width as u64).div_ceil(f), (height as u64).div_ceil(f))
    }

    /// Indices in one record whose cells all use the m codebooks: cells × m.
    pub fn index_count(&self, width: u32, height: u32) -> u64 {
        let (gw, gh) = self.grid(width, height);
        gw * gh * self.codebooks_used as u64
    }

    /// Bytes of one record's payload: ceil(cells × m × bits / 8).
    pub fn payload_len(&self, width: u32, height: u32) -> u64 {
        (self.index_count(width, height) * self.bits_per_index() as u64).div_ceil(8)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let outside = |what: &str, v: u32, r: &std::ops::RangeInclusive<u32>| {
            Err(format!("{what} {v} outside {}..={}", r.start(), r.end()))
        };
        if !LATENT_DIMS.contains(&self.latent_dim) {
            return outside("latent_dim", self.latent_dim, &LATENT_DIMS);
        }
        if !CODEBOOK_SIZES.contains(&self.codebook_size) {
            return outside("codebook_size", self.codebook_size, &CODEBOOK_SIZES);
        }
        if !CODEBOOK_COUNTS.contains(&self.num_codebooks) {
            return outside("num_codebooks", self.num_codebooks, &CODEBOOK_COUNTS);
        }
        if !GRID_FACTORS.contains(&self.grid_factor) {
            return Err(format!("grid_factor {} is not 4 or 8", self.grid_factor));
        }
        if !(1..=self.num_codebooks).contains(&self.codebooks_used) {
            return Err(format!(
                "codebooks_used {} outside 1..={}",
                self.codebooks_used, self.num_codebooks
            ));
        }
        if self.entropy && self.version != VERSION {
            return Err(format!(
                "entropy-coded indices need format version {VERSION}, not {}",
                self.version
            ));
        }
        if let Some(cb) = &self.codebook {
            let want = self.codebook_values();
            if cb.values.len() as u64 != want {
                return Err(format!(
                    "embedded codebook has {} values, expected {want}",
                    cb.values.len()
                ));
            }
        }
        Ok(())
    }

    /// Values an embedded codebook holds: m × k × d.
    pub fn codebook_values(&self) -> u64 {
        self.codebooks_used as u64 * self.codebook_size as u64 * self.latent_dim as u64
    }
}

/// One image: its size, optional name, the codebooks each cell uses and the indices
/// (level-major, then row-major cells; a level lists only the cells deep enough to use it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Relative file name, UTF-8, `/`-separated.
    pub name: Option<String>,
    /// The indices, each < k: for level 0, 1, … in turn, one per cell (row-major) whose
    /// depth exceeds the level; `grid cells × m` of them when `depths` is empty.
    pub indices: Vec<u32>,
    /// Codebooks used by each cell (row-major), each in 1..=m; empty when every cell uses all
    /// m, as readers return it in that case. Version-1 archives have no depths.
    pub depths: Vec<u8>,
}

impl Record {
    /// The depth of every cell: `depths`, or m for each of the header's cells when empty.
    pub fn cell_depths(&self, header: &Header) -> Vec<u8> {
        if self.depths.is_empty() {
            let (gw, gh) = header.grid(self.width, self.height);
            vec![header.codebooks_used as u8; (gw * gh) as usize]
        } else {
            self.depths.clone()
        }
    }

    /// Indices this record holds under `header`.
    pub fn index_count(&self, header: &Header) -> u64 {
        if self.depths.is_empty() {
            header.index_count(self.width, self.height)
        } else {
            self.depths.iter().map(|&d| d as u64).sum()
        }
    }

    /// How many of its indices each level 0..m holds (the cells deep enough to use it), in
    /// stored order.
    pub fn level_counts(&self, header: &Header) -> Vec<u64> {
        let depths = self.cell_depths(header);
        (0..header.codebooks_used)
            .map(|level| depths.iter().filter(|&&d| d as u32 > level).count() as u64)
            .collect()
    }

    /// True when `depths` says something a uniform record would not: some cell below m.
    pub fn has_depth_map(&self, header: &Header) -> bool {
        self.depths
            .iter()
            .any(|&d| d as u32 != header.codebooks_used)
    }

    /// The indices in full layout: level-major, every one of the header's m levels holding
    /// every cell (row-major), 0 where a cell stops.
    pub fn full_indices(&self, header: &Header) -> Vec<u32> {
        let depths = self.cell_depths(header);
        let cells = depths.len();
        let mut full = vec![0; cells * header.codebooks_used as usize];
        let mut stored = self.indices.iter();
        for (lvl, level) in full.chunks_exact_mut(cells.max(1)).enumerate() {
            for (slot, &d) in level.iter_mut().zip(&depths) {
                if d as usize > lvl {
                    *slot = *stored.next().expect("a checked record holds its indices");
                }
            }
        }
        full
    }

    /// The indices a record stores for `depths`, taken from `full` (the layout
    /// [`Record::full_indices`] gives, at least max(depths) levels): level by level, the
    /// cells deep enough to use the level.
    pub fn stored_indices(full: &[u32], depths: &[u8]) -> Vec<u32> {
        let cells = depths.len();
        let m = depths.iter().copied().max().unwrap_or(0) as usize;
        (0..m)
            .flat_map(|lvl| {
                (0..cells)
                    .filter(move |&c| depths[c] as usize > lvl)
                    .map(move |c| full[lvl * cells + c])
            })
            .collect()
    }

    /// The record cut to its first `m` codebooks (each cell to at most `m`).
    pub fn truncated(&self, header: &Header, m: u32) -> Record {
        let cut: Vec<u8> = self
            .cell_depths(header)
            .iter()
            .map(|&d| d.min(m as u8))
            .collect();
        let indices = Record::stored_indices(&self.full_indices(header), &cut);
        Record {
            indices,
            depths: if cut.iter().all(|&d| d as u32 == m) {
                Vec::new()
            } else {
                cut
            },
            ..self.clone()
        }
    }
}

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

/// Serialises `header` and `records` into a complete archive (of the header's version).
pub fn write_archive(header: &Header, records: &[Record]) -> Result<Vec<u8>> {
    let mut out = write_header(header, records.len() as u64)?;
    if header.version == VERSION_1 {
        for (i, r) in records.iter().enumerate() {
            write_record(header, i as u64, r, &mut out)?;
        }
    } else {
        for (b, chunk) in records.chunks(BLOCK_RECORDS as usize).enumerate() {
            block::write_block(header, b as u64 * BLOCK_RECORDS, chunk, &mut out)?;
        }
    }
    Ok(out)
}

/// The header's bytes, checksum included, for an archive of `image_count` records.
pub fn write_header(header: &Header, image_count: u64) -> Result<Vec<u8>> {
    header.validate().map_err(ArchiveError::InvalidHeader)?;
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.push(header.version);
    let mut flags = 0;
    if header.names {
        flags |= FLAG_NAMES;
    }
    if header.codebook.is_some() {
        flags |= FLAG_CODEBOOK;
    }
    if header.entropy {
        flags |= FLAG_ENTROPY;
    }
    out.push(flags);
    // Payload coder 0: fixed-width bit packing; 1: blocks range-coded where that is shorter.
    out.push(header.entropy as u8);
    out.extend_from_slice(&header.fingerprint);
    varint::put(&mut out, header.latent_dim as u64);
    varint::put(&mut out, header.codebook_size as u64);
    varint::put(&mut out, header.num_codebooks as u64);
    out.push(header.grid_factor);
    varint::put(&mut out, header.codebooks_used as u64);
    out.push(header.bits_per_index() as u8);
    varint::put(&mut out, image_count);
    if let Some(cb) = &header.codebook {
        out.push(cb.dtype as u8);
        for &v in &cb.values {
            match cb.dtype {
                CodebookDType::F16 => out.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                CodebookDType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Checks that record `index` fits `header`: a size, a name only if names are on (and a safe
/// one), depths in 1..=m for every cell (or none), as many indices as they call for, each < k.
pub(crate) fn check_record(header: &Header, index: u64, r: &Record) -> Result<()> {
    let bad = |reason: String| ArchiveError::Unwritable { index, reason };
    if r.width == 0 || r.height == 0 {
        return Err(bad(format!("{}×{} has no pixels", r.width, r.height)));
    }
    let (gw, gh) = header.grid(r.width, r.height);
    if !r.depths.is_empty() {
        if header.version == VERSION_1 {
            return Err(bad("format version 1 has no per-cell depths".into()));
        }
        if r.depths.len() as u64 != gw * gh {
            return Err(bad(format!(
                "{} depths for a grid of {} cells",
                r.depths.len(),
                gw * gh
            )));
        }
        if let Some(&d) = r
            .depths
            .iter()
            .find(|&&d| d == 0 || d as u32 > header.codebooks_used)
        {
            return Err(bad(format!(
                "depth {d} is outside 1..={}",
                header.codebooks_used
            )));
        }
    }
    let want = r.index_count(header);
    if r.indices.len() as u64 != want {
        return Err(bad(format!(
            "{} indices for a {}×{} image at {} codebooks; expected {want}",
            r.indices.len(),
            r.width,
            r.height,
            header.codebooks_used
        )));
    }
    if let Some(&v) = r.indices.iter().find(|&&v| v >= header.codebook_size) {
        return Err(bad(format!(
            "index {v} is not below codebook_size {}",
            header.codebook_size
        )));
    }
    match (&r.name, header.names) {
        (Some(n), true) => validate_name(n).map_err(bad),
        (Some(_), false) => Err(bad(
            "the record has a name but the header has names off".into()
        )),
        _ => Ok(()),
    }
}

/// Appends the name field of a record (names on): varint length, then the bytes.
pub(crate) fn put_name(name: &Option<String>, out: &mut Vec<u8>) {
    let n = name.as_deref().unwrap_or("");
    varint::put(out, n.len() as u64);
    out.extend_from_slice(n.as_bytes());
}

/// Appends record `index`'s bytes, checksum included, to `out`, in version 1's layout (one
/// record at a time, each with its own checksum). Version 2 writes blocks of records:
/// [`write_archive`] and [`ArchiveWriter`] choose by the header's version.
pub fn write_record(header: &Header, index: u64, r: &Record, out: &mut Vec<u8>) -> Result<()> {
    if header.version != VERSION_1 {
        return Err(ArchiveError::Unwritable {
            index,
            reason: "version-2 records are written in blocks (write_archive, ArchiveWriter)".into(),
        });
    }
    check_record(header, index, r)?;
    let start = out.len();
    varint::put(out, r.width as u64);
    varint::put(out, r.height as u64);
    if header.names {
        put_name(&r.name, out);
    }
    let bits = header.bits_per_index();
    let mut packer = BitPacker::with_capacity(r.indices.len() * bits as usize);
    bits::put_all(&mut packer, &r.indices, bits);
    out.extend_from_slice(&packer.into_bytes());
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Payload bits for `count` indices at the header's index width, measured with a
/// [`BitCounter`], without packing anything.
pub fn payload_bits(header: &Header, count: u64) -> u64 {
    let mut c = BitCounter::default();
    let bits = header.bits_per_index();
    for _ in 0..count {
        c.put(0, bits);
    }
    c.bits_written()
}

/// Where one record lies in an archive, read from its fields without decoding its payload.
/// In a version-2 archive, [`Entry::offset`] and [`Entry::len`] locate the block that holds
/// the record. Only [`Archive::index`] makes entries, and [`Archive::record`] trusts their
/// positions, so the fields are read through methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    index: u64,
    offset: usize,
    len: usize,
    width: u32,
    height: u32,
    name: Option<String>,
    payload_offset: usize,
    /// Version 2: the record's position in its block.
    in_block: Option<usize>,
}

impl Entry {
    /// Record number, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Byte offset of the record (version 2: of its block).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Bytes of the record, checksum included (version 2: of its block).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the record takes no bytes: never, since every record has a checksum.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// File name, if stored.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// A parsed archive over borrowed bytes: the header is checked on parse, records when read.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    /// The shared header.
    pub header: Header,
    /// Number of images.
    pub image_count: u64,
    /// Bytes of the header, checksum included.
    pub header_len: usize,
    limits: Limits,
}

pub(crate) struct Cursor<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(ArchiveError::Truncated {
                what,
                offset: self.pos,
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64> {
        match varint::get(&self.bytes[self.pos..]) {
            Ok((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            Err(varint::VarintError::Truncated) => Err(ArchiveError::Truncated {
                what,
                offset: self.pos,
            }),
            Err(varint::VarintError::Invalid) => Err(ArchiveError::InvalidHeader(format!(
                "{what}: malformed varint at byte {}",
                self.pos
            ))),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }
}

fn small(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| ArchiveError::InvalidHeader(format!("{what} {v} is too large")))
}

/// Reads a header's embedded codebook: its dtype, then m·k·d values (their byte count checked
/// against the bytes present before anything is allocated).
fn parse_codebook(header: &Header, c: &mut Cursor) -> Result<EmbeddedCodebook> {
    let dtype = match c.u8("codebook dtype")? {
        1 => CodebookDType::F16,
        2 => CodebookDType::F32,
        other => {
            return Err(ArchiveError::InvalidHeader(format!(
                "unknown codebook dtype {other}"
            )));
        }
    };
    let width = if dtype == CodebookDType::F16 { 2 } else { 4 };
    let count = header.codebook_values();
    // Checked against the bytes present before anything is allocated.
    let len = count
        .checked_mul(width)
        .filter(|&l| l <= c.remaining() as u64)
        .ok_or(ArchiveError::Truncated {
            what: "embedded codebook",
            offset: c.pos,
        })? as usize;
    let raw = c.take(len, "embedded codebook")?;
    let values = match dtype {
        CodebookDType::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        CodebookDType::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    };
    Ok(EmbeddedCodebook { dtype, values })
}

/// Parses and checks the header at the start of `bytes`: the header, the image count and the
/// header's length, checksum included.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(Header, u64, usize)> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.take(4, "magic").map_err(|_| ArchiveError::BadMagic)?;
    if magic != MAGIC {
        return Err(ArchiveError::BadMagic);
    }
    let version = c.u8("version")?;
    if version != VERSION && version != VERSION_1 {
        return Err(ArchiveError::UnsupportedVersion(version));
    }
    let flags = c.u8("flags")?;
    let coder = c.u8("payload coder")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(ArchiveError::InvalidHeader(format!(
            "reserved flag bits set ({flags:#04x})"
        )));
    }
    if coder > 1 {
        return Err(ArchiveError::UnsupportedCoder(coder));
    }
    let entropy = flags & FLAG_ENTROPY != 0;
    if entropy != (coder == 1) {
        return Err(ArchiveError::InvalidHeader(format!(
            "the entropy flag and payload coder {coder} disagree"
        )));
    }
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    fingerprint.copy_from_slice(c.take(FINGERPRINT_LEN, "fingerprint")?);
    let latent_dim = small(c.varint("latent_dim")?, "latent_dim")?;
    let codebook_size = small(c.varint("codebook_size")?, "codebook_size")?;
    let num_codebooks = small(c.varint("num_codebooks")?, "num_codebooks")?;
    let grid_factor = c.u8("grid_factor")?;
    let codebooks_used = small(c.varint("codebooks_used")?, "codebooks_used")?;
    let bits = c.u8("bits_per_index")?;
    let image_count = c.varint("image_count")?;
    let mut header = Header::new(
        fingerprint,
        latent_dim,
        codebook_size,
        num_codebooks,
        grid_factor,
        codebooks_used,
    );
    header.names = flags & FLAG_NAMES != 0;
    header.version = version;
    header.entropy = entropy;
    header.validate().map_err(ArchiveError::InvalidHeader)?;
    if bits as u32 != header.bits_per_index() {
        return Err(ArchiveError::InvalidHeader(format!(
            "bits_per_index {bits} does not match codebook_size {codebook_size}"
        )));
    }
    if flags & FLAG_CODEBOOK != 0 {
        header.codebook = Some(parse_codebook(&header, &mut c)?);
    }
    let body = c.pos;
    let crc = c.take(4, "header checksum")?;
    if crc32fast::hash(&bytes[..body]).to_le_bytes() != crc {
        return Err(ArchiveError::HeaderChecksum);
    }
    Ok((header, image_count, c.pos))
}

/// Reads an image size (two varints) and checks it against `limits`.
pub(crate) fn parse_size(limits: &Limits, index: u64, c: &mut Cursor) -> Result<(u32, u32)> {
    let bad = |reason: String| ArchiveError::InvalidRecord { index, reason };
    let w = c.varint("image width")?;
    let h = c.varint("image height")?;
    if w == 0 || h == 0 {
        return Err(bad(format!("{w}×{h} has no pixels")));
    }
    let side = limits.max_side as u64;
    if w > side || h > side || w * h > limits.max_pixels {
        return Err(bad(format!(
            "{w}×{h} exceeds the limit of {side} pixels per side or {} pixels",
            limits.max_pixels
        )));
    }
    Ok((w as u32, h as u32))
}

/// Reads a name field (names on) and checks it; length 0 reads as no name.
pub(crate) fn parse_name(index: u64, c: &mut Cursor) -> Result<Option<String>> {
    let bad = |reason: String| ArchiveError::InvalidRecord { index, reason };
    let len = c.varint("name length")?;
    if len > MAX_NAME as u64 {
        return Err(bad(format!("name of {len} bytes exceeds {MAX_NAME}")));
    }
    let raw = c.take(len as usize, "name")?;
    let s = std::str::from_utf8(raw)
        .map_err(|_| bad("name is not UTF-8".into()))?
        .to_string();
    validate_name(&s).map_err(bad)?;
    Ok((!s.is_empty()).then_some(s))
}

/// Reads record `index`'s fields at the cursor and steps over its payload and checksum,
/// without decoding them.
pub(crate) fn parse_entry(
    header: &Header,
    limits: &Limits,
    index: u64,
    c: &mut Cursor,
) -> Result<Entry> {
    let offset = c.pos;
    let (width, height) = parse_size(limits, index, c)?;
    let name = if header.names {
        parse_name(index, c)?
    } else {
        None
    };
    let payload_offset = c.pos;
    let payload = header.payload_len(width, height);
    if payload + 4 > c.remaining() as u64 {
        return Err(ArchiveError::Truncated {
            what: "image payload",
            offset: c.pos,
        });
    }
    c.take(payload as usize + 4, "image payload")?;
    Ok(Entry {
        index,
        offset,
        len: c.pos - offset,
        width,
        height,
        name,
        payload_offset,
        in_block: None,
    })
}

/// Decodes the record `entry` locates in `bytes`, checking its checksum and indices.
pub(crate) fn decode_entry(header: &Header, bytes: &[u8], entry: &Entry) -> Result<Record> {
    let record = &bytes[entry.offset..entry.offset + entry.len];
    let (body, crc) = record.split_at(record.len() - 4);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err(ArchiveError::RecordChecksum { index: entry.index });
    }
    let payload = &bytes[entry.payload_offset..entry.offset + entry.len - 4];
    let count = header.index_count(entry.width, entry.height) as usize;
    let bits = header.bits_per_index();
    let bad = |reason: String| ArchiveError::InvalidRecord {
        index: entry.index,
        reason,
    };
    let indices = bits::unpack(payload, count, bits)
        .ok_or_else(|| bad("payload shorter than its indices".into()))?;
    if !bits::zero_after(payload, count * bits as usize) {
        return Err(bad("nonzero padding bits after the last index".into()));
    }
    if let Some(v) = indices.iter().find(|&&v| v >= header.codebook_size) {
        return Err(bad(format!(
            "index {v} is not below codebook_size {}",
            header.codebook_size
        )));
    }
    Ok(Record {
        width: entry.width,
        height: entry.height,
        name: entry.name.clone(),
        indices,
        depths: Vec::new(),
    })
}

impl<'a> Archive<'a> {
    /// Parses and checks the header of `bytes`.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Self> {
        let (header, image_count, header_len) = parse_header(bytes)?;
        // A version-1 record takes at least 7 bytes (two varints, a payload byte, a
        // checksum), a version-2 block of up to BLOCK_RECORDS records at least 7 (a length,
        // flags, a size, a payload byte, a checksum): this bounds a forged count before
        // anything is sized by it.
        let rest = (bytes.len() - header_len) as u64;
        let most = if header.version == VERSION_1 {
            rest / 7 + 1
        } else {
            (rest / 7 + 1) * BLOCK_RECORDS
        };
        if image_count > most {
            return Err(ArchiveError::Truncated {
                what: "images",
                offset: header_len,
            });
        }
        Ok(Self {
            bytes,
            header,
            image_count,
            header_len,
            limits: *limits,
        })
    }

    fn cursor(&self) -> Cursor<'a> {
        Cursor {
            bytes: self.bytes,
            pos: self.header_len,
        }
    }

    /// Calls `each` with every version-2 block's offset, length, records and indices' bytes,
    /// then checks that the last block ends where the archive does.
    fn blocks(&self, mut each: impl FnMut(usize, usize, Vec<Record>, BlockIndices)) -> Result<()> {
        let mut c = self.cursor();
        for b in 0..self.image_count.div_ceil(BLOCK_RECORDS) {
            let offset = c.pos;
            let count = block::block_len(self.image_count, b);
            let first = b * BLOCK_RECORDS;
            let (records, indices) =
                block::parse_block(&self.header, &self.limits, first, count, &mut c)?;
            each(offset, c.pos - offset, records, indices);
        }
        if c.remaining() != 0 {
            return Err(ArchiveError::TrailingBytes(c.remaining()));
        }
        Ok(())
    }

    /// Locates every record by reading its size fields (version 1: without decoding
    /// payloads; version 2: decoding and checking each block once), and checks that the last
    /// one ends where the archive does.
    pub fn index(&self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        if self.header.version != VERSION_1 {
            self.blocks(|offset, len, records, _| {
                for (i, r) in records.into_iter().enumerate() {
                    entries.push(Entry {
                        index: entries.len() as u64,
                        offset,
                        len,
                        width: r.width,
                        height: r.height,
                        name: r.name,
                        payload_offset: 0,
                        in_block: Some(i),
                    });
                }
            })?;
            return Ok(entries);
        }
        let mut c = self.cursor();
        for index in 0..self.image_count {
            entries.push(parse_entry(&self.header, &self.limits, index, &mut c)?);
        }
        if c.remaining() != 0 {
            return Err(ArchiveError::TrailingBytes(c.remaining()));
        }
        Ok(entries)
    }

    /// Decodes one record located by [`Archive::index`], checking its checksum and indices
    /// (version 2: those of its block).
    pub fn record(&self, entry: &Entry) -> Result<Record> {
        let Some(at) = entry.in_block else {
            return decode_entry(&self.header, self.bytes, entry);
        };
        let first = entry.index - at as u64;
        let count = block::block_len(self.image_count, first / BLOCK_RECORDS);
        let mut c = Cursor {
            bytes: self.bytes,
            pos: entry.offset,
        };
        let (mut records, _) =
            block::parse_block(&self.header, &self.limits, first, count, &mut c)?;
        Ok(records.swap_remove(at))
    }

    /// Version 2: the number of blocks ([`BLOCK_RECORDS`] records each, the last the rest).
    pub fn block_count(&self) -> u64 {
        self.image_count.div_ceil(BLOCK_RECORDS)
    }

    /// Version 2: decodes block `b` alone, reaching it by skipping (and checking the
    /// checksums of) the blocks before it, so that damage inside one block does not keep the
    /// others from being read.
    pub fn block(&self, b: u64) -> Result<Vec<Record>> {
        if self.header.version == VERSION_1 || b >= self.block_count() {
            return Err(ArchiveError::InvalidHeader(format!(
                "no block {b} in a version-{} archive of {} blocks",
                self.header.version,
                self.block_count()
            )));
        }
        let mut c = self.cursor();
        // A skipped block whose checksum fails is stepped over all the same (its damage may be
        // inside it, sparing the rest); if block b then does not read, the damage before it
        // (say, to a length) is what is reported.
        let mut damaged = None;
        for j in 0..b {
            let count = block::block_len(self.image_count, j);
            match block::checked_body(&self.header, &self.limits, j * BLOCK_RECORDS, count, &mut c)
            {
                Ok(_) => {}
                Err(e @ ArchiveError::BlockChecksum { .. }) => {
                    damaged.get_or_insert(e);
                }
                Err(e) => return Err(damaged.unwrap_or(e)),
            }
        }
        let count = block::block_len(self.image_count, b);
        match block::parse_block(&self.header, &self.limits, b * BLOCK_RECORDS, count, &mut c) {
            Err(e) => Err(damaged.unwrap_or(e)),
            Ok((records, _)) => Ok(records),
        }
    }

    /// Decodes every record.
    pub fn records(&self) -> Result<Vec<Record>> {
        if self.header.version == VERSION_1 {
            return self.index()?.iter().map(|e| self.record(e)).collect();
        }
        let mut all = Vec::new();
        self.blocks(|_, _, records, _| all.extend(records))?;
        Ok(all)
    }

    /// Every record, as [`Archive::records`] reads them, and what each block's indices take
    /// in the archive (for a report of where the bytes go). A version-1 archive has no
    /// blocks: each record, whose indices are packed to a byte of their own, counts as one.
    pub fn records_and_blocks(&self) -> Result<(Vec<Record>, Vec<BlockIndices>)> {
        if self.header.version == VERSION_1 {
            let records = self.records()?;
            let blocks = records
                .chunks(1)
                .map(|r| {
                    let (bytes, coded) = index_bytes(&self.header, r);
                    BlockIndices { bytes, coded }
                })
                .collect();
            return Ok((records, blocks));
        }
        let (mut all, mut blocks) = (Vec::new(), Vec::new());
        self.blocks(|_, _, records, indices| {
            all.extend(records);
            blocks.push(indices);
        })?;
        Ok((all, blocks))
    }

    /// Total bytes of the archive.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True for an archive of no bytes (never the case for a parsed one).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// The archive in `bytes` cut to its first `codebooks` levels: a coarser, smaller archive of
/// the same images that any decoder of the same model reads. Payloads are level-major, so this
/// keeps a prefix of each record's indices and needs no model. An embedded codebook keeps its
/// first `codebooks` levels.
pub fn truncate(bytes: &[u8], codebooks: u32, limits: &Limits) -> Result<Vec<u8>> {
    let archive = Archive::parse(bytes, limits)?;
    let stored = archive.header.codebooks_used;
    if codebooks == 0 || codebooks > stored {
        return Err(ArchiveError::TruncateBeyond {
            asked: codebooks,
            stored,
        });
    }
    let mut header = archive.header.clone();
    header.codebooks_used = codebooks;
    let values = header.codebook_values() as usize;
    if let Some(cb) = &mut header.codebook {
        cb.values.truncate(values);
    }
    let records: Vec<Record> = archive
        .records()?
        .iter()
        .map(|r| r.truncated(&archive.header, codebooks))
        .collect();
    write_archive(&header, &records)
}

/// One archive holding the images of `archives`, in the order given: they must share model,
/// geometry, codebooks used, whether names are stored and any embedded codebook, and no name
/// may occur twice. Archives written by `encode --shard i/n` for i = 1..=n merge back into
/// the archive one unsharded encode writes. The result is version 2 if any input is, and
/// range-coded (payload coder 1) if any input is: merging a packed archive with a coded one
/// gives an archive that readers of coder 0 alone refuse.
pub fn merge(archives: &[&[u8]], limits: &Limits) -> Result<Vec<u8>> {
    let parts = archives
        .iter()
        .map(|bytes| {
            let a = Archive::parse(bytes, limits)?;
            Ok((a.header.clone(), a.records()?))
        })
        .collect::<Result<Vec<_>>>()?;
    merge_records(&parts)
}

/// [`merge`] of archives already read, each as its header and records (a caller that reads
/// them itself, to say which file is damaged, need not have them read twice).
pub fn merge_records(parts: &[(Header, Vec<Record>)]) -> Result<Vec<u8>> {
    let first = &parts.first().ok_or(ArchiveError::NothingToMerge)?.0;
    for (index, (h, _)) in parts.iter().enumerate().skip(1) {
        let differs = |what: &'static str, ours: String, theirs: String| {
            Err(ArchiveError::MergeMismatch {
                index,
                what,
                ours,
                theirs,
            })
        };
        let hex = |f: &[u8]| f.iter().map(|b| format!("{b:02x}")).collect::<String>();
        if h.fingerprint != first.fingerprint {
            return differs(
                "model fingerprint",
                hex(&first.fingerprint),
                hex(&h.fingerprint),
            );
        }
        let geometry = |h: &Header| {
            format!(
                "d={} k={} n_q={} f={}",
                h.latent_dim, h.codebook_size, h.num_codebooks, h.grid_factor
            )
        };
        if geometry(h) != geometry(first) {
            return differs("geometry", geometry(first), geometry(h));
        }
        if h.codebooks_used != first.codebooks_used {
            return differs(
                "number of codebooks used (truncate the deeper one first)",
                first.codebooks_used.to_string(),
                h.codebooks_used.to_string(),
            );
        }
        if h.names != first.names {
            let says = |n: bool| if n { "names stored" } else { "no names" }.to_string();
            return differs("name storage", says(first.names), says(h.names));
        }
        if h.codebook != first.codebook {
            let says = |c: &Option<EmbeddedCodebook>| match c {
                None => "none".to_string(),
                Some(c) => format!("{:?}", c.dtype),
            };
            let (ours, theirs) = if says(&first.codebook) == says(&h.codebook) {
                ("one set of values".into(), "other values".into())
            } else {
                (says(&first.codebook), says(&h.codebook))
            };
            return differs("embedded codebook", ours, theirs);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for (index, (_, records)) in parts.iter().enumerate() {
        for name in records.iter().filter_map(|r| r.name.as_ref()) {
            if !seen.insert(name) {
                return Err(ArchiveError::DuplicateName {
                    name: name.clone(),
                    index,
                });
            }
        }
    }
    let all: Vec<Record> = parts
        .iter()
        .flat_map(|(_, records)| records.iter().cloned())
        .collect();
    // Version-1 records are version-2 records without depth maps: a mix is written as 2,
    // and entropy-coded if any part is.
    let header = Header {
        version: parts
            .iter()
            .map(|(h, _)| h.version)
            .max()
            .unwrap_or(VERSION),
        entropy: parts.iter().any(|(h, _)| h.entropy),
        ..first.clone()
    };
    write_archive(&header, &all)
}
