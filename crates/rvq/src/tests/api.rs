//! The model's and codec's checks on what callers hand them, and the reference export.

use burn::prelude::*;
use rvq::model::Model;
use rvq::quantizer;
use safetensors::Dtype;

use super::common::{read_safetensors, safetensors_metadata, synthetic};
use super::test_images;

#[test]
fn the_reference_export_holds_what_the_model_computes() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("reference.safetensors");
    model.export_reference(&path, 3).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let meta = safetensors_metadata(&bytes);
    assert_eq!(meta["rvq_fingerprint"], rvq::model::hex(&model.fingerprint));
    let tensors = read_safetensors(&bytes);
    let (n_q, d) = (model.config.num_codebooks, model.config.latent_dim);
    let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert_eq!(names, ["decoded", "images", "indices", "latents"]);
    let tensor = |name: &str, dtype: Dtype, shape: &[usize]| {
        let (t, s, data) = &tensors[name];
        assert_eq!((*t, s.as_slice()), (dtype, shape), "{name}");
        data.clone()
    };
    let images = tensor("images", Dtype::F32, &[3, 3, 32, 32]);
    tensor("latents", Dtype::F32, &[3, d, 4, 4]);
    let indices = tensor("indices", Dtype::I64, &[3, n_q, 4, 4]);
    let decoded = tensor("decoded", Dtype::F32, &[3, 3, 32, 32]);

    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let expected: Vec<f32> = (0..3)
        .flat_map(|i| {
            rvq::image_io::to_planar_padded(&rvq::data::synthetic(32, 32, i).unwrap(), 32, 32)
        })
        .collect();
    assert_eq!(f32s(&images), expected);
    let x = Tensor::<4>::from_data(TensorData::new(expected, [3, 3, 32, 32]), &device);
    let batch = model.encode_indices(x, n_q, 1).unwrap();
    let ours: Vec<i64> = batch.indices.iter().flatten().map(|&v| v as i64).collect();
    let stored: Vec<i64> = indices
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(stored, ours);
    assert!(
        ours.iter().any(|&v| v != ours[0]),
        "real codebooks pick varied entries"
    );
    let out = model
        .decode_indices(&batch.indices, batch.grid, n_q)
        .unwrap();
    assert_eq!(f32s(&decoded), quantizer::float_vec(out));
}

#[test]
fn the_codec_api_refuses_depths_and_headers_that_do_not_fit_the_model() {
    use rvq::codec::{self, EncodeOptions, Named};
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let images = [Named {
        name: "a".into(),
        image: rvq::data::synthetic(32, 32, 1).unwrap(),
    }];
    let capped = |m| EncodeOptions {
        rate: rvq::Rate::Quality {
            quality: 90,
            max_codebooks: Some(m),
        },
        ..EncodeOptions::default()
    };
    for m in [0, 9] {
        let err = codec::encode_records(&model, &images, &capped(m)).unwrap_err();
        assert!(
            matches!(err, rvq::Error::Codebooks { asked, available: 8 } if asked == m),
            "m = {m}: {err}"
        );
    }
    let records = codec::encode_records(&model, &images, &capped(2)).unwrap();
    let header = codec::header_for(&model, &capped(2)).unwrap();
    assert_eq!(
        rvq::decode::decode_records(&model, &header, &records, 8)
            .unwrap()
            .len(),
        1
    );
    let mut other = header.clone();
    other.fingerprint[0] ^= 1;
    let err = rvq::decode::decode_records(&model, &other, &records, 8).unwrap_err();
    assert!(matches!(err, rvq::Error::ModelMismatch { .. }), "{err}");
    // An archive of a model once built in says which it was.
    let run45 = "d4730156a4aac33c5f2468c86496da01";
    for (i, byte) in other.fingerprint.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&run45[2 * i..2 * i + 2], 16).unwrap();
    }
    let err = rvq::decode::decode_records(&model, &other, &records, 8).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "made with model {run45}, the built-in photo model until"
        )),
        "{err}"
    );
    let mut deeper = header.clone();
    deeper.codebooks_used = 9;
    let err = rvq::decode::decode_records(&model, &deeper, &records, 8).unwrap_err();
    assert!(
        matches!(err, rvq::Error::Codebooks { asked: 9, .. }),
        "{err}"
    );
}

#[test]
fn the_model_api_refuses_indices_that_do_not_fit_it() {
    let device = Device::flex();
    let model = Model::load_default(&device).unwrap();
    let x = test_images([1, 32, 32], 5, &device);
    let batch = model.encode_indices(x.clone(), 2, 1).unwrap();
    assert!(model.decode_indices(&batch.indices, batch.grid, 2).is_ok());
    for depth in [0, 9] {
        let err = model.encode_indices(x.clone(), depth, 4).unwrap_err();
        assert!(
            matches!(err, rvq::Error::Codebooks { asked, .. } if asked == depth),
            "{depth}: {err}"
        );
    }
    let bad = |err: rvq::Error, needle: &str| {
        assert!(matches!(err, rvq::Error::BadIndices { .. }), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    };
    // Three levels asked of two levels' indices, a partial level, an index past the codebook
    // (but not one in a level left unused), an empty grid.
    bad(
        model
            .decode_indices(&batch.indices, batch.grid, 3)
            .unwrap_err(),
        "not 3 or more levels of 16",
    );
    let mut partial = batch.indices.clone();
    partial[0].pop();
    bad(
        model.decode_indices(&partial, batch.grid, 1).unwrap_err(),
        "31 indices",
    );
    let mut past = batch.indices.clone();
    past[0][20] = 1024;
    assert!(model.decode_indices(&past, batch.grid, 1).is_ok());
    past[0][5] = 1024;
    bad(
        model.decode_indices(&past, batch.grid, 2).unwrap_err(),
        "index 1024",
    );
    bad(
        model.decode_indices(&[vec![]], (0, 4), 2).unwrap_err(),
        "no cells",
    );
    // Cell depths: one map per image, one depth per cell, each in 1..=depth.
    for maps in [
        vec![],
        vec![vec![2u8; 15]],
        vec![vec![3u8; 16]],
        vec![vec![0u8; 16]],
    ] {
        bad(
            model
                .decode_cells(&batch.indices, Some(&maps), batch.grid, 2)
                .unwrap_err(),
            "depth map",
        );
    }
    let images = synthetic(2, 3);
    let err = rvq::eval::quality(&model, &images, &[1, 9], 2).unwrap_err();
    assert!(
        matches!(err, rvq::Error::Codebooks { asked: 9, .. }),
        "{err}"
    );
}

/// Each built-in model is found again by its fingerprint, as a decoder given only an archive
/// finds it; other fingerprints and names find none.
#[test]
fn built_in_models_are_found_by_name_and_by_fingerprint() {
    let device = Device::flex();
    let names = Model::built_in_names();
    assert_eq!(names, ["default", "photo"]);
    let mut prints = Vec::new();
    for name in names {
        // The model's fingerprint is hashed from its weights as loaded; the lookup's is written.
        let model = Model::load_built_in(name, &device).unwrap();
        let hex = rvq::model::hex(model.fingerprint());
        assert_eq!(Model::built_in_for(&hex), Some(name));
        prints.push(*model.fingerprint());
    }
    assert_ne!(prints[0], prints[1]);
    assert_eq!(
        *Model::load_default(&device).unwrap().fingerprint(),
        prints[0]
    );
    assert_eq!(Model::built_in_for(&"ab".repeat(16)), None);
    // A model once built in is named, not found: an archive citing it needs its folder.
    let run45 = "d4730156a4aac33c5f2468c86496da01";
    assert_eq!(Model::built_in_for(run45), None);
    assert!(Model::retired_built_in(run45).is_some_and(|w| w.contains("run 45")));
    let run48 = "6713ef26992e7011fc6bec670e4dd7b8";
    assert_eq!(Model::built_in_for(run48), None);
    assert!(Model::retired_built_in(run48).is_some_and(|w| w.contains("run 48")));
    assert_eq!(Model::retired_built_in(&rvq::model::hex(&prints[1])), None);
    assert_eq!(Model::built_in_for("photo"), None);
    let err = Model::load_built_in("phot", &device).unwrap_err();
    assert!(matches!(err, rvq::Error::UnknownModel { .. }), "{err}");
    // A bare name that is no folder is looked up among the built-in models.
    let photo = Model::load_or_default(Some(std::path::Path::new("photo")), &device).unwrap();
    assert_eq!(photo.fingerprint(), &prints[1]);
}
