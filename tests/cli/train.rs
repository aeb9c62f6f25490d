//! `rvq train`, `rvq export` and `rvq sweep` on tiny runs.

use std::path::Path;

use predicates::prelude::*;
use tempfile::TempDir;

use crate::support::*;

#[test]
fn train_refuses_missing_and_malformed_data() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m");
    let out_s = out.to_str().unwrap();
    // `rvq train` on the CPU into `out`, with these arguments before `--out`.
    let refused = |args: &[&str], needle: &str| {
        let head = ["train", "--backend", "cpu"];
        fails_with(&[&head[..], args, &["--out", out_s]].concat(), needle);
    };
    refused(
        &["--data", "/nonexistent/cifar"],
        "/nonexistent/cifar: not a folder",
    );
    // A CIFAR-looking folder whose first training file is cut short.
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), vec![1u8; 3073 * 2 + 5]).unwrap();
    refused(
        &["--data", cifar.to_str().unwrap()],
        "data_batch_1.bin: 6151 bytes is not a whole number of 3,073-byte CIFAR-10 records",
    );
    std::fs::write(cifar.join("data_batch_1.bin"), vec![1u8; 3073 * 2]).unwrap();
    refused(
        &["--data", cifar.to_str().unwrap()],
        "data_batch_2.bin: missing",
    );
    // Every source of a mixture is read before training starts.
    let samples = samples();
    refused(
        &["--data", s(&samples), "--data", "/nonexistent/photos"],
        "/nonexistent/photos: not a folder",
    );
    // Crops that would not fit in memory are refused before any image is read.
    refused(
        &["--data", s(&samples), "--crops", "400000000"],
        "give fewer --crops",
    );
    // A crop side the mosaics and cells cannot tile, and crops larger than the photographs.
    refused(
        &["--data", s(&samples), "--crop-size", "48"],
        "the side must be a multiple of 32",
    );
    refused(
        &["--data", s(&samples), "--crop-size", "512"],
        "smaller than a 512×512 training crop",
    );
    assert!(!out.exists());
}

#[test]
fn train_resumes_only_with_the_options_it_started_with() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("tiny");
    let steps = ["--max-steps", "4"];
    tiny_train(&out, &[&steps[..], &["--stop-at", "2"]].concat())
        .assert()
        .success();
    assert!(!out.join("model.bpk").exists());
    // The data is described before the checkpoint is read; the error is one line after it.
    let err = tiny_train_refused(&out, &[&steps[..], &["--resume", "--lr", "0.002"]].concat());
    assert!(err.contains("learning_rate 0.001, not 0.002"), "{err}");
    assert!(!out.join("model.bpk").exists());
    // A new run into the stopped run's folder would replace its checkpoint: refused.
    let err = tiny_train_refused(&out, &steps);
    assert!(
        err.contains("holds a stopped run's checkpoint; continue that run with --resume"),
        "{err}"
    );
    tiny_train(&out, &[&steps[..], &["--resume"]].concat())
        .assert()
        .success();
    assert!(out.join("model.bpk").exists());
    // So is one over the finished model, unless forced.
    let card = std::fs::read(out.join("card.json")).unwrap();
    let err = tiny_train_refused(&out, &steps);
    assert!(err.contains("holds model.bpk already"), "{err}");
    assert_eq!(std::fs::read(out.join("card.json")).unwrap(), card);
    tiny_train(&out, &[&steps[..], &["--force", "--seed", "9"]].concat())
        .assert()
        .success();
    assert_ne!(std::fs::read(out.join("card.json")).unwrap(), card);
}

#[test]
fn train_leaves_files_it_did_not_write_alone() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("project");
    std::fs::create_dir(&out).unwrap();
    let notes = out.join("notes.txt");
    std::fs::write(&notes, b"mine").unwrap();
    // A user's own config.json would be replaced by the model's at the end: refused.
    std::fs::write(out.join("config.json"), b"{\"mine\": true}").unwrap();
    let steps = ["--max-steps", "2"];
    let err = tiny_train_refused(&out, &steps);
    assert!(
        err.contains("holds config.json already; train into another folder"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("config.json")).unwrap(),
        b"{\"mine\": true}"
    );
    std::fs::remove_file(out.join("config.json")).unwrap();
    // A checkpoint folder that no run wrote is refused even with --force: the first
    // checkpoint would retire and delete it.
    let theirs = out.join("checkpoint");
    std::fs::create_dir(&theirs).unwrap();
    std::fs::write(theirs.join("weights.pt"), b"someone else's").unwrap();
    for extra in [&[][..], &["--force"][..]] {
        let err = tiny_train_refused(&out, &[&steps[..], extra].concat());
        assert!(
            err.contains("holds no checkpoint (state.json missing)"),
            "{extra:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(theirs.join("weights.pt")).unwrap(),
        b"someone else's"
    );
    // Beside files of its own names gone, a run trains and keeps the rest.
    std::fs::remove_dir_all(&theirs).unwrap();
    tiny_train(&out, &steps).assert().success();
    assert!(out.join("model.bpk").exists());
    assert_eq!(std::fs::read(&notes).unwrap(), b"mine");
}

#[test]
fn train_on_an_image_folder_then_encode_with_the_result_and_export() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("tiny");
    tiny_train(&out, &["--max-steps", "3"]).assert().success();
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("card.json")).unwrap()).unwrap();
    assert_eq!(card["steps"], 3);
    assert!(
        card["data"]
            .as_str()
            .unwrap()
            .contains("random 32×32 crops")
    );
    let archive = dir.path().join("t.rvq");
    rvq()
        .args(["encode", "--backend", "cpu", "--model"])
        .arg(&out)
        .arg("-o")
        .arg(&archive)
        .arg(samples().join("coffee-32.png"))
        .assert()
        .success();
    // 16 cells × 2 codebooks × 3 bits = 96 bits = 12 payload bytes.
    let info = rvq()
        .args(["info", "--json"])
        .arg(&archive)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["payload_bytes"], 12);
    assert_eq!(info["fingerprint"], card["fingerprint"]);
    // The default model cannot decode it: the fingerprints differ.
    fails_with(
        &[
            "decode",
            "--backend",
            "cpu",
            "-o",
            dir.path().join("d").to_str().unwrap(),
            archive.to_str().unwrap(),
        ],
        "the archive was made with model",
    );
    let export = |extra: &[&str], weights: &Path| {
        let mut cmd = rvq();
        cmd.args(["export", "--model"])
            .arg(&out)
            .arg("-o")
            .arg(weights)
            .args(extra);
        cmd.assert()
    };
    let st = dir.path().join("tiny.safetensors");
    export(&[], &st).success();
    let header = safetensors_header(&st);
    assert!(header.get("codebooks").is_some(), "{header}");
    assert_eq!(
        header["__metadata__"]["rvq_fingerprint"],
        card["fingerprint"]
    );
    // The reference file for a port: an existing one is kept without --force, and the weights
    // are not written either.
    let reference = dir.path().join("reference.safetensors");
    std::fs::write(&reference, b"keep").unwrap();
    let fresh = dir.path().join("fresh.safetensors");
    let with_ref = ["--reference", reference.to_str().unwrap()];
    export(&with_ref, &fresh)
        .failure()
        .stderr(predicates::str::contains("already exists"));
    assert_eq!(std::fs::read(&reference).unwrap(), b"keep");
    assert!(!fresh.exists());
    export(
        &[&with_ref[..], &["--force", "--reference-images", "2"]].concat(),
        &fresh,
    )
    .success();
    // One path for both files would have the reference replace the weights.
    let both = dir.path().join("both.safetensors");
    export(&["--reference", both.to_str().unwrap()], &both)
        .failure()
        .stderr(predicates::str::contains(
            "both.safetensors: given for two outputs",
        ));
    assert!(!both.exists());
    // So is the same file spelt two ways, `x` and `./x`.
    rvq()
        .current_dir(dir.path())
        .args(["export", "--model"])
        .arg(&out)
        .args([
            "-o",
            "both.safetensors",
            "--reference",
            "./both.safetensors",
        ])
        .assert()
        .failure()
        .stderr(predicates::str::contains("given for two outputs"));
    assert!(!both.exists());
    let header = safetensors_header(&reference);
    assert_eq!(header["images"]["shape"], serde_json::json!([2, 3, 32, 32]));
    assert!(header.get("indices").is_some(), "{header}");
}

#[test]
fn sweep_runs_a_grid_resumes_and_reports() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("sweep");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = [
            "sweep",
            "--backend",
            "cpu",
            "--grid",
            "smoke",
            "--max-steps",
            "2",
            "--batch-size",
            "8",
            "--valid",
            "10",
            "--data",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.push(samples().display().to_string());
        v.push("--out".into());
        v.push(out.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    rvq().args(args(&[])).assert().success();
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.lines()
            .nth(2)
            .unwrap()
            .starts_with("rvq-d8-k16-q2-f8,rvq,8,16,2,8,8,128,32,")
    );
    let again: Vec<String> = args(&[]);
    let again: Vec<&str> = again.iter().map(String::as_str).collect();
    fails_with(&again, "continue it with --resume");
    rvq()
        .args(args(&["--resume"]))
        .assert()
        .success()
        .stdout(predicate::str::contains("0 runs finished"));
    rvq().args(["sweep", "report"]).arg(&out).assert().success();
    assert!(out.join("report.md").is_file());
    let fig = image::open(out.join("figures/rvq_mse_vs_bits.png")).unwrap();
    assert_eq!(fig.width(), 900);
}

/// `rvq extend` adds a codebook fitted on an image's cells: the extended model encodes at the
/// new depth and decodes the old depths as the built-in model does; an existing folder, and
/// images with fewer cells than a codebook has entries, are refused and leave nothing.
#[test]
fn extend_adds_a_codebook_that_encodes_and_keeps_the_old_depths() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m9");
    let samples = samples();
    // 384×384 pixels of texture: 2,304 cells for the 1,024 entries.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    image::RgbImage::from_fn(384, 384, |x, y| {
        let (x, y) = (x as f32, y as f32);
        let v = |a: f32, b: f32| (128.0 + 100.0 * (x * a + y * b).sin()) as u8;
        image::Rgb([v(0.05, 0.02), v(0.011, 0.07), v(0.03, 0.03)])
    })
    .save(data.join("texture.png"))
    .unwrap();
    let args = |data: &Path, out: &Path| {
        let mut c = rvq();
        c.args(["extend", "--backend", "cpu", "--codebooks", "9"])
            .args(["--iterations", "1", "--data", s(data), "--out", s(out)]);
        c
    };
    let few = dir.path().join("few");
    args(&samples, &few)
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "948 latent vectors, fewer than the 1024",
        ));
    assert!(!few.exists());
    args(&data, &out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "level  9: mean squared latent residual",
        ));
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("extension.json")).unwrap()).unwrap();
    assert_eq!(card["options"]["codebooks"], 9);
    args(&data, &out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("exists; give a new folder"));
    let encode = |model: Option<&Path>, m: &str, name: &str| {
        let archive = dir.path().join(name);
        let mut c = rvq();
        c.args([
            "encode",
            "--backend",
            "cpu",
            "--effort",
            "0",
            "--codebooks",
            m,
        ]);
        if let Some(model) = model {
            c.args(["--model", s(model)]);
        }
        c.args(["-o", s(&archive), s(&samples)]).assert().success();
        archive
    };
    encode(Some(&out), "9", "nine.rvq");
    let decode = |model: Option<&Path>, archive: &Path, name: &str| {
        let to = dir.path().join(name);
        let mut c = rvq();
        c.args(["decode", "--backend", "cpu"]);
        if let Some(model) = model {
            c.args(["--model", s(model)]);
        }
        c.args(["-o", s(&to), s(archive)]).assert().success();
        std::fs::read(to.join("chelsea.png")).unwrap()
    };
    let ours = encode(Some(&out), "4", "ours.rvq");
    let theirs = encode(None, "4", "theirs.rvq");
    assert_eq!(
        decode(Some(&out), &ours, "d1"),
        decode(None, &theirs, "d2"),
        "depth 4 decodes as with the built-in model"
    );
}
