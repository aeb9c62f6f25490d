//! The RVQ-VAE network: a convolutional encoder to a grid of latent vectors, residual codebooks,
//! and a decoder that mirrors the encoder. Fully convolutional, so any image whose sides are
//! multiples of the grid factor goes through unchanged.

use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use sha2::{Digest, Sha256};

mod built_in;
mod cpu_network;

use crate::budget::Budget;
use crate::config::{ModelConfig, Upsample};
use crate::error::{Error, Result};
#[cfg(feature = "train")]
use crate::files::write_atomic;
use crate::quantizer::{self, EncodedBatch};

/// Bytes of the model fingerprint written into archives (a truncated SHA-256 of the weights).
pub use rvq_archive::FINGERPRINT_LEN;

/// A residual block at the latent resolution: x + conv1×1(relu(conv3×3(relu(x)))).
#[derive(Module, Debug)]
pub struct ResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResBlock {
    fn new(channels: usize, hidden: usize, device: &Device) -> Self {
        Self {
            conv1: Conv2dConfig::new([channels, hidden], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            conv2: Conv2dConfig::new([hidden, channels], [1, 1]).init(device),
        }
    }

    /// A block that starts as the identity (its last convolution zero), so that adding it
    /// to a trained network leaves the network's function as it was.
    fn identity(channels: usize, hidden: usize, device: &Device) -> Self {
        Self {
            conv2: Conv2dConfig::new([hidden, channels], [1, 1])
                .with_initializer(Initializer::Zeros)
                .init(device),
            ..Self::new(channels, hidden, device)
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self
            .conv2
            .forward(relu(self.conv1.forward(relu(x.clone()))));
        x + h
    }
}

/// The network's layers and codebooks. Built from a [`ModelConfig`], which it does not store.
///
/// With `linear_path`, each side is a linear map plus a convolutional residual branch: the
/// encoder projects each f×f×3 patch (pixel-unshuffled, so 3·f² values per cell) to d values
/// with a 1×1 convolution, and adds the convolutional encoder's output; the decoder projects d
/// back to 3·f² values, pixel-shuffles them and adds the convolutional decoder's output. The
/// projections start from the PCA of training patches ([`RvqVae::set_linear_basis`]) and the
/// branches' last layers from zero, so an untrained network is already a good linear codec.
#[derive(Module, Debug)]
pub struct RvqVae {
    /// Pixel-unshuffled patch → latent (1×1); absent without the linear path.
    lin_enc: Option<Conv2d>,
    /// Latent → patch values before pixel-shuffle (1×1); absent without the linear path.
    lin_dec: Option<Conv2d>,
    down: Vec<Conv2d>,
    enc_res: Vec<ResBlock>,
    to_latent: Conv2d,
    from_latent: Conv2d,
    dec_res: Vec<ResBlock>,
    /// Transposed convolutions doubling the resolution ([`Upsample::Transposed`]); empty
    /// otherwise.
    up: Vec<ConvTranspose2d>,
    /// Convolutions to four times the channels, each followed by a pixel shuffle by 2
    /// ([`Upsample::Shuffle`]); empty otherwise.
    up_shuffle: Vec<Conv2d>,
    /// `up_res_blocks` residual blocks after each upsampling stage but the last, stage by
    /// stage; empty without them.
    up_res: Vec<ResBlock>,
    /// With `depth_input`: one 1×1 convolution from a cell's one-hot depth (n_q channels) to
    /// the decoder branch's channels, added before each residual block and after the last;
    /// empty otherwise.
    depth_in: Vec<Conv2d>,
    /// `[n_q, k, d]`; absent in a plain autoencoder.
    codebooks: Option<Param<Tensor<3>>>,
    /// Downsampling factor, kept to (un)shuffle pixels on the linear path.
    grid: usize,
}

impl RvqVae {
    /// A freshly initialised network for `config` (which must be valid).
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let widths = config.stage_channels();
        let mut down = Vec::new();
        let mut c_in = 3;
        for &w in widths {
            down.push(
                Conv2dConfig::new([c_in, w], [3, 3])
                    .with_stride([2, 2])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device),
            );
            c_in = w;
        }
        let inner = *widths.last().expect("validated config has stages");
        let res = |device: &Device| {
            (0..config.res_blocks)
                .map(|_| ResBlock::new(inner, config.res_channels, device))
                .collect::<Vec<_>>()
        };
        let (up, up_shuffle, up_res) = up_stages(config, inner, device);
        let patch = 3 * config.grid_factor * config.grid_factor;
        let (lin_enc, lin_dec) = if config.linear_path {
            (
                Some(Conv2dConfig::new([patch, config.latent_dim], [1, 1]).init(device)),
                Some(Conv2dConfig::new([config.latent_dim, patch], [1, 1]).init(device)),
            )
        } else {
            (None, None)
        };
        let mut to_latent = Conv2dConfig::new([inner, config.latent_dim], [1, 1]);
        if config.linear_path {
            to_latent = to_latent.with_initializer(Initializer::Zeros);
        }
        let codebooks = config.quantize.then(|| {
            let shape = [
                config.num_codebooks,
                config.codebook_size,
                config.latent_dim,
            ];
            Param::from_tensor(Tensor::zeros(shape, device)).set_require_grad(false)
        });
        let mut net = Self {
            lin_enc,
            lin_dec,
            down,
            enc_res: res(device),
            to_latent: to_latent.init(device),
            from_latent: Conv2dConfig::new([config.latent_dim, inner], [1, 1]).init(device),
            dec_res: res(device),
            up,
            up_shuffle,
            up_res,
            depth_in: Vec::new(),
            codebooks,
            grid: config.grid_factor,
        };
        if config.depth_input {
            net.add_depth_input(device);
        }
        net
    }

    /// Gives the decoder its depth input, starting at zero so the network decodes exactly as
    /// before: how a trained model without one is fine-tuned into one with it. No-op if it
    /// already has one, and for a network without codebooks (it has no depths).
    pub fn add_depth_input(&mut self, device: &Device) {
        let Some(codebooks) = self.codebooks.as_ref().filter(|_| self.depth_in.is_empty()) else {
            return;
        };
        let [num_codebooks, _, _] = codebooks.val().dims();
        let [channels, _, _, _] = self.from_latent.weight.dims();
        self.depth_in = (0..=self.dec_res.len())
            .map(|_| {
                Conv2dConfig::new([num_codebooks, channels], [1, 1])
                    .with_bias(false)
                    .with_initializer(Initializer::Zeros)
                    .init(device)
            })
            .collect();
    }

    #[cfg(feature = "train")]
    /// Sets the linear path to the orthonormal `basis` (`[d][3·f²]` row-major: row i is the
    /// i-th principal direction of pixel-unshuffled patches) around the patch `mean`
    /// (`[3·f²]`): the encoder computes basis·(x − mean), the decoder basisᵀ·z + mean. No-op
    /// for a network without the linear path.
    pub fn set_linear_basis(&mut self, basis: &[f32], mean: &[f32]) {
        let (Some(enc), Some(dec)) = (self.lin_enc.as_mut(), self.lin_dec.as_mut()) else {
            return;
        };
        let [d, p, _, _] = enc.weight.dims();
        assert_eq!(basis.len(), d * p, "basis is [d][3·f²]");
        assert_eq!(mean.len(), p, "mean is [3·f²]");
        let device = enc.weight.device();
        let w = Tensor::<2>::from_data(TensorData::new(basis.to_vec(), [d, p]), &device);
        let mu = Tensor::<1>::from_data(TensorData::new(mean.to_vec(), [p]), &device);
        let enc_bias = w
            .clone()
            .matmul(mu.clone().reshape([p, 1]))
            .reshape([d])
            .neg();
        enc.weight = Param::from_tensor(w.clone().reshape([d, p, 1, 1]));
        enc.bias = Some(Param::from_tensor(enc_bias));
        dec.weight = Param::from_tensor(w.transpose().reshape([p, d, 1, 1]));
        dec.bias = Some(Param::from_tensor(mu));
    }

    /// Images `[b, 3, h, w]` in [0, 1] to latents `[b, d, h/f, w/f]`.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<4> {
        let linear = self
            .lin_enc
            .as_ref()
            .map(|p| p.forward(pixel_unshuffle(images.clone(), self.grid)));
        let mut x = images;
        for conv in &self.down {
            x = relu(conv.forward(x));
        }
        for block in &self.enc_res {
            x = block.forward(x);
        }
        let branch = self.to_latent.forward(relu(x));
        match linear {
            Some(l) => l + branch,
            None => branch,
        }
    }

    /// Latents `[b, d, h, w]` to images `[b, 3, h·f, w·f]` in [0, 1] (clamped on the linear
    /// path, which has no output sigmoid). `depths` gives each cell's depth, in the order of
    /// [`latents_to_rows`] (0 for an unquantized latent); `None`: every cell at full depth. Only
    /// a network with a depth input reads them.
    ///
    /// # Panics
    /// If a network with a depth input is given other than one depth per cell (b·h·w).
    pub fn decode(&self, latents: Tensor<4>, depths: Option<&[usize]>) -> Tensor<4> {
        let x = self.decode_unclamped(latents, depths);
        if self.lin_dec.is_some() {
            x.clamp(0.0, 1.0)
        } else {
            x
        }
    }

    /// [`RvqVae::decode`] without the final clamp, for training: a clamped pixel passes no
    /// gradient, so an overshoot could never be pulled back.
    pub fn decode_unclamped(&self, latents: Tensor<4>, depths: Option<&[usize]>) -> Tensor<4> {
        let linear = self
            .lin_dec
            .as_ref()
            .map(|p| pixel_shuffle(p.forward(latents.clone()), self.grid));
        let onehot = self.depth_planes(&latents, depths);
        let conditioned = |x: Tensor<4>, i: usize| match (&onehot, self.depth_in.get(i)) {
            (Some(o), Some(conv)) => x + conv.forward(o.clone()),
            _ => x,
        };
        let mut x = conditioned(self.from_latent.forward(latents), 0);
        for (i, block) in self.dec_res.iter().enumerate() {
            x = conditioned(block.forward(x), i + 1);
        }
        // One of the two lists is empty: the model upsamples one way.
        for (stage, conv) in self.up.iter().enumerate() {
            x = self.after_upsampling(conv.forward(relu(x)), stage);
        }
        for (stage, conv) in self.up_shuffle.iter().enumerate() {
            x = self.after_upsampling(pixel_shuffle(conv.forward(relu(x)), 2), stage);
        }
        if linear.is_none() {
            x = sigmoid(x);
        }
        match linear {
            Some(l) => l + x,
            None => x,
        }
    }

    /// The residual blocks that follow upsampling stage `stage` (none after the last).
    fn after_upsampling(&self, mut x: Tensor<4>, stage: usize) -> Tensor<4> {
        let stages = self.up.len() + self.up_shuffle.len();
        let per_stage = self.up_res.len() / stages.saturating_sub(1).max(1);
        for block in self.up_res.iter().skip(stage * per_stage).take(per_stage) {
            x = block.forward(x);
        }
        x
    }

    /// Each cell's depth one-hot, `[b, n_q, h, w]`, for a network with a depth input; a depth
    /// of 0 (unquantized) or beyond n_q counts as n_q, the nearest to exact.
    fn depth_planes(&self, latents: &Tensor<4>, depths: Option<&[usize]>) -> Option<Tensor<4>> {
        let [_, n_q, _, _] = self.depth_in.first()?.weight.dims();
        let [b, _, h, w] = latents.dims();
        let cells = b * h * w;
        if let Some(d) = depths {
            assert_eq!(d.len(), cells, "one depth per cell of the latent grid");
        }
        let mut onehot = vec![0f32; cells * n_q];
        for cell in 0..cells {
            let d = depths.map_or(n_q, |d| d[cell]);
            let d = if d == 0 || d > n_q { n_q } else { d };
            onehot[cell * n_q + d - 1] = 1.0;
        }
        let rows = Tensor::<2>::from_data(TensorData::new(onehot, [cells, n_q]), &latents.device());
        Some(rows_to_latents(rows, b, h, w))
    }

    /// The codebooks, `[n_q, k, d]`, if the model quantizes.
    pub fn codebooks(&self) -> Option<Tensor<3>> {
        self.codebooks.as_ref().map(|p| p.val())
    }

    /// Every codebook entry as the decoder's linear path draws it, `[n_q · k, 3 · f²]` on the
    /// host (channels in pixel-unshuffle order, no bias): absent without the linear path or
    /// codebooks.
    pub(crate) fn drawn_books(&self) -> Option<Vec<f32>> {
        use rayon::prelude::*;
        let weight = self.linear_decoder()?;
        let books = self.codebooks()?;
        let [_, _, d] = books.dims();
        let books = quantizer::float_vec(books);
        let patch = weight.len() / d;
        // Summed on the host in one order, so that every backend estimates alike.
        let mut out = vec![0f32; books.len() / d * patch];
        let rows = out
            .par_chunks_exact_mut(patch)
            .zip(books.par_chunks_exact(d));
        rows.for_each(|(row, entry)| {
            for (v, w) in row.iter_mut().zip(weight.chunks_exact(d)) {
                *v = w.iter().zip(entry).map(|(a, b)| a * b).sum();
            }
        });
        Some(out)
    }

    /// The decoder's linear path as a matrix on the host, `[3 · f², d]` row-major (channels in
    /// pixel-unshuffle order): what a cell's latent adds to its patch. `None` without it.
    pub(crate) fn linear_decoder(&self) -> Option<Vec<f32>> {
        Some(quantizer::float_vec(self.lin_dec.as_ref()?.weight.val()))
    }

    #[cfg(feature = "train")]
    /// Replaces the codebooks (the trainer's EMA step does this after every batch).
    pub fn set_codebooks(&mut self, codebooks: Tensor<3>) {
        if let Some(p) = self.codebooks.take() {
            let (id, _, _) = p.consume();
            self.codebooks = Some(Param::initialized(id, codebooks).set_require_grad(false));
        }
    }
}

/// The decoder branch's upsampling stages from `inner` channels down to 3: transposed
/// convolutions or convolutions for a pixel shuffle (the other list empty), and the residual
/// blocks after every stage but the last. The last layer starts at zero on the linear path,
/// so that the branch adds nothing at step 0.
fn up_stages(
    config: &ModelConfig,
    inner: usize,
    device: &Device,
) -> (Vec<ConvTranspose2d>, Vec<Conv2d>, Vec<ResBlock>) {
    let (mut up, mut up_shuffle, mut up_res) = (Vec::new(), Vec::new(), Vec::new());
    let widths = config.stage_channels();
    let outs: Vec<usize> = widths.iter().rev().skip(1).copied().chain([3]).collect();
    let mut c_in = inner;
    for (i, &w) in outs.iter().enumerate() {
        let last = i + 1 == outs.len();
        let zero = config.linear_path && last;
        match config.upsample {
            Upsample::Transposed => {
                let mut layer = ConvTranspose2dConfig::new([c_in, w], [4, 4])
                    .with_stride([2, 2])
                    .with_padding([1, 1]);
                if zero {
                    layer = layer.with_initializer(Initializer::Zeros);
                }
                up.push(layer.init(device));
            }
            Upsample::Shuffle => {
                let mut layer = Conv2dConfig::new([c_in, 4 * w], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1));
                if zero {
                    layer = layer.with_initializer(Initializer::Zeros);
                }
                up_shuffle.push(layer.init(device));
            }
        }
        if !last {
            up_res.extend(
                (0..config.up_res_blocks)
                    .map(|_| ResBlock::identity(w, config.res_channels, device)),
            );
        }
        c_in = w;
    }
    (up, up_shuffle, up_res)
}

/// `[b, c, h, w]` to `[b, c·f², h/f, w/f]`: each f×f patch becomes one cell's channels, in
/// the order (channel, row in patch, column in patch), as PyTorch's `pixel_unshuffle`.
pub fn pixel_unshuffle(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h / f, f, w / f, f])
        .permute([0, 1, 3, 5, 2, 4])
        .reshape([b, c * f * f, h / f, w / f])
}

/// The inverse of [`pixel_unshuffle`].
pub fn pixel_shuffle(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, cff, h, w] = x.dims();
    let c = cff / (f * f);
    x.reshape([b, c, f, f, h, w])
        .permute([0, 1, 4, 2, 5, 3])
        .reshape([b, c, h * f, w * f])
}

/// Latents `[b, d, h, w]` to one row per grid cell, `[b·h·w, d]`, in (image, row, column) order.
pub fn latents_to_rows(latents: Tensor<4>) -> Tensor<2> {
    let [b, d, h, w] = latents.dims();
    latents.permute([0, 2, 3, 1]).reshape([b * h * w, d])
}

/// The inverse of [`latents_to_rows`].
pub fn rows_to_latents(rows: Tensor<2>, batch: usize, h: usize, w: usize) -> Tensor<4> {
    let [_, d] = rows.dims();
    rows.reshape([batch, h, w, d]).permute([0, 3, 1, 2])
}

/// A trained model: its configuration, network and fingerprint, on one device.
#[derive(Debug)]
pub struct Model {
    /// Architecture and quantizer geometry.
    pub(crate) config: ModelConfig,
    /// The network, in inference mode.
    pub(crate) net: RvqVae,
    /// Truncated SHA-256 of the weights file; archives cite it.
    pub(crate) fingerprint: [u8; FINGERPRINT_LEN],
    /// Where the network runs.
    pub(crate) device: Device,
    /// The network on [`crate::cpu`]'s path, used instead of burn's layers on the CPU backend.
    pub(crate) cpu: Option<crate::cpu::Network>,
    /// The memory the network's passes are planned under ([`Model::set_budget`]).
    pub(crate) budget: Budget,
    /// The most padded pixels one pass of the network has held ([`Model::largest_pass`]).
    pub(crate) largest_pass: std::sync::atomic::AtomicU64,
    /// [`RvqVae::drawn_books`], made on first use ([`Model::drawn_books`]).
    pub(crate) drawn: Drawn,
}

/// A model's codebooks as its linear path draws them, made when first asked for: 6 MiB for
/// the shipped model, which only the estimates of `crate::linear` read.
#[derive(Default)]
pub(crate) struct Drawn(pub(crate) std::sync::OnceLock<Option<Vec<f32>>>);

impl std::fmt::Debug for Drawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Drawn")
    }
}

/// File names inside a model folder.
pub const WEIGHTS_FILE: &str = "model.bpk";
/// The configuration file inside a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// The model card inside a model folder (written by training).
#[cfg(feature = "train")]
pub const CARD_FILE: &str = "card.json";

/// Fingerprint of a weights file's bytes.
pub fn fingerprint(weights: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let digest = Sha256::digest(weights);
    let mut out = [0u8; FINGERPRINT_LEN];
    out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    out
}

pub(crate) use rvq_archive::hex;

impl Model {
    /// Architecture and quantizer geometry.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Truncated SHA-256 of the weights file; archives cite it.
    pub fn fingerprint(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.fingerprint
    }

    /// Where the network runs.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Loads the model folder `dir`, or the embedded default model when `dir` is `None` (an
    /// error when this build embeds none). Where this build embeds models, a `dir` of one
    /// component that does not exist names one of them (`photo`; see
    /// [`Model::built_in_names`]): a folder of that name comes first. To load a built-in model
    /// whatever the working directory holds, use [`Model::load_built_in`].
    pub fn load_or_default(dir: Option<&Path>, device: &Device) -> Result<Self> {
        match dir {
            // A bare name that is no folder is a built-in model's, or a mistake to name as such
            // (a folder that cannot be looked at is tried as a folder, to report why).
            Some(d) => match d.to_str() {
                Some(name)
                    if built_in::embeds_any()
                        && d.components().count() == 1
                        && !d.try_exists().unwrap_or(true) =>
                {
                    Self::load_built_in(name, device)
                }
                _ => Self::load(d, device),
            },
            #[cfg(feature = "embedded-model")]
            None => Self::load_default(device),
            #[cfg(not(feature = "embedded-model"))]
            None => Err(Error::NoDefaultModel),
        }
    }

    /// Loads a model folder (`config.json` + `model.bpk`).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join(CONFIG_FILE);
        let config_text = std::fs::read_to_string(&config_path).map_err(|e| Error::Io {
            path: config_path.clone(),
            source: e,
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let weights = std::fs::read(&weights_path).map_err(|e| Error::Io {
            path: weights_path.clone(),
            source: e,
        })?;
        Self::from_parts(&config_text, weights, &dir.display().to_string(), device)
    }

    /// Builds a model from a configuration's JSON text and a burnpack weights file's bytes.
    /// `origin` names where they came from, for error messages.
    pub fn from_parts(
        config_json: &str,
        weights: Vec<u8>,
        origin: &str,
        device: &Device,
    ) -> Result<Self> {
        let config: ModelConfig =
            serde_json::from_str(config_json).map_err(|e| Error::ModelMismatch {
                model: origin.to_string(),
                reason: format!("config.json is not a valid model configuration: {e}"),
            })?;
        config.validate()?;
        // The codebooks are made at their full size before the weights are checked against
        // them: a config.json that asks for more than the weights file holds (at two bytes a
        // value, the least) is refused first, rather than allocated.
        let values = (config.num_codebooks as u128)
            * (config.codebook_size as u128)
            * (config.latent_dim as u128);
        if config.quantize && values * 2 > weights.len() as u128 {
            return Err(Error::ModelMismatch {
                model: origin.to_string(),
                reason: format!(
                    "config.json's codebooks ({values} values) do not fit in the weights file \
                     ({} bytes)",
                    weights.len()
                ),
            });
        }
        let fingerprint = fingerprint(&weights);
        let record =
            burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(weights))
                .map_err(|e| Error::ModelMismatch {
                    model: origin.to_string(),
                    reason: format!("the weights file cannot be read: {e:?}"),
                })?;
        let net = RvqVae::new(&config, device)
            .try_load_record(record)
            .map_err(|e| Error::ModelMismatch {
                model: origin.to_string(),
                reason: format!("the weights do not fit config.json: {e:?}"),
            })?;
        let on_cpu = *device == Device::flex();
        let budget = if on_cpu { Budget::CPU } else { Budget::GPU };
        Ok(Self {
            config,
            cpu: on_cpu.then(|| net.cpu_network()).flatten(),
            net,
            fingerprint,
            device: device.clone(),
            budget,
            largest_pass: Default::default(),
            drawn: Drawn::default(),
        })
    }

    #[cfg(feature = "train")]
    /// Writes the network and configuration into `dir` (created if missing); returns the
    /// fingerprint of the weights written.
    pub(crate) fn save_net(
        net: &RvqVae,
        config: &ModelConfig,
        dir: &Path,
    ) -> Result<[u8; FINGERPRINT_LEN]> {
        std::fs::create_dir_all(dir).map_err(|e| Error::Io {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let bytes = net
            .clone()
            .into_record()
            .into_bytes()
            .map_err(|e| Error::Other(format!("cannot serialise the weights: {e:?}")))?;
        let bytes: Vec<u8> = bytes.to_vec();
        write_atomic(&dir.join(WEIGHTS_FILE), &bytes)?;
        let json = serde_json::to_string_pretty(config).expect("config serialises");
        write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())?;
        Ok(fingerprint(&bytes))
    }

    /// Refuses a depth outside `1..=n_q`, and any depth for a model without codebooks.
    pub fn check_depth(&self, depth: usize) -> Result<()> {
        let c = &self.config;
        if !c.quantize {
            return Err(Error::NotQuantized);
        }
        if depth == 0 || depth > c.num_codebooks {
            return Err(Error::Codebooks {
                asked: depth,
                available: c.num_codebooks,
            });
        }
        Ok(())
    }

    /// Refuses indices the network cannot decode: a bad depth, an empty grid, an image whose
    /// indices are not whole levels of `h·w` or fewer than `depth` of them, an index past the
    /// codebook in the levels used, or cell depths that are not one per cell in `1..=depth`.
    pub(crate) fn check_cells(
        &self,
        indices: &[Vec<u32>],
        depths: Option<&[Vec<u8>]>,
        grid: (usize, usize),
        depth: usize,
    ) -> Result<()> {
        self.check_depth(depth)?;
        let bad = |reason: String| Err(Error::BadIndices { reason });
        let cells = grid.0 * grid.1;
        if cells == 0 {
            return bad(format!("a {}×{} grid has no cells", grid.1, grid.0));
        }
        let k = self.config.codebook_size;
        for (i, img) in indices.iter().enumerate() {
            if img.len() < depth * cells || img.len() % cells != 0 {
                return bad(format!(
                    "image {i} has {} indices, not {depth} or more levels of {cells}",
                    img.len()
                ));
            }
            if let Some(v) = img[..depth * cells].iter().find(|&&v| v as usize >= k) {
                return bad(format!(
                    "image {i} has index {v}, past the {k} entries of a codebook"
                ));
            }
        }
        if let Some(depths) = depths {
            if depths.len() != indices.len() {
                return bad(format!(
                    "{} depth maps for {} image(s)",
                    depths.len(),
                    indices.len()
                ));
            }
            for (i, d) in depths.iter().enumerate() {
                if d.len() != cells || d.iter().any(|&c| c == 0 || c as usize > depth) {
                    return bad(format!(
                        "image {i}'s depth map is not {cells} depths in 1..={depth}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// [`Model::encode_indices`] from latents `[b, d, h, w]` the encoder already computed, for
    /// callers that need the latents as well as the indices.
    pub(crate) fn quantize_latents(
        &self,
        latents: Tensor<4>,
        (depth, beam): (usize, usize),
        per_depth: bool,
    ) -> Result<EncodedBatch> {
        self.check_depth(depth)?;
        let codebooks = self.net.codebooks().ok_or(Error::NotQuantized)?;
        let [b, _, h, w] = latents.dims();
        let cells = h * w;
        let cpu = self.cpu.as_ref().and_then(|c| c.books.as_ref());
        let rows = latents_to_rows(latents);
        let paths = quantizer::quantize_beam(rows, &codebooks, (depth, beam), cpu, per_depth);
        Ok(quantizer::per_image(paths, b, cells, (h, w)))
    }
}
