//! Names on the way in and out: what an input file is stored under, what a decoded image is
//! written as (never outside the output folder), and reading the input images.

use std::path::{Path, PathBuf};

use rvq::image_io::{self, Limits};
use rvq::{Error, Named, Result};

/// The name an input file is stored under: its path relative to the folder it was found in
/// (or its file name when given directly), with `/` separators.
pub(crate) fn stored_name(file: &Path, inputs: &[PathBuf]) -> Result<String> {
    let rel = inputs
        .iter()
        .filter(|i| i.is_dir())
        .find_map(|dir| file.strip_prefix(dir).ok())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(file.file_name().unwrap_or(file.as_os_str())));
    let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
    let name = parts
        .ok_or_else(|| Error::NameNotUtf8 {
            path: file.to_path_buf(),
        })?
        .join("/");
    rvq_archive::validate_name(&name).map_err(|reason| Error::BadImage {
        path: file.to_path_buf(),
        reason,
    })?;
    Ok(name)
}

/// The file name a decoded record is written under: its stored name with a `.png`
/// extension, or `image-NNNNNN.png` by position. A stored name that this system would not
/// read as plain relative components is refused: the archive reader already refuses roots
/// and `..`, but "C:x.png" is a drive-relative path only on Windows.
pub(crate) fn output_name(name: Option<&str>, position: u64) -> Result<PathBuf> {
    let Some(n) = name else {
        return Ok(PathBuf::from(format!("image-{position:06}.png")));
    };
    let p = PathBuf::from(n);
    if !p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
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

/// Refuses, before anything is written, records that would be written to one file (stored as
/// `a.jpg` and `a.jpg.png`), or one to a file that another needs as a folder (`d.png` and
/// `d.png/e.png`): one would overwrite the other, or the decode would stop halfway. Where the
/// file system tells no letter case apart by default (Windows, macOS), `A.png` and `a.png`
/// are one file too.
pub(crate) fn refuse_clashes(
    targets: &[PathBuf],
    entries: &[rvq::archive::Entry],
) -> anyhow::Result<()> {
    let labels: Vec<(u64, Option<&str>)> = entries.iter().map(|e| (e.index(), e.name())).collect();
    clashes(targets, &labels, cfg!(any(windows, target_os = "macos")))
}

/// [`refuse_clashes`] over each target's (record number, stored name), with letter case folded
/// where `fold_case`.
fn clashes(
    targets: &[PathBuf],
    labels: &[(u64, Option<&str>)],
    fold_case: bool,
) -> anyhow::Result<()> {
    let key = |p: &Path| {
        if fold_case {
            PathBuf::from(p.to_string_lossy().to_lowercase())
        } else {
            p.to_path_buf()
        }
    };
    let keys: Vec<PathBuf> = targets.iter().map(|t| key(t)).collect();
    let mut at = std::collections::HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        at.entry(k.as_path()).or_insert(i);
    }
    let name = |i: usize| match labels[i] {
        (_, Some(n)) => format!("{n:?}"),
        (index, None) => format!("#{index}"),
    };
    for (i, t) in targets.iter().enumerate() {
        let first = at[keys[i].as_path()];
        if first != i && labels[first].1 == labels[i].1 {
            anyhow::bail!(
                "images {} and {} are both stored as {}, so both would be written to {}",
                labels[first].0,
                labels[i].0,
                name(i),
                t.display()
            );
        }
        if first != i {
            anyhow::bail!(
                "images {} and {} would both be written to {}; decode each with --only NAME into a folder of its own",
                name(first),
                name(i),
                targets[first].display()
            );
        }
        if let Some(&folder) = t.ancestors().skip(1).find_map(|p| at.get(key(p).as_path())) {
            anyhow::bail!(
                "image {} would be written inside {}, the file of image {}; decode each with --only NAME into a folder of its own",
                name(i),
                targets[folder].display(),
                name(folder)
            );
        }
    }
    Ok(())
}

/// Reads the input images for `encode`, enforcing `limits`; `warn` is told about each
/// image whose alpha channel is dropped (with `strict`, that is an error instead).
pub(crate) fn read_inputs(
    files: &[PathBuf],
    inputs: &[PathBuf],
    limits: &Limits,
    strict: bool,
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Named>> {
    files
        .iter()
        .map(|f| {
            let loaded = image_io::read_rgb(f, limits)?;
            if loaded.had_alpha {
                if strict {
                    return Err(Error::Alpha { path: f.clone() });
                }
                warn(format!("{}: alpha channel dropped", f.display()));
            }
            Ok(Named {
                name: stored_name(f, inputs)?,
                image: loaded.image,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_targets_fold_letter_case_only_where_asked() {
        let targets: Vec<PathBuf> = ["o/A.png", "o/a.png", "o/b.png"].map(PathBuf::from).into();
        let labels = [(0, Some("A")), (1, Some("a.png")), (2, Some("b"))];
        assert!(clashes(&targets, &labels, false).is_ok());
        let e = clashes(&targets, &labels, true).unwrap_err().to_string();
        assert!(
            e.contains("images \"A\" and \"a.png\" would both be written to o/A.png"),
            "{e}"
        );
        // A folder in another case holds another's file.
        let nested: Vec<PathBuf> = ["o/D.png", "o/d.png/e.png"].map(PathBuf::from).into();
        let labels = [(0, Some("D.png")), (1, Some("d.png/e.png"))];
        assert!(clashes(&nested, &labels, false).is_ok());
        let e = clashes(&nested, &labels, true).unwrap_err().to_string();
        assert!(e.contains("would be written inside o/D.png"), "{e}");
        // One name stored twice says so.
        let twice: Vec<PathBuf> = ["o/x.png", "o/x.png"].map(PathBuf::from).into();
        let e = clashes(&twice, &[(3, Some("x")), (7, Some("x"))], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("images 3 and 7 are both stored as \"x\""), "{e}");
    }

    #[test]
    fn output_names_stay_inside_the_output_folder() {
        let ok = |n: &str| output_name(Some(n), 0).unwrap();
        assert_eq!(ok("d/e.png"), PathBuf::from("d/e.png"));
        assert_eq!(ok("cat"), PathBuf::from("cat.png"));
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
