//! `rvq sweep`: the study's experiments from one command. A grid spec names experiments, each
//! a set of axes whose cartesian product is a list of runs; each run trains a model, evaluates
//! it, and appends a row to `results.csv`. `rvq sweep report` (`sweep_report`) draws the
//! study's figures from that file and fits a power law to the residual-VQ points.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use rvq::ModelConfig;
use rvq::data::CIFAR_SIDE;
use rvq::{Error, Result};

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
            config.bits_per_image(CIFAR_SIDE, CIFAR_SIDE, config.num_codebooks),
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
            if row.grid_factor == 0 || !CIFAR_SIDE.is_multiple_of(row.grid_factor) {
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
        let card = train_run(run, options, splits, &dir, device, machine, on_event)?;
        let row = row_for(run, &card, machine)?;
        append_csv(&csv, &row)?;
        on_event(SweepEvent::RunDone(row.clone()));
        rows.push(row);
    }
    Ok(rows)
}

/// Resumes from a checkpoint in `dir` when there is one, so that a sweep interrupted mid-run
/// loses only the epochs since it; a run that stops early is an error, since its row would
/// describe a model that was never finished.
fn train_run(
    run: &Run,
    options: &rvq::train::TrainOptions,
    splits: &rvq::data::Splits,
    dir: &Path,
    device: &burn::prelude::Device,
    machine: &str,
    on_event: &mut dyn FnMut(SweepEvent),
) -> Result<rvq::train::ModelCard> {
    let resume = rvq::train::has_checkpoint(dir);
    let opts = rvq::train::TrainOptions {
        config: run.config.clone(),
        ..options.clone()
    };
    rvq::train::train(
        &opts,
        splits,
        dir,
        device,
        machine,
        resume,
        None,
        &mut |e| on_event(SweepEvent::Train(e)),
    )?
    .ok_or_else(|| Error::Other(format!("{}: the run stopped early", run.id)))
}

/// The quality is taken at the run's full depth because that is the model its configuration
/// names and the figures compare; a card without that depth is refused rather than recorded
/// at another one.
fn row_for(run: &Run, card: &rvq::train::ModelCard, machine: &str) -> Result<Row> {
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
    Ok(Row {
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
}
