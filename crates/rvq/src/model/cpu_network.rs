//! The trained network as [`crate::cpu`]'s layers: a child of `model` so that it reads the
//! network's layers where they are private, and `cpu.rs` stays free of burn.
use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::prelude::*;

use super::{ResBlock, RvqVae};
use crate::cpu::{Books, Conv, Network, Residual, Upsample as Up};
use crate::quantizer;

impl RvqVae {
    /// The same network for [`crate::cpu`]'s path, if it has the layers that path knows: the
    /// linear path and transposed convolutions, without depth input or upsampling blocks.
    pub(crate) fn cpu_network(&self) -> Option<Network> {
        if !(self.up_shuffle.is_empty() && self.up_res.is_empty() && self.depth_in.is_empty()) {
            return None;
        }
        let values = |t: Tensor<4>| (t.dims(), quantizer::float_vec(t));
        let bias = |b: &Option<Param<Tensor<1>>>| b.as_ref().map(|b| quantizer::float_vec(b.val()));
        // Only the convolutions the path computes (square kernels, equal strides, the same
        // padding on every side); any other runs on burn's layers.
        let conv = |c: &Conv2d| {
            let pad = match c.padding {
                PaddingConfig2d::Valid => 0,
                PaddingConfig2d::Explicit(t, l, b, r) if t == l && l == b && b == r => t,
                _ => return None,
            };
            let plain = c.stride[0] == c.stride[1] && c.dilation == [1, 1] && c.groups == 1;
            let (dims, w) = values(c.weight.val());
            (plain && dims[2] == dims[3])
                .then(|| Conv::new(&w, dims, bias(&c.bias), c.stride[0], pad))
        };
        let res = |blocks: &[ResBlock]| -> Option<Vec<Residual>> {
            let block = |b: &ResBlock| Some(Residual::new(conv(&b.conv1)?, conv(&b.conv2)?));
            blocks.iter().map(block).collect()
        };
        let up = |c: &ConvTranspose2d| {
            let (dims, w) = values(c.weight.val());
            let standard = dims[2] == 4 && c.stride == [2, 2] && c.padding == [1, 1];
            standard.then(|| Up::new(&w, dims, bias(&c.bias)))
        };
        Some(Network {
            grid: self.grid,
            lin_enc: conv(self.lin_enc.as_ref()?)?,
            lin_dec: conv(self.lin_dec.as_ref()?)?,
            down: self.down.iter().map(conv).collect::<Option<_>>()?,
            enc_res: res(&self.enc_res)?,
            to_latent: conv(&self.to_latent)?,
            from_latent: conv(&self.from_latent)?,
            dec_res: res(&self.dec_res)?,
            up: self.up.iter().map(up).collect::<Option<_>>()?,
            books: self.codebooks().map(|c| {
                let dims = c.dims();
                Books::new(&quantizer::float_vec(c), dims)
            }),
        })
    }
}
