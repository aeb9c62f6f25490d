//! `rvq encode`, `decode`, `info`, `truncate` and `merge`: images to archives and back.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rvq::Rate;
use rvq::archive::CodebookDType;
use rvq::image_io::{self, Limits};
use rvq::{EncodeOptions, Encoder, Named};

use crate::args::*;
use crate::support::*;

pub(crate) fn run_encode(a: EncodeArgs, verbose: bool) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    let limits = Limits::default();
    if a.inputs.iter().any(|p| is_stdio(p)) && (a.files_from.is_some() || a.shard.is_some()) {
        anyhow::bail!("standard input (-) cannot be combined with --files-from or --shard");
    }
    let stdin_image = stdin_image(&a, &limits)?;
    let inputs = listed_inputs(&a)?;
    let files = if stdin_image.is_some() {
        Vec::new()
    } else {
        input_files(&a, &inputs, &limits)?
    };
    let count = if stdin_image.is_some() {
        1
    } else {
        files.len()
    };
    let (model, _, batch) = load_model(&a.model, verbose)?;
    let encoder = Encoder::new(&model, encode_options(&a, batch)?)?;
    let bar = progress(count, "encoding");
    let source = Source {
        stdin_image: stdin_image.as_ref(),
        files: &files,
        inputs: &inputs,
        limits: &limits,
        strict: a.strict,
        bar: &bar,
    };
    let mut short = Vec::new();
    let size = if is_stdio(&a.output) {
        let (bytes, missed) = source.encode(&encoder, Vec::new(), count)?;
        short = missed;
        write_output(&a.output, &bytes, a.force)?;
        bytes.len() as u64
    } else {
        // Written record by record into a temporary file, renamed into place when complete.
        let mut size = 0;
        rvq::image_io::write_atomic_with(&a.output, |file| {
            // finish returns the writer flushed, so the file holds the whole archive.
            let (out, missed) = source.encode(&encoder, std::io::BufWriter::new(file), count)?;
            short = missed;
            size = out.get_ref().metadata().map_or(0, |m| m.len());
            Ok(())
        })?;
        size
    };
    bar.finish_and_clear();
    for s in &short {
        let why = if s.every_codebook {
            "at most with this model (all codebooks used)"
        } else {
            "as written (its restoration filter gained less than rate control measured)"
        };
        eprintln!(
            "rvq: {}: reaches {:.2} dB {why}, short of --psnr {}",
            s.name,
            s.psnr,
            a.psnr.unwrap_or_default()
        );
    }
    if verbose {
        eprintln!(
            "rvq: {count} images, {size} bytes -> {}",
            a.output.display()
        );
    }
    Ok(())
}

/// The one image `-` reads from standard input, if that is the input; its alpha channel is
/// dropped with a warning, or refused with `--strict`.
fn stdin_image(a: &EncodeArgs, limits: &Limits) -> Result<Option<Named>> {
    if !(a.inputs.len() == 1 && is_stdio(&a.inputs[0])) {
        return Ok(None);
    }
    let bytes = read_input(&a.inputs[0])?;
    let loaded = image_io::decode_rgb(&bytes, Path::new("<stdin>"), limits)?;
    if loaded.had_alpha && a.strict {
        return Err(rvq::Error::Alpha {
            path: "<stdin>".into(),
        }
        .into());
    } else if loaded.had_alpha {
        eprintln!("rvq: warning: <stdin>: alpha channel dropped");
    }
    Ok(Some(Named {
        name: "stdin.png".into(),
        image: loaded.image,
    }))
}

/// The inputs given, with those `--files-from` lists after them.
fn listed_inputs(a: &EncodeArgs) -> Result<Vec<PathBuf>> {
    let mut inputs = a.inputs.clone();
    if let Some(list) = &a.files_from {
        let text = std::fs::read_to_string(list).with_context(|| format!("{}", list.display()))?;
        inputs.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(PathBuf::from),
        );
        if inputs.is_empty() {
            anyhow::bail!("{}: lists no files", list.display());
        }
        if inputs.iter().any(|p| is_stdio(p)) {
            anyhow::bail!("{}: standard input (-) cannot be listed", list.display());
        }
    }
    Ok(inputs)
}

/// The PNG files under `inputs`, sorted, cut to `--shard`'s slice, each probed against the
/// limits before any is read, so a bad file is refused before the model loads.
fn input_files(a: &EncodeArgs, inputs: &[PathBuf], limits: &Limits) -> Result<Vec<PathBuf>> {
    let mut files = rvq::data::collect_images(inputs)?;
    if files.is_empty() {
        anyhow::bail!("no PNG, JPEG or WebP files found in the inputs given");
    }
    if let Some(shard) = a.shard {
        // With more shards than files some are empty: an archive of no images, which
        // merges as nothing, so one script serves any collection.
        files = files[shard_range(files.len(), shard)].to_vec();
    }
    for f in &files {
        image_io::probe(f, limits)?;
    }
    Ok(files)
}

/// The library's options for the flags given: `--quality`, `--psnr` and `--codebooks` map
/// onto one [`Rate`].
fn encode_options(a: &EncodeArgs, batch: usize) -> Result<EncodeOptions> {
    Ok(a.search.apply(EncodeOptions {
        names: !a.no_names,
        embed_codebook: a.embed_codebook.map(|p| match p {
            Precision::F16 => CodebookDType::F16,
            Precision::F32 => CodebookDType::F32,
        }),
        batch_size: batch,
        entropy: !a.no_entropy,
        neighbours: !a.no_neighbours,
        rate: match (a.quality, a.psnr, a.codebooks) {
            (Some(quality), _, max_codebooks) => Rate::Quality {
                quality,
                max_codebooks,
            },
            (_, Some(db), max_codebooks) if db.is_finite() && db > 0.0 => {
                Rate::Psnr { db, max_codebooks }
            }
            (_, Some(db), _) => anyhow::bail!("--psnr {db}: expected a positive number of dB"),
            // --codebooks alone: every cell uses that many.
            (None, None, Some(m)) => Rate::Codebooks(m),
            (None, None, None) => Rate::default(),
        },
        ..EncodeOptions::default()
    }))
}

/// Where `rvq encode` takes its images from: one read from standard input, or files.
struct Source<'a> {
    stdin_image: Option<&'a Named>,
    files: &'a [PathBuf],
    inputs: &'a [PathBuf],
    limits: &'a Limits,
    strict: bool,
    bar: &'a indicatif::ProgressBar,
}

impl Source<'_> {
    /// The archive of the `count` images, written to `out`. Images are read one at a time and
    /// encoded a pass at a time, so a large input set never sits in memory whole.
    fn encode<W: std::io::Write>(
        &self,
        encoder: &Encoder,
        out: W,
        count: usize,
    ) -> rvq::Result<(W, Vec<rvq::Shortfall>)> {
        let mut writer = encoder.writer(out, count as u64)?;
        if let Some(img) = self.stdin_image {
            writer.push(img.clone())?;
        }
        for file in self.files.chunks(1) {
            let mut warn = |w| self.bar.suspend(|| eprintln!("rvq: warning: {w}"));
            for img in
                crate::names::read_inputs(file, self.inputs, self.limits, self.strict, &mut warn)?
            {
                writer.push(img)?;
            }
            self.bar.set_position(writer.encoded() as u64);
        }
        writer.finish()
    }
}

/// The images `rvq decode` writes, as (index, name): every block is read and checked first
/// (keeping only names), so a damaged archive is refused before anything is written. With
/// `--only`, just the images stored under that name.
fn images_to_decode(a: &DecodeArgs, input: impl Read) -> Result<Vec<(u64, Option<String>)>> {
    let info =
        rvq::archive::read_info(input, &Limits::default()).map_err(|e| rvq::Error::Archive {
            path: a.input.clone(),
            source: e,
        })?;
    let all = (0..).zip(info.entries.into_iter().map(|e| e.name));
    let Some(only) = &a.only else {
        return Ok(all.collect());
    };
    let wanted: Vec<_> = all.filter(|(_, n)| n.as_deref() == Some(only)).collect();
    if wanted.is_empty() {
        anyhow::bail!("{}: no image stored as {only:?}", a.input.display());
    }
    Ok(wanted)
}

pub(crate) fn run_decode(a: DecodeArgs, verbose: bool) -> Result<()> {
    // A file is read twice, a block at a time (checked, then decoded), so an archive of any
    // length takes about a block of memory; standard input is read once, into memory.
    let piped = if is_stdio(&a.input) {
        Some(read_input(&a.input)?)
    } else {
        None
    };
    let open = || -> Result<Box<dyn Read + '_>> {
        Ok(match &piped {
            Some(bytes) => Box::new(&bytes[..]),
            None => open_input(&a.input)?,
        })
    };
    let archive_err = |e| rvq::Error::Archive {
        path: a.input.clone(),
        source: e,
    };
    let images = images_to_decode(&a, open()?)?;
    let to_stdout = is_stdio(&a.output);
    if to_stdout && images.len() != 1 {
        anyhow::bail!(
            "-o - writes one PNG to standard output, but {} holds {} images; use --only NAME or an output folder",
            a.input.display(),
            images.len()
        );
    }
    let records: Vec<(u64, Option<&str>)> =
        images.iter().map(|(i, n)| (*i, n.as_deref())).collect();
    let targets = rvq::names::decode_targets(&a.output, &records, rvq::names::FOLDS_CASE)?;
    if !to_stdout {
        for t in &targets {
            refuse_unwritable(t, a.force)?;
        }
    }
    let reader =
        rvq::archive::ArchiveReader::new(open()?, &Limits::default()).map_err(archive_err)?;
    let header = reader.header().clone();
    let (model, model_name, batch) = load_model_for(&a.model, Some(&header.fingerprint), verbose)?;
    model.check_header(&header, &model_name)?;
    let bar = progress(images.len(), "decoding");
    let write = |img: &rvq::image_io::Rgb, path: &Path| -> Result<()> {
        let png = image_io::encode_png(img)?;
        if to_stdout {
            write_output(&a.output, &png, true)?;
        } else {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("{}: cannot create folder", parent.display()))?;
            }
            write_output(path, &png, a.force)?;
        }
        bar.inc(1);
        Ok(())
    };
    let decoder = rvq::Decoder::new(&model, batch);
    if a.only.is_some() {
        // The records stored under the name, read in passing: only they are decoded.
        let mut wanted = images.iter().map(|(i, _)| *i).zip(&targets).peekable();
        for (index, record) in (0..).zip(reader) {
            let record = record.map_err(archive_err)?;
            if let Some((_, path)) = wanted.next_if(|(i, _)| *i == index) {
                let img = decoder.decode_records(&header, &[record])?;
                write(&img[0], path)?;
            }
            if wanted.peek().is_none() {
                break;
            }
        }
        // The first pass found them: a file that holds fewer now changed in between.
        if let Some((index, _)) = wanted.next() {
            anyhow::bail!(
                "{}: image {index} is gone (the file changed while it was being decoded)",
                a.input.display()
            );
        }
    } else {
        // Streamed: one block of records and one pass of images at a time.
        for (item, path) in decoder.images(reader)?.zip(&targets) {
            write(&item?.1, path)?;
        }
    }
    bar.finish_and_clear();
    Ok(())
}

pub(crate) fn run_truncate(a: TruncateArgs) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    // Read and written a block at a time (to a temporary file renamed into place).
    let input = open_input(&a.input)?;
    let archive_err = |e| rvq::Error::Archive {
        path: a.input.clone(),
        source: e,
    };
    let reader =
        rvq::archive::ArchiveReader::new(input, &Limits::default()).map_err(archive_err)?;
    let cut = |out: &mut dyn Write| {
        rvq::archive::truncate_stream(reader, a.codebooks, std::io::BufWriter::new(out))
            .map(drop)
            .map_err(archive_err)
    };
    if is_stdio(&a.output) {
        // Whole before the first byte goes out, so that a failure part way writes nothing.
        let mut bytes = Vec::new();
        cut(&mut bytes)?;
        return write_output(&a.output, &bytes, true);
    }
    rvq::image_io::write_atomic_with(&a.output, |file| cut(file))?;
    Ok(())
}

pub(crate) fn run_merge(a: MergeArgs) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    if a.inputs.iter().filter(|p| is_stdio(p)).count() > 1 {
        anyhow::bail!("standard input (-) can be merged only once");
    }
    let parts = || {
        a.inputs
            .iter()
            .map(|p| match is_stdio(p) {
                true => rvq::MergePart::Stream {
                    name: "standard input".into(),
                    reader: Box::new(std::io::stdin()),
                },
                false => rvq::MergePart::File(p.clone()),
            })
            .collect()
    };
    if is_stdio(&a.output) {
        // Whole before the first byte goes out, so that a failure part way writes nothing.
        let merged = rvq::merge_parts(parts(), Vec::new(), Path::new("standard output"))?;
        return write_output(&a.output, &merged, true);
    }
    // A block at a time into a temporary file, renamed into place when complete.
    rvq::image_io::write_atomic_with(&a.output, |file| {
        rvq::merge_parts(parts(), std::io::BufWriter::new(file), &a.output).map(drop)
    })?;
    Ok(())
}

pub(crate) fn run_info(a: InfoArgs) -> Result<()> {
    // Read a block at a time: an archive of any length takes about a block of memory.
    let input = open_input(&a.input)?;
    let info =
        rvq::archive::read_info(input, &Limits::default()).map_err(|e| rvq::Error::Archive {
            path: a.input.clone(),
            source: e,
        })?;
    let mut ratio_vs_inputs = None;
    if let Some(dir) = &a.against {
        let mut total = 0u64;
        for e in &info.entries {
            let name = e
                .name
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("--against needs an archive with names"))?;
            let p = dir.join(name);
            total += std::fs::metadata(&p)
                .with_context(|| format!("{}", p.display()))?
                .len();
        }
        ratio_vs_inputs = Some(total as f64 / info.total_bytes as f64);
    }
    let report = crate::info::Report {
        archive: info,
        ratio_vs_inputs,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::info::print_text(&a.input, &report);
    }
    Ok(())
}
