//! A whole archive in memory: writing one, parsing one, locating and decoding its records, and
//! the edits that need no model (truncate, merge).

use std::io::{Read, Write};

use crate::block::{self, BLOCK_RECORDS, BlockIndices, index_bytes};
use crate::{
    ArchiveError, ArchiveReader, Cursor, EmbeddedCodebook, Entry, Header, Limits, Record, Result,
    VERSION, VERSION_1, decode_entry, hex, parse_entry, parse_header, write_header, write_record,
};

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

/// A parsed archive over borrowed bytes: the header is checked on parse, records when read.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    pub(crate) bytes: &'a [u8],
    /// The shared header.
    pub header: Header,
    /// Number of images.
    pub image_count: u64,
    /// Bytes of the header, checksum included.
    pub header_len: usize,
    pub(crate) limits: Limits,
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
    pub(crate) fn blocks(
        &self,
        mut each: impl FnMut(usize, usize, Vec<Record>, BlockIndices),
    ) -> Result<()> {
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
    truncate_stream(ArchiveReader::new(bytes, limits)?, codebooks, Vec::new())
}

/// [`truncate`] of the archive `reader` reads (its header read, nothing else), into `out`,
/// record by record: one block of records held at a time, where a forged archive's coded
/// blocks can claim hundreds of indices per byte. On an error `out` may hold part of the
/// archive: write it to a temporary file and keep that only on success.
pub fn truncate_stream<R: Read, W: Write>(
    reader: ArchiveReader<R>,
    codebooks: u32,
    out: W,
) -> Result<W> {
    let stored = reader.header().codebooks_used;
    if codebooks == 0 || codebooks > stored {
        return Err(ArchiveError::TruncateBeyond {
            asked: codebooks,
            stored,
        });
    }
    let old = reader.header().clone();
    let mut header = old.clone();
    header.codebooks_used = codebooks;
    let values = header.codebook_values() as usize;
    if let Some(cb) = &mut header.codebook {
        cb.values.truncate(values);
    }
    let mut writer = crate::ArchiveWriter::new(out, &header, reader.image_count())?;
    for record in reader {
        writer.write(&record?.truncated(&old, codebooks))?;
    }
    writer.finish()
}

/// One archive holding the images of `archives`, in the order given: they must share model,
/// geometry, codebooks used, whether names are stored and any embedded codebook, and no name
/// may occur twice. Archives written by `encode --shard i/n` for i = 1..=n merge back into
/// the archive one unsharded encode writes. The result takes the highest version of any input
/// (a mix of versions 1 and 2 is written as 2; one with version 3 or 4, as the highest), and is written
/// with the highest payload coder of any input: merging a packed archive with a coded
/// one gives an archive that readers of coder 0 alone refuse.
///
/// Where every part is of version 2 or later with one header and all but the last hold whole blocks (a
/// multiple of 64 images), each block is copied as it is: its checksum and its images' names
/// are checked, its indices are neither decoded nor coded again. The bytes are the same as
/// the records merged one by one would give, at the speed of a copy. [`merge_streams`] does
/// the same from readers to a writer.
pub fn merge(archives: &[&[u8]], limits: &Limits) -> Result<Vec<u8>> {
    let readers = archives
        .iter()
        .map(|bytes| ArchiveReader::new(*bytes, limits))
        .collect::<Result<Vec<_>>>()?;
    merge_streams(readers, Vec::new()).map_err(|e| match e {
        ArchiveError::InPart { error, .. } => *error,
        e => e,
    })
}

/// [`merge`] of archives opened as readers (their headers read, nothing else), into `out`:
/// holding one block (or, where the parts must be merged record by record, one block's
/// records) at a time and the names seen so far, whatever the parts' sizes. Parts that do not
/// match are refused before anything is written; then each part is read in turn, and what
/// reading one finds is returned as [`ArchiveError::InPart`], naming it. Until its turn each
/// part holds its header and first read (about 1 KiB; an embedded codebook, up to 2 MiB in
/// f32, is part of the header). On an error `out` may hold part of the archive: write it to a
/// temporary file and keep that only on success.
pub fn merge_streams<R: Read, W: Write>(readers: Vec<ArchiveReader<R>>, mut out: W) -> Result<W> {
    let headers: Vec<&Header> = readers.iter().map(ArchiveReader::header).collect();
    let header = merged_header(&headers)?;
    let total = readers
        .iter()
        .try_fold(0u64, |n, r| n.checked_add(r.image_count()))
        .ok_or_else(|| {
            ArchiveError::InvalidHeader("the parts hold more than 2^64 images".into())
        })?;
    let last = readers.len() - 1;
    let whole_blocks = readers.iter().enumerate().all(|(i, r)| {
        r.header() == headers[0] && (i == last || r.image_count() % BLOCK_RECORDS == 0)
    }) && header.version != VERSION_1;
    let mut seen = std::collections::HashSet::new();
    let mut check_name = |name: Option<String>, index: usize| match name {
        Some(name) if seen.contains(&name) => Err(ArchiveError::DuplicateName { name, index }),
        Some(name) => {
            seen.insert(name);
            Ok(())
        }
        None => Ok(()),
    };
    if whole_blocks {
        out.write_all(&write_header(&header, total)?)?;
        for (index, mut reader) in readers.into_iter().enumerate() {
            while let Some((bytes, fields)) = reader.raw_block().map_err(in_part(index))? {
                for f in fields {
                    check_name(f.name, index)?;
                }
                out.write_all(&bytes)?;
            }
        }
        out.flush()?;
        return Ok(out);
    }
    let mut writer = crate::ArchiveWriter::new(out, &header, total)?;
    for (index, reader) in readers.into_iter().enumerate() {
        for record in reader {
            let record = record.map_err(in_part(index))?;
            check_name(record.name.clone(), index)?;
            writer.write(&record)?;
        }
    }
    writer.finish()
}

fn in_part(index: usize) -> impl Fn(ArchiveError) -> ArchiveError {
    move |e| ArchiveError::InPart {
        index,
        error: Box::new(e),
    }
}

/// The header of the merge of archives with `headers`, or why they do not merge: one model,
/// geometry, depth, name storage and embedded codebook; the highest version and payload coder.
fn merged_header(headers: &[&Header]) -> Result<Header> {
    let first = *headers.first().ok_or(ArchiveError::NothingToMerge)?;
    for (index, h) in headers.iter().enumerate().skip(1) {
        let differs = |what: &'static str, ours: String, theirs: String| {
            Err(ArchiveError::MergeMismatch {
                index,
                what,
                ours,
                theirs,
            })
        };
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
    // Version-1 records are version-2 records without depth maps: a mix is written as 2,
    // with the highest payload coder of any part.
    Ok(Header {
        version: headers.iter().map(|h| h.version).max().unwrap_or(VERSION),
        entropy: headers.iter().any(|h| h.entropy),
        neighbours: headers.iter().any(|h| h.neighbours),
        ..first.clone()
    })
}
