//! rvq: an image codec built on a learned residual-vector-quantized VAE.
//!
//! A trained RVQ-VAE turns each image into a small grid of codebook indices per codebook; the
//! indices are packed, or range-coded where that is shorter, into an archive (see the
//! [`archive`] crate re-export and `docs/FORMAT.md`) whose header carries what all images
//! share.
//!
//! What a program that embeds the codec needs is re-exported here: [`Model`] (load one),
//! [`Encoder`] with [`EncodeOptions`] and a [`Rate`] (images to an archive, pushed one at a time
//! through an [`EncodeWriter`]), [`Decoder`] (an archive back to images, streamed as
//! [`Images`]), the memory [`Budget`] every pass of the network runs under, [`Backend`],
//! [`Rgb`] and [`Error`]; `examples/round_trip.rs` uses them in under 40 lines.
//!
//! Five modules are public besides: [`image_io`] (PNG and JPEG in, PNG out, limits, atomic
//! files), [`names`] (the file each decoded image is written to), [`data`] (CIFAR-10 and
//! image-folder data sets), `train` (the training loop, checkpoints and model cards; with the
//! `train` feature) and [`eval`] (quality measures).
//! The rest, one module per concept, is the crate's own:
//!
//! - `config`: the model's architecture and quantizer geometry ([`ModelConfig`]);
//! - `model`: the network, loading and saving model folders, the fingerprint ([`Model`]);
//! - `export`: the weights as safetensors and a reference for the PyTorch port;
//! - `pca`: principal components of image patches, the start of the linear path;
//! - `quantizer`: residual vector quantization;
//! - `codebooks`: codebook learning (EMA, k-means), for training;
//! - `rate`: rate control, the codebooks each cell uses for a quality or PSNR target ([`Rate`]);
//! - `refine`: decoder-aware refinement of the chosen indices, in pixel space;
//! - `restore`: restoration filters, fitted per image by the encoder, applied by the decoder;
//! - `effort`: one knob for how hard the encoder searches ([`Effort`]);
//! - `average`: a moving average of a network's weights, for evaluation;
//! - `codec`: images to archives ([`Encoder`]);
//! - `decode`: archives back to images ([`Decoder`]), whole or streamed;
//! - `files`: writing output files atomically;
//! - `budget`: the memory budget, batches by pixels and tiles for large images ([`Budget`]);
//! - `inference`: the network's passes under the budget;
//! - `backend`: the one choice point between the CPU and GPU backends ([`Backend`]);
//! - `error`: the library's typed errors, which name no command-line flags ([`Error`]).
//!
//! Features, all on by default: `wgpu` (the GPU backend), `train` (autodiff, optimisers and
//! the `train` module) and `embedded-model` (the built-in models compiled in, `default` and
//! `photo`: `Model::load_default`, `Model::load_built_in`).
//! With none of them the crate is a CPU-only codec that loads its model from a folder;
//! `docs/BENCHMARKS.md` ("A CPU-only build") measures what that saves.
//!
//! The `rvq` command (the `rvq-cli` package at the repository's root) is built on this crate:
//! argument parsing, progress bars, the comparison with JPEG and WebP, charts, benchmarks and
//! the study's sweeps live there, so a program that embeds the codec pulls in none of them.

#[cfg(feature = "train")]
mod average;
mod backend;
mod budget;
#[cfg(feature = "train")]
mod codebooks;
mod codec;
mod config;
mod cpu;
pub mod data;
mod decode;
mod effort;
mod error;
pub mod eval;
mod export;
mod files;
mod fit;
pub mod image_io;
mod inference;
mod linear;
mod model;
pub mod names;
#[cfg(feature = "train")]
mod pca;
mod quantizer;
mod rate;
mod refine;
mod restore;
mod scale;
#[cfg(feature = "train")]
pub mod train;

// The tests share helpers with the integration tests, which name the crate `rvq`.
#[cfg(all(test, feature = "train", feature = "embedded-model"))]
extern crate self as rvq;
#[cfg(all(test, feature = "train", feature = "embedded-model"))]
mod tests;

pub use backend::{Adapter, Backend, Chosen};
pub use budget::Budget;
pub use codec::{EncodeOptions, EncodeWriter, Encoder, Named, Shortfall};
pub use config::{ModelConfig, Upsample};
pub use decode::{Decoder, Images};
pub use effort::Effort;
pub use error::{Error, Result, SizeLimit};
pub use files::{ClosedFile, MergePart, merge_parts};
pub use image_io::Rgb;
pub use model::Model;
pub use rate::{Rate, RateSearch, Target};
/// The archive format (integers and bytes only; no dependency on burn).
pub use rvq_archive as archive;
