//! Files: output written whole or not at all (into a temporary file beside the target, flushed
//! to disk, then renamed over it, so readers and a crash see the old file or the complete new
//! one, never a part, and a failure leaves no temporary file behind), and archives merged from
//! many files read in turn, none held open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically (see the module documentation).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |file| {
        file.write_all(bytes).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// Writes to `path` atomically what `fill` writes into the (temporary) file it is given: if
/// `fill` fails, the error is returned and `path` is left as it was.
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> Result<()>,
) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = folder_of(path);
    let prefix = format!(".{}.", file_name(path));
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    // tempfile makes owner-only files; outputs get the usual mode (0666 less the umask), as
    // std::fs::write would give them.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    fill(tmp.as_file_mut())?;
    tmp.as_file().sync_all().map_err(io)?;
    // On failure the temporary file is deleted when `e.file` drops.
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

/// The folder `path` is written in: its parent, or `.` for a bare file name (whose parent is
/// the empty path).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A hidden temporary name beside `path`, unique within this machine's processes, for writers
/// that must be given a path (burn's safetensors store); the caller renames it into place.
pub fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(
        ".{}.{}.{n}.tmp",
        file_name(path),
        std::process::id()
    ))
}

/// A file read on from where the last read ended, opened for each read and closed after it,
/// so that a reader of thousands of files in turn (a merge of many parts, whose headers are
/// all read before the first part's blocks) holds none of them open: each open file counts
/// against the process's limit, commonly 1,024. A file replaced or changed between two reads
/// is an error, not a splice of two files. What is not a regular file (a pipe, a terminal,
/// `/dev/stdin`) cannot be opened again where it was left, and is held open instead.
pub struct ClosedFile {
    path: PathBuf,
    at: Place,
}

enum Place {
    /// A regular file, `offset` bytes read, as it was when opened.
    Closed { offset: u64, stamp: Stamp },
    /// Anything else, open throughout.
    Open(std::fs::File),
}

/// What tells a file from its replacement: its size and time of change, and where the
/// platform has them, its device and inode.
#[derive(PartialEq)]
struct Stamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    #[cfg(unix)]
    node: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            node: (meta.dev(), meta.ino()),
        }
    }
}

impl ClosedFile {
    /// `path`, read from its start; fails where it cannot be opened now.
    pub fn open(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let at = if meta.is_file() {
            Place::Closed {
                offset: 0,
                stamp: Stamp::of(&meta),
            }
        } else {
            Place::Open(file)
        };
        Ok(Self {
            path: path.to_path_buf(),
            at,
        })
    }
}

impl std::io::Read for ClosedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::io::Seek;
        let (offset, stamp) = match &mut self.at {
            Place::Open(file) => return file.read(buf),
            Place::Closed { offset, stamp } => (offset, stamp),
        };
        let mut file = std::fs::File::open(&self.path)?;
        if Stamp::of(&file.metadata()?) != *stamp {
            return Err(std::io::Error::other(format!(
                "{}: changed while it was being read",
                self.path.display()
            )));
        }
        file.seek(std::io::SeekFrom::Start(*offset))?;
        let n = file.read(buf)?;
        *offset += n as u64;
        Ok(n)
    }
}

/// A part of a merge ([`merge_parts`]): where it is read from, and what its errors name.
pub enum MergePart {
    /// A file, held open only while it is read ([`ClosedFile`]).
    File(PathBuf),
    /// Any other stream (standard input, bytes in memory), named `name` in errors.
    Stream {
        /// What errors call it.
        name: PathBuf,
        /// Its bytes.
        reader: Box<dyn std::io::Read + Send>,
    },
}

/// The merge of `parts` (`rvq_archive::merge_streams`) written into `out`: every part's
/// header first, so that a part that is not an archive, or does not match the first, is
/// refused before anything is written; then one block at a time, however large the parts.
/// Errors name the part they were found in, or `out_name` where writing to `out` failed. On
/// an error `out` may hold part of the archive (see [`write_atomic_with`]).
pub fn merge_parts<W: Write>(parts: Vec<MergePart>, out: W, out_name: &Path) -> Result<W> {
    use rvq_archive::ArchiveError::{DuplicateName, InPart, MergeMismatch};
    let limits = rvq_archive::Limits::default();
    let mut names = Vec::with_capacity(parts.len());
    let mut readers = Vec::with_capacity(parts.len());
    for part in parts {
        let (name, reader): (PathBuf, Box<dyn std::io::Read + Send>) = match part {
            MergePart::File(path) => {
                let file = ClosedFile::open(&path)?;
                (path, Box::new(file))
            }
            MergePart::Stream { name, reader } => (name, reader),
        };
        let reader =
            rvq_archive::ArchiveReader::new(reader, &limits).map_err(|source| Error::Archive {
                path: name.clone(),
                source,
            })?;
        readers.push(reader);
        names.push(name);
    }
    let failed = std::rc::Rc::new(std::cell::Cell::new(false));
    let out = Watched {
        inner: out,
        failed: failed.clone(),
    };
    let in_part = |index: usize, source| Error::Archive {
        path: names[index].clone(),
        source,
    };
    match rvq_archive::merge_streams(readers, out) {
        Ok(out) => Ok(out.inner),
        Err(e @ (MergeMismatch { index, .. } | DuplicateName { index, .. })) => {
            Err(in_part(index, e))
        }
        Err(InPart { index, error }) => Err(in_part(index, *error)),
        Err(rvq_archive::ArchiveError::Io(source)) if failed.get() => Err(Error::Io {
            path: out_name.to_path_buf(),
            source,
        }),
        Err(e) => Err(Error::Format(e)),
    }
}

/// A merge's output: notes whether a write to it failed, so that the error names the output.
struct Watched<W> {
    inner: W,
    failed: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<W: Write> Write for Watched<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf);
        self.failed.set(self.failed.get() || written.is_err());
        written
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let flushed = self.inner.flush();
        self.failed.set(self.failed.get() || flushed.is_err());
        flushed
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        assert_eq!(names(dir.path()), ["out.bin"]);
        // A folder in the way: the rename fails, the error names the path, nothing is left.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("x"), b"x").unwrap();
        let err = write_atomic(&blocked, b"data").unwrap_err().to_string();
        assert!(err.contains("sub"), "{err}");
        assert_eq!(names(dir.path()), ["out.bin", "sub"]);
    }

    #[cfg(unix)]
    #[test]
    fn outputs_get_the_mode_a_plain_write_gives() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::TempDir::new().unwrap();
        let (ours, plain) = (dir.path().join("a"), dir.path().join("b"));
        write_atomic(&ours, b"x").unwrap();
        std::fs::write(&plain, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&plain));
    }

    /// A closed file reads as the file does, opening it again for each read from where the
    /// last read ended, and refuses a file that changed in between.
    #[test]
    fn a_closed_file_reads_on_from_its_offset_and_opens_the_file_each_time() {
        use std::io::Read;
        let dir = tempfile::TempDir::new().unwrap();
        let p = dir.path().join("part");
        let bytes: Vec<u8> = (0..200_000u32).map(|v| (v % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let mut all = Vec::new();
        ClosedFile::open(&p).unwrap().read_to_end(&mut all).unwrap();
        assert_eq!(all, bytes);
        let mut f = ClosedFile::open(&p).unwrap();
        let mut head = [0u8; 3];
        f.read_exact(&mut head).unwrap();
        assert_eq!(head, [0, 1, 2]);
        // Replaced since it was opened: an error, not the new file's bytes from the old offset.
        std::fs::write(&p, b"abcdef").unwrap();
        let err = f.read(&mut head).unwrap_err();
        assert!(
            err.to_string().contains("changed while it was being read"),
            "{err}"
        );
        std::fs::remove_file(&p).unwrap();
        assert!(f.read(&mut head).is_err());
        assert!(matches!(ClosedFile::open(&p), Err(Error::Io { .. })));
        // A pipe is held open: it cannot be opened again where it was left.
        #[cfg(unix)]
        {
            let mut child = std::process::Command::new("sh")
                .args(["-c", "printf abc"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let fd = std::os::fd::AsRawFd::as_raw_fd(child.stdout.as_ref().unwrap());
            let mut piped = ClosedFile::open(Path::new(&format!("/dev/fd/{fd}"))).unwrap();
            let mut got = Vec::new();
            piped.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"abc");
            child.wait().unwrap();
        }
    }

    #[test]
    fn temporary_names_are_hidden_and_distinct() {
        let p = Path::new("/x/model.safetensors");
        let (a, b) = (temp_path(p), temp_path(p));
        assert_ne!(a, b);
        assert_eq!(a.parent(), p.parent());
        assert!(
            a.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".model.safetensors.")
        );
    }
}
