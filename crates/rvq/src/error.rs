//! The library's error type: one variant per thing that can go wrong, each with a message that
//! names the file and the problem on one line. Messages name no command-line flags: the `rvq`
//! command adds its own hints (see its `main.rs`).

use std::path::PathBuf;

/// Everything rvq's library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An input image could not be decoded.
    #[error("{}: not a readable image: {reason}", path.display())]
    BadImage {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// An image is larger than the configured limits allow.
    #[error("{}: {width}×{height} exceeds {limit}", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Width in pixels.
        width: u64,
        /// Height in pixels.
        height: u64,
        /// The limit it broke.
        limit: SizeLimit,
    },
    /// A model configuration is out of range.
    #[error("invalid model configuration: {0}")]
    InvalidConfig(String),
    /// A model folder's weights and configuration do not fit together, or an archive names
    /// another model.
    #[error("model {model}: {reason}")]
    ModelMismatch {
        /// The model folder (or "default").
        model: String,
        /// What does not fit.
        reason: String,
    },
    /// The model is a plain autoencoder and has no codebooks to encode with.
    #[error("this model has no codebooks (it was trained with quantization off)")]
    NotQuantized,
    /// A training data set is missing or malformed.
    #[error("{}: {reason}", path.display())]
    BadData {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An archive could not be read.
    #[error("{}: {source}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What the reader found.
        source: rvq_archive::ArchiveError,
    },
    /// Writing or reading archive bytes failed, where no file is involved (a stream).
    #[error("{0}")]
    Format(#[from] rvq_archive::ArchiveError),
    /// A stored name that, on this system, is not a plain relative path (a Windows drive
    /// prefix such as `C:`, a root, or `..`): writing it would leave the output folder.
    #[error("stored name {name:?} is not a plain relative path here")]
    UnsafeName {
        /// The name as stored.
        name: String,
    },
    /// Two records of an archive are stored under one name, so a decode would write both to
    /// one file.
    #[error("images {first} and {second} are both stored as {name}, so both would be written to {}", path.display())]
    NameStoredTwice {
        /// The first record's number.
        first: u64,
        /// The second record's number.
        second: u64,
        /// The name both are stored under, quoted.
        name: String,
        /// The file both would be written to.
        path: PathBuf,
    },
    /// Two records' names give one file (`a.jpg` and `a.jpg.png`, or names that differ only in
    /// letter case where the file system folds it).
    #[error("images {first} and {second} would both be written to {}", path.display())]
    SameTarget {
        /// The first record, by its quoted name or `#` and its number.
        first: String,
        /// The second record, likewise.
        second: String,
        /// The file both would be written to.
        path: PathBuf,
    },
    /// One record's file would be written inside another's (`d.png` and `d.png/e.png`).
    #[error("image {inner} would be written inside {}, the file of image {outer}", path.display())]
    TargetInsideTarget {
        /// The record whose file would need the other's as a folder.
        inner: String,
        /// The record whose file is in the way.
        outer: String,
        /// The outer record's file.
        path: PathBuf,
    },
    /// A decoded image's file would replace a folder.
    #[error("{}: is a folder", path.display())]
    TargetIsFolder {
        /// The file to write.
        path: PathBuf,
    },
    /// A decoded image's file would go below a file, where its folder should be.
    #[error("{}: not a folder", path.display())]
    TargetBelowFile {
        /// The file standing where a folder is needed.
        path: PathBuf,
    },
    /// The requested backend is not available.
    #[error("backend unavailable: {0}")]
    Backend(String),
    /// More codebooks (or none) asked of a model than it has.
    #[error("{asked} codebooks asked for, but this model has 1..={available}")]
    Codebooks {
        /// Codebooks asked for.
        asked: usize,
        /// Codebooks in the model.
        available: usize,
    },
    /// Indices (or per-cell depths) that do not fit the model or their grid.
    #[error("indices do not fit the model: {reason}")]
    BadIndices {
        /// What does not fit.
        reason: String,
    },
    /// A training option out of range.
    #[error("invalid training option: {0}")]
    InvalidOption(String),
    /// An encoding effort above the highest level.
    #[error("effort {level} is outside 0..={max}")]
    InvalidEffort {
        /// The level asked for.
        level: u8,
        /// The highest level.
        max: u8,
    },
    /// A training run was given no images to train on.
    #[error("no training images")]
    NoTrainingImages,
    /// A run resumed with options other than its checkpoint's.
    #[error(
        "{}: the checkpoint's run was trained with other options ({differences}): resume with its own",
        run.display()
    )]
    ResumeMismatch {
        /// The run's folder.
        run: PathBuf,
        /// Each option that differs: its name, the checkpoint's value, the one asked for.
        differences: String,
    },
    /// A checkpoint's optimizer state could not be written or read back.
    #[error("{}: optimizer state: {reason}", path.display())]
    Checkpoint {
        /// The optimizer state's file.
        path: PathBuf,
        /// What burn's recorder said.
        reason: String,
    },
    /// A quality or PSNR target out of range.
    #[error("invalid target: {0}")]
    InvalidTarget(String),
    /// No model folder was given, and this build embeds no default model.
    #[error(
        "no model given, and this build of rvq embeds none (the `embedded-model` feature is off)"
    )]
    NoDefaultModel,
    /// No model of this build is called by the given name.
    #[error(
        "{name}: no such model folder, nor a built-in model of that name (built in: {built_in})"
    )]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names there are, comma-separated.
        built_in: String,
    },
    /// An archive writer was used after one of its calls failed: the archive is incomplete
    /// and cannot be finished.
    #[error("the archive was abandoned after an earlier error")]
    Abandoned,
    /// Two inputs of one archive with names on would be stored under one name.
    #[error("two inputs would be stored as {name:?}")]
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A name that the archive format cannot store (a root, a backslash, `.` or `..` among its
    /// parts, or over the format's length limit).
    #[error("cannot store the name {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why the format refuses it.
        reason: String,
    },
    /// A file name that is not UTF-8 cannot be stored.
    #[error("{}: file name is not UTF-8, so it cannot be stored", path.display())]
    NameNotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// An image with an alpha channel, when alpha is refused rather than dropped.
    #[error("{}: has an alpha channel, which rvq does not store", path.display())]
    Alpha {
        /// The file.
        path: PathBuf,
    },
    /// An image's size and pixel buffer disagree, or a side is 0.
    #[error(
        "a {width}×{height} RGB image needs width × height × 3 bytes and at least one pixel (got {bytes} bytes)"
    )]
    PixelBuffer {
        /// Width given.
        width: u32,
        /// Height given.
        height: u32,
        /// Bytes given.
        bytes: usize,
    },
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// Shorthand for results in this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Which of the size limits an image broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SizeLimit {
    /// Pixels per side.
    #[error("the limit of {0} pixels per side")]
    Side(u64),
    /// Pixels in all (width × height).
    #[error("the limit of {0} pixels in all")]
    Pixels(u64),
}
