//! What all images of an archive share: the header, its bytes and their checks.

use crate::{
    ArchiveError, CODEBOOK_COUNTS, CODEBOOK_SIZES, Cursor, FINGERPRINT_LEN, FLAG_CODEBOOK,
    FLAG_ENTROPY, FLAG_NAMES, GRID_FACTORS, KNOWN_FLAGS, LATENT_DIMS, MAGIC, Result, VERSION,
    VERSION_1, VERSION_2, varint,
};

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
    /// Format version to write: [`VERSION_2`] (blocks of records, per-cell depths) unless set
    /// to [`crate::VERSION_3`] (records may carry restoration filters), [`VERSION`] (records
    /// may also be coded at half size) or [`VERSION_1`]; a reader sets it to the version it
    /// read.
    pub version: u8,
    /// Whether indices may be range-coded (the `ENTROPY` flag and payload coder 1, versions 2
    /// and 3): each block is then coded exactly when that is shorter than bit packing. Off
    /// in [`Header::new`]; a reader sets it as the archive says.
    pub entropy: bool,
    /// With `entropy`: code each block's indices under their neighbours' contexts (payload
    /// coder 2) instead of coder 1's. Off in [`Header::new`]; a reader sets it as the archive
    /// says.
    pub neighbours: bool,
}

/// A fingerprint as lower-case hex, as errors and `rvq info` show it.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The model's codebook geometry as a header records it: what a reader checks a model against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Latent channels d (1..=4096).
    pub latent_dim: u32,
    /// Entries per codebook k (2..=65,536).
    pub codebook_size: u32,
    /// Codebooks in the model n_q (1..=64).
    pub num_codebooks: u32,
    /// Pixels per latent cell side: 4 or 8.
    pub grid_factor: u8,
}

impl Header {
    /// A header for archives of a model with this `fingerprint` and `geometry` using
    /// `codebooks_used` of its codebooks, without names, embedded codebook or entropy coding,
    /// at format [`VERSION_2`] (set [`Header::version`] to [`crate::VERSION_3`] for filters, to
    /// [`VERSION`] for half-size images too).
    pub fn new(
        fingerprint: [u8; FINGERPRINT_LEN],
        geometry: Geometry,
        codebooks_used: u32,
    ) -> Self {
        let Geometry {
            latent_dim,
            codebook_size,
            num_codebooks,
            grid_factor,
        } = geometry;
        Self {
            fingerprint,
            latent_dim,
            codebook_size,
            num_codebooks,
            grid_factor,
            codebooks_used,
            names: false,
            codebook: None,
            version: VERSION_2,
            entropy: false,
            neighbours: false,
        }
    }

    /// The payload coder byte: 0, bit packing; 1, blocks range-coded where that is shorter;
    /// 2, the same under neighbour contexts.
    pub fn payload_coder(&self) -> u8 {
        match (self.entropy, self.neighbours) {
            (false, _) => 0,
            (true, false) => 1,
            (true, true) => 2,
        }
    }

    /// The model geometry this header records.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            latent_dim: self.latent_dim,
            codebook_size: self.codebook_size,
            num_codebooks: self.num_codebooks,
            grid_factor: self.grid_factor,
        }
    }

    /// Bits per index: ceil(log2 k).
    pub fn bits_per_index(&self) -> u32 {
        bits_per_index(self.codebook_size)
    }

    /// Latent grid (columns, rows) of a `width`×`height` image.
    pub fn grid(&self, width: u32, height: u32) -> (u64, u64) {
        let f = self.grid_factor as u64;
        ((width as u64).div_ceil(f), (height as u64).div_ceil(f))
    }

    /// The grid of `record`'s cells: that of the size it is coded at
    /// ([`crate::Record::coded_size`]).
    pub fn grid_of(&self, record: &crate::Record) -> (u64, u64) {
        let (w, h) = record.coded_size();
        self.grid(w, h)
    }

    /// Indices in one record of a `width`×`height` coded size whose cells all use the m
    /// codebooks: cells × m.
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
        if !(VERSION_1..=VERSION).contains(&self.version) {
            return Err(format!(
                "format version {} is not 1 to {VERSION}",
                self.version
            ));
        }
        if self.entropy && self.version < VERSION_2 {
            return Err(format!(
                "entropy-coded indices need format version {VERSION_2} or later, not {}",
                self.version
            ));
        }
        if self.neighbours && !self.entropy {
            return Err("neighbour contexts (payload coder 2) need entropy coding".into());
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
    out.push(header.payload_coder());
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
    if !(VERSION_1..=VERSION).contains(&version) {
        return Err(ArchiveError::UnsupportedVersion(version));
    }
    let flags = c.u8("flags")?;
    let coder = c.u8("payload coder")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(ArchiveError::InvalidHeader(format!(
            "reserved flag bits set ({flags:#04x})"
        )));
    }
    if coder > 2 {
        return Err(ArchiveError::UnsupportedCoder(coder));
    }
    let entropy = flags & FLAG_ENTROPY != 0;
    if entropy != (coder >= 1) {
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
    let geometry = Geometry {
        latent_dim,
        codebook_size,
        num_codebooks,
        grid_factor,
    };
    let mut header = Header::new(fingerprint, geometry, codebooks_used);
    header.names = flags & FLAG_NAMES != 0;
    header.version = version;
    header.entropy = entropy;
    header.neighbours = coder == 2;
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

/// Bits one index of a codebook of `k` entries takes when packed: ceil(log2 k), for k ≥ 2 (the
/// one source of this width, for the format and the model alike).
pub fn bits_per_index(k: u32) -> u32 {
    u32::BITS - (k.max(2) - 1).leading_zeros()
}
