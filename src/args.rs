//! The command line's grammar: every command, its arguments and their checks (clap).

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use rvq::Backend;
use rvq::EncodeOptions;
use rvq::train::{Init, TrainOptions};
use rvq::{ModelConfig, Upsample};

#[derive(Parser)]
#[command(
    name = "rvq",
    version,
    about = "Image codec built on a learned residual-vector-quantized VAE"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Say more on stderr (the backend and adapter chosen, timings).
    #[arg(long, short, global = true)]
    pub(crate) verbose: bool,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Add codebooks to a trained model, fitted by k-means to what its own leave of the
    /// encoder's outputs on a folder of images (the network and earlier levels unchanged).
    Extend(ExtendArgs),
    /// Reproduce the study: train and evaluate a grid of models (`rvq sweep report DIR` draws
    /// the figures).
    Sweep(SweepArgs),
    /// Measure encode/decode throughput on a backend, and archive write/read rates.
    Bench(BenchArgs),
    /// Export a model's weights as safetensors (loadable in PyTorch).
    Export(ExportArgs),
}

#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Model: a folder (config.json + model.bpk) or a built-in model's name (`default`, or
    /// `photo` for photographs); default: `default`, or for an archive the built-in model it
    /// was made with.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Where to run the model.
    #[arg(long, default_value_t = Backend::Auto, value_parser = backend_parser())]
    pub(crate) backend: Backend,
    /// Images per inference batch (default: chosen for the backend, 64 on the CPU and 1024
    /// on a GPU).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) batch: Option<u32>,
    /// Memory budget of the network's passes, such as 512M or 2G (default: 1G on the CPU,
    /// 512M on a GPU). Batches hold the images that fit it; a larger image is run in tiles.
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory: Option<rvq::Budget>,
}

#[derive(Args)]
pub(crate) struct EncodeArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Codebooks every cell uses (1..=n_q; fewer is smaller and coarser). With --quality or
    /// --psnr: the most any cell may use (default: all).
    #[arg(long)]
    pub(crate) codebooks: Option<usize>,
    /// Quality 0..=100 (higher: larger and better): each cell gets the codebooks worth their
    /// bits, flat cells fewer than busy ones. The default when neither --codebooks nor --psnr
    /// is given: 90.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100), conflicts_with = "psnr")]
    pub(crate) quality: Option<u8>,
    /// Per image, the fewest bits that reach this PSNR (dB); an image the model cannot bring
    /// there gets every codebook, and a warning.
    #[arg(long)]
    pub(crate) psnr: Option<f64>,
    /// Output archive, or - for standard output.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Do not store file names.
    #[arg(long)]
    pub(crate) no_names: bool,
    /// Bit-pack every index instead of range-coding the blocks where that is shorter, so that
    /// readers that know only payload coder 0 (rvq before entropy coding) read the archive.
    #[arg(long)]
    pub(crate) no_entropy: bool,
    /// Range-code without neighbour contexts (payload coder 1), so that rvq from before
    /// payload coder 2 reads the archive.
    #[arg(long, conflicts_with = "no_entropy")]
    pub(crate) no_neighbours: bool,
    /// Embed the codebook vectors used, so the archive documents its own quantizer.
    #[arg(long, value_enum)]
    pub(crate) embed_codebook: Option<Precision>,
    /// Refuse images with an alpha channel instead of dropping it.
    #[arg(long)]
    pub(crate) strict: bool,
    #[command(flatten)]
    pub(crate) search: SearchArgs,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Also encode the files and folders listed in this text file, one path per line.
    #[arg(long)]
    pub(crate) files_from: Option<PathBuf>,
    /// Encode only slice I of N (1 ≤ I ≤ N) of the sorted input files, so N machines can
    /// each encode a slice; `rvq merge` of slices 1..N gives the archive of all.
    #[arg(long, value_parser = parse_shard)]
    pub(crate) shard: Option<(usize, usize)>,
    /// PNG, JPEG or WebP files or folders (searched recursively for .png, .jpg, .jpeg and .webp),
    /// or - for one image on standard input.
    #[arg(required_unless_present = "files_from")]
    pub(crate) inputs: Vec<PathBuf>,
}

pub(crate) fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
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
pub(crate) fn shard_range(count: usize, (i, n): (usize, usize)) -> std::ops::Range<usize> {
    // In 128 bits: i · count overflows a usize for an N past 2^64 / count.
    let at = |i: usize| (i as u128 * count as u128 / n as u128) as usize;
    at(i - 1)..at(i)
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Precision {
    F16,
    F32,
}

#[derive(Args)]
pub(crate) struct DecodeArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Output folder (created), or - to write a single image's PNG to standard output.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Decode only the image stored under this name.
    #[arg(long)]
    pub(crate) only: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub(crate) force: bool,
    /// The archive, or - for standard input.
    pub(crate) input: PathBuf,
}

#[derive(Args)]
pub(crate) struct TruncateArgs {
    /// Codebooks to keep (1..=the number the archive stores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) codebooks: u32,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// The archive, or - for standard input.
    pub(crate) input: PathBuf,
    /// The truncated archive, or - for standard output.
    pub(crate) output: PathBuf,
}

#[derive(Args)]
pub(crate) struct MergeArgs {
    /// The merged archive, or - for standard output.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    /// Archives to join, in order: their images follow one another in the output.
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
}

#[derive(Args)]
pub(crate) struct InfoArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Folder holding the original inputs, to report the ratio against their file sizes.
    #[arg(long)]
    pub(crate) against: Option<PathBuf>,
    /// The archive, or - for standard input.
    pub(crate) input: PathBuf,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// CIFAR-10 binary folder (uses test_batch.bin), a folder of PNG images, or an .rvq
    /// archive (with --against).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// With an archive as --data: the folder of the original images, matched by stored name.
    #[arg(long)]
    pub(crate) against: Option<PathBuf>,
    /// Evaluate the first N images.
    #[arg(long, default_value_t = 1000)]
    pub(crate) limit: usize,
    /// Numbers of codebooks to evaluate (default, when --qualities is not given either:
    /// 1, 2, 4, … n_q).
    #[arg(long, value_delimiter = ',')]
    pub(crate) codebooks: Vec<usize>,
    /// Qualities (encode --quality) to evaluate (default, when --codebooks is not given
    /// either: the ladder in docs/EVAL.md).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) qualities: Vec<u8>,
    /// JPEG qualities to compare against (the image crate's encoder).
    #[arg(long, value_delimiter = ',', default_values_t = crate::classical::JPEG_LADDER, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub(crate) jpeg_qualities: Vec<u8>,
    /// WebP qualities to compare against (libwebp).
    #[arg(long, value_delimiter = ',', default_values_t = crate::classical::WEBP_LADDER, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) webp_qualities: Vec<u8>,
    /// Draw a rate–distortion chart (PSNR against bits per pixel) to this PNG file.
    #[arg(long)]
    pub(crate) plot: Option<PathBuf>,
    /// Also write the results as JSON (a list of points; fields in docs/EVAL.md).
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Overwrite the JSON file if it exists.
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten)]
    pub(crate) search: SearchArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SweepArgs {
    #[command(subcommand)]
    pub(crate) action: Option<SweepAction>,
    /// CIFAR-10 binary folder or a folder of images.
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// A preset (study, study-ae, study-vq, study-rvq, study-grid, smoke) or a JSON grid file.
    #[arg(long)]
    pub(crate) grid: Option<String>,
    /// Folder for results.csv and runs/.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Epochs per run.
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) batch_size: usize,
    /// Stop each run after this many steps.
    #[arg(long)]
    pub(crate) max_steps: Option<usize>,
    /// Validation images (the first N of test_batch.bin).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) valid: usize,
    /// Continue a sweep whose results.csv exists, skipping finished runs.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Where to run.
    #[arg(long, default_value_t = Backend::Auto, value_parser = backend_parser())]
    pub(crate) backend: Backend,
}

#[derive(Subcommand)]
pub(crate) enum SweepAction {
    /// Draw the study's figures from DIR/results.csv and fit the power law.
    Report {
        /// The sweep's --out folder.
        dir: PathBuf,
    },
}

/// How hard the encoder searches, shared by every command that encodes.
#[derive(Args)]
pub(crate) struct SearchArgs {
    /// Speed against compression, 0 (fastest) to 5 (smallest at equal quality); each level's
    /// beam, refinement, rate search and fitting steps are listed in the README. Archives decode the same
    /// way whatever the effort.
    #[arg(long, default_value_t = rvq::Effort::default().level(), value_parser = clap::value_parser!(u8).range(0..=i64::from(rvq::Effort::BEST.level())))]
    pub(crate) effort: u8,
    /// Beam width of the residual search, overriding the effort's (1: greedy; wider is slower
    /// and never further from the encoder's output).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub(crate) beam: Option<usize>,
    /// Entries of its last codebook each cell tries by decoding them, keeping the one that
    /// decodes closest to the image (1: none), overriding the effort's.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64).map(usize::from))]
    pub(crate) refine: Option<usize>,
    /// How rate control (a quality or PSNR target) measures each cell's error at each depth,
    /// overriding the effort's: `decoded` decodes at every depth (exact, and the cost of a
    /// target); `latent` takes the residual left in the latent space (no decode); `linear`
    /// chooses as `latent` does, then decodes once at the depths chosen and chooses again from
    /// estimates through the decoder's linear path (see docs/BENCHMARKS.md).
    #[arg(long, value_enum)]
    pub(crate) rate_search: Option<RateSearchArg>,
    /// Fit no restoration filters (each image's filter is fitted after its indices, where it
    /// pays for its bytes: docs/FORMAT.md), so that archives are format version 2, which rvq
    /// from before version 3 reads.
    #[arg(long)]
    pub(crate) no_filter: bool,
    /// Code every image at its own size: below quality 60 and under --psnr rvq otherwise also
    /// tries each image of 16,384 pixels or more at half size, upsampled on decode, and keeps
    /// whichever costs less (format version 4; with this flag such archives are version 3).
    #[arg(long)]
    pub(crate) no_half: bool,
    /// Adam steps that fit each image's latents to the decoder before they are quantized,
    /// overriding the effort's (0: none; effort 5: 20): a decode every tenth step, the steps
    /// between estimated through the decoder's linear path; closer decodes at the same depths,
    /// and any rvq reads the archive. Images larger than one pass are fitted tile by tile.
    #[arg(long, value_parser = clap::value_parser!(u16).range(0..=1000).map(usize::from))]
    pub(crate) fit: Option<usize>,
}

/// The values of `--rate-search`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum RateSearchArg {
    Decoded,
    Latent,
    Linear,
}

impl SearchArgs {
    /// `opts` with the search these flags ask for: the effort's, then each override.
    pub(crate) fn apply(&self, opts: EncodeOptions) -> EncodeOptions {
        let effort = rvq::Effort::new(self.effort).expect("clap bounds the effort");
        let opts = opts.with_effort(effort);
        EncodeOptions {
            beam: self.beam.unwrap_or(opts.beam),
            refine: self.refine.unwrap_or(opts.refine),
            rate_search: match self.rate_search {
                Some(RateSearchArg::Decoded) => rvq::RateSearch::Decoded,
                Some(RateSearchArg::Latent) => rvq::RateSearch::Latent,
                Some(RateSearchArg::Linear) => rvq::RateSearch::Linear,
                None => opts.rate_search,
            },
            filter: opts.filter && !self.no_filter,
            half_size: opts.half_size && !self.no_half,
            fit_steps: self.fit.unwrap_or(opts.fit_steps),
            ..opts
        }
    }
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Size of the large image, WIDTHxHEIGHT (each side 1 to 16,384).
    #[arg(long, default_value = "768x512")]
    pub(crate) large: Size,
    /// Timed runs per measure (the median and the fastest are reported).
    #[arg(long, default_value_t = 5)]
    pub(crate) runs: usize,
    #[command(flatten)]
    pub(crate) search: SearchArgs,
    /// Time encoding with every cell at every codebook (no per-cell rate control), as
    /// bench/torch_reference.py encodes, rather than the default encode (rvq encode's
    /// default quality).
    #[arg(long)]
    pub(crate) fixed_depth: bool,
    /// Also write the measures as JSON.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct ExportArgs {
    /// Model folder or built-in model name; default: the default built-in model.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Output .safetensors file.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Overwrite the outputs if they exist.
    #[arg(long)]
    pub(crate) force: bool,
    /// Also write reference tensors (inputs, latents, indices, decoded images computed by rvq)
    /// for checking a port such as bench/torch_reference.py.
    #[arg(long)]
    pub(crate) reference: Option<PathBuf>,
    /// Synthetic 32×32 images in the reference file.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) reference_images: u16,
    /// Where to compute the reference tensors.
    #[arg(long, default_value_t = Backend::Cpu, value_parser = backend_parser())]
    pub(crate) backend: Backend,
}

#[derive(Args)]
pub(crate) struct ExtendArgs {
    /// Model folder or built-in model name to extend; default: the default built-in model.
    #[arg(long)]
    pub(crate) model: Option<PathBuf>,
    /// Images (files or folders of PNG, JPEG and WebP) whose latents the new levels fit.
    #[arg(long, required = true, num_args = 1..)]
    pub(crate) data: Vec<PathBuf>,
    /// Model folder to write (model.bpk, config.json, extension.json); must not exist.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Codebooks of the extended model.
    #[arg(long, default_value_t = rvq::train::ExtendOptions::default().codebooks)]
    pub(crate) codebooks: usize,
    /// Lloyd iterations per new codebook.
    #[arg(long, default_value_t = rvq::train::ExtendOptions::default().iterations)]
    pub(crate) iterations: usize,
    /// The most latent vectors fitted (a random sample of the images' cells beyond it).
    #[arg(long, default_value_t = rvq::train::ExtendOptions::default().max_vectors)]
    pub(crate) max_vectors: usize,
    /// Random seed.
    #[arg(long, default_value_t = rvq::train::ExtendOptions::default().seed)]
    pub(crate) seed: u64,
    /// Where to run the model.
    #[arg(long, default_value_t = Backend::Auto, value_parser = backend_parser())]
    pub(crate) backend: Backend,
}

#[derive(Args)]
pub(crate) struct TrainArgs {
    /// CIFAR-10 binary folder (data_batch_1..5.bin, test_batch.bin) or a folder of images;
    /// given more than once, the model trains on all of them together and validates on the
    /// first's validation images.
    #[arg(long, required = true)]
    pub(crate) data: Vec<PathBuf>,
    /// Model folder to write (model.bpk, config.json, card.json, checkpoint/).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Latent channels d.
    #[arg(long, default_value_t = ModelConfig::default().latent_dim)]
    pub(crate) latent_dim: usize,
    /// Entries per codebook k.
    #[arg(long, default_value_t = ModelConfig::default().codebook_size)]
    pub(crate) codebook_size: usize,
    /// Number of residual codebooks n_q.
    #[arg(long, default_value_t = ModelConfig::default().num_codebooks)]
    pub(crate) codebooks: usize,
    /// Downsampling factor: 8 (32×32 → 4×4 grid) or 4 (→ 8×8).
    #[arg(long, default_value_t = ModelConfig::default().grid_factor)]
    pub(crate) grid_factor: usize,
    /// Channel widths of the three strided stages.
    #[arg(long, value_delimiter = ',', default_values_t = ModelConfig::default().channels)]
    pub(crate) channels: Vec<usize>,
    /// Residual blocks on each side.
    #[arg(long, default_value_t = ModelConfig::default().res_blocks)]
    pub(crate) res_blocks: usize,
    /// Hidden channels in each residual block.
    #[arg(long, default_value_t = ModelConfig::default().res_channels)]
    pub(crate) res_channels: usize,
    /// Train a plain autoencoder (no quantization), the study's baseline.
    #[arg(long)]
    pub(crate) no_quantize: bool,
    /// Leave out the linear patch projection under the network (the study's architecture).
    #[arg(long)]
    pub(crate) no_linear: bool,
    /// Tell the decoder each cell's depth (a one-hot input, zero at the start; with --from, it
    /// is added to a model that lacks it).
    #[arg(long, conflicts_with = "no_quantize")]
    pub(crate) depth_input: bool,
    /// How the decoder doubles its resolution: transposed convolutions, or a convolution and a
    /// pixel shuffle.
    #[arg(long, value_parser = upsample_parser(), default_value = "transposed")]
    pub(crate) upsample: Upsample,
    /// Residual blocks after each decoder upsampling stage but the last (each starts as the
    /// identity).
    #[arg(long, default_value_t = ModelConfig::default().up_res_blocks)]
    pub(crate) up_res_blocks: usize,
    /// How the linear path starts: from the PCA of training patches, or at random.
    #[arg(long, value_parser = init_parser(), default_value = "pca")]
    pub(crate) init: Init,
    /// Passes over the training set.
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    pub(crate) epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = TrainOptions::default().batch_size, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainOptions::default().learning_rate)]
    pub(crate) lr: f64,
    /// Decoupled weight decay (AdamW, on every trained parameter), in [0, 1]; 0 trains with
    /// Adam.
    #[arg(long, default_value_t = TrainOptions::default().weight_decay)]
    pub(crate) weight_decay: f32,
    /// Share of the steps, in [0, 1], from the first, trained on the L1 loss before MSE.
    #[arg(long, default_value_t = TrainOptions::default().l1_fraction)]
    pub(crate) l1_fraction: f32,
    /// Validate and keep a moving average of the weights with this per-step decay in [0, 1)
    /// (e.g. 0.999) instead of the last step's; 0: off.
    #[arg(long, default_value_t = TrainOptions::default().weight_average)]
    pub(crate) weight_average: f32,
    /// Stop after this many steps.
    #[arg(long)]
    pub(crate) max_steps: Option<usize>,
    /// Fraction of batches trained at a random depth per image (quantizer dropout).
    #[arg(long, default_value_t = TrainOptions::default().dropout_fraction)]
    pub(crate) dropout: f32,
    /// Relative odds of depths 1..=n_q in those batches, one per codebook (default: equal).
    #[arg(long, value_delimiter = ',')]
    pub(crate) dropout_weights: Vec<f32>,
    /// Fine-tune: start from this trained model folder (same configuration) instead of the
    /// PCA and k-means start.
    #[arg(long)]
    pub(crate) from: Option<PathBuf>,
    /// Random crops (--crop-size square) from each image when --data is a folder of images.
    #[arg(long, default_value_t = rvq::train::DEFAULT_CROPS, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) crops: usize,
    /// Side of those crops in pixels, a multiple of 32 up to 512; above 32, CIFAR-10 trains on
    /// mosaics of its images at that side and still validates on its 32×32 test images.
    #[arg(long, default_value_t = rvq::train::DEFAULT_CROP_SIDE, value_parser = clap::value_parser!(u32).range(32..=512).map(|v| v as usize))]
    pub(crate) crop_size: usize,
    /// Validation images (the first N of test_batch.bin).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) valid: usize,
    /// Random seed.
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    pub(crate) seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = TrainOptions::default().checkpoint_every, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    pub(crate) checkpoint_every: usize,
    /// Continue from OUT/checkpoint, given the options the run was started with.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Start a new run in an --out that already holds a model's files or a stopped run's
    /// checkpoint, replacing them (never a `checkpoint` folder that no run wrote).
    #[arg(long, conflicts_with = "resume")]
    pub(crate) force: bool,
    /// End this session at this step, checkpointed, without finishing the run: the learning
    /// rate keeps the whole run's schedule, so `--resume` later continues exactly.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..).map(|v| v as usize))]
    pub(crate) stop_at: Option<usize>,
    /// Where to run.
    #[arg(long, default_value_t = Backend::Auto, value_parser = backend_parser())]
    pub(crate) backend: Backend,
}

/// `cpu`, `wgpu` or `auto`, listed in `--help`.
fn upsample_parser() -> impl clap::builder::TypedValueParser<Value = Upsample> {
    clap::builder::PossibleValuesParser::new(["transposed", "shuffle"])
        .map(|s| s.parse::<Upsample>().expect("one of the listed names"))
}

fn init_parser() -> impl clap::builder::TypedValueParser<Value = Init> {
    clap::builder::PossibleValuesParser::new(["pca", "random"])
        .map(|s| s.parse::<Init>().expect("one of the listed names"))
}

/// An image size given as WIDTHxHEIGHT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Size {
    pub(crate) width: u32,
    pub(crate) height: u32,
}

impl std::str::FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        s.split_once('x')
            .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
            .filter(|&(w, h)| (1..=16_384).contains(&w) && (1..=16_384).contains(&h))
            .map(|(width, height)| Size { width, height })
            .ok_or_else(|| format!("{s}: expected WIDTHxHEIGHT, e.g. 768x512"))
    }
}

fn backend_parser() -> impl clap::builder::TypedValueParser<Value = Backend> {
    clap::builder::PossibleValuesParser::new(Backend::ALL.map(Backend::name))
        .map(|s| s.parse::<Backend>().expect("one of the listed names"))
}
