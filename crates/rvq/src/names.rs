//! Where decoded images are written: each record's file under an output folder, from its
//! stored name or its position, never outside the folder, and never two records to one file.
//! The `rvq decode` command and the Python package's Ray jobs both name their files here, so
//! that the two write the same files or refuse the same archives.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Whether the file systems of this platform tell letter case apart by default: on Windows
/// and macOS `A.png` and `a.png` are one file.
pub const FOLDS_CASE: bool = cfg!(any(windows, target_os = "macos"));

/// The file name a decoded record is written under: its stored name with a `.png` extension
/// (kept where it already ends so, in any letter case), or `image-NNNNNN.png` by position. A
/// stored name that this system would not read as plain relative components is refused: the
/// archive reader already refuses roots and `..`, but `C:x.png` is a drive-relative path only
/// on Windows.
pub fn output_name(name: Option<&str>, position: u64) -> Result<PathBuf> {
    let Some(n) = name else {
        return Ok(PathBuf::from(format!("image-{position:06}.png")));
    };
    let p = PathBuf::from(n);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::UnsafeName {
            name: n.to_string(),
        });
    }
    Ok(
        if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")) {
            p
        } else {
            PathBuf::from(format!("{n}.png"))
        },
    )
}

/// The file under `folder` that each record is written to, given each record's (number,
/// stored name), refusing before anything is written records that would be written to one
/// file (stored as `a.jpg` and `a.jpg.png`) or one to a file that another needs as a folder
/// (`d.png` and `d.png/e.png`): one would overwrite the other, or a decode would stop halfway.
/// With `fold_case` (pass [`FOLDS_CASE`] for this platform's file systems), names that differ
/// only in letter case are one file.
pub fn decode_targets(
    folder: &Path,
    records: &[(u64, Option<&str>)],
    fold_case: bool,
) -> Result<Vec<PathBuf>> {
    let targets = records
        .iter()
        .map(|&(index, name)| Ok(folder.join(output_name(name, index)?)))
        .collect::<Result<Vec<_>>>()?;
    refuse_clashes(&targets, records, fold_case)?;
    Ok(targets)
}

fn refuse_clashes(
    targets: &[PathBuf],
    records: &[(u64, Option<&str>)],
    fold_case: bool,
) -> Result<()> {
    let key = |p: &Path| {
        if fold_case {
            PathBuf::from(p.to_string_lossy().to_lowercase())
        } else {
            p.to_path_buf()
        }
    };
    let keys: Vec<PathBuf> = targets.iter().map(|t| key(t)).collect();
    let mut at = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        at.entry(k.as_path()).or_insert(i);
    }
    let label = |i: usize| match records[i] {
        (_, Some(n)) => format!("{n:?}"),
        (index, None) => format!("#{index}"),
    };
    for (i, t) in targets.iter().enumerate() {
        let first = at[keys[i].as_path()];
        if first != i && records[first].1 == records[i].1 {
            return Err(Error::NameStoredTwice {
                first: records[first].0,
                second: records[i].0,
                name: label(i),
                path: t.clone(),
            });
        }
        if first != i {
            return Err(Error::SameTarget {
                first: label(first),
                second: label(i),
                path: targets[first].clone(),
            });
        }
        if let Some(&outer) = t.ancestors().skip(1).find_map(|p| at.get(key(p).as_path())) {
            return Err(Error::TargetInsideTarget {
                inner: label(i),
                outer: label(outer),
                path: targets[outer].clone(),
            });
        }
    }
    Ok(())
}

/// Checks that `target` can be written as a file: it is no folder, and no folder above it is a
/// file (`out/sub` a file where `out/sub/b.png` is to go). Run over every target before any
/// is written, so that a decode refuses what it cannot finish rather than stopping part way;
/// whether a file is already there (and may be replaced) is the caller's to decide.
pub fn check_target(target: &Path) -> Result<()> {
    if target.is_dir() {
        return Err(Error::TargetIsFolder {
            path: target.to_path_buf(),
        });
    }
    for up in target.ancestors().skip(1) {
        match std::fs::metadata(up) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(Error::TargetBelowFile {
                    path: up.to_path_buf(),
                });
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(records: &[(u64, Option<&str>)], fold_case: bool) -> Option<String> {
        decode_targets(Path::new("o"), records, fold_case)
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn clashing_targets_fold_letter_case_only_where_asked() {
        let records = [(0, Some("A")), (1, Some("a.png")), (2, Some("b"))];
        assert_eq!(refused(&records, false), None);
        let e = refused(&records, true).unwrap();
        assert!(
            e.contains("images \"A\" and \"a.png\" would both be written to o/A.png"),
            "{e}"
        );
        // A folder in another case holds another's file.
        let nested = [(0, Some("D.png")), (1, Some("d.png/e.png"))];
        assert_eq!(refused(&nested, false), None);
        let e = refused(&nested, true).unwrap();
        assert!(
            e.contains("image \"d.png/e.png\" would be written inside o/D.png"),
            "{e}"
        );
        // One name stored twice says so.
        let e = refused(&[(3, Some("x")), (7, Some("x"))], false).unwrap();
        assert!(e.contains("images 3 and 7 are both stored as \"x\""), "{e}");
        // Nameless records never clash: their files are numbered by record.
        let t = decode_targets(Path::new("o"), &[(0, None), (1, None)], true).unwrap();
        assert_eq!(t[1], Path::new("o/image-000001.png"));
    }

    #[test]
    fn output_names_stay_inside_the_output_folder() {
        let ok = |n: &str| output_name(Some(n), 0).unwrap();
        assert_eq!(ok("d/e.png"), PathBuf::from("d/e.png"));
        assert_eq!(ok("cat"), PathBuf::from("cat.png"));
        assert_eq!(ok("a.PNG"), PathBuf::from("a.PNG"));
        // A last part of ".png" alone has no extension, so it gains one.
        assert_eq!(ok(".png"), PathBuf::from(".png.png"));
        assert_eq!(
            output_name(None, 7).unwrap(),
            PathBuf::from("image-000007.png")
        );
        for bad in ["../x.png", "a/../../x.png", "/etc/x.png", "./x.png"] {
            let err = output_name(Some(bad), 0).unwrap_err();
            assert!(matches!(err, Error::UnsafeName { .. }), "{bad}: {err}");
        }
        // A drive prefix leaves the folder only where it is one.
        assert_eq!(output_name(Some("C:x.png"), 0).is_err(), cfg!(windows));
    }
}
