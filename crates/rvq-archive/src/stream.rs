//! Archives as streams: [`ArchiveWriter`] writes records as they come and [`ArchiveReader`]
//! yields them one at a time, so an archive of any number of images is written and read
//! holding the header, one record and a small read buffer in memory, never the whole archive.

use std::io::{Read, Write};

use std::collections::VecDeque;

use crate::block::{self, BLOCK_RECORDS, BlockIndices};
use crate::{
    ArchiveError, Cursor, Header, Limits, Record, Result, VERSION_1, check_record, decode_entry,
    index_bytes, parse_entry, parse_header, write_header, write_record,
};

/// Writes an archive of a known number of images to `W`, one record at a time.
///
/// ```
/// use rvq_archive::{ArchiveWriter, Geometry, Header, Record, write_archive};
/// let geometry = Geometry {
///     latent_dim: 64,
///     codebook_size: 1024,
///     num_codebooks: 8,
///     grid_factor: 8,
/// };
/// let header = Header::new([7; 16], geometry, 1);
/// let rec = Record { width: 32, height: 32, indices: vec![3; 16], ..Record::default() };
/// let mut w = ArchiveWriter::new(Vec::new(), &header, 2).unwrap();
/// w.write(&rec).unwrap();
/// w.write(&rec).unwrap();
/// assert_eq!(w.finish().unwrap(), write_archive(&header, &[rec.clone(), rec]).unwrap());
/// ```
pub struct ArchiveWriter<W: Write> {
    inner: W,
    header: Header,
    announced: u64,
    written: u64,
    buf: Vec<u8>,
    /// Version 2: the records of the block being filled.
    pending: Vec<Record>,
    /// Set by an I/O error, after which part of a record may have been written.
    broken: bool,
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header of an archive of `image_count` images: the format stores the count
    /// up front, so exactly that many records must follow.
    pub fn new(mut inner: W, header: &Header, image_count: u64) -> Result<Self> {
        inner.write_all(&write_header(header, image_count)?)?;
        Ok(Self {
            inner,
            header: header.clone(),
            announced: image_count,
            written: 0,
            buf: Vec::new(),
            pending: Vec::new(),
            broken: false,
        })
    }

    /// Writes the next record (version 2: checks it now and writes it with its block, once
    /// the block is full or at [`ArchiveWriter::finish`]).
    pub fn write(&mut self, record: &Record) -> Result<()> {
        if self.broken {
            return Err(ArchiveError::Unwritable {
                index: self.written,
                reason: "an earlier write failed, so the archive is incomplete".into(),
            });
        }
        if self.written == self.announced {
            return Err(ArchiveError::Unwritable {
                index: self.written,
                reason: format!("the header announced {} images", self.announced),
            });
        }
        if self.header.version == VERSION_1 {
            self.buf.clear();
            write_record(&self.header, self.written, record, &mut self.buf)?;
            self.written += 1;
            return self.emit();
        }
        check_record(&self.header, self.written, record)?;
        self.pending.push(record.clone());
        self.written += 1;
        if self.pending.len() as u64 == BLOCK_RECORDS {
            self.write_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self) -> Result<()> {
        self.buf.clear();
        let first = self.written - self.pending.len() as u64;
        block::write_block(&self.header, first, &self.pending, &mut self.buf)?;
        self.pending.clear();
        self.emit()
    }

    fn emit(&mut self) -> Result<()> {
        if let Err(e) = self.inner.write_all(&self.buf) {
            self.broken = true;
            return Err(e.into());
        }
        Ok(())
    }

    /// Checks that every announced record was written, flushes, and returns the writer.
    pub fn finish(mut self) -> Result<W> {
        if self.broken || self.written != self.announced {
            return Err(ArchiveError::Unwritable {
                index: self.written,
                reason: format!(
                    "only {} of the {} announced images were written",
                    self.written, self.announced
                ),
            });
        }
        if !self.pending.is_empty() {
            self.write_block()?;
        }
        self.inner.flush()?;
        Ok(self.inner)
    }
}

/// Reads an archive from `R` one record at a time, with the checks of [`crate::Archive`]: an
/// iterator of records that ends after the last one (having checked that nothing follows it)
/// or at the first error.
pub struct ArchiveReader<R: Read> {
    input: Input<R>,
    header: Header,
    image_count: u64,
    next: u64,
    limits: Limits,
    done: bool,
    /// Version 2: records of the last block read, not yet yielded.
    ready: VecDeque<Record>,
}

/// The unread part of a stream: a buffer that grows while a header or record needs more bytes
/// and drops what has been read.
struct Input<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already read.
    start: usize,
    /// Bytes of the stream dropped from `buf`, for error offsets.
    consumed: usize,
    eof: bool,
}

const CHUNK: usize = 64 * 1024;
/// The first read of a stream: a header without an embedded codebook takes under a hundred
/// bytes, and a merge holds the first read of every part at once (1,024 parts: 1 MiB).
const FIRST_READ: usize = 1024;
/// The longest header a stream may have: its only large part is an embedded codebook, 2 MiB
/// in f32 for the default model, and a forged one must not make the reader buffer gigabytes.
const MAX_HEADER: usize = 256 << 20;

impl<R: Read> Input<R> {
    fn rest(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Runs `parse` over the unread bytes, reading more of the stream while it finds them
    /// truncated, and consumes the bytes it took (its cursor's position on success). A
    /// truncation at the stream's end is reported at its offset in the stream, not the buffer.
    fn parse_more<T>(&mut self, mut parse: impl FnMut(&mut Cursor<'_>) -> Result<T>) -> Result<T> {
        loop {
            let mut c = Cursor {
                bytes: self.rest(),
                pos: 0,
            };
            match parse(&mut c) {
                Ok(parsed) => {
                    self.start += c.pos;
                    return Ok(parsed);
                }
                Err(ArchiveError::Truncated { .. }) if !self.eof => self.fill()?,
                Err(ArchiveError::Truncated { what, offset }) => {
                    return Err(ArchiveError::Truncated {
                        what,
                        offset: offset + self.consumed + self.start,
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read of up to a chunk (whatever the stream has now: records are yielded as soon
    /// as they arrive), first dropping what has been read.
    fn fill(&mut self) -> Result<()> {
        self.buf.drain(..self.start);
        self.consumed += self.start;
        self.start = 0;
        let old = self.buf.len();
        let want = if self.consumed == 0 && old == 0 {
            FIRST_READ
        } else {
            CHUNK
        };
        self.buf.resize(old + want, 0);
        let n = loop {
            match self.inner.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e.into());
                }
            }
        };
        self.buf.truncate(old + n);
        self.eof = n == 0;
        Ok(())
    }
}

impl<R: Read> ArchiveReader<R> {
    /// Reads and checks the header.
    pub fn new(inner: R, limits: &Limits) -> Result<Self> {
        let mut input = Input {
            inner,
            buf: Vec::new(),
            start: 0,
            consumed: 0,
            eof: false,
        };
        let (header, image_count) = loop {
            match parse_header(input.rest()) {
                Ok((header, count, len)) => {
                    // The header's bytes go now, not at the next read: a merge holds every
                    // part's reader until its turn, and a header may embed a codebook.
                    input.buf.drain(..len);
                    input.buf.shrink_to_fit();
                    input.consumed += len;
                    break (header, count);
                }
                Err(ArchiveError::Truncated { .. }) if input.buf.len() > MAX_HEADER => {
                    return Err(ArchiveError::InvalidHeader(format!(
                        "header longer than {MAX_HEADER} bytes (an embedded codebook this large is not read)"
                    )));
                }
                Err(ArchiveError::Truncated { .. }) if !input.eof => input.fill()?,
                // Fewer than four bytes read so far also reads as a bad magic.
                Err(ArchiveError::BadMagic) if !input.eof && input.buf.len() < 4 => input.fill()?,
                Err(e) => return Err(e),
            }
        };
        Ok(Self {
            input,
            header,
            image_count,
            next: 0,
            limits: *limits,
            done: false,
            ready: VecDeque::new(),
        })
    }

    /// The shared header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Number of images the header announces.
    pub fn image_count(&self) -> u64 {
        self.image_count
    }

    /// Steps over the next `blocks` blocks (of [`BLOCK_RECORDS`] images, the last the rest),
    /// so that a reader can start at a later block: in a version-2 (or later) archive each
    /// block's length and checksum are checked but none of its records decoded, for the cost
    /// of reading its bytes; a version-1 archive, which has no blocks, reads (and checks) as
    /// many records. Returns the records stepped over: fewer where the archive ends first.
    /// Stricter than [`crate::Archive::block`], which steps over a block whose checksum
    /// fails: here that is an error. Only at a block's start (before the first record, or
    /// after a block's last), else [`ArchiveError::NotAtBlockStart`].
    pub fn skip_blocks(&mut self, blocks: u64) -> Result<u64> {
        let at = self.next - self.ready.len() as u64;
        if !at.is_multiple_of(BLOCK_RECORDS) {
            return Err(ArchiveError::NotAtBlockStart { image: at });
        }
        let mut skipped = 0;
        for _ in 0..blocks {
            if self.done || self.next == self.image_count {
                break;
            }
            let count = block::block_len(self.image_count, self.next / BLOCK_RECORDS);
            let stepped = if self.header.version == VERSION_1 {
                (0..count).try_for_each(|_| self.next_record().map(drop))
            } else {
                self.skip_block(count).map(|()| self.next += count as u64)
            };
            if let Err(e) = stepped {
                self.done = true;
                return Err(e);
            }
            skipped += count as u64;
        }
        Ok(skipped)
    }

    /// The next block as stored (its length, body and checksum, to be copied into another
    /// archive of the same header) with its images' sizes and names (no indices), checked as
    /// [`ArchiveReader::skip_blocks`] checks it; `None` after the last block, once nothing is
    /// found to follow it. Version 2 or later, at a block's start.
    pub(crate) fn raw_block(&mut self) -> Result<Option<(Vec<u8>, Vec<Record>)>> {
        debug_assert!(self.header.version != VERSION_1 && self.ready.is_empty());
        if self.next == self.image_count {
            return self.next_record().map(|_| None);
        }
        let count = block::block_len(self.image_count, self.next / BLOCK_RECORDS);
        let (header, limits, first) = (&self.header, &self.limits, self.next);
        let block = self.input.parse_more(|c| {
            let fields = block::block_fields(header, limits, first, count, c)?;
            Ok((c.bytes[..c.pos].to_vec(), fields))
        });
        match block {
            Ok(block) => {
                self.next += count as u64;
                Ok(Some(block))
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    fn skip_block(&mut self, count: usize) -> Result<()> {
        let (header, limits, first) = (&self.header, &self.limits, self.next);
        self.input
            .parse_more(|c| block::checked_body(header, limits, first, count, c).map(drop))
    }

    fn next_record(&mut self) -> Result<Option<Record>> {
        if let Some(r) = self.ready.pop_front() {
            return Ok(Some(r));
        }
        let Some((records, _, _)) = self.next_step()? else {
            return Ok(None);
        };
        self.ready = records.into();
        Ok(self.ready.pop_front())
    }

    /// Bytes of the stream read and checked so far: the header's length, right after it.
    pub(crate) fn position(&self) -> u64 {
        (self.input.consumed + self.input.start) as u64
    }

    /// The next block's records (version 1: the next record), what their indices take, and
    /// the bytes they took in the stream; `None` after the last, once nothing is found to
    /// follow it. Not inside a block: [`ArchiveReader::next_record`] calls it between blocks.
    pub(crate) fn next_step(&mut self) -> Result<Option<(Vec<Record>, BlockIndices, u64)>> {
        debug_assert!(self.ready.is_empty());
        let input = &mut self.input;
        if self.next == self.image_count {
            // Nothing may follow the last record: count what does without keeping it.
            let mut rest = input.rest().len() as u64;
            if !input.eof {
                rest += std::io::copy(&mut input.inner, &mut std::io::sink())?;
            }
            return if rest == 0 {
                Ok(None)
            } else {
                Err(ArchiveError::TrailingBytes(rest as usize))
            };
        }
        let (header, limits, next) = (&self.header, &self.limits, self.next);
        // Version 1: one record at a time; version 2: a block of them.
        let (records, indices, len) = input.parse_more(|c| {
            if header.version == VERSION_1 {
                let entry = parse_entry(header, limits, next, c)?;
                debug_assert_eq!(c.pos, entry.len);
                let record = decode_entry(header, c.bytes, &entry)?;
                // Packed and padded to a byte: no more indices than its bytes hold.
                let (bytes, coded) = index_bytes(header, std::slice::from_ref(&record));
                Ok((vec![record], BlockIndices { bytes, coded }, c.pos))
            } else {
                let count = block::block_len(self.image_count, next / BLOCK_RECORDS);
                let (records, indices) = block::parse_block(header, limits, next, count, c)?;
                Ok((records, indices, c.pos))
            }
        })?;
        self.next += records.len() as u64;
        Ok(Some((records, indices, len as u64)))
    }
}

impl<R: Read> Iterator for ArchiveReader<R> {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.done {
            return None;
        }
        let item = self.next_record();
        if !matches!(item, Ok(Some(_))) {
            self.done = true;
        }
        item.transpose()
    }
}
