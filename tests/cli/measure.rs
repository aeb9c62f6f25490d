//! `rvq eval` and `rvq bench`.

use std::ffi::OsStr;
use std::path::Path;

use predicates::prelude::*;
use tempfile::TempDir;

use crate::support::*;

#[test]
fn eval_compares_rvq_jpeg_and_webp_and_writes_json_and_a_chart() {
    let dir = TempDir::new().unwrap();
    let json = dir.path().join("e.json");
    let plot = dir.path().join("rd.png");
    let out = rvq()
        .args([
            "eval",
            "--backend",
            "cpu",
            "--codebooks",
            "1,8",
            "--jpeg-qualities",
            "10,50",
            "--webp-qualities",
            "10",
            "--data",
        ])
        .arg(samples())
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| rvq | m=8 |") && table.contains("| webp | q=10 |"),
        "{table}"
    );
    let points: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(points.len(), 5);
    let rvq1 = &points[0];
    assert_eq!(rvq1["codec"], "rvq");
    // Each point costs the archive's one block less its header: exactly what `rvq encode`
    // writes for these images with names off, less its header (docs/EVAL.md), restoration
    // filters included. At m = 1 no filter pays for its bytes, and range-coded the block is
    // less than packing's 948 cells (256 + 247 + 247 + 150 + 3 × 16) × 10 bits = 1,185 bytes
    // of indices, a flags byte, 18 bytes of sizes, a 2-byte length and a 4-byte checksum:
    // 1,210 bytes over the 7 samples. At m = 8 the larger samples take filters.
    let payload_of = |m: &str, extra: &[&str]| {
        let archive = encode_samples_with(&dir, m, extra);
        let info = rvq()
            .args(["info", "--json", s(&archive)])
            .output()
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        let payload =
            info["total_bytes"].as_u64().unwrap() - info["header_bytes"].as_u64().unwrap();
        (payload, info["filtered_images"].as_u64().unwrap())
    };
    let (one, none) = payload_of("1", &["--no-names"]);
    assert!(one < 1210 && none == 0, "{one}, {none}");
    let (eight, filtered) = payload_of("8", &["--no-names"]);
    let (plain, _) = payload_of("8", &["--no-names", "--no-filter"]);
    assert!(
        eight > plain && filtered > 0,
        "{eight} against {plain}, {filtered}"
    );
    for (point, payload) in [(rvq1, one), (&points[1], eight)] {
        let per_image = point["payload_bytes_per_image"].as_f64().unwrap();
        assert!(
            (per_image - payload as f64 / 7.0).abs() < 1e-9,
            "{per_image} against {payload}"
        );
    }
    assert!(rvq1["psnr"].as_f64().unwrap() < points[1]["psnr"].as_f64().unwrap());
    assert!(rvq1["nearest_jpeg_quality"].is_u64());
    let png = image::open(&plot).unwrap();
    assert_eq!((png.width(), png.height()), (900, 600));
    // Existing outputs are not overwritten.
    fails_with(
        &[
            "eval",
            "--backend",
            "cpu",
            "--data",
            samples().to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        "already exists",
    );
    // Two outputs are checked together before any work: one named twice, or one in a folder
    // that is not there, and neither is written.
    let fresh = dir.path().join("fresh.json");
    let samples = samples();
    for (plot, needle) in [
        (fresh.clone(), "fresh.json: given for two outputs"),
        (dir.path().join("nowhere/rd.png"), "nowhere: no such folder"),
        (dir.path().to_path_buf(), ": is a folder"),
    ] {
        let eval = ["eval", "--backend", "cpu", "--data", s(&samples)];
        fails_with(
            &[
                &eval[..],
                &["--json", s(&fresh), "--plot", s(&plot), "--force"],
            ]
            .concat(),
            needle,
        );
        assert!(!fresh.exists(), "{needle}");
    }
}

#[test]
fn eval_of_an_archive_against_its_originals() {
    let dir = TempDir::new().unwrap();
    let archive = encode_samples(&dir, "2");
    let out = rvq()
        .args([
            "eval",
            "--backend",
            "cpu",
            "--jpeg-qualities",
            "10",
            "--webp-qualities",
            "10",
            "--data",
        ])
        .arg(&archive)
        .arg("--against")
        .arg(samples())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| rvq | m=2 |"));
    fails_with(
        &[
            "eval",
            "--backend",
            "cpu",
            "--data",
            archive.to_str().unwrap(),
        ],
        "needs --against",
    );
}

#[test]
fn refining_the_last_level_lowers_the_error_of_encode_and_of_eval() {
    let dir = TempDir::new().unwrap();
    let plain = encode_samples_with(&dir, "1", &["--refine", "1"]);
    let refined = encode_samples_with(&dir, "1", &["--refine", "8"]);
    let of_archive = |a: &Path| {
        eval_mse_m1(
            &dir,
            &[
                "--data".as_ref(),
                a.as_os_str(),
                "--against".as_ref(),
                samples().as_os_str(),
            ],
        )
    };
    let (a, b) = (of_archive(&plain), of_archive(&refined));
    assert!(b < a, "encode --refine 8: {b} not below {a}");
    let direct = |extra: &[&str]| {
        let folder = samples();
        let mut args: Vec<&OsStr> = vec!["--codebooks".as_ref(), "1".as_ref(), "--data".as_ref()];
        args.push(folder.as_os_str());
        args.extend(extra.iter().map(OsStr::new));
        eval_mse_m1(&dir, &args)
    };
    let (c, d) = (direct(&["--refine", "1"]), direct(&["--refine", "8"]));
    assert!(d < c, "eval --refine 8: {d} not below {c}");
}

#[test]
fn bench_reports_every_measure() {
    let dir = TempDir::new().unwrap();
    let json = dir.path().join("b.json");
    // A quick bench: `runs` runs, batches of 4, a 64×48 large image.
    let bench = |runs: &str, extra: &[&str]| {
        let quick = ["bench", "--backend", "cpu", "--runs", runs, "--batch", "4"];
        rvq()
            .args(quick)
            .args(["--large", "64x48"])
            .args(extra)
            .assert()
            .success()
    };
    let measures = |json: &std::path::Path| -> Vec<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
    };
    bench("1", &["--json", json.to_str().unwrap()])
        .stdout(predicate::str::contains("encode one 64×48 image"));
    let m = measures(&json);
    assert_eq!(m.len(), 6);
    assert!(
        m.iter()
            .all(|x| x["images_per_second"].as_f64().unwrap() > 0.0)
    );
    // What bench/cpu_vs_torch.sh times against PyTorch: greedy, every cell at every codebook;
    // over three runs the fastest is reported beside the median, and is no slower.
    let greedy = ["--beam", "1", "--refine", "1", "--fixed-depth"];
    let json = dir.path().join("greedy.json");
    bench(
        "3",
        &[&greedy[..], &["--json", json.to_str().unwrap()]].concat(),
    )
    .stdout(predicate::str::contains(
        "encode one 64×48 image, fixed depth |",
    ))
    .stdout(predicate::str::contains(
        "| median s | images/s | MB/s | fastest s |",
    ));
    for x in measures(&json) {
        let (median, fastest) = (
            x["seconds"].as_f64().unwrap(),
            x["fastest_seconds"].as_f64().unwrap(),
        );
        assert!(fastest > 0.0 && fastest <= median, "{x}");
        assert_eq!(x["runs"], 3, "{x}");
    }
    // A size that does not parse is a usage error, naming the flag and the form expected.
    let o = rvq().args(["bench", "--large", "64by48"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--large") && err.contains("expected WIDTHxHEIGHT"),
        "{err}"
    );
}
