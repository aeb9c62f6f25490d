//! Exporting a model for other frameworks: its weights as safetensors (loadable in PyTorch),
//! and a reference of inputs, latents, indices and decoded images computed by rvq, which
//! `bench/torch_reference.py` checks itself against.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

use crate::error::{Error, Result};
use crate::files::{temp_path, write_atomic};
use crate::model::{Model, hex};

impl Model {
    /// Writes the model's weights as safetensors (tensor names are the module paths, e.g.
    /// `down.0.weight`), with the fingerprint and configuration in the metadata.
    pub fn export_safetensors(&self, path: &Path) -> Result<()> {
        use burn::store::{ModuleSnapshot, SafetensorsStore};
        let tmp = temp_path(path);
        let config = serde_json::to_string(&self.config).expect("config serialises");
        let mut store = SafetensorsStore::from_file(tmp.clone())
            .overwrite(true)
            .metadata("rvq_fingerprint", hex(&self.fingerprint))
            .metadata("rvq_config", config);
        self.net.save_into(&mut store).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Other(format!("{}: {e}", path.display()))
        })?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        })
    }

    /// Writes the tensors a port of the model needs to check itself against rvq: `images`
    /// (`[n, 3, 32, 32]`, the deterministic synthetic images of `rvq bench`), the encoder's
    /// `latents`, and for a quantizing model the `indices` chosen at every level
    /// (`[n, n_q, h, w]`, i64) and the images `decoded` from them. All computed by the model on
    /// its device. Readers find tensors and the metadata (`rvq_fingerprint`, `rvq_config`) by
    /// name: the safetensors crate orders tensors by alignment and keeps metadata in a hash
    /// map, so the two metadata entries may be written in either order.
    pub fn export_reference(&self, path: &Path, n: usize) -> Result<()> {
        let n = n.max(1);
        let side = crate::data::CIFAR_SIDE;
        let mut pixels = Vec::with_capacity(n * 3 * side * side);
        for i in 0..n {
            let img = crate::data::synthetic(side as u32, side as u32, i as u32)?;
            pixels.extend(crate::image_io::to_planar_padded(&img, side, side));
        }
        let images = Tensor::<4>::from_data(
            TensorData::new(pixels.clone(), [n, 3, side, side]),
            &self.device,
        );
        let latents = self.net.encode(images.clone());
        let [_, d, h, w] = latents.dims();
        let floats = |t: Tensor<4>| -> Result<Vec<f32>> {
            t.into_data()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Backend(format!("{e:?}")))
        };
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "images",
                Dtype::F32,
                vec![n, 3, side, side],
                le_f32(&pixels),
            ),
            (
                "latents",
                Dtype::F32,
                vec![n, d, h, w],
                le_f32(&floats(latents)?),
            ),
        ];
        if self.config.quantize {
            let depth = self.config.num_codebooks;
            let batch = self.encode_indices(images, depth, 1)?;
            let decoded = floats(self.decode_indices(&batch.indices, batch.grid, depth)?)?;
            let indices: Vec<u8> = batch
                .indices
                .iter()
                .flatten()
                .flat_map(|&v| i64::from(v).to_le_bytes())
                .collect();
            tensors.push(("indices", Dtype::I64, vec![n, depth, h, w], indices));
            tensors.push((
                "decoded",
                Dtype::F32,
                vec![n, 3, side, side],
                le_f32(&decoded),
            ));
        }
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                Ok((*name, TensorView::new(*dtype, shape.clone(), bytes)?))
            })
            .collect::<std::result::Result<Vec<_>, safetensors::SafeTensorError>>();
        let metadata = HashMap::from([
            ("rvq_fingerprint".to_string(), hex(&self.fingerprint)),
            (
                "rvq_config".to_string(),
                serde_json::to_string(&self.config).expect("config serialises"),
            ),
        ]);
        let bytes = views
            .and_then(|views| safetensors::serialize(views, Some(metadata)))
            .map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
        write_atomic(path, &bytes)
    }
}

/// `values` as little-endian bytes, the layout of safetensors and of checkpoint state.
pub(crate) fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}
