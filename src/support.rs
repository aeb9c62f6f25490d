//! What the command handlers share: backend choice, model loading, reading inputs and
//! writing outputs (never over an existing file without `--force`), progress bars.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rvq::Model;
use rvq::archive::Archive;
use rvq::image_io::Limits;
use rvq::image_io::{folder_of, write_atomic};
use rvq::{self, Backend};

use crate::args::*;

pub(crate) fn choose_backend(backend: Backend, verbose: bool) -> Result<rvq::Chosen> {
    let chosen = backend.choose()?;
    if verbose || backend == Backend::Auto {
        eprintln!("rvq: backend: {}", chosen.description);
    }
    Ok(chosen)
}

pub(crate) fn machine(chosen: &rvq::Chosen) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{} on {cores} cores of {cpu}", chosen.description)
}

pub(crate) fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// `path` (or standard input) opened to be read as a stream, a block at a time.
pub(crate) fn open_input(path: &Path) -> Result<Box<dyn Read>> {
    if is_stdio(path) {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    Ok(Box::new(file))
}

pub(crate) fn read_input(path: &Path) -> Result<Vec<u8>> {
    if is_stdio(path) {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading standard input")?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("{}", path.display()))
    }
}

/// Writes `bytes` to `path` (or standard output), refusing to replace a file unless `force`.
pub(crate) fn write_output(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if is_stdio(path) {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes).context("writing standard output")?;
        return out.flush().context("writing standard output");
    }
    refuse_existing(path, force)?;
    write_atomic(path, bytes)?;
    Ok(())
}

/// The one overwrite check: an existing `path` (not standard output) is an error unless
/// `force`. Commands call it before any work, so a refusal costs nothing and writes nothing.
pub(crate) fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if !is_stdio(path) && path.exists() && !force {
        // An application's refusal, not the library's: the hint names the flag.
        anyhow::bail!(
            "{}: already exists (use --force to overwrite)",
            path.display()
        );
    }
    Ok(())
}

/// [`refuse_existing`] for a command's output files, checked together before any work: none
/// a folder, none named twice (the second would replace the first), each in a folder that
/// exists, so that no output is written and then left beside a refusal of the next.
pub(crate) fn refuse_outputs(paths: &[&Path], force: bool) -> Result<()> {
    for (i, path) in paths.iter().enumerate() {
        if is_stdio(path) {
            continue;
        }
        refuse_unwritable(path, force)?;
        let folder = folder_of(path);
        if !folder.is_dir() {
            anyhow::bail!("{}: no such folder", folder.display());
        }
        // `x` and `./x` are one file: compared by file name in the canonical folder.
        let place = |p: &Path| {
            (
                folder_of(p).canonicalize().ok(),
                p.file_name().map(|n| n.to_owned()),
            )
        };
        if paths[..i].iter().any(|other| place(other) == place(path)) {
            anyhow::bail!("{}: given for two outputs", path.display());
        }
    }
    Ok(())
}

/// [`refuse_existing`], and a target that cannot be written: a folder, or below a file where
/// its folders would be (`rvq::names::check_target`), found before any work rather than after
/// the files before it were written.
pub(crate) fn refuse_unwritable(path: &Path, force: bool) -> Result<()> {
    // Before the overwrite check, whose hint (--force) would not help here.
    rvq::names::check_target(path)?;
    refuse_existing(path, force)
}

/// The model on its device, its name for messages, and the batch size for that device.
pub(crate) fn load_model(args: &ModelArgs, verbose: bool) -> Result<(Model, String, usize)> {
    load_model_for(args, None, verbose)
}

/// [`load_model`] for an archive that cites the model of `fingerprint`: without `--model`, the
/// built-in model of that fingerprint if there is one (else the default, which the archive's
/// check then refuses, naming both fingerprints).
pub(crate) fn load_model_for(
    args: &ModelArgs,
    fingerprint: Option<&[u8; rvq::archive::FINGERPRINT_LEN]>,
    verbose: bool,
) -> Result<(Model, String, usize)> {
    let chosen = choose_backend(args.backend, verbose)?;
    let cited = match (&args.model, fingerprint) {
        (None, Some(f)) => Model::built_in_for(&rvq::archive::hex(f)),
        _ => None,
    };
    let mut model = match cited {
        Some(name) => Model::load_built_in(name, &chosen.device)?,
        None => Model::load_or_default(args.model.as_deref(), &chosen.device)?,
    };
    if let Some(budget) = args.memory {
        model.set_budget(budget);
    }
    let name = match (cited, &args.model) {
        (Some(name), _) => name.to_string(),
        (None, Some(p)) => p.display().to_string(),
        (None, None) => "default".to_string(),
    };
    Ok((model, name, args.batch_for(&chosen)))
}

impl ModelArgs {
    pub(crate) fn batch_for(&self, chosen: &rvq::Chosen) -> usize {
        self.batch
            .map_or_else(|| chosen.backend.default_batch(), |b| b as usize)
    }
}

pub(crate) fn progress(n: usize, what: &str) -> ProgressBar {
    if n < 64 {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

pub(crate) fn open_archive<'a>(path: &Path, bytes: &'a [u8]) -> Result<Archive<'a>> {
    Archive::parse(bytes, &Limits::default()).map_err(|e| {
        rvq::Error::Archive {
            path: path.to_path_buf(),
            source: e,
        }
        .into()
    })
}
