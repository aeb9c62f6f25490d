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
