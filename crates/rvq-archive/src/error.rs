//! Errors reading or writing an archive.

use crate::VERSION;

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
    /// [`crate::ArchiveReader::skip_blocks`] was asked to skip from inside a block: a
    /// caller's mistake, not damage to the archive.
    #[error("blocks are skipped from a block's start, not from image {image}")]
    NotAtBlockStart {
        /// The next image the reader would have yielded.
        image: u64,
    },
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
    /// A part of a streamed merge ([`crate::merge_streams`]) failed as it was read: `error`
    /// says how. ([`crate::merge`], which has every part in memory, returns `error` itself.)
    #[error("archive {index} of the merge: {error}")]
    InPart {
        /// The part, from 0 in the order given.
        index: usize,
        /// What reading it found.
        error: Box<ArchiveError>,
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
