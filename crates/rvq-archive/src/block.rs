//! Version 2's blocks: records written [`BLOCK_RECORDS`] at a time, so that what records
//! share (a size, a checksum, the depth-map coder's state) is paid once per block rather than
//! once per image. A block is self-contained: a damaged one is detected by its checksum and
//! the others still decode, and a reader reaches block j by skipping j length-prefixed blocks.

use crate::bits::{self, BitPacker};
use crate::neighbours::{self, Layout};
use crate::{
    ArchiveError, Cursor, Header, Limits, Record, Result, check_record, depthmap, entropy,
    parse_name, parse_size, put_name, varint,
};

/// Records per block (the last block holds the rest). Fixed by the format: changing it
/// changes every archive of more than this many images.
pub const BLOCK_RECORDS: u64 = 64;

/// Block flag: every record of the block has the same size, stored once.
const SHARED_SIZE: u8 = 1 << 0;
/// Block flag: the block carries a depth map (some cell uses fewer than m codebooks).
const DEPTHS: u8 = 1 << 1;
/// Block flag: the indices are range-coded (payload coder 1 or 2), not bit-packed.
const CODED: u8 = 1 << 2;
/// Block flag, with `CODED` under payload coder 2: coded under neighbour contexts rather than
/// by coder 1's model, because that is shorter for this block.
const NEIGHBOURS: u8 = 1 << 3;
/// Block flag (format version 3 and later): each image's fields end with its filter field.
const FILTERS: u8 = 1 << 4;
/// Block flag (format version 4): each image's fields have a scale field after its name.
const SCALED: u8 = 1 << 5;

/// The longest body a block of `count` images may have under `limits`: each image at the
/// largest size the limits allow, with a name of the longest length, every cell at m
/// codebooks and 32 bits of depth map per cell (the range coder's probabilities are at least
/// 2^-24, so a depth costs under 25 bits), plus the coder's final words. A longer length is
/// refused before the body is read, so a forged length cannot make a stream reader buffer
/// more than real images of allowed sizes would need.
pub(crate) fn max_body(header: &Header, limits: &Limits, count: usize) -> u64 {
    let f = header.grid_factor as u64;
    let side = limits.max_side as u64;
    let cells = limits.max_pixels / (f * f) + 2 * side.div_ceil(f) + 1;
    let index_bits = header.codebooks_used as u64 * header.bits_per_index() as u64;
    let name = if header.names {
        crate::MAX_NAME as u64 + 3
    } else {
        0
    };
    let filter = if header.version >= crate::VERSION_3 {
        crate::filter::max_bytes(limits.max_pixels, side)
    } else {
        0
    };
    let per_image = 21 + name + filter + cells.saturating_mul(index_bits + 32).div_ceil(8);
    (count as u64).saturating_mul(per_image).saturating_add(32)
}

/// Records in block `block` of an archive of `image_count` images.
pub(crate) fn block_len(image_count: u64, block: u64) -> usize {
    (image_count - block * BLOCK_RECORDS).min(BLOCK_RECORDS) as usize
}

/// Appends the block of `records` (numbered from `first`) to `out`: the body's length, the
/// body, and the CRC-32 of both.
pub(crate) fn write_block(
    header: &Header,
    first: u64,
    records: &[Record],
    out: &mut Vec<u8>,
) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        check_record(header, first + i as u64, r)?;
    }
    let size = |r: &Record| (r.width, r.height);
    let shared = records.windows(2).all(|w| size(&w[0]) == size(&w[1]));
    let depths = records.iter().any(|r| r.has_depth_map(header));
    let filters = records.iter().any(|r| r.filter.is_some());
    let scaled = records.iter().any(|r| r.half);
    let flag = |on, bit| if on { bit } else { 0 };
    let mut body = vec![
        flag(shared, SHARED_SIZE)
            | flag(depths, DEPTHS)
            | flag(filters, FILTERS)
            | flag(scaled, SCALED),
    ];
    if shared && let Some(r) = records.first() {
        varint::put(&mut body, r.width as u64);
        varint::put(&mut body, r.height as u64);
    }
    for r in records {
        if !shared {
            varint::put(&mut body, r.width as u64);
            varint::put(&mut body, r.height as u64);
        }
        if header.names {
            put_name(&r.name, &mut body);
        }
        if scaled {
            body.push(r.half as u8);
        }
        if filters {
            crate::filter::put(r.filter.as_ref(), &mut body);
        }
    }
    let fields = body.len();
    if let Some(words) = depthmap::block_words(header, records) {
        put_words(&mut body, &words);
    }
    let bits = header.bits_per_index();
    let mut packer = BitPacker::default();
    for r in records {
        bits::put_all(&mut packer, &r.indices, bits);
    }
    let packed = packer.into_bytes();
    let depth_map = body.len() - fields;
    match coded(header, records, packed.len(), depth_map, u64::MAX) {
        Some((words, by_neighbours)) => {
            body[0] |= CODED | if by_neighbours { NEIGHBOURS } else { 0 };
            put_words(&mut body, &words);
        }
        None => body.extend_from_slice(&packed),
    }
    let start = out.len();
    varint::put(out, body.len() as u64);
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Bytes of a word count and its words.
fn words_len(words: &[u32]) -> usize {
    varint::len(words.len() as u64) + 4 * words.len()
}

/// The bytes a block of `records` spends on its indices as [`write_block`] writes them
/// (range-coded words with their count, or packed bits), and whether they are coded: what a
/// report of an archive's payload needs without the block's bytes at hand.
///
/// # Panics
/// If a record holds fewer indices than its depths count: records as a reader returns them or
/// as the block writer accepts them never do.
pub fn index_bytes(header: &Header, records: &[Record]) -> (u64, bool) {
    let total: u64 = records.iter().map(|r| r.index_count(header)).sum();
    let packed = (total * header.bits_per_index() as u64).div_ceil(8) as usize;
    let depth_map = depthmap::block_words(header, records).map_or(0, |w| words_len(&w));
    match coded(header, records, packed, depth_map, u64::MAX) {
        Some((words, _)) => (words_len(&words) as u64, true),
        None => (packed as u64, false),
    }
}

/// A word count, then the words, little-endian.
fn put_words(body: &mut Vec<u8>, words: &[u32]) {
    varint::put(body, words.len() as u64);
    for w in words {
        body.extend_from_slice(&w.to_le_bytes());
    }
}

/// Each record's index count per level 0..m, in the order its indices are stored.
fn level_counts(header: &Header, records: &[Record]) -> Vec<Vec<u64>> {
    records.iter().map(|r| r.level_counts(header)).collect()
}

/// Cells in the block's records.
fn cell_count(header: &Header, records: &[Record]) -> u64 {
    records
        .iter()
        .map(|r| {
            let (gw, gh) = header.grid_of(r);
            gw * gh
        })
        .sum()
}

/// The least work decoding a coded block of `cells` cells and `indices` indices (with a depth
/// map or not) can take: exactly its work under coder 1's model, a lower bound under
/// neighbour contexts (`by_neighbours`), whose matches make an index's work depend on its
/// neighbours.
fn least_work(
    header: &Header,
    by_neighbours: bool,
    depth_map: bool,
    cells: u64,
    indices: u64,
) -> u64 {
    let depths = if depth_map { header.codebooks_used } else { 0 };
    if by_neighbours {
        entropy::work(header.codebook_size, depths, cells, 0)
            .saturating_add(indices.saturating_mul(neighbours::INDEX_WORK))
    } else {
        entropy::work(header.codebook_size, depths, cells, indices)
    }
}

/// The most work [`entropy::WORK_PER_BYTE`] allows a coded block with `rest` bytes after its
/// fields.
fn budget(rest: u64) -> u64 {
    entropy::WORK_PER_BYTE.saturating_mul(rest)
}

/// The records' layouts for payload coder 2: grid widths and every cell's depth.
fn depth_layouts(header: &Header, records: &[Record]) -> Vec<(usize, Vec<u8>)> {
    records
        .iter()
        .map(|r| (header.grid_of(r).0 as usize, r.cell_depths(header)))
        .collect()
}

/// The range-coded words of the records' indices when the format calls for them (in an
/// archive with the entropy flag, after a depth map of `depth_map` bytes, 0 for none), and
/// whether they are coded under neighbour contexts: the shortest of coder 1's words and (in
/// an archive of payload coder 2) the neighbour contexts' words, each counted with its count
/// and only if decoding it stays within [`entropy::WORK_PER_BYTE`], when that is fewer bytes
/// than `packed` bytes of bit-packed indices; on a tie the simpler wins (packing, then coder
/// 1's model). Otherwise `None`: packed.
///
/// A coding whose work passes `cap` is left out, and not finished: a reader passes the bound of
/// the block it holds, which no coding that could have been chosen instead passes (it would be
/// within its own bound, for no more bytes), so checking the choice costs it at most that
/// bound per model. A writer passes `u64::MAX`.
fn coded(
    header: &Header,
    records: &[Record],
    packed: usize,
    depth_map: usize,
    cap: u64,
) -> Option<(Vec<u32>, bool)> {
    if !header.entropy {
        return None;
    }
    let cells = cell_count(header, records);
    let indices: u64 = records.iter().map(|r| r.indices.len() as u64).sum();
    let fits = |words: &[u32], work: u64| {
        let len = words_len(words);
        (len < packed && work <= budget((depth_map + len) as u64)).then_some(len)
    };
    let counts = level_counts(header, records);
    let refs: Vec<(&[u32], &[u64])> = records
        .iter()
        .zip(&counts)
        .map(|(r, c)| (r.indices.as_slice(), c.as_slice()))
        .collect();
    let adaptive_work = least_work(header, false, depth_map > 0, cells, indices);
    let adaptive = (adaptive_work <= cap).then(|| entropy::encode(&refs, header.codebook_size));
    let adaptive_len = adaptive.as_ref().and_then(|a| fits(a, adaptive_work));
    if header.neighbours {
        let depths = if depth_map > 0 {
            header.codebooks_used
        } else {
            0
        };
        let map_work = entropy::work(header.codebook_size, depths, cells, 0);
        let layouts = depth_layouts(header, records);
        let refs: Vec<(&[u32], Layout)> = records
            .iter()
            .zip(&layouts)
            .map(|(r, (columns, d))| {
                let layout = Layout {
                    columns: *columns,
                    depths: d,
                };
                (r.indices.as_slice(), layout)
            })
            .collect();
        let within = cap.checked_sub(map_work);
        if let Some((words, work)) =
            within.and_then(|c| neighbours::encode_within(&refs, header.codebook_size, c))
            && let Some(len) = fits(&words, map_work.saturating_add(work))
            && adaptive_len.is_none_or(|a| len < a)
        {
            return Some((words, true));
        }
    }
    adaptive_len.and(adaptive).map(|a| (a, false))
}

/// What a version-2 block spends on its indices, as read: what [`index_bytes`] computes from
/// the records, without coding them again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockIndices {
    /// Bytes of the indices: the coded words with their count, or the packed bits.
    pub bytes: u64,
    /// Whether they are range-coded (payload coder 1, or 2 with either of its models).
    pub coded: bool,
}

/// Reads the block at the cursor, holding records `first..first + count`: checks its
/// checksum, then every field, and returns the records (depths empty where all are m) and
/// what their indices took.
pub(crate) fn parse_block(
    header: &Header,
    limits: &Limits,
    first: u64,
    count: usize,
    c: &mut Cursor,
) -> Result<(Vec<Record>, BlockIndices)> {
    let body = checked_body(header, limits, first, count, c)?;
    // The body is all there: running out inside it is a malformed block, not a short stream.
    parse_body(header, limits, first, count, body).map_err(|e| match e {
        ArchiveError::Truncated { what, .. } => ArchiveError::InvalidRecord {
            index: first,
            reason: format!("its block ends inside the {what}"),
        },
        e => e,
    })
}

/// Steps over the block at the cursor, checking its length and checksum, and reads its images'
/// sizes and names but not their indices: what a merge that copies whole blocks needs.
pub(crate) fn block_fields(
    header: &Header,
    limits: &Limits,
    first: u64,
    count: usize,
    c: &mut Cursor,
) -> Result<Vec<Record>> {
    let body = checked_body(header, limits, first, count, c)?;
    let mut fields = Cursor {
        bytes: body,
        pos: 0,
    };
    match read_fields(header, limits, first, count, &mut fields) {
        Ok((_, records)) => Ok(records),
        Err(ArchiveError::Truncated { what, .. }) => Err(ArchiveError::InvalidRecord {
            index: first,
            reason: format!("its block ends inside the {what}"),
        }),
        Err(e) => Err(e),
    }
}

/// Steps over the block at the cursor (images `first..first + count`), checking its length
/// against the limits and its checksum, and returns its body unparsed.
pub(crate) fn checked_body<'a>(
    header: &Header,
    limits: &Limits,
    first: u64,
    count: usize,
    c: &mut Cursor<'a>,
) -> Result<&'a [u8]> {
    let start = c.pos;
    let len = c.varint("block length")?;
    if len > max_body(header, limits, count) {
        return Err(ArchiveError::InvalidRecord {
            index: first,
            reason: format!(
                "its block claims {len} bytes, more than {count} image(s) of the largest size the \
                 reader's limits allow ({} pixels a side, {} in all) could need",
                limits.max_side, limits.max_pixels
            ),
        });
    }
    if len.checked_add(4).is_none_or(|n| n > c.remaining() as u64) {
        return Err(ArchiveError::Truncated {
            what: "block",
            offset: c.pos,
        });
    }
    c.take(len as usize, "block")?;
    // The checksum covers the length too, so a damaged length that still fits the bytes
    // present is reported as damage to this block.
    let checked: &'a [u8] = &c.bytes[start..c.pos];
    let body = &checked[checked.len() - len as usize..];
    let crc = c.take(4, "block checksum")?;
    if crc32fast::hash(checked).to_le_bytes() != crc {
        return Err(ArchiveError::BlockChecksum {
            first,
            last: first + count as u64 - 1,
        });
    }
    Ok(body)
}

fn parse_body(
    header: &Header,
    limits: &Limits,
    first: u64,
    count: usize,
    body: &[u8],
) -> Result<(Vec<Record>, BlockIndices)> {
    let mut c = Cursor {
        bytes: body,
        pos: 0,
    };
    let (flags, mut records) = read_fields(header, limits, first, count, &mut c)?;
    let coded = flags & CODED != 0;
    let by_neighbours = flags & NEIGHBOURS != 0;
    let depth_map = flags & DEPTHS != 0;
    // Every cell has at least one index: packed, of at least one bit; coded, of a bounded
    // decoding work per byte. So the bytes left bound the cells, and no forged size makes
    // the decoders run long.
    let cells = cell_count(header, &records);
    let rest = c.remaining() as u64;
    let fits = if coded {
        least_work(header, by_neighbours, depth_map, cells, cells) <= budget(rest)
    } else {
        cells * header.bits_per_index() as u64 <= 8 * rest
    };
    if !fits {
        return Err(ArchiveError::InvalidRecord {
            index: first,
            reason: "its block is too short for its images' cells".into(),
        });
    }
    let fields = c.pos;
    if flags & DEPTHS != 0 {
        read_depths(header, first, &mut records, &mut c)?;
    }
    let start = c.pos;
    if coded {
        read_coded(
            header,
            (first, by_neighbours, depth_map, cells, rest),
            &mut records,
            &mut c,
        )?;
    } else {
        let depth_map = c.pos - fields;
        read_indices(header, (first, depth_map), &mut records, &body[c.pos..])?;
    }
    let indices = BlockIndices {
        bytes: (body.len() - start) as u64,
        coded,
    };
    Ok((records, indices))
}

/// Reads a block's flags and its images' sizes and names (records without indices yet),
/// refusing reserved flags and a size stored per image where one would do.
fn read_fields(
    header: &Header,
    limits: &Limits,
    first: u64,
    count: usize,
    c: &mut Cursor,
) -> Result<(u8, Vec<Record>)> {
    let bad = |reason: String| ArchiveError::InvalidRecord {
        index: first,
        reason,
    };
    let flags = c.u8("block flags")?;
    if flags & !(SHARED_SIZE | DEPTHS | CODED | NEIGHBOURS | FILTERS | SCALED) != 0 {
        return Err(bad(format!("reserved block flag bits ({flags:#04x})")));
    }
    let filters = flags & FILTERS != 0;
    if filters && header.version < crate::VERSION_3 {
        return Err(bad(format!(
            "its block has restoration filters, which need format version {}",
            crate::VERSION_3
        )));
    }
    let scaled = flags & SCALED != 0;
    if scaled && header.version < crate::VERSION_4 {
        return Err(bad(format!(
            "its block has half-size images, which need format version {}",
            crate::VERSION_4
        )));
    }
    if flags & NEIGHBOURS != 0 && (flags & CODED == 0 || !header.neighbours) {
        return Err(bad(
            "its block says neighbour contexts, which only coded blocks of payload coder 2 use"
                .into(),
        ));
    }
    if flags & CODED != 0 && !header.entropy {
        return Err(bad(
            "its block is entropy-coded but the archive's header does not say so".into(),
        ));
    }
    let shared = if flags & SHARED_SIZE != 0 {
        Some(parse_size(limits, first, c)?)
    } else {
        None
    };
    let mut records = Vec::with_capacity(count);
    for i in 0..count as u64 {
        let (width, height) = match shared {
            Some(size) => size,
            None => parse_size(limits, first + i, c)?,
        };
        let name = if header.names {
            parse_name(first + i, c)?
        } else {
            None
        };
        let half = scaled && crate::record::parse_scale(first + i, c)?;
        let mut record = Record {
            width,
            height,
            name,
            half,
            ..Record::default()
        };
        if filters {
            record.filter = crate::filter::parse(first + i, record.coded_size(), c)?;
        }
        records.push(record);
    }
    if scaled && records.iter().all(|r| !r.half) {
        return Err(bad(
            "its block says half-size images but none of its images is one".into(),
        ));
    }
    if filters && records.iter().all(|r| r.filter.is_none()) {
        return Err(bad(
            "its block says restoration filters but none of its images has one".into(),
        ));
    }
    let size = |r: &Record| (r.width, r.height);
    if shared.is_none() && records.windows(2).all(|w| size(&w[0]) == size(&w[1])) {
        return Err(bad(
            "its block stores one size per image although all are equal".into(),
        ));
    }
    Ok((flags, records))
}

/// Unpacks the block's indices (`payload`: all that follows the fields and the `depth_map`
/// bytes of depth map) into `records`, whose sizes and depths say how many each has: exactly
/// the bytes they need, zero padding, every index below k, and no coding that the archive's
/// coder would make shorter.
fn read_indices(
    header: &Header,
    (first, depth_map): (u64, usize),
    records: &mut [Record],
    payload: &[u8],
) -> Result<()> {
    let bad = |index: u64, reason: String| ArchiveError::InvalidRecord { index, reason };
    let bits = header.bits_per_index() as u64;
    let counts: Vec<u64> = records.iter().map(|r| r.index_count(header)).collect();
    let total: u64 = counts.iter().sum();
    let want = (total * bits).div_ceil(8);
    if payload.len() as u64 != want {
        return Err(bad(
            first,
            format!(
                "its block's indices take {} bytes where {total} indices need {want}",
                payload.len()
            ),
        ));
    }
    let all = bits::unpack(payload, total as usize, bits as u32)
        .ok_or_else(|| bad(first, "payload shorter than its indices".into()))?;
    if !bits::zero_after(payload, (total * bits) as usize) {
        return Err(bad(
            first,
            "nonzero padding bits after the block's last index".into(),
        ));
    }
    let mut at = 0;
    for (r, n) in records.iter_mut().zip(counts) {
        r.indices = all[at..at + n as usize].to_vec();
        at += n as usize;
    }
    check_indices(header, first, records)?;
    // A coding shorter than packing is within the bound of packing's length, or not valid.
    let cap = budget((depth_map + payload.len()) as u64);
    if coded(header, records, payload.len(), depth_map, cap).is_some() {
        return Err(bad(
            first,
            "its block packs indices that the archive's coder would code in fewer bytes".into(),
        ));
    }
    Ok(())
}

/// Every index below k.
fn check_indices(header: &Header, first: u64, records: &[Record]) -> Result<()> {
    for (i, r) in records.iter().enumerate() {
        if let Some(v) = r.indices.iter().find(|&&v| v >= header.codebook_size) {
            return Err(ArchiveError::InvalidRecord {
                index: first + i as u64,
                reason: format!(
                    "index {v} is not below codebook_size {}",
                    header.codebook_size
                ),
            });
        }
    }
    Ok(())
}

/// Reads a coded block's indices (a word count and the words, which must end the body) into
/// `records`, refusing words that are not the exact coding of indices, more decoding work
/// than [`entropy::WORK_PER_BYTE`] allows for the block's `rest` bytes after its fields
/// (its `cells` cells counted), a coding no shorter than packing, and (under payload coder
/// 2) a coding by one model where the other's is shorter.
fn read_coded(
    header: &Header,
    (first, by_neighbours, depth_map, cells, rest): (u64, bool, bool, u64, u64),
    records: &mut [Record],
    c: &mut Cursor,
) -> Result<()> {
    let bad = |reason: &str| ArchiveError::InvalidRecord {
        index: first,
        reason: reason.into(),
    };
    let start = c.pos;
    let words = read_words(c, "coded indices")?;
    if c.remaining() != 0 {
        return Err(bad("bytes follow its block's coded indices"));
    }
    let counts = level_counts(header, records);
    let total: u64 = counts.iter().flatten().sum();
    let too_dense = || bad("its block's coded indices are too dense to decode");
    if least_work(header, by_neighbours, depth_map, cells, total) > budget(rest) {
        return Err(too_dense());
    }
    let packed = (total * header.bits_per_index() as u64).div_ceil(8);
    if (c.pos - start) as u64 >= packed {
        return Err(bad(
            "its block codes indices that packing stores in no more bytes",
        ));
    }
    let not_coding = || bad("its block's coded indices are not the coding of any indices");
    let decoded = if by_neighbours {
        let depths = if depth_map { header.codebooks_used } else { 0 };
        let map_work = entropy::work(header.codebook_size, depths, cells, 0);
        let layouts = depth_layouts(header, records);
        let layouts: Vec<Layout> = layouts
            .iter()
            .map(|(columns, d)| Layout {
                columns: *columns,
                depths: d,
            })
            .collect();
        let allowed = budget(rest) - map_work;
        neighbours::decode(&words, &layouts, header.codebook_size, allowed).map_err(
            |e| match e {
                neighbours::Refused::OverBudget => too_dense(),
                neighbours::Refused::NotCoding => not_coding(),
            },
        )?
    } else {
        let per_record: Vec<&[u64]> = counts.iter().map(|c| c.as_slice()).collect();
        entropy::decode(&words, &per_record, header.codebook_size).ok_or_else(not_coding)?
    };
    for (r, indices) in records.iter_mut().zip(decoded) {
        r.indices = indices;
    }
    check_indices(header, first, records)?;
    if header.neighbours {
        let depth_map_bytes = rest as usize - (c.pos - start);
        let shortest = coded(
            header,
            records,
            packed as usize,
            depth_map_bytes,
            budget(rest),
        );
        if shortest.is_none_or(|(w, n)| n != by_neighbours || w != words) {
            return Err(bad(
                "its block's indices are coded by the longer of payload coder 2's two models",
            ));
        }
    }
    Ok(())
}

/// A word count and that many little-endian u32 words (a depth map or coded indices).
fn read_words(c: &mut Cursor, what: &'static str) -> Result<Vec<u32>> {
    let n = c.varint(what)?;
    if n > c.remaining() as u64 / 4 {
        return Err(ArchiveError::Truncated {
            what,
            offset: c.pos,
        });
    }
    Ok(c.take(n as usize * 4, what)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// Reads a block's depth map into `records` (left empty for a record whose cells all use m).
fn read_depths(header: &Header, first: u64, records: &mut [Record], c: &mut Cursor) -> Result<()> {
    if header.codebooks_used < 2 {
        return Err(ArchiveError::InvalidRecord {
            index: first,
            reason: "its block has a depth map but the archive uses one codebook".into(),
        });
    }
    let words = read_words(c, "depth map")?;
    depthmap::set_depths(header, first, records, &words)
}
