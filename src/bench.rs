//! `rvq bench`: throughput of encoding and decoding on the chosen backend, and of the archive
//! writer and reader. A benchmark, not a test: it reports, it asserts nothing.

use std::time::Instant;

use serde::Serialize;

use rvq_archive::Header;

use rvq::Model;
use rvq::Rate;
use rvq::data::synthetic;
use rvq::{Decoder, EncodeOptions, Encoder, Named};
use rvq::{Error, Result};

/// One measured operation.
#[derive(Clone, Debug, Serialize)]
pub struct Measure {
    /// What was timed.
    pub what: String,
    /// Images per timed run.
    pub images: usize,
    /// Timed runs (after one untimed warm-up run).
    pub runs: usize,
    /// Median seconds per run.
    pub seconds: f64,
    /// The fastest run's seconds: steadier than the median on a shared machine, where other
    /// work only ever slows a run down.
    pub fastest_seconds: f64,
    /// Images per second at the median.
    pub images_per_second: f64,
    /// Megabytes per second of archive bytes, for the archive measures.
    pub megabytes_per_second: Option<f64>,
}

/// The median and the fastest of `runs` timed runs of `f`, in seconds, after one untimed run.
fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times[0]))
}

fn measure(
    what: &str,
    images: usize,
    runs: usize,
    (seconds, fastest_seconds): (f64, f64),
    bytes: Option<usize>,
) -> Measure {
    Measure {
        what: what.into(),
        images,
        runs,
        seconds,
        fastest_seconds,
        images_per_second: images as f64 / seconds,
        megabytes_per_second: bytes.map(|b| b as f64 / seconds / 1e6),
    }
}

const SMALL_IMAGES: usize = 1024;

/// What every encode and decode measure shares, gathered so that [`time_codec`] takes one
/// argument for it rather than six.
struct CodecBench<'a> {
    model: &'a Model,
    opts: &'a EncodeOptions,
    header: &'a Header,
    fixed_depth: bool,
    large: (u32, u32),
    runs: usize,
}

/// Times encoding (the `search` settings: beam, refinement, rate search; with `fixed_depth`,
/// every cell at every codebook, otherwise the default per-cell rate control) and decoding
/// at least 1,024 32×32 images, `batch` at a time, and one `large` image with `model`, and
/// writing and reading an archive of 10,000 32×32 images, `runs` times each.
pub fn run(
    model: &Model,
    batch: usize,
    search: &crate::args::SearchArgs,
    fixed_depth: bool,
    large: (u32, u32),
    runs: usize,
) -> Result<Vec<Measure>> {
    let m = model.config().num_codebooks;
    let batch = batch.max(1);
    let opts = search.apply(EncodeOptions {
        batch_size: batch,
        names: false,
        rate: if fixed_depth {
            Rate::Codebooks(m)
        } else {
            Rate::default()
        },
        ..EncodeOptions::default()
    });
    let small = small_images(batch)?;
    let big = vec![Named {
        name: "large.png".into(),
        image: synthetic(large.0, large.1, 1)?,
    }];
    let header = Encoder::new(model, opts.clone())?.header().clone();
    let bench = CodecBench {
        model,
        opts: &opts,
        header: &header,
        fixed_depth,
        large,
        runs,
    };
    let mut out = Vec::new();
    for (label, set) in [("32×32", &small), ("large", &big)] {
        out.extend(time_codec(&bench, label, set)?);
    }
    out.extend(time_archive(model, &header, runs)?);
    Ok(out)
}

/// At least 1,024 images per timed run, in batches of `batch`, so that small batches are
/// timed over more than a few milliseconds.
fn small_images(batch: usize) -> Result<Vec<Named>> {
    let count = batch * SMALL_IMAGES.div_ceil(batch);
    (0..count)
        .map(|i| {
            Ok(Named {
                name: format!("{i}.png"),
                image: synthetic(32, 32, i as u32)?,
            })
        })
        .collect::<rvq::Result<_>>()
}

/// Waits for the device: a GPU backend returns before its work is done, and the timer would
/// stop early.
fn sync(model: &Model) -> Result<()> {
    model
        .device()
        .sync()
        .map_err(|e| Error::Backend(format!("{e:?}")))
}

/// Times encoding `set`, then decoding the records the last encode made, so that decoding
/// is measured on this set's own archive.
fn time_codec(c: &CodecBench, label: &str, set: &[Named]) -> Result<[Measure; 2]> {
    let images = set.len();
    let mut records = Vec::new();
    let t = time_runs(c.runs, || {
        records = Encoder::new(c.model, c.opts.clone())?.records(set)?;
        sync(c.model)
    })?;
    let name = codec_name(c, "encode", label, images);
    let encode = measure(&name, images, c.runs, t, None);
    let t = time_runs(c.runs, || {
        Decoder::new(c.model, c.opts.batch_size).decode_records(c.header, &records)?;
        sync(c.model)
    })?;
    let name = codec_name(c, "decode", label, images);
    let decode = measure(&name, images, c.runs, t, None);
    Ok([encode, decode])
}

/// A measure's name states the settings that change what encoding costs, so that runs with
/// and without them are told apart.
fn codec_name(c: &CodecBench, op: &str, label: &str, images: usize) -> String {
    let (batch, beam, refine) = (c.opts.batch_size, c.opts.beam, c.opts.refine);
    let mut suffix = String::new();
    if op == "encode" && c.fixed_depth {
        suffix += ", fixed depth";
    }
    if op == "encode" && beam > 1 {
        suffix += &format!(", beam {beam}");
    }
    if op == "encode" && refine > 1 {
        suffix += &format!(", refine {refine}");
    }
    if op == "encode" && !c.fixed_depth {
        match c.opts.rate_search {
            rvq::RateSearch::Latent => suffix += ", latent rate search",
            rvq::RateSearch::Linear => suffix += ", linear rate search",
            rvq::RateSearch::Decoded => {}
        }
    }
    if op == "encode" && c.opts.fit_steps > 0 {
        suffix += &format!(", fit {}", c.opts.fit_steps);
    }
    if label == "large" {
        format!("{op} one {}×{} image{suffix}", c.large.0, c.large.1)
    } else {
        format!("{op} {images} 32×32 images, batch {batch}{suffix}")
    }
}

/// Times the archive writer and reader alone, on made-up indices for 10,000 32×32 images,
/// apart from the network.
fn time_archive(model: &Model, header: &Header, runs: usize) -> Result<[Measure; 2]> {
    let n = 10_000;
    let k = model.config().codebook_size as u32;
    // Cells per 32×32 image follow the model's grid factor, not a fixed 4×4 grid.
    let per_image = header.index_count(32, 32) as u32;
    let records: Vec<rvq_archive::Record> = (0..n)
        .map(|i| rvq_archive::Record {
            width: 32,
            height: 32,
            name: None,
            indices: (0..per_image)
                .map(|j| (i * 7919 + j * 104_729) % k)
                .collect(),
            depths: Vec::new(),
            filter: None,
            half: false,
        })
        .collect();
    let mut bytes = Vec::new();
    let t = time_runs(runs, || {
        bytes = rvq_archive::write_archive(header, &records)?;
        Ok(())
    })?;
    let write = measure(
        "archive write, 32×32 at all codebooks",
        n as usize,
        runs,
        t,
        Some(bytes.len()),
    );
    let t = time_runs(runs, || {
        let a = rvq_archive::Archive::parse(&bytes, &rvq_archive::Limits::default())
            .and_then(|a| a.records())?;
        debug_assert_eq!(a.len(), n as usize);
        Ok(())
    })?;
    let read = measure(
        "archive read, 32×32 at all codebooks",
        n as usize,
        runs,
        t,
        Some(bytes.len()),
    );
    Ok([write, read])
}

/// The measures as a Markdown table.
pub fn markdown(measures: &[Measure]) -> String {
    let mut s = String::from(
        "| operation | images | median s | images/s | MB/s | fastest s |\n|---|---|---|---|---|---|\n",
    );
    for m in measures {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.1} | {} | {:.4} |\n",
            m.what,
            m.images,
            m.seconds,
            m.images_per_second,
            m.megabytes_per_second
                .map_or(String::new(), |v| format!("{v:.1}")),
            m.fastest_seconds
        ));
    }
    s
}
