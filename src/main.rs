//! The `rvq` command line: parses arguments and calls the library.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rvq::archive::{Archive, CodebookDType};
use rvq::backend::{self, Backend};
use rvq::codec::{self, EncodeOptions, Named};
use rvq::config::ModelConfig;
use rvq::files::write_atomic;
use rvq::image_io::{self, Limits};
use rvq::model::Model;
use rvq::rate::Target;
use rvq::train::{self, Event, Init, TrainOptions};

#[derive(Parser)]
#[command(
    name = "rvq",
    version,
    about = "Image codec built on a learned residual-vector-quantized VAE"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Say more on stderr (the backend and adapter chosen, timings).
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Encode PNG images into one .rvq archive.
    Encode(EncodeArgs),
    /// Decode an .rvq archive into PNG images.
    Decode(DecodeArgs),
    /// Describe an .rvq archive: header, sizes, bits per pixel, compression ratios.
    Info(InfoArgs),
    /// Cut an archive to its first M codebooks (smaller, coarser; no model needed).
    Truncate(TruncateArgs),
    /// Join archives of the same model and settings into one (e.g. the shards of an encode).
    Merge(MergeArgs),
    /// Measure quality, bits and compression ratio of rvq and JPEG on the same images.
    Eval(EvalArgs),
    /// Train a model on CIFAR-10 (binary folder) or a folder of PNG/JPEG images.
    Train(TrainArgs),
    /// Reproduce the study: train and evaluate a grid of models (`rvq sweep report DIR` draws
    /// the figures).
    Sweep(SweepArgs),
    /// Measure encode/decode throughput on a backend, and archive write/read rates.
    Bench(BenchArgs),
    /// Export a model's weights as safetensors (loadable in PyTorch).
    Export(ExportArgs),
}

#[derive(Args)]
struct ModelArgs {
    /// Model folder (config.json + model.bpk); default: the model built into rvq.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where to run the model.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Images per inference batch (default: chosen for the backend, 64 on the CPU and 1024
    /// on a GPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    batch: Option<u32>,
}

#[derive(Args)]
struct EncodeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Codebooks every cell uses (1..=n_q; fewer is smaller and coarser). With --quality or
    /// --psnr: the most any cell may use (default: all).
    #[arg(long)]
    codebooks: Option<usize>,
    /// Quality 0..=100 (higher: larger and better): each cell gets the codebooks worth their
    /// bits, flat cells fewer than busy ones. The default when neither --codebooks nor --psnr
    /// is given: 90.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), conflicts_with = "psnr")]
    quality: Option<u8>,
    /// Per image, the fewest bits that reach this PSNR (dB); an image the model cannot bring
    /// there gets every codebook, and a warning.
    #[arg(long)]
    psnr: Option<f64>,
    /// Output archive, or - for standard output.
    #[arg(short, long)]
    output: PathBuf,
    /// Do not store file names.
    #[arg(long)]
    no_names: bool,
    /// Embed the codebook vectors used, so the archive documents its own quantizer.
    #[arg(long, value_enum)]
    embed_codebook: Option<Precision>,
    /// Refuse images with an alpha channel instead of dropping it.
    #[arg(long)]
    strict: bool,
    #[command(flatten)]
    search: SearchArgs,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
    /// Also encode the files and folders listed in this text file, one path per line.
    #[arg(long)]
    files_from: Option<PathBuf>,
    /// Encode only slice I of N (1 ≤ I ≤ N) of the sorted input files, so N machines can
    /// each encode a slice; `rvq merge` of slices 1..N gives the archive of all.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// PNG files or folders (searched recursively for .png), or - for one PNG on standard input.
    #[arg(required_unless_present = "files_from")]
    inputs: Vec<PathBuf>,
}

fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("expected I/N with 1 ≤ I ≤ N, as 2/4, not {s:?}");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Shard `i` of `n` (1-based) of `count` items: a contiguous slice, so shards in order
/// concatenate to the whole.
fn shard_range(count: usize, (i, n): (usize, usize)) -> std::ops::Range<usize> {
    (i - 1) * count / n..i * count / n
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Precision {
    F16,
    F32,
}

#[derive(Args)]
struct DecodeArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder (created), or - to write a single image's PNG to standard output.
    #[arg(short, long)]
    output: PathBuf,
    /// Decode only the image stored under this name.
    #[arg(long)]
    only: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
    /// The archive, or - for standard input.
    input: PathBuf,
}

#[derive(Args)]
struct TruncateArgs {
    /// Codebooks to keep (1..=the number the archive stores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    codebooks: u32,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
    /// The archive, or - for standard input.
    input: PathBuf,
    /// The truncated archive, or - for standard output.
    output: PathBuf,
}

#[derive(Args)]
struct MergeArgs {
    /// The merged archive, or - for standard output.
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
    /// Archives to join, in order: their images follow one another in the output.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Args)]
struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Folder holding the original inputs, to report the ratio against their file sizes.
    #[arg(long)]
    against: Option<PathBuf>,
    /// The archive, or - for standard input.
    input: PathBuf,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// CIFAR-10 binary folder (uses test_batch.bin), a folder of PNG images, or an .rvq
    /// archive (with --against).
    #[arg(long)]
    data: PathBuf,
    /// With an archive as --data: the folder of the original images, matched by stored name.
    #[arg(long)]
    against: Option<PathBuf>,
    /// Evaluate the first N images.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    /// Numbers of codebooks to evaluate (default, when --qualities is not given either:
    /// 1, 2, 4, … n_q).
    #[arg(long, value_delimiter = ',')]
    codebooks: Vec<usize>,
    /// Qualities (encode --quality) to evaluate (default, when --codebooks is not given
    /// either: the ladder in docs/EVAL.md).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=100))]
    qualities: Vec<u8>,
    /// JPEG qualities to compare against (the image crate's encoder).
    #[arg(long, value_delimiter = ',', default_values_t = rvq::compare::JPEG_LADDER)]
    jpeg_qualities: Vec<u8>,
    /// WebP qualities to compare against (libwebp).
    #[arg(long, value_delimiter = ',', default_values_t = rvq::compare::WEBP_LADDER)]
    webp_qualities: Vec<u8>,
    /// Draw a rate–distortion chart (PSNR against bits per pixel) to this PNG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Also write the results as JSON (a list of points; fields in docs/EVAL.md).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite the JSON file if it exists.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    search: SearchArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// CIFAR-10 binary folder or a folder of images.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A preset (study, study-ae, study-vq, study-rvq, study-grid, smoke) or a JSON grid file.
    #[arg(long)]
    grid: Option<String>,
    /// Folder for results.csv and runs/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Epochs per run.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Stop each run after this many steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Validation images (the first N of test_batch.bin).
    #[arg(long, default_value_t = 1000)]
    valid: usize,
    /// Continue a sweep whose results.csv exists, skipping finished runs.
    #[arg(long)]
    resume: bool,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Draw the study's figures from DIR/results.csv and fit the power law.
    Report {
        /// The sweep's --out folder.
        dir: PathBuf,
    },
}

/// How hard the encoder searches, shared by every command that encodes.
#[derive(Args)]
struct SearchArgs {
    /// Beam width of the residual search when encoding (1: greedy; wider is slower and never
    /// further from the encoder's output). Archives decode the same way whatever the width.
    #[arg(long, default_value_t = codec::DEFAULT_BEAM, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    beam: usize,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Size of the large image, WIDTHxHEIGHT.
    #[arg(long, default_value = "768x512")]
    large: String,
    /// Timed runs per measure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    search: SearchArgs,
    /// Also write the measures as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// Model folder; default: the model built into rvq.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Output .safetensors file.
    #[arg(short, long)]
    output: PathBuf,
    /// Overwrite the outputs if they exist.
    #[arg(long)]
    force: bool,
    /// Also write reference tensors (inputs, latents, indices, decoded images computed by rvq)
    /// for checking a port such as bench/torch_reference.py.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// Synthetic 32×32 images in the reference file.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    reference_images: u16,
    /// Where to compute the reference tensors.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    backend: Backend,
}

#[derive(Args)]
struct TrainArgs {
    /// CIFAR-10 binary folder (data_batch_1..5.bin, test_batch.bin) or a folder of images.
    #[arg(long)]
    data: PathBuf,
    /// Model folder to write (model.bpk, config.json, card.json, checkpoint/).
    #[arg(long)]
    out: PathBuf,
    /// Latent channels d.
    #[arg(long, default_value_t = 64)]
    latent_dim: usize,
    /// Entries per codebook k.
    #[arg(long, default_value_t = 1024)]
    codebook_size: usize,
    /// Number of residual codebooks n_q.
    #[arg(long, default_value_t = 8)]
    codebooks: usize,
    /// Downsampling factor: 8 (32×32 → 4×4 grid) or 4 (→ 8×8).
    #[arg(long, default_value_t = 8)]
    grid_factor: usize,
    /// Channel widths of the three strided stages.
    #[arg(long, value_delimiter = ',', default_value = "64,128,256")]
    channels: Vec<usize>,
    /// Residual blocks on each side.
    #[arg(long, default_value_t = 2)]
    res_blocks: usize,
    /// Hidden channels in each residual block.
    #[arg(long, default_value_t = 64)]
    res_channels: usize,
    /// Train a plain autoencoder (no quantization), the study's baseline.
    #[arg(long)]
    no_quantize: bool,
    /// Leave out the linear patch projection under the network (the study's architecture).
    #[arg(long)]
    no_linear: bool,
    /// How the linear path starts: from the PCA of training patches, or at random.
    #[arg(long, value_parser = ["pca", "random"], default_value = "pca")]
    init: String,
    /// Passes over the training set.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Stop after this many steps.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Fraction of batches trained at a random depth per image (quantizer dropout).
    #[arg(long, default_value_t = 0.5)]
    dropout: f32,
    /// Relative odds of depths 1..=n_q in those batches, one per codebook (default: equal).
    #[arg(long, value_delimiter = ',')]
    dropout_weights: Vec<f32>,
    /// Fine-tune: start from this trained model folder (same configuration) instead of the
    /// PCA and k-means start.
    #[arg(long)]
    from: Option<PathBuf>,
    /// Validation images (the first N of test_batch.bin).
    #[arg(long, default_value_t = 1000)]
    valid: usize,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 100)]
    checkpoint_every: usize,
    /// Continue from OUT/checkpoint.
    #[arg(long)]
    resume: bool,
    /// End this session at this step, checkpointed, without finishing the run: the learning
    /// rate keeps the whole run's schedule, so `--resume` later continues exactly.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    stop_at: Option<usize>,
    /// Where to run.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
}

/// Mesa's Vulkan drivers look for a Wayland display while wgpu lists adapters, and libwayland
/// prints "error: XDG_RUNTIME_DIR is invalid or not set" when that variable is unset or
/// relative (headless machines, CI). rvq opens no window: an absolute folder with no display
/// socket in it makes that search fail quietly instead.
fn quiet_display_search() {
    let usable = std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|v| Path::new(&v).is_absolute());
    if !usable {
        // SAFETY: the first thing main does, before any other thread exists.
        unsafe {
            std::env::set_var(
                "XDG_RUNTIME_DIR",
                std::env::temp_dir().join("rvq-no-display"),
            )
        };
    }
}

fn main() -> ExitCode {
    quiet_display_search();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => run_train(args, cli.verbose),
        Command::Encode(args) => run_encode(args, cli.verbose),
        Command::Decode(args) => run_decode(args, cli.verbose),
        Command::Info(args) => run_info(args),
        Command::Truncate(args) => run_truncate(args),
        Command::Merge(args) => run_merge(args),
        Command::Export(args) => run_export(args, cli.verbose),
        Command::Eval(args) => run_eval(args, cli.verbose),
        Command::Bench(args) => run_bench(args, cli.verbose),
        Command::Sweep(args) => run_sweep(args, cli.verbose),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rvq: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn choose_backend(backend: Backend, verbose: bool) -> Result<backend::Chosen> {
    let chosen = backend::choose(backend)?;
    if verbose || backend == Backend::Auto {
        eprintln!("rvq: backend: {}", chosen.description);
    }
    Ok(chosen)
}

fn machine(chosen: &backend::Chosen) -> String {
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

fn run_train(a: TrainArgs, verbose: bool) -> Result<()> {
    let config = ModelConfig {
        latent_dim: a.latent_dim,
        codebook_size: a.codebook_size,
        num_codebooks: if a.no_quantize { 0 } else { a.codebooks },
        grid_factor: a.grid_factor,
        channels: a.channels,
        res_blocks: a.res_blocks,
        res_channels: a.res_channels,
        quantize: !a.no_quantize,
        linear_path: !a.no_linear,
    };
    config.validate()?;
    let options = TrainOptions {
        config,
        epochs: a.epochs,
        batch_size: a.batch_size,
        learning_rate: a.lr,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        max_steps: a.max_steps,
        init: if a.init == "random" {
            Init::Random
        } else {
            Init::Pca
        },
        dropout_fraction: a.dropout,
        dropout_weights: a.dropout_weights,
        start_from: a.from,
        ..TrainOptions::default()
    };
    options.check_dropout()?;
    let chosen = choose_backend(a.backend, verbose)?;
    let splits = train::load_data(&a.data, a.valid, a.seed)?;
    eprintln!("rvq: {}", splits.description);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps, {per_sec}, eta {eta} | {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    // Above the bar when it is drawn; plain stderr lines when it is hidden (not a terminal).
    let say = |line: String| {
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.println(line);
        }
    };
    let mut on_event = |e: Event| match e {
        Event::Start { step, total_steps } => {
            bar.set_length(total_steps as u64);
            bar.set_position(step as u64);
        }
        Event::Step {
            step,
            epoch,
            mse,
            loss,
            codebooks,
        } => {
            bar.set_position(step as u64);
            if step % 10 == 0 || !bar.is_hidden() {
                let util: Vec<String> = codebooks
                    .iter()
                    .map(|s| format!("{:.0}%/{:.0}", s.utilisation * 100.0, s.perplexity))
                    .collect();
                bar.set_message(format!(
                    "epoch {epoch} loss {loss:.5} mse {mse:.5} use/ppl {}",
                    util.join(" ")
                ));
            }
            if bar.is_hidden() && step % 50 == 0 {
                eprintln!("step {step} epoch {epoch} loss {loss:.5} mse {mse:.5}");
            }
        }
        Event::Validation { epoch, quality } => {
            let parts: Vec<String> = quality
                .iter()
                .map(|q| {
                    let name = if q.codebooks == 0 {
                        "ae".to_string()
                    } else {
                        format!("m={}", q.codebooks)
                    };
                    format!("{name}: {:.5} ({:.2} dB)", q.mse, q.psnr)
                })
                .collect();
            say(format!(
                "validation after epoch {epoch}: {}",
                parts.join(", ")
            ));
        }
        Event::Checkpoint { .. } => {}
        Event::Pca {
            images,
            truncation_mse,
        } => say(format!(
            "linear path from the PCA of {images} images' patches (truncation MSE {truncation_mse:.6})"
        )),
    };
    let card = train::train(
        &options,
        &splits,
        &a.out,
        &chosen.device,
        &machine(&chosen),
        a.resume,
        a.stop_at,
        &mut on_event,
    )
    .with_context(|| format!("training into {}", a.out.display()))?;
    bar.finish();
    let Some(card) = card else {
        println!(
            "stopped before the end of the run (--stop-at {}); the checkpoint is in {}; continue with --resume",
            a.stop_at.unwrap_or_default(),
            a.out.join("checkpoint").display()
        );
        return Ok(());
    };
    println!(
        "trained {} steps in {:.0} s; model written to {} (fingerprint {})",
        card.steps,
        card.wall_seconds,
        a.out.display(),
        card.fingerprint
    );
    Ok(())
}

fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
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
fn write_output(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
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
fn refuse_existing(path: &Path, force: bool) -> Result<()> {
    if !is_stdio(path) && path.exists() && !force {
        return Err(rvq::Error::Exists {
            path: path.to_path_buf(),
        }
        .into());
    }
    Ok(())
}

/// The model on its device, its name for messages, and the batch size for that device.
fn load_model(args: &ModelArgs, verbose: bool) -> Result<(Model, String, usize)> {
    let chosen = choose_backend(args.backend, verbose)?;
    let model = Model::load_or_default(args.model.as_deref(), &chosen.device)?;
    let name = args
        .model
        .as_ref()
        .map_or_else(|| "default".to_string(), |p| p.display().to_string());
    Ok((model, name, args.batch_for(&chosen)))
}

impl ModelArgs {
    fn batch_for(&self, chosen: &backend::Chosen) -> usize {
        self.batch
            .map_or_else(|| chosen.backend.default_batch(), |b| b as usize)
    }
}

fn run_encode(a: EncodeArgs, verbose: bool) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    let limits = Limits::default();
    if a.inputs.iter().any(|p| is_stdio(p)) && (a.files_from.is_some() || a.shard.is_some()) {
        anyhow::bail!("standard input (-) cannot be combined with --files-from or --shard");
    }
    let stdin_image = if a.inputs.len() == 1 && is_stdio(&a.inputs[0]) {
        let bytes = read_input(&a.inputs[0])?;
        let loaded = image_io::decode_rgb(&bytes, Path::new("<stdin>"), &limits, false)?;
        if loaded.had_alpha && a.strict {
            anyhow::bail!("<stdin>: has an alpha channel, which rvq does not store (--strict)");
        } else if loaded.had_alpha {
            eprintln!("rvq: warning: <stdin>: alpha channel dropped");
        }
        Some(Named {
            name: "stdin.png".into(),
            image: loaded.image,
        })
    } else {
        None
    };
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
    let files = if stdin_image.is_some() {
        Vec::new()
    } else {
        let mut files = image_io::collect_images(&inputs, false)?;
        if files.is_empty() {
            anyhow::bail!("no PNG files found in the inputs given");
        }
        if let Some(shard) = a.shard {
            // With more shards than files some are empty: an archive of no images, which
            // merges as nothing, so one script serves any collection.
            files = files[shard_range(files.len(), shard)].to_vec();
        }
        for f in &files {
            image_io::probe(f, &limits)?;
        }
        files
    };
    let count = if stdin_image.is_some() {
        1
    } else {
        files.len()
    };
    let (model, _, batch) = load_model(&a.model, verbose)?;
    let opts = EncodeOptions {
        codebooks: a.codebooks,
        names: !a.no_names,
        embed_codebook: a.embed_codebook.map(|p| match p {
            Precision::F16 => CodebookDType::F16,
            Precision::F32 => CodebookDType::F32,
        }),
        batch_size: batch,
        beam: a.search.beam,
        target: match (a.quality, a.psnr, a.codebooks) {
            (Some(q), _, _) => Some(Target::Quality(q)),
            (_, Some(db), _) if db.is_finite() && db > 0.0 => Some(Target::Psnr(db)),
            (_, Some(db), _) => anyhow::bail!("--psnr {db}: expected a positive number of dB"),
            // --codebooks alone: every cell uses that many.
            (None, None, Some(_)) => None,
            (None, None, None) => Some(Target::Quality(codec::DEFAULT_QUALITY)),
        },
    };
    let bar = progress(count, "encoding");
    // Images are read one batch at a time, so a large input set never sits in memory whole.
    let mut load = |range: std::ops::Range<usize>| match &stdin_image {
        Some(img) => Ok(Cow::Borrowed(std::slice::from_ref(img))),
        None => codec::read_inputs(&files[range], &inputs, &limits, a.strict, &mut |w| {
            bar.suspend(|| eprintln!("rvq: warning: {w}"))
        })
        .map(Cow::Owned),
    };
    let mut on_progress = |done: usize| bar.set_position(done as u64);
    let mut short = Vec::new();
    let size = if is_stdio(&a.output) {
        let (bytes, missed) =
            codec::encode_streaming(&model, count, &mut load, &opts, &mut on_progress)?;
        short = missed;
        write_output(&a.output, &bytes, a.force)?;
        bytes.len() as u64
    } else {
        // Written record by record into a temporary file, renamed into place when complete.
        let mut size = 0;
        rvq::files::write_atomic_with(&a.output, |file| {
            let out = std::io::BufWriter::new(file);
            // encode_to returns the writer flushed, so the file holds the whole archive.
            let (out, missed) =
                codec::encode_to(out, &model, count, &mut load, &opts, &mut on_progress)?;
            short = missed;
            size = out.get_ref().metadata().map_or(0, |m| m.len());
            Ok(())
        })?;
        size
    };
    bar.finish_and_clear();
    for s in &short {
        eprintln!(
            "rvq: {}: reaches {:.2} dB at most with this model (all codebooks used), short of --psnr {}",
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

fn progress(n: usize, what: &str) -> ProgressBar {
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

fn open_archive<'a>(path: &Path, bytes: &'a [u8]) -> Result<Archive<'a>> {
    Archive::parse(bytes, &Limits::default()).map_err(|e| {
        rvq::Error::Archive {
            path: path.to_path_buf(),
            source: e,
        }
        .into()
    })
}

fn run_decode(a: DecodeArgs, verbose: bool) -> Result<()> {
    let bytes = read_input(&a.input)?;
    let archive = open_archive(&a.input, &bytes)?;
    let archive_err = |e| rvq::Error::Archive {
        path: a.input.clone(),
        source: e,
    };
    let mut entries = archive.index().map_err(archive_err)?;
    if let Some(only) = &a.only {
        entries.retain(|e| e.name.as_deref() == Some(only.as_str()));
        if entries.is_empty() {
            anyhow::bail!("{}: no image stored as {only:?}", a.input.display());
        }
    }
    let records = entries
        .iter()
        .map(|e| archive.record(e))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(archive_err)?;
    let to_stdout = is_stdio(&a.output);
    if to_stdout && records.len() != 1 {
        anyhow::bail!(
            "-o - writes one PNG to standard output, but {} holds {} images; use --only NAME or an output folder",
            a.input.display(),
            records.len()
        );
    }
    let targets: Vec<PathBuf> = entries
        .iter()
        .zip(&records)
        .map(|(e, r)| Ok(a.output.join(codec::output_name(r, e.index)?)))
        .collect::<rvq::Result<_>>()?;
    if !to_stdout {
        for t in &targets {
            refuse_existing(t, a.force)?;
        }
    }
    let (model, model_name, batch) = load_model(&a.model, verbose)?;
    codec::check_model(&archive, &model, &model_name)?;
    let bar = progress(records.len(), "decoding");
    for (chunk, paths) in records.chunks(batch).zip(targets.chunks(batch)) {
        let images = codec::decode_records(&model, &archive.header, chunk, batch)?;
        for (img, path) in images.iter().zip(paths) {
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
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn run_truncate(a: TruncateArgs) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    let bytes = read_input(&a.input)?;
    let cut = rvq_archive::truncate(&bytes, a.codebooks, &Limits::default()).map_err(|e| {
        rvq::Error::Archive {
            path: a.input.clone(),
            source: e,
        }
    })?;
    write_output(&a.output, &cut, a.force)
}

fn run_merge(a: MergeArgs) -> Result<()> {
    refuse_existing(&a.output, a.force)?;
    if a.inputs.iter().filter(|p| is_stdio(p)).count() > 1 {
        anyhow::bail!("standard input (-) can be merged only once");
    }
    let all = a
        .inputs
        .iter()
        .map(|p| read_input(p))
        .collect::<Result<Vec<_>>>()?;
    // Each input read on its own, so that a damaged one is named.
    let parts = a
        .inputs
        .iter()
        .zip(&all)
        .map(|(path, bytes)| {
            let archive = open_archive(path, bytes)?;
            let records = archive.records().map_err(|e| rvq::Error::Archive {
                path: path.clone(),
                source: e,
            })?;
            Ok((archive.header, records))
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = rvq_archive::merge_records(&parts).map_err(|e| {
        use rvq_archive::ArchiveError::{DuplicateName, MergeMismatch};
        let path = match &e {
            MergeMismatch { index, .. } | DuplicateName { index, .. } => a.inputs[*index].clone(),
            _ => PathBuf::from("merge"),
        };
        rvq::Error::Archive { path, source: e }
    })?;
    write_output(&a.output, &merged, a.force)
}

fn run_info(a: InfoArgs) -> Result<()> {
    let bytes = read_input(&a.input)?;
    let archive = open_archive(&a.input, &bytes)?;
    let mut info = codec::info(&archive).map_err(|e| rvq::Error::Archive {
        path: a.input.clone(),
        source: e,
    })?;
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
        info.ratio_vs_inputs = Some(total as f64 / info.total_bytes as f64);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    println!("archive            {}", a.input.display());
    println!("format version     {}", info.version);
    println!("model fingerprint  {}", info.fingerprint);
    println!(
        "geometry           d = {}, k = {}, n_q = {}, grid factor {}",
        info.latent_dim, info.codebook_size, info.num_codebooks, info.grid_factor
    );
    println!(
        "codebooks used     {} of {} ({} bits per index)",
        info.codebooks_used, info.num_codebooks, info.bits_per_index
    );
    println!("codebooks per cell {:.2} on average", info.mean_depth);
    println!(
        "names stored       {}",
        if info.names { "yes" } else { "no" }
    );
    if let Some(c) = &info.embedded_codebook {
        println!("embedded codebook  {c}");
    }
    println!("images             {}", info.images);
    println!(
        "bytes              {} total = {} header + {} indices + {} other (sizes, names, depth maps, checksums)",
        info.total_bytes, info.header_bytes, info.payload_bytes, info.record_overhead_bytes
    );
    println!(
        "bits per image     {:.1} (payload)",
        info.payload_bits_per_image
    );
    println!(
        "bits per pixel     {:.4} (everything included)",
        info.bits_per_pixel
    );
    println!("ratio vs raw RGB   {:.1}:1", info.ratio_vs_raw_rgb);
    if let Some(r) = info.ratio_vs_inputs {
        println!("ratio vs inputs    {r:.1}:1");
    }
    Ok(())
}

fn run_export(a: ExportArgs, verbose: bool) -> Result<()> {
    for out in std::iter::once(&a.output).chain(&a.reference) {
        refuse_existing(out, a.force)?;
    }
    let chosen = choose_backend(a.backend, verbose)?;
    let model = Model::load_or_default(a.model.as_deref(), &chosen.device)?;
    rvq::model::export_safetensors(&model, &a.output)?;
    if let Some(reference) = &a.reference {
        rvq::model::export_reference(&model, reference, a.reference_images as usize)?;
    }
    Ok(())
}

fn run_eval(a: EvalArgs, verbose: bool) -> Result<()> {
    for out in [&a.json, &a.plot].into_iter().flatten() {
        refuse_existing(out, a.force)?;
    }
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
    let images: Vec<image_io::Rgb> = if let Some(records) = &records {
        let dir = a.against.as_ref().ok_or_else(|| {
            anyhow::anyhow!("evaluating an archive needs --against DIR of the originals")
        })?;
        records
            .iter()
            .map(|r| {
                let name = r.name.as_ref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "{}: the archive stores no names to match originals by",
                        a.data.display()
                    )
                })?;
                Ok(image_io::read_rgb(&dir.join(name), &Limits::default(), false)?.image)
            })
            .collect::<Result<_>>()?
    } else if rvq::data::is_cifar_dir(&a.data) {
        let set = rvq::data::cifar_test(&a.data)?.take(a.limit);
        (0..set.len()).map(|i| set.rgb(i)).collect()
    } else {
        let files = image_io::collect_images(std::slice::from_ref(&a.data), false)?;
        files
            .iter()
            .take(a.limit)
            .map(|f| Ok(image_io::read_rgb(f, &Limits::default(), false)?.image))
            .collect::<rvq::Result<_>>()?
    };
    if images.is_empty() {
        anyhow::bail!("{}: no images to evaluate", a.data.display());
    }
    let (model, model_name, batch) = load_model(&a.model, verbose)?;
    let (codebooks, qualities) = if a.codebooks.is_empty() && a.qualities.is_empty() {
        (
            rvq::eval::report_depths(model.config.num_codebooks),
            rvq::compare::QUALITY_LADDER.to_vec(),
        )
    } else {
        (a.codebooks.clone(), a.qualities.clone())
    };
    let source = match (&archive, &records) {
        (Some(ar), Some(recs)) => {
            codec::check_model(ar, &model, &model_name)?;
            rvq::compare::RvqSource::Archive(&ar.header, recs, ar.len() as u64)
        }
        _ => rvq::compare::RvqSource::Encode(&codebooks, &qualities),
    };
    let points = rvq::compare::compare(
        &model,
        &images,
        source,
        &a.jpeg_qualities,
        &a.webp_qualities,
        &EncodeOptions {
            batch_size: batch,
            beam: a.search.beam,
            ..EncodeOptions::default()
        },
        &mut |what| {
            if verbose {
                eprintln!("rvq: evaluating {what}");
            }
        },
    )?;
    println!("{} images from {}\n", images.len(), a.data.display());
    print!("{}", rvq::compare::markdown(&points));
    if let Some(j) = &a.json {
        write_output(
            j,
            serde_json::to_string_pretty(&points)?.as_bytes(),
            a.force,
        )?;
    }
    if let Some(p) = &a.plot {
        let title = format!("{} images: rvq, JPEG and WebP", images.len());
        rvq::plot::rate_distortion(&points, &title, p)?;
    }
    Ok(())
}

fn run_bench(a: BenchArgs, verbose: bool) -> Result<()> {
    let (w, h) = a
        .large
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|&(w, h)| w > 0 && h > 0 && w <= 16_384 && h <= 16_384)
        .ok_or_else(|| {
            anyhow::anyhow!("--large {}: expected WIDTHxHEIGHT, e.g. 768x512", a.large)
        })?;
    if let Some(j) = &a.json {
        refuse_existing(j, false)?;
    }
    let chosen = choose_backend(a.model.backend, true)?;
    let model = Model::load_or_default(a.model.model.as_deref(), &chosen.device)?;
    if verbose {
        eprintln!("rvq: benchmarking on {}", machine(&chosen));
    }
    let measures = rvq::bench::run(
        &model,
        a.model.batch_for(&chosen),
        a.search.beam,
        (w, h),
        a.runs,
    )?;
    println!("{}\n", machine(&chosen));
    print!("{}", rvq::bench::markdown(&measures));
    if let Some(j) = &a.json {
        write_output(
            j,
            serde_json::to_string_pretty(&measures)?.as_bytes(),
            false,
        )?;
    }
    Ok(())
}

fn run_sweep(a: SweepArgs, verbose: bool) -> Result<()> {
    if let Some(SweepAction::Report { dir }) = &a.action {
        let r = rvq::sweep::report(dir)?;
        println!(
            "{} runs; figures in {}/figures: {}",
            r.rows,
            dir.display(),
            r.figures.join(", ")
        );
        if let Some(f) = r.fit {
            println!(
                "residual VQ: MSE ≈ {:.4} · bits^(−{:.4}) + {:.6} (RMS error {:.4} in log10 MSE)",
                f.a, f.b, f.c, f.rmse_log10
            );
        }
        println!("report: {}", dir.join("report.md").display());
        return Ok(());
    }
    let (Some(data), Some(grid), Some(out)) = (&a.data, &a.grid, &a.out) else {
        anyhow::bail!("rvq sweep needs --data, --grid and --out (or `rvq sweep report DIR`)");
    };
    let spec = rvq::sweep::load_spec(grid)?;
    let runs = spec.expand(&ModelConfig::default())?;
    if out.join("results.csv").exists() && !a.resume {
        anyhow::bail!(
            "{}: a sweep is already there; continue it with --resume or choose another --out",
            out.join("results.csv").display()
        );
    }
    let chosen = choose_backend(a.backend, verbose)?;
    let splits = train::load_data(data, a.valid, 0)?;
    let options = TrainOptions {
        epochs: a.epochs,
        batch_size: a.batch_size,
        max_steps: a.max_steps,
        ..TrainOptions::default()
    };
    let machine = machine(&chosen);
    let rows = rvq::sweep::run(
        &runs,
        &options,
        &splits,
        out,
        &chosen.device,
        &machine,
        &mut |e| match e {
            rvq::sweep::SweepEvent::RunStart { run, index, total } => {
                eprintln!("rvq: sweep run {}/{total}: {}", index + 1, run.id)
            }
            rvq::sweep::SweepEvent::RunDone(row) => eprintln!(
                "rvq: {}: MSE {:.5} ({:.2} dB) at {} bits per image",
                row.run, row.mse, row.psnr, row.bits_per_image
            ),
            rvq::sweep::SweepEvent::Train(_) => {}
        },
    )?;
    println!(
        "{} runs finished; results in {}",
        rows.len(),
        out.join("results.csv").display()
    );
    Ok(())
}
