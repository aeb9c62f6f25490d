//! The models embedded in the binary (feature `embedded-model`), chosen by name and found by
//! the fingerprint an archive cites.

use burn::prelude::Device;

use super::Model;
use crate::error::{Error, Result};

/// The default model's configuration, embedded from `models/default` at build time.
#[cfg(feature = "embedded-model")]
const DEFAULT_CONFIG: &str = include_str!("../../../../models/default/config.json");
/// The default model's weights, embedded from `models/default` at build time.
#[cfg(feature = "embedded-model")]
static DEFAULT_WEIGHTS: &[u8] = include_bytes!("../../../../models/default/model.bpk");

/// A model embedded in the binary: its name, `config.json` and `model.bpk`.
struct BuiltIn {
    name: &'static str,
    config: &'static str,
    weights: &'static [u8],
    /// [`fingerprint`](super::fingerprint) of `weights` in hex, written out so that finding an
    /// archive's model hashes nothing
    /// (`tests::api::built_in_models_are_found_by_name_and_by_fingerprint` checks it against
    /// the weights).
    fingerprint: &'static str,
}

/// The models this build embeds (feature `embedded-model`), chosen by name: the default model
/// (trained on CIFAR-10) and the photograph model (`models/photo`, fine-tuned on a mixture of
/// CIFAR-10 and crops of photographs, with sixteen codebooks, last on 64×64 crops;
/// docs/MODEL.md, run 50).
#[cfg(feature = "embedded-model")]
static BUILT_IN: [BuiltIn; 2] = [
    BuiltIn {
        name: "default",
        config: DEFAULT_CONFIG,
        weights: DEFAULT_WEIGHTS,
        fingerprint: "6e6f66e30658bbc7caf1f7deba1994bf",
    },
    BuiltIn {
        name: "photo",
        config: include_str!("../../../../models/photo/config.json"),
        weights: include_bytes!("../../../../models/photo/model.bpk"),
        fingerprint: "982a48f58670be2c6136952547e6c929",
    },
];
/// Models once built in and since replaced, by fingerprint, with where to find them: an
/// archive that cites one names it in the error rather than only its fingerprint.
const RETIRED: [(&str, &str); 3] = [
    (
        "d4730156a4aac33c5f2468c86496da01",
        "the built-in photo model until 2026-12-07 (docs/MODEL.md, run 45; its folder is \
         models/photo at commit 47fe896)",
    ),
    (
        "6713ef26992e7011fc6bec670e4dd7b8",
        "the built-in photo model from the nineteenth session until run 49 in the twentieth, \
         2026-12-07 (docs/MODEL.md, run 48; its folder is models/photo at commit 2dc4250)",
    ),
    (
        "a5ba2611f28481aa348147cb8801253a",
        "the built-in photo model from the twentieth session until run 50 in the \
         twenty-first, 2026-12-08 (docs/MODEL.md, run 49; its folder is models/photo at \
         commit 1e9d85b)",
    ),
];

/// None without the feature `embedded-model`.
#[cfg(not(feature = "embedded-model"))]
static BUILT_IN: [BuiltIn; 0] = [];

/// Whether this build embeds any model (feature `embedded-model`).
pub(super) fn embeds_any() -> bool {
    !BUILT_IN.is_empty()
}

impl Model {
    /// The default model, from the copy embedded in the binary (feature `embedded-model`).
    #[cfg(feature = "embedded-model")]
    pub fn load_default(device: &Device) -> Result<Self> {
        Self::load_built_in("default", device)
    }

    /// The names of the models this build embeds, the default first (none without the
    /// feature `embedded-model`).
    pub fn built_in_names() -> Vec<&'static str> {
        BUILT_IN.iter().map(|b| b.name).collect()
    }

    /// The embedded model called `name` (see [`Model::built_in_names`]).
    pub fn load_built_in(name: &str, device: &Device) -> Result<Self> {
        match BUILT_IN.iter().find(|b| b.name == name) {
            Some(b) => Self::from_parts(b.config, b.weights.to_vec(), b.name, device),
            None => Err(Error::UnknownModel {
                name: name.to_string(),
                built_in: Self::built_in_names().join(", "),
            }),
        }
    }

    /// The name of the embedded model whose fingerprint is `fingerprint` in lowercase hex, as
    /// an archive's header cites its model ([`hex`](super::hex) of the header's bytes; `rvq
    /// info` prints it): how a decoder finds the model of an archive it is given without one.
    pub fn built_in_for(fingerprint: &str) -> Option<&'static str> {
        let b = BUILT_IN.iter().find(|b| b.fingerprint == fingerprint)?;
        Some(b.name)
    }

    /// What the model of fingerprint `fingerprint` (lowercase hex) was, where it is a model
    /// once built in and since replaced: an archive it wrote needs its folder.
    pub fn retired_built_in(fingerprint: &str) -> Option<&'static str> {
        RETIRED
            .iter()
            .find(|(f, _)| *f == fingerprint)
            .map(|(_, what)| *what)
    }
}
