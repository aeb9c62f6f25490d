//! `rvq bench`: throughput of encoding and decoding on the chosen backend, and of the archive
//! writer and reader. A benchmark, not a test: it reports, it asserts nothing.

use std::time::Instant;

use serde::Serialize;

use rvq::codec::{self, EncodeOptions, Named};
use rvq::data::synthetic;
use rvq::error::{Error, Result};
use rvq::model::Model;
use rvq::rate::Rate;

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
    /// Images per second at the median.
    pub images_per_second: f64,
    /// Megabytes per second of archive bytes, for the archive measures.
    pub megabytes_per_second: Option<f64>,
}

fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn measure(what: &str, images: usize, runs: usize, seconds: f64, bytes: Option<usize>) -> Measure {
    Measure {
        what: what.into(),
        images,
        runs,
        seconds,
        images_per_second: images as f64 / seconds,
        megabytes_per_second: bytes.map(|b| b as f64 / seconds / 1e6),
    }
}

const SMALL_IMAGES: usize = 1024;

/// Times encoding (beam width `beam`, `refine` candidates per cell; with `fixed_depth`,
/// every cell at every codebook, otherwise the default per-cell rate control) and decoding
/// at least 1,024 32×32 images, `batch` at a time, and one `large` image with `model`, and
/// writing and reading an archive of 10,000 32×32 images, `runs` times each.
pub fn run(
    model: &Model,
    batch: usize,
    beam: usize,
    refine: usize,
    fixed_depth: bool,
    large: (u32, u32),
    runs: usize,
) -> Result<Vec<Measure>> {
    let m = model.config.num_codebooks;
    let batch = batch.max(1);
    let opts = EncodeOptions {
        batch_size: batch,
        beam,
        refine,
        names: false,
        rate: if fixed_depth {
            Rate::Codebooks(m)
        } else {
            Rate::default()
        },
        ..EncodeOptions::default()
    };
    // At least 1,024 images per timed run, in batches of `batch`, so that small batches are
    // timed over more than a few milliseconds.
    let count = batch * SMALL_IMAGES.div_ceil(batch);
    let small: Vec<Named> = (0..count)
        .map(|i| {
            Ok(Named {
                name: format!("{i}.png"),
                image: synthetic(32, 32, i as u32)?,
            })
        })
        .collect::<rvq::error::Result<_>>()?;
    let big = vec![Named {
        name: "large.png".into(),
        image: synthetic(large.0, large.1, 1)?,
    }];
    let header = codec::header_for(model, &opts)?;
    let sync = || {
        model
            .device
            .sync()
            .map_err(|e| Error::Backend(format!("{e:?}")))
    };
    let mut out = Vec::new();
    for (label, set) in [("32×32", &small), ("large", &big)] {
        let name = |op: &str| {
            let mut suffix = String::new();
            if op == "encode" && fixed_depth {
                suffix += ", fixed depth";
            }
            if op == "encode" && refine > 1 {
                suffix += &format!(", refine {refine}");
            }
            if label == "large" {
                format!("{op} one {}×{} image{suffix}", large.0, large.1)
            } else {
                format!("{op} {} 32×32 images, batch {batch}{suffix}", set.len())
            }
        };
        let mut records = Vec::new();
        let t = time_runs(runs, || {
            records = codec::encode_records(model, set, &opts)?;
            sync()
        })?;
        out.push(measure(&name("encode"), set.len(), runs, t, None));
        let t = time_runs(runs, || {
            rvq::decode::decode_records(model, &header, &records, opts.batch_size)?;
            sync()
        })?;
        out.push(measure(&name("decode"), set.len(), runs, t, None));
    }
    let n = 10_000;
    let k = model.config.codebook_size as u32;
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
        })
        .collect();
    let mut bytes = Vec::new();
    let t = time_runs(runs, || {
        bytes = rvq_archive::write_archive(&header, &records)?;
        Ok(())
    })?;
    out.push(measure(
        "archive write, 32×32 at all codebooks",
        n as usize,
        runs,
        t,
        Some(bytes.len()),
    ));
    let t = time_runs(runs, || {
        let a = rvq_archive::Archive::parse(&bytes, &rvq_archive::Limits::default())
            .and_then(|a| a.records())?;
        debug_assert_eq!(a.len(), n as usize);
        Ok(())
    })?;
    out.push(measure(
        "archive read, 32×32 at all codebooks",
        n as usize,
        runs,
        t,
        Some(bytes.len()),
    ));
    Ok(out)
}

/// The measures as a Markdown table.
pub fn markdown(measures: &[Measure]) -> String {
    let mut s = String::from(
        "| operation | images | median s | images/s | MB/s |\n|---|---|---|---|---|\n",
    );
    for m in measures {
        s.push_str(&format!(
            "| {} | {} | {:.4} | {:.1} | {} |\n",
            m.what,
            m.images,
            m.seconds,
            m.images_per_second,
            m.megabytes_per_second
                .map_or(String::new(), |v| format!("{v:.1}"))
        ));
    }
    s
}
