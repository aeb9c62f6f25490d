//! Names on the way in: what an input file is stored under, and reading the input images.
//! (What a decoded image is written as is the library's `rvq::names`.)

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
