//! One image of an archive: its record, the checks every record passes, and version 1's
//! record layout.

use crate::bits::{self, BitCounter, BitPacker, BitSink};
use crate::{
    ArchiveError, Cursor, Filter, Header, Limits, MAX_NAME, Result, VERSION_1, validate_name,
    varint,
};

/// Where one record lies in an archive, read from its fields without decoding its payload.
/// In a version-2 archive, [`Entry::offset`] and [`Entry::len`] locate the block that holds
/// the record. Only [`Archive::index`] makes entries, and [`Archive::record`] trusts their
/// positions, so the fields are read through methods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub(crate) index: u64,
    pub(crate) offset: usize,
    pub(crate) len: usize,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) name: Option<String>,
    pub(crate) payload_offset: usize,
    /// Version 2: the record's position in its block.
    pub(crate) in_block: Option<usize>,
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
    /// The restoration filter the decoder applies to the decoded image, if any (format
    /// version 3 and later), at the size the image is coded at.
    pub filter: Option<Filter>,
    /// Coded at half size (format version 4): the grid, the indices and the filter are those
    /// of a ⌈width / 2⌉ × ⌈height / 2⌉ image, which the decoder upsamples twofold and crops
    /// to width × height (docs/FORMAT.md, "Half-size images").
    pub half: bool,
}

impl Record {
    /// The size the image is coded at: width × height, or half of each rounded up when
    /// [`Record::half`].
    pub fn coded_size(&self) -> (u32, u32) {
        if self.half {
            (self.width.div_ceil(2), self.height.div_ceil(2))
        } else {
            (self.width, self.height)
        }
    }

    /// The depth of every cell: `depths`, or m for each of the header's cells when empty.
    pub fn cell_depths(&self, header: &Header) -> Vec<u8> {
        if self.depths.is_empty() {
            let (gw, gh) = header.grid_of(self);
            vec![header.codebooks_used as u8; (gw * gh) as usize]
        } else {
            self.depths.clone()
        }
    }

    /// Indices this record holds under `header`.
    pub fn index_count(&self, header: &Header) -> u64 {
        if self.depths.is_empty() {
            let (w, h) = self.coded_size();
            header.index_count(w, h)
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
        // A filter is fitted to the decode at the record's own depths.
        let filter = if cut == self.cell_depths(header) {
            self.filter.clone()
        } else {
            None
        };
        Record {
            indices,
            filter,
            depths: if cut.iter().all(|&d| d as u32 == m) {
                Vec::new()
            } else {
                cut
            },
            ..self.clone()
        }
    }
}

/// Checks that record `index` fits `header`: a size, a name only if names are on (and a safe
/// one), depths in 1..=m for every cell (or none), as many indices as they call for, each < k.
pub fn check_record(header: &Header, index: u64, r: &Record) -> Result<()> {
    let bad = |reason: String| ArchiveError::Unwritable { index, reason };
    if r.width == 0 || r.height == 0 {
        return Err(bad(format!("{}×{} has no pixels", r.width, r.height)));
    }
    if r.half && header.version < crate::VERSION_4 {
        return Err(bad(format!(
            "half-size images need format version {}, not {}",
            crate::VERSION_4,
            header.version
        )));
    }
    let (gw, gh) = header.grid_of(r);
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
    if let Some(filter) = &r.filter {
        if header.version < crate::VERSION_3 {
            return Err(bad(format!(
                "restoration filters need format version {}, not {}",
                crate::VERSION_3,
                header.version
            )));
        }
        let (w, h) = r.coded_size();
        filter.check(w, h).map_err(bad)?;
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
        filter: None,
        half: false,
    })
}

/// Reads an image's scale field (format version 4): 0, coded at its size; 1, at half size.
pub(crate) fn parse_scale(index: u64, c: &mut Cursor) -> Result<bool> {
    match c.u8("scale")? {
        0 => Ok(false),
        1 => Ok(true),
        s => Err(ArchiveError::InvalidRecord {
            index,
            reason: format!("scale field {s} is neither 0 (full size) nor 1 (half size)"),
        }),
    }
}
