//! `rvq sweep`: the study's experiments from one command. A grid spec names experiments, each
//! a set of axes whose cartesian product is a list of runs; each run trains a model, evaluates
//! it, and appends a row to `results.csv`. `rvq sweep report` draws the study's figures from
//! that file and fits a power law to the residual-VQ points.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use rvq::config::ModelConfig;
use rvq::error::{Error, Result};

/// A grid of experiments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// The experiments, run in order.
    pub experiments: Vec<Experiment>,
}

/// One experiment: every combination of its axes is a run. Axes left out take the default
/// model's value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Name, used in run ids and the CSV.
    pub name: String,
    /// False for plain autoencoders.
    #[serde(default = "yes")]
    pub quantize: bool,
    /// Latent channels d.
    #[serde(default)]
    pub latent_dim: Vec<usize>,
    /// Codebook sizes k.
    #[serde(default)]
    pub codebook_size: Vec<usize>,
    /// Numbers of codebooks n_q.
    #[serde(default)]
    pub num_codebooks: Vec<usize>,
    /// Grid factors (8: 4×4 grid on CIFAR, 4: 8×8).
    #[serde(default)]
    pub grid_factor: Vec<usize>,
    /// With the linear patch path under the network; the study's models have none.
    #[serde(default)]
    pub linear_path: bool,
}

fn yes() -> bool {
    true
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    /// Unique id, e.g. `rvq-d64-k16-q4-f8`.
    pub id: String,
    /// The experiment it belongs to.
    pub experiment: String,
    /// The model it trains.
    pub config: ModelConfig,
}

const POWERS_OF_TWO: [usize; 8] = [2, 4, 8, 16, 32, 64, 128, 256];

/// The grids shipped with rvq: `study` (the study's four experiments), each of them alone
/// (`study-ae`, `study-vq`, `study-rvq`, `study-grid`), and `smoke` (three tiny runs).
pub fn preset(name: &str) -> Option<GridSpec> {
    let ae = Experiment {
        name: "ae".into(),
        quantize: false,
        latent_dim: POWERS_OF_TWO.to_vec(),
        ..Experiment::default()
    };
    let vq = Experiment {
        name: "vq".into(),
        quantize: true,
        latent_dim: POWERS_OF_TWO.to_vec(),
        codebook_size: (1..=12).map(|p| 1 << p).collect(),
        num_codebooks: vec![1],
        ..Experiment::default()
    };
    let rvq = Experiment {
        name: "rvq".into(),
        quantize: true,
        latent_dim: vec![64],
        codebook_size: vec![2, 16, 128, 1024],
        num_codebooks: vec![1, 2, 4, 8, 16, 32],
        ..Experiment::default()
    };
    let grid = Experiment {
        name: "grid".into(),
        quantize: true,
        latent_dim: vec![64],
        codebook_size: (1..=12).map(|p| 1 << p).collect(),
        num_codebooks: vec![1],
        grid_factor: vec![8, 4],
        ..Experiment::default()
    };
    let experiments = match name {
        "study" => vec![ae, vq, rvq, grid],
        "study-ae" => vec![ae],
        "study-vq" => vec![vq],
        "study-rvq" => vec![rvq],
        "study-grid" => vec![grid],
        "smoke" => vec![Experiment {
            name: "rvq".into(),
            quantize: true,
            latent_dim: vec![8],
            codebook_size: vec![16],
            num_codebooks: vec![1, 2, 4],
            ..Experiment::default()
        }],
        _ => return None,
    };
    Some(GridSpec { experiments })
}

/// A preset's name, or a JSON grid spec file.
pub fn load_spec(spec: &str) -> Result<GridSpec> {
    if let Some(g) = preset(spec) {
        return Ok(g);
    }
    let path = Path::new(spec);
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::BadData {
        path: path.to_path_buf(),
        reason: format!("not a grid spec: {e}"),
    })
}

impl GridSpec {
    /// Every run, in order, each with a unique id. A model that several experiments name (the
    /// study's single-codebook d = 64 models are also its one-level residual and its 4×4-grid
    /// models) is trained once, under the first experiment's name; combinations the model does
    /// not support are refused.
    pub fn expand(&self, base: &ModelConfig) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        let mut seen = BTreeSet::new();
        let or = |v: &Vec<usize>, d: usize| if v.is_empty() { vec![d] } else { v.clone() };
        for e in &self.experiments {
            if e.name.is_empty()
                || !e
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Error::InvalidConfig(format!(
                    "experiment name {:?} must be letters, digits or _",
                    e.name
                )));
            }
            for &d in &or(&e.latent_dim, base.latent_dim) {
                for &k in &or(&e.codebook_size, base.codebook_size) {
                    for &n_q in &or(&e.num_codebooks, base.num_codebooks) {
                        for &f in &or(&e.grid_factor, base.grid_factor) {
                            let config = ModelConfig {
                                latent_dim: d,
                                codebook_size: k,
                                num_codebooks: if e.quantize { n_q } else { 0 },
                                grid_factor: f,
                                quantize: e.quantize,
                                linear_path: e.linear_path,
                                depth_input: base.depth_input && e.quantize,
                                ..base.clone()
                            };
                            config.validate()?;
                            let lin = if e.linear_path { "-lin" } else { "" };
                            let id = if e.quantize {
                                format!("{}-d{d}-k{k}-q{n_q}-f{f}{lin}", e.name)
                            } else {
                                format!("{}-d{d}-f{f}{lin}", e.name)
                            };
                            let key = (
                                e.quantize,
                                d,
                                e.quantize.then_some((k, n_q)),
                                f,
                                e.linear_path,
                            );
                            if seen.insert(key) {
                                runs.push(Run {
                                    id,
                                    experiment: e.name.clone(),
                                    config,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(runs)
    }
}

/// One line of `results.csv`; the columns are the fields, in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Run id.
    pub run: String,
    /// Experiment name.
    pub experiment: String,
    /// d.
    pub latent_dim: usize,
    /// k (0 for autoencoders).
    pub codebook_size: usize,
    /// n_q (0 for autoencoders).
    pub num_codebooks: usize,
    /// Grid factor.
    pub grid_factor: usize,
    /// ceil(log2 k) × n_q: bits per latent vector (0 for autoencoders).
    pub bits_per_vector: u64,
    /// Bits per 32×32 image.
    pub bits_per_image: u64,
    /// k × n_q.
    pub total_codebook_vectors: u64,
    /// log2 of the number of possible quantizations of one vector: n_q · log2 k.
    pub log2_quantizations: f64,
    /// Validation MSE at full depth.
    pub mse: f64,
    /// Its PSNR.
    pub psnr: f64,
    /// Mean codebook utilisation at the end of training.
    pub utilisation: f64,
    /// Epochs trained.
    pub epochs: f64,
    /// Training wall time, seconds.
    pub train_seconds: f64,
    /// Backend and machine.
    pub backend: String,
}

impl Row {
    /// The figures that follow from a configuration alone.
    pub fn geometry(config: &ModelConfig) -> (u64, u64, u64, f64) {
        if !config.quantize {
            return (0, 0, 0, 0.0);
        }
        let bpv = config.bits_per_index() as u64 * config.num_codebooks as u64;
        (
            bpv,
            config.bits_per_image(32, 32, config.num_codebooks),
            (config.codebook_size * config.num_codebooks) as u64,
            config.num_codebooks as f64 * (config.codebook_size as f64).log2(),
        )
    }
}

/// The columns of `results.csv`, in order: a file with any other header is not a sweep's.
const COLUMNS: [&str; 16] = [
    "run",
    "experiment",
    "latent_dim",
    "codebook_size",
    "num_codebooks",
    "grid_factor",
    "bits_per_vector",
    "bits_per_image",
    "total_codebook_vectors",
    "log2_quantizations",
    "mse",
    "psnr",
    "utilisation",
    "epochs",
    "train_seconds",
    "backend",
];

/// Reads `results.csv` (missing file: no rows).
pub fn read_csv(path: &Path) -> Result<Vec<Row>> {
    let bad = |reason: String| Error::BadData {
        path: path.to_path_buf(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let mut reader = csv::Reader::from_reader(file);
    let header = reader.headers().map_err(|e| bad(e.to_string()))?;
    if !header.iter().eq(COLUMNS) {
        return Err(bad(
            "not an rvq sweep results file (unexpected header)".into()
        ));
    }
    reader
        .deserialize::<Row>()
        .map(|row| {
            let row = row.map_err(|e| bad(e.to_string()))?;
            // The report divides the 32-pixel image side by it.
            if row.grid_factor == 0 || 32 % row.grid_factor != 0 {
                return Err(bad(format!(
                    "run {}: grid_factor {} does not divide a 32-pixel side",
                    row.run, row.grid_factor
                )));
            }
            Ok(row)
        })
        .collect()
}

/// Appends `row` to `results.csv`, writing the header first if the file is new.
pub fn append_csv(path: &Path, row: &Row) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let new = !path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    let mut writer = csv::WriterBuilder::new().has_headers(new).from_writer(file);
    let failed = |e: csv::Error| Error::Other(format!("{}: {e}", path.display()));
    writer.serialize(row).map_err(failed)?;
    let file = writer
        .into_inner()
        .map_err(|e| Error::Other(format!("{}: {}", path.display(), e.error())))?;
    file.sync_all().map_err(io)
}

/// The runs of `runs` that `done` has no row for, in order.
pub fn pending<'a>(runs: &'a [Run], done: &[Row]) -> Vec<&'a Run> {
    let finished: BTreeSet<&str> = done.iter().map(|r| r.run.as_str()).collect();
    runs.iter()
        .filter(|r| !finished.contains(r.id.as_str()))
        .collect()
}

/// A fitted power law `mse ≈ a · bits^(−b) + c`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PowerLaw {
    /// Scale.
    pub a: f64,
    /// Exponent.
    pub b: f64,
    /// Floor.
    pub c: f64,
    /// Root mean squared error of the fit in log10(mse).
    pub rmse_log10: f64,
}

impl PowerLaw {
    /// The predicted MSE at `bits`.
    pub fn predict(&self, bits: f64) -> f64 {
        self.a * bits.powf(-self.b) + self.c
    }

    /// Bits needed for `target` MSE, or `None` if the target is at or below the floor.
    pub fn bits_for(&self, target: f64) -> Option<f64> {
        (target > self.c).then(|| (self.a / (target - self.c)).powf(1.0 / self.b))
    }
}

/// Fits `mse ≈ a · bits^(−b) + c` to `(bits, mse)` points: for each candidate floor c below
/// the smallest MSE, a least-squares line through log(mse − c) against log(bits) gives a and
/// b; the c whose fit has the smallest error in log(mse) wins. Needs 3 points.
pub fn fit_power_law(points: &[(f64, f64)]) -> Option<PowerLaw> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x > 0.0 && y > 0.0)
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut best: Option<PowerLaw> = None;
    for i in 0..2000 {
        let c = min * i as f64 / 2000.0;
        let xs: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
        let ys: Vec<f64> = pts.iter().map(|p| (p.1 - c).ln()).collect();
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let slope = sxy / sxx;
        let law = PowerLaw {
            a: (my - slope * mx).exp(),
            b: -slope,
            c,
            rmse_log10: 0.0,
        };
        let err = (pts
            .iter()
            .map(|&(x, y)| (law.predict(x).log10() - y.log10()).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        if best.is_none_or(|b| err < b.rmse_log10) {
            best = Some(PowerLaw {
                rmse_log10: err,
                ..law
            });
        }
    }
    best
}

/// Progress of a sweep.
#[derive(Clone, Debug)]
pub enum SweepEvent<'a> {
    /// A run starts (`index` of `total` pending runs).
    RunStart {
        /// The run.
        run: &'a Run,
        /// Position among the pending runs, from 0.
        index: usize,
        /// Pending runs.
        total: usize,
    },
    /// A training event of the current run.
    Train(rvq::train::Event),
    /// A run finished and its row was appended.
    RunDone(Row),
}

/// Trains and evaluates every run of `runs` that `out/results.csv` does not list yet, each
/// with `options` (its config replaced by the run's), into `out/runs/<id>` (resuming a run's
/// checkpoint when one is there), appending a row per finished run.
#[allow(clippy::too_many_arguments)]
pub fn run(
    runs: &[Run],
    options: &rvq::train::TrainOptions,
    splits: &rvq::data::Splits,
    out: &Path,
    device: &burn::prelude::Device,
    machine: &str,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<Vec<Row>> {
    std::fs::create_dir_all(out.join("runs")).map_err(|e| Error::Io {
        path: out.join("runs"),
        source: e,
    })?;
    let csv = out.join("results.csv");
    let done = read_csv(&csv)?;
    let todo = pending(runs, &done);
    let mut rows = Vec::new();
    for (index, run) in todo.iter().enumerate() {
        on_event(SweepEvent::RunStart {
            run,
            index,
            total: todo.len(),
        });
        let dir = out.join("runs").join(&run.id);
        let resume = rvq::train::has_checkpoint(&dir);
        let opts = rvq::train::TrainOptions {
            config: run.config.clone(),
            ..options.clone()
        };
        let card = rvq::train::train(
            &opts,
            splits,
            &dir,
            device,
            machine,
            resume,
            None,
            &mut |e| on_event(SweepEvent::Train(e)),
        )?
        .ok_or_else(|| Error::Other(format!("{}: the run stopped early", run.id)))?;
        let depth = run.config.num_codebooks;
        let q = card
            .validation
            .iter()
            .find(|q| q.codebooks == depth)
            .ok_or_else(|| Error::Other(format!("{}: no validation at depth {depth}", run.id)))?;
        let utilisation = if card.codebooks.is_empty() {
            0.0
        } else {
            card.codebooks
                .iter()
                .map(|s| s.utilisation as f64)
                .sum::<f64>()
                / card.codebooks.len() as f64
        };
        let (bits_per_vector, bits_per_image, total_codebook_vectors, log2_quantizations) =
            Row::geometry(&run.config);
        let row = Row {
            run: run.id.clone(),
            experiment: run.experiment.clone(),
            latent_dim: run.config.latent_dim,
            codebook_size: if run.config.quantize {
                run.config.codebook_size
            } else {
                0
            },
            num_codebooks: run.config.num_codebooks,
            grid_factor: run.config.grid_factor,
            bits_per_vector,
            bits_per_image,
            total_codebook_vectors,
            log2_quantizations,
            mse: q.mse,
            psnr: q.psnr,
            utilisation,
            epochs: card.epochs_completed,
            train_seconds: card.wall_seconds,
            backend: machine.to_string(),
        };
        append_csv(&csv, &row)?;
        on_event(SweepEvent::RunDone(row.clone()));
        rows.push(row);
    }
    Ok(rows)
}

/// What `rvq sweep report` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Rows read.
    pub rows: usize,
    /// Charts written (file names under `figures/`).
    pub figures: Vec<String>,
    /// Power law fitted to the residual-VQ runs (MSE against bits per image).
    pub fit: Option<PowerLaw>,
}

fn series_by<K: Ord + std::fmt::Display>(
    rows: &[&Row],
    key: impl Fn(&Row) -> K,
    label: &str,
    x: impl Fn(&Row) -> f64,
) -> Vec<crate::plot::Series> {
    let mut map: std::collections::BTreeMap<K, Vec<(f64, f64)>> = Default::default();
    for r in rows {
        map.entry(key(r)).or_default().push((x(r), r.mse));
    }
    map.into_iter()
        .map(|(k, v)| (format!("{label}{k}"), v))
        .collect()
}

/// The study's plain autoencoders, (d, MSE), as read off its plots (±10%;
/// `../shared/reference/README.md`): drawn beside a sweep's own points for comparison.
const STUDY_AE: [(f64, f64); 8] = [
    (2.0, 0.011),
    (4.0, 0.008),
    (8.0, 0.0049),
    (16.0, 0.0029),
    (32.0, 0.0013),
    (64.0, 0.0005),
    (128.0, 0.0009),
    (256.0, 0.00065),
];

/// The study's residual VQ at d = 64, k = 1,024, (codebooks, MSE), read off the same way.
const STUDY_RVQ_K1024: [(f64, f64); 6] = [
    (1.0, 0.0087),
    (2.0, 0.0056),
    (4.0, 0.0034),
    (8.0, 0.0018),
    (16.0, 0.0011),
    (32.0, 0.0008),
];

/// The rows each of the study's figures draws, chosen by what was trained rather than by
/// experiment name, since a model is trained once however many experiments name it:
/// autoencoders; single codebooks on the 4×4 grid; residual VQ (every depth of each (d, k)
/// trained with more than one codebook); and 4×4 against 8×8 (single codebooks at each d
/// trained on both grids).
#[allow(clippy::type_complexity)]
fn figure_rows(rows: &[Row]) -> (Vec<&Row>, Vec<&Row>, Vec<&Row>, Vec<&Row>) {
    let quantized = |r: &&Row| r.codebook_size > 0;
    let ae = rows.iter().filter(|r| r.codebook_size == 0).collect();
    let vq = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && r.grid_factor == 8)
        .collect();
    let deep: BTreeSet<(usize, usize)> = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks > 1 && r.grid_factor == 8)
        .map(|r| (r.latent_dim, r.codebook_size))
        .collect();
    let rvq = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.grid_factor == 8 && deep.contains(&(r.latent_dim, r.codebook_size)))
        .collect();
    let fine: BTreeSet<usize> = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && r.grid_factor != 8)
        .map(|r| r.latent_dim)
        .collect();
    let grid = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && fine.contains(&r.latent_dim))
        .collect();
    (ae, vq, rvq, grid)
}

/// Draws the study's figures from `dir/results.csv` into `dir/figures/`, fits the power law
/// to the residual-VQ runs, and writes `dir/report.md`.
pub fn report(dir: &Path) -> Result<Report> {
    use crate::plot::line_chart;
    let rows = read_csv(&dir.join("results.csv"))?;
    if rows.is_empty() {
        return Err(Error::BadData {
            path: dir.join("results.csv"),
            reason: "no results yet: run `rvq sweep` first".into(),
        });
    }
    let figures = dir.join("figures");
    std::fs::create_dir_all(&figures).map_err(|e| Error::Io {
        path: figures.clone(),
        source: e,
    })?;
    let (ae, vq, rvq, grid) = figure_rows(&rows);
    let mut written = Vec::new();
    let mut chart = |name: &str,
                     mut series: Vec<crate::plot::Series>,
                     title: &str,
                     x: &str,
                     study: Option<crate::plot::Series>|
     -> Result<()> {
        if series.iter().all(|(_, v)| v.is_empty()) {
            return Ok(());
        }
        series.extend(study);
        line_chart(
            &series,
            title,
            x,
            "MSE",
            crate::plot::Scale::LogLog,
            &figures.join(name),
        )?;
        written.push(name.to_string());
        Ok(())
    };
    chart(
        "ae_mse_vs_d.png",
        series_by(
            &ae,
            |r| {
                let side = 32 / r.grid_factor;
                format!("{side}×{side}")
            },
            "autoencoder ",
            |r| r.latent_dim as f64,
        ),
        "Plain autoencoder: MSE against latent channels d",
        "d",
        Some(("the study, 4×4".into(), STUDY_AE.to_vec())),
    )?;
    chart(
        "vq_mse_vs_k.png",
        series_by(&vq, |r| r.latent_dim, "d=", |r| r.codebook_size as f64),
        "Single codebook: MSE against k, per d",
        "codebook size k",
        None,
    )?;
    chart(
        "rvq_mse_vs_codebooks.png",
        series_by(&rvq, |r| r.codebook_size, "k=", |r| r.num_codebooks as f64),
        "Residual VQ (d=64): MSE against number of codebooks, per k",
        "codebooks",
        Some(("the study, k=1024".into(), STUDY_RVQ_K1024.to_vec())),
    )?;
    chart(
        "rvq_mse_vs_total_vectors.png",
        series_by(
            &rvq,
            |r| r.codebook_size,
            "k=",
            |r| r.total_codebook_vectors as f64,
        ),
        "Residual VQ: MSE against total codebook vectors (k × n_q)",
        "codebook vectors",
        None,
    )?;
    chart(
        "rvq_mse_vs_bits.png",
        series_by(
            &rvq,
            |r| r.codebook_size,
            "k=",
            |r| r.bits_per_vector as f64,
        ),
        "Residual VQ: MSE against bits per latent vector",
        "bits per vector (= log2 of possible quantizations)",
        Some((
            "the study, k=1024".into(),
            STUDY_RVQ_K1024
                .iter()
                .map(|&(q, mse)| (q * 10.0, mse))
                .collect(),
        )),
    )?;
    chart(
        "grid_mse_vs_bits_per_image.png",
        series_by(
            &grid,
            |r| (32 / r.grid_factor).to_string(),
            "grid ",
            |r| r.bits_per_image as f64,
        )
        .into_iter()
        .map(|(n, v)| {
            let side = n.trim_start_matches("grid ").to_string();
            (format!("{side}×{side} grid"), v)
        })
        .collect(),
        "Single codebook, 4×4 against 8×8 latent grid",
        "bits per image",
        None,
    )?;
    let fit = fit_power_law(
        &rvq.iter()
            .map(|r| (r.bits_per_image as f64, r.mse))
            .collect::<Vec<_>>(),
    );
    let mut md = String::from("# Sweep report\n\n");
    md.push_str(&format!("{} runs from results.csv.\n\n", rows.len()));
    md.push_str("| run | bits/image | MSE | PSNR dB | utilisation | epochs | seconds |\n|---|---|---|---|---|---|---|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.5} | {:.2} | {:.2} | {:.1} | {:.0} |\n",
            r.run, r.bits_per_image, r.mse, r.psnr, r.utilisation, r.epochs, r.train_seconds
        ));
    }
    if let Some(f) = &fit {
        md.push_str(&format!(
            "\nResidual VQ fit: MSE ≈ {:.4} · bits^(−{:.4}) + {:.6} (RMS error {:.4} in log10 MSE).\n",
            f.a, f.b, f.c, f.rmse_log10
        ));
        for target in [0.005, 0.003, 0.002, 0.001] {
            match f.bits_for(target) {
                Some(b) => md.push_str(&format!("- MSE {target}: about {b:.0} bits per image\n")),
                None => md.push_str(&format!("- MSE {target}: below the fitted floor\n")),
            }
        }
    }
    md.push_str("\nFigures: ");
    md.push_str(
        &written
            .iter()
            .map(|f| format!("figures/{f}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push('\n');
    rvq::files::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(Report {
        rows: rows.len(),
        figures: written,
        fit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_preset_expands_to_its_runs() {
        let runs = preset("study")
            .unwrap()
            .expand(&ModelConfig::default())
            .unwrap();
        let count = |e: &str| runs.iter().filter(|r| r.experiment == e).count();
        assert_eq!(count("ae"), 8);
        assert_eq!(count("vq"), 8 * 12);
        // The one-codebook d = 64 models on the 4×4 grid are the vq experiment's: trained once.
        assert_eq!(count("rvq"), 4 * 5);
        assert_eq!(count("grid"), 12);
        assert_eq!(runs.len(), 136);
        assert!(runs.iter().any(|r| r.id == "vq-d64-k1024-q1-f8"));
        assert!(!runs.iter().any(|r| r.id == "rvq-d64-k1024-q1-f8"));
        let configs: BTreeSet<String> = runs.iter().map(|r| format!("{:?}", r.config)).collect();
        assert_eq!(configs.len(), runs.len(), "no model is trained twice");
        let ids: BTreeSet<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids.len(), runs.len(), "ids are unique");
        let r = runs.iter().find(|r| r.id == "rvq-d64-k1024-q8-f8").unwrap();
        // The study's network: the default model's shape, without the linear path.
        assert_eq!(
            r.config,
            ModelConfig {
                linear_path: false,
                ..ModelConfig::default()
            }
        );
        let ae = runs.iter().find(|r| r.id == "ae-d2-f8").unwrap();
        assert!(!ae.config.quantize && ae.config.num_codebooks == 0);
    }

    #[test]
    fn json_specs_parse_and_bad_ones_are_refused() {
        let spec: GridSpec = serde_json::from_str(
            r#"{"experiments":[{"name":"x","codebook_size":[4,8],"num_codebooks":[1,1]}]}"#,
        )
        .unwrap();
        let runs = spec.expand(&ModelConfig::default()).unwrap();
        assert_eq!(runs.len(), 2, "duplicate combinations run once");
        assert!(
            serde_json::from_str::<GridSpec>(r#"{"experiments":[{"name":"x","k":[4]}]}"#).is_err()
        );
        let bad: GridSpec =
            serde_json::from_str(r#"{"experiments":[{"name":"x","codebook_size":[1]}]}"#).unwrap();
        assert!(bad.expand(&ModelConfig::default()).is_err());
    }

    #[test]
    fn csv_rows_round_trip_and_resume_skips_finished_runs() {
        let dir = tempfile::TempDir::new().unwrap();
        let path = dir.path().join("results.csv");
        let runs = preset("smoke")
            .unwrap()
            .expand(&ModelConfig::default())
            .unwrap();
        assert_eq!(pending(&runs, &read_csv(&path).unwrap()).len(), 3);
        let (bpv, bpi, total, lq) = Row::geometry(&runs[1].config);
        let row = Row {
            run: runs[1].id.clone(),
            experiment: "rvq".into(),
            latent_dim: 8,
            codebook_size: 16,
            num_codebooks: 2,
            grid_factor: 8,
            bits_per_vector: bpv,
            bits_per_image: bpi,
            total_codebook_vectors: total,
            log2_quantizations: lq,
            mse: 0.0123,
            psnr: 19.1,
            utilisation: 0.97,
            epochs: 1.5,
            train_seconds: 12.25,
            backend: "cpu (burn flex; 2 threads)".into(),
        };
        assert_eq!((bpv, bpi, total, lq), (8, 128, 32, 8.0));
        append_csv(&path, &row).unwrap();
        let back = read_csv(&path).unwrap();
        assert_eq!(back, vec![row]);
        let left: Vec<&str> = pending(&runs, &back)
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(left, vec![runs[0].id.as_str(), runs[2].id.as_str()]);
        // A comma in the backend text is quoted, and reads back whole.
        let comma = Row {
            backend: "wgpu (a, b)".into(),
            ..back[0].clone()
        };
        append_csv(&path, &comma).unwrap();
        assert_eq!(read_csv(&path).unwrap()[1], comma);
        std::fs::write(&path, "a,b\n").unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("unexpected header"), "{err}");
        // A grid factor of 0 used to reach the report's 32 / grid_factor and panic.
        std::fs::remove_file(&path).unwrap();
        let zero = Row {
            grid_factor: 0,
            ..back[0].clone()
        };
        append_csv(&path, &zero).unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("grid_factor 0"), "{err}");
        // A row with a field missing is refused with its position.
        let text = std::fs::read_to_string(&path).unwrap();
        let header = text.lines().next().unwrap();
        std::fs::write(&path, format!("{header}\nx,rvq,8\n")).unwrap();
        let err = read_csv(&path).unwrap_err().to_string();
        assert!(err.contains("line: 2"), "{err}");
    }

    #[test]
    fn the_committed_study_results_still_read() {
        // Written by the hand-made CSV code before the csv crate (commas in the backend text
        // were written as ';'): every row reads, and a row appended now reads beside them.
        let root =
            std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
                .join("docs/study");
        for study in ["cpu-study", "quick-rvq"] {
            let committed = root.join(study).join("results.csv");
            let lines = std::fs::read_to_string(&committed).unwrap().lines().count();
            let rows = read_csv(&committed).unwrap();
            assert_eq!(rows.len(), lines - 1, "{study}");
            let dir = tempfile::TempDir::new().unwrap();
            let copy = dir.path().join("results.csv");
            std::fs::copy(&committed, &copy).unwrap();
            let added = Row {
                backend: "cpu (burn flex, 2 threads)".into(),
                ..rows[0].clone()
            };
            append_csv(&copy, &added).unwrap();
            let back = read_csv(&copy).unwrap();
            assert_eq!(back[..rows.len()], rows[..], "{study}");
            assert_eq!(back[rows.len()], added, "{study}");
        }
    }

    #[test]
    fn figures_draw_rows_by_what_was_trained() {
        let row = |experiment: &str, d: usize, k: usize, n_q: usize, f: usize| Row {
            run: format!("{experiment}-d{d}-k{k}-q{n_q}-f{f}"),
            experiment: experiment.into(),
            latent_dim: d,
            codebook_size: k,
            num_codebooks: n_q,
            grid_factor: f,
            bits_per_vector: 0,
            bits_per_image: 0,
            total_codebook_vectors: 0,
            log2_quantizations: 0.0,
            mse: 0.01,
            psnr: 20.0,
            utilisation: 1.0,
            epochs: 1.0,
            train_seconds: 1.0,
            backend: "cpu".into(),
        };
        let rows = vec![
            row("ae", 64, 0, 0, 8),
            row("rvq", 64, 16, 1, 8),
            row("rvq", 64, 16, 4, 8),
            row("vq", 64, 4096, 1, 8),
            row("vq", 8, 16, 1, 8),
            row("grid", 64, 16, 1, 4),
        ];
        let (ae, vq, rvq, grid) = figure_rows(&rows);
        let ids = |v: Vec<&Row>| v.iter().map(|r| r.run.clone()).collect::<Vec<_>>();
        assert_eq!(ids(ae), ["ae-d64-k0-q0-f8"]);
        assert_eq!(
            ids(vq),
            ["rvq-d64-k16-q1-f8", "vq-d64-k4096-q1-f8", "vq-d8-k16-q1-f8"]
        );
        // k = 4096 was only trained with one codebook: no residual series of its own.
        assert_eq!(ids(rvq), ["rvq-d64-k16-q1-f8", "rvq-d64-k16-q4-f8"]);
        // d = 8 has no 8×8 run to compare with.
        assert_eq!(
            ids(grid),
            [
                "rvq-d64-k16-q1-f8",
                "vq-d64-k4096-q1-f8",
                "grid-d64-k16-q1-f4"
            ]
        );
    }

    #[test]
    fn power_law_fit_recovers_known_parameters() {
        let (a, b, c) = (2.0, 0.6, 0.0004);
        let pts: Vec<(f64, f64)> = [160.0, 320.0, 640.0, 1280.0, 2560.0, 5120.0]
            .iter()
            .map(|&x: &f64| (x, a * x.powf(-b) + c))
            .collect();
        let fit = fit_power_law(&pts).unwrap();
        assert!((fit.b - b).abs() < 0.02, "{fit:?}");
        assert!((fit.a - a).abs() / a < 0.1, "{fit:?}");
        assert!((fit.c - c).abs() < 5e-5, "{fit:?}");
        assert!(fit.rmse_log10 < 0.01);
        let bits = fit.bits_for(0.002).unwrap();
        assert!((fit.predict(bits) - 0.002).abs() < 1e-9);
        assert_eq!(fit.bits_for(c / 2.0), None);
        assert!(fit_power_law(&pts[..2]).is_none());
    }
}
