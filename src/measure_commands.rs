//! `rvq eval` and `bench`: quality against JPEG and WebP, and throughput.

use anyhow::Result;
use rvq::EncodeOptions;
use rvq::Model;
use rvq::archive::Record;
use rvq::image_io::{self, Limits};

use crate::args::*;
use crate::support::*;

pub(crate) fn run_eval(a: EvalArgs, verbose: bool) -> Result<()> {
    let outputs: Vec<&std::path::Path> = [&a.json, &a.plot]
        .into_iter()
        .flatten()
        .map(|p| p.as_path())
        .collect();
    refuse_outputs(&outputs, a.force)?;
    let archive_bytes = if a.data.is_file() {
        Some(read_input(&a.data)?)
    } else {
        None
    };
    let archive = match &archive_bytes {
        Some(b) => Some(open_archive(&a.data, b)?),
        None => None,
    };
    let archive_err = |e| rvq::Error::Archive {
        path: a.data.clone(),
        source: e,
    };
    let records = match &archive {
        Some(ar) => Some(ar.records().map_err(archive_err)?),
        None => None,
    };
    let images = eval_images(&a, records.as_deref())?;
    if images.is_empty() {
        anyhow::bail!("{}: no images to evaluate", a.data.display());
    }
    let cited = archive.as_ref().map(|ar| &ar.header.fingerprint);
    let (model, model_name, batch) = load_model_for(&a.model, cited, verbose)?;
    let (codebooks, qualities) = if a.codebooks.is_empty() && a.qualities.is_empty() {
        (
            rvq::eval::report_depths(model.config().num_codebooks),
            crate::compare::QUALITY_LADDER.to_vec(),
        )
    } else {
        (a.codebooks.clone(), a.qualities.clone())
    };
    let source = match (&archive, &records) {
        (Some(ar), Some(recs)) => {
            model.check_header(&ar.header, &model_name)?;
            crate::compare::RvqSource::Archive(&ar.header, recs, ar.len() as u64)
        }
        _ => crate::compare::RvqSource::Encode(&codebooks, &qualities),
    };
    let points = crate::compare::compare(
        &model,
        &images,
        source,
        &a.jpeg_qualities,
        &a.webp_qualities,
        &a.search.apply(EncodeOptions {
            batch_size: batch,
            ..EncodeOptions::default()
        }),
        &mut |what| {
            if verbose {
                eprintln!("rvq: evaluating {what}");
            }
        },
    )?;
    println!("{} images from {}\n", images.len(), a.data.display());
    print!("{}", crate::compare::markdown(&points));
    if let Some(j) = &a.json {
        write_output(
            j,
            serde_json::to_string_pretty(&points)?.as_bytes(),
            a.force,
        )?;
    }
    if let Some(p) = &a.plot {
        let title = format!("{} images: rvq, JPEG and WebP", images.len());
        crate::plot::rate_distortion(&points, &title, p)?;
    }
    Ok(())
}

/// The images `rvq eval` measures against: an archive's originals (by stored name, from
/// `--against`), the CIFAR-10 test images, or the PNGs of a folder, at most `--limit` of them.
fn eval_images(a: &EvalArgs, records: Option<&[Record]>) -> Result<Vec<image_io::Rgb>> {
    if let Some(records) = records {
        let dir = a.against.as_ref().ok_or_else(|| {
            anyhow::anyhow!("evaluating an archive needs --against DIR of the originals")
        })?;
        return records
            .iter()
            .map(|r| {
                let name = r.name.as_ref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: the archive stores no names to match originals by",
                        a.data.display()
                    )
                })?;
                Ok(image_io::read_rgb(&dir.join(name), &Limits::default())?.image)
            })
            .collect();
    }
    if rvq::data::is_cifar_dir(&a.data) {
        let set = rvq::data::cifar_test(&a.data)?.take(a.limit);
        return Ok((0..set.len()).map(|i| set.rgb(i)).collect());
    }
    let files = rvq::data::collect_images(std::slice::from_ref(&a.data))?;
    Ok(files
        .iter()
        .take(a.limit)
        .map(|f| Ok(image_io::read_rgb(f, &Limits::default())?.image))
        .collect::<rvq::Result<_>>()?)
}

pub(crate) fn run_bench(a: BenchArgs, verbose: bool) -> Result<()> {
    let (w, h) = (a.large.width, a.large.height);
    if let Some(j) = &a.json {
        refuse_existing(j, false)?;
    }
    let chosen = choose_backend(a.model.backend, true)?;
    let mut model = Model::load_or_default(a.model.model.as_deref(), &chosen.device)?;
    if let Some(budget) = a.model.memory {
        model.set_budget(budget);
    }
    if verbose {
        eprintln!("rvq: benchmarking on {}", machine(&chosen));
    }
    let measures = crate::bench::run(
        &model,
        a.model.batch_for(&chosen),
        &a.search,
        a.fixed_depth,
        (w, h),
        a.runs,
    )?;
    println!("{}\n", machine(&chosen));
    print!("{}", crate::bench::markdown(&measures));
    if let Some(j) = &a.json {
        write_output(
            j,
            serde_json::to_string_pretty(&measures)?.as_bytes(),
            false,
        )?;
    }
    Ok(())
}
