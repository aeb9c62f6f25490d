//! The command line against bad input: each case gets a one-line error naming the file and the
//! problem, a non-zero exit, no panic, and no output file left behind. And the happy path with
//! the shipped model: encode the samples at several depths, decode, and check sizes and error.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use tempfile::TempDir;

fn rvq() -> Command {
    let mut c = Command::cargo_bin("rvq").unwrap();
    // A private runtime folder, as a desktop session has: without one, Mesa's Vulkan loader
    // (present where lavapipe is installed) prints a warning when rvq looks for GPUs.
    static XDG: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    let xdg = XDG.get_or_init(|| TempDir::new().unwrap());
    c.env("RUST_BACKTRACE", "0")
        .env("XDG_RUNTIME_DIR", xdg.path());
    c
}

fn samples() -> PathBuf {
    // Read when the test runs, not when it was built: a shared target folder may hold a binary
    // built from another checkout.
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("samples")
}

/// Runs `rvq args` expecting failure with a single-line message containing `needle`.
fn fails_with(args: &[&str], needle: &str) {
    let out = rvq().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("rvq: backend"))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: not one line: {err:?}");
}

/// `rvq encode --backend cpu -o out input` must fail with `needle` (see [`fails_with`]).
fn encode_fails(out: &Path, input: &Path, needle: &str) {
    fails_with(
        &[
            "encode",
            "--backend",
            "cpu",
            "-o",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        needle,
    );
}

fn encode_samples(dir: &TempDir, m: &str) -> PathBuf {
    encode_samples_with(dir, m, &[])
}

/// The samples encoded at `m` codebooks with `extra` flags, into `s{m}{flags}.rvq`.
fn encode_samples_with(dir: &TempDir, m: &str, extra: &[&str]) -> PathBuf {
    let out = dir.path().join(format!("s{m}{}.rvq", extra.concat()));
    rvq()
        .args(["encode", "--backend", "cpu", "--codebooks", m, "-o"])
        .arg(&out)
        .args(extra)
        .arg(samples())
        .assert()
        .success();
    out
}

fn no_files_but(dir: &Path, keep: &[&Path]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(keep.contains(&p.as_path()), "left behind: {}", p.display());
    }
}

#[test]
fn not_a_png_is_refused_and_nothing_written() {
    let dir = TempDir::new().unwrap();
    let txt = dir.path().join("notes.png");
    std::fs::write(&txt, "hello").unwrap();
    let out = dir.path().join("o.rvq");
    encode_fails(&out, &txt, "notes.png: not a readable image: not a PNG");
    no_files_but(dir.path(), &[&txt]);
}

#[test]
fn missing_input_and_empty_folder_are_refused() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    fails_with(
        &["encode", "-o", out.to_str().unwrap(), "/nonexistent/x.png"],
        "/nonexistent/x.png",
    );
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    fails_with(
        &[
            "encode",
            "-o",
            out.to_str().unwrap(),
            empty.to_str().unwrap(),
        ],
        "no PNG files",
    );
    assert!(!out.exists());
}

#[test]
fn absurd_dimensions_are_refused_before_decoding() {
    let dir = TempDir::new().unwrap();
    // A valid PNG header claiming 100000×100000 pixels, with no pixel data behind it.
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // An IDAT chunk must follow for a decoder to read the header; its data is never reached.
    for (kind, data) in [
        (b"IDAT", &[0x78u8, 0x9c, 0x03, 0x00][..]),
        (b"IEND", &[][..]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    let f = dir.path().join("huge.png");
    std::fs::write(&f, &png).unwrap();
    let out = dir.path().join("o.rvq");
    fails_with(
        &["encode", "-o", out.to_str().unwrap(), f.to_str().unwrap()],
        "huge.png: 100000×100000 exceeds the limit",
    );
    assert!(!out.exists());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn existing_output_is_not_overwritten_without_force() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    std::fs::write(&out, "precious").unwrap();
    let png = samples().join("coffee-32.png");
    encode_fails(&out, &png, "already exists (use --force");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
    rvq()
        .args(["encode", "--backend", "cpu", "--force", "-o"])
        .arg(&out)
        .arg(&png)
        .assert()
        .success();
    assert_ne!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn bad_archives_are_refused_with_clear_messages() {
    let dir = TempDir::new().unwrap();
    let good = encode_samples(&dir, "2");
    let bytes = std::fs::read(&good).unwrap();
    let outdir = dir.path().join("decoded");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated.rvq",
            bytes[..bytes.len() - 10].to_vec(),
            "truncated",
        ),
        (
            "flipped.rvq",
            {
                let mut b = bytes.clone();
                let n = b.len();
                b[n - 20] ^= 0x40;
                b
            },
            "checksum mismatch",
        ),
        (
            "magic.rvq",
            [b"XXXX".as_slice(), &bytes[4..]].concat(),
            "bad magic",
        ),
        (
            "newer.rvq",
            {
                let mut b = bytes.clone();
                b[4] = 9;
                b
            },
            "version 9 is newer",
        ),
        ("empty.rvq", Vec::new(), "bad magic"),
    ];
    for (name, data, needle) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, &data).unwrap();
        let msg = format!("{name}: ");
        fails_with(
            &[
                "decode",
                "--backend",
                "cpu",
                "-o",
                outdir.to_str().unwrap(),
                p.to_str().unwrap(),
            ],
            &msg,
        );
        fails_with(&["info", p.to_str().unwrap()], needle);
        assert!(!outdir.exists(), "{name}: output folder created");
    }
}

#[test]
fn archive_from_another_model_names_both_fingerprints() {
    let dir = TempDir::new().unwrap();
    let good = encode_samples(&dir, "1");
    let mut bytes = std::fs::read(&good).unwrap();
    // Rewrite the fingerprint and fix the header checksum, as another model would have.
    for b in &mut bytes[7..23] {
        *b = 0xab;
    }
    let header_len = header_len(&bytes);
    let crc = crc32(&bytes[..header_len - 4]);
    bytes[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    let p = dir.path().join("other.rvq");
    std::fs::write(&p, &bytes).unwrap();
    let outdir = dir.path().join("out");
    fails_with(
        &[
            "decode",
            "--backend",
            "cpu",
            "-o",
            outdir.to_str().unwrap(),
            p.to_str().unwrap(),
        ],
        "abababababababababababababababab",
    );
    assert!(!outdir.exists());
}

/// Header length of an archive without embedded codebook: 23 fixed bytes, the varint fields,
/// and the CRC.
fn header_len(bytes: &[u8]) -> usize {
    let mut pos = 23;
    for field in 0..7 {
        if field == 3 || field == 5 {
            pos += 1; // grid factor, bits per index: single bytes
            continue;
        }
        while bytes[pos] & 0x80 != 0 {
            pos += 1;
        }
        pos += 1;
    }
    pos + 4
}

#[test]
fn unwritable_output_folder_is_refused() {
    let dir = TempDir::new().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("o.rvq");
    let png = samples().join("coffee-32.png");
    encode_fails(&out, &png, "o.rvq");
}

#[test]
fn samples_round_trip_with_sizes_as_specified_and_error_falling_with_depth() {
    let dir = TempDir::new().unwrap();
    let mut last_mse = f64::INFINITY;
    let originals: Vec<PathBuf> = {
        let mut v: Vec<PathBuf> = std::fs::read_dir(samples())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        v.sort();
        v
    };
    for m in ["1", "2", "4", "8"] {
        let archive = encode_samples_with(&dir, m, &["--no-entropy"]);
        let info = rvq()
            .args(["info", "--json"])
            .arg(&archive)
            .output()
            .unwrap();
        assert!(info.status.success());
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        // Packed, payload = ceil(Σ cells · m · 10 / 8) over the samples (one block:
        // docs/FORMAT.md).
        let mut cells = 0u64;
        for p in &originals {
            let img = image::open(p).unwrap();
            cells += (img.width() as u64).div_ceil(8) * (img.height() as u64).div_ceil(8);
        }
        let payload = (cells * m.parse::<u64>().unwrap() * 10).div_ceil(8);
        assert_eq!(info["payload_bytes"].as_u64().unwrap(), payload, "m = {m}");
        assert_eq!(
            info["mean_depth"].as_f64().unwrap(),
            m.parse::<f64>().unwrap()
        );
        assert_eq!(info["images"].as_u64().unwrap(), originals.len() as u64);
        let out = dir.path().join(format!("dec{m}"));
        rvq()
            .args(["decode", "--backend", "cpu", "-o"])
            .arg(&out)
            .arg(&archive)
            .assert()
            .success();
        let (mut se, mut n) = (0f64, 0f64);
        for p in &originals {
            let a = image::open(p).unwrap().to_rgb8();
            let b = image::open(out.join(p.file_name().unwrap()))
                .unwrap()
                .to_rgb8();
            assert_eq!(a.dimensions(), b.dimensions());
            for (x, y) in a.as_raw().iter().zip(b.as_raw()) {
                let d = (*x as f64 - *y as f64) / 255.0;
                se += d * d;
                n += 1.0;
            }
        }
        let mse = se / n;
        assert!(
            mse < last_mse,
            "m = {m}: mse {mse} did not fall below {last_mse}"
        );
        last_mse = mse;
    }
    assert!(last_mse < 0.02, "8 codebooks: mse {last_mse}");
}

#[test]
fn decode_only_one_image_and_stdout() {
    let dir = TempDir::new().unwrap();
    let archive = encode_samples(&dir, "4");
    let out = rvq()
        .args([
            "decode",
            "--backend",
            "cpu",
            "--only",
            "chelsea-32.png",
            "-o",
            "-",
        ])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    let img = image::load_from_memory(&out.stdout).unwrap();
    assert_eq!((img.width(), img.height()), (32, 32));
    fails_with(
        &[
            "decode",
            "--backend",
            "cpu",
            "-o",
            "-",
            archive.to_str().unwrap(),
        ],
        "use --only NAME",
    );
}

#[test]
fn stdin_to_stdout_round_trip() {
    let png = std::fs::read(samples().join("coffee-32.png")).unwrap();
    let enc = rvq()
        .args(["encode", "--backend", "cpu", "-o", "-", "-"])
        .write_stdin(png)
        .output()
        .unwrap();
    assert!(
        enc.status.success(),
        "{}",
        String::from_utf8_lossy(&enc.stderr)
    );
    assert_eq!(&enc.stdout[..4], b"RVQA");
    let dec = rvq()
        .args(["decode", "--backend", "cpu", "-o", "-", "-"])
        .write_stdin(enc.stdout)
        .output()
        .unwrap();
    assert!(dec.status.success());
    assert_eq!(&dec.stdout[1..4], b"PNG");
}

#[test]
fn wgpu_without_an_adapter_is_a_clear_error() {
    // Hide every Vulkan driver: `--backend wgpu` must then fail in one line, not panic, and
    // `--backend auto` must fall back to the CPU and say so.
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    let png = samples().join("coffee-32.png");
    let r = rvq()
        .args(["encode", "--backend", "wgpu", "-o"])
        .arg(&out)
        .arg(&png)
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(err.contains("no wgpu adapter found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.exists());
    rvq()
        .args(["encode", "--backend", "auto", "-o"])
        .arg(&out)
        .arg(&png)
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .env("XDG_RUNTIME_DIR", dir.path())
        .assert()
        .success()
        .stderr(predicate::str::contains("backend: cpu"));
}

#[test]
fn help_lists_every_command() {
    let out = rvq()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    // Each command on a line of its own in clap's "Commands:" list, with its description.
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   ")) // a wrapped description's continuation
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        [
            "encode", "decode", "info", "truncate", "merge", "eval", "train", "sweep", "bench",
            "export", "help"
        ],
        "{help}"
    );
}

#[test]
fn train_refuses_missing_and_malformed_data() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("m");
    let out_s = out.to_str().unwrap();
    fails_with(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            "/nonexistent/cifar",
            "--out",
            out_s,
        ],
        "/nonexistent/cifar: not a folder",
    );
    // A CIFAR-looking folder whose first training file is cut short.
    let cifar = dir.path().join("cifar");
    std::fs::create_dir(&cifar).unwrap();
    std::fs::write(cifar.join("data_batch_1.bin"), vec![1u8; 3073 * 2 + 5]).unwrap();
    fails_with(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            cifar.to_str().unwrap(),
            "--out",
            out_s,
        ],
        "data_batch_1.bin: 6151 bytes is not a whole number of 3,073-byte CIFAR-10 records",
    );
    std::fs::write(cifar.join("data_batch_1.bin"), vec![1u8; 3073 * 2]).unwrap();
    fails_with(
        &[
            "train",
            "--backend",
            "cpu",
            "--data",
            cifar.to_str().unwrap(),
            "--out",
            out_s,
        ],
        "data_batch_2.bin: missing",
    );
    assert!(!out.exists());
}

/// `rvq train` of a tiny model on the sample photographs into `out`, with `extra` flags.
fn tiny_train(out: &Path, extra: &[&str]) -> Command {
    let mut cmd = rvq();
    cmd.args([
        "train",
        "--backend",
        "cpu",
        "--batch-size",
        "8",
        "--latent-dim",
        "4",
        "--codebook-size",
        "8",
        "--codebooks",
        "2",
        "--channels",
        "4,8,8",
        "--res-blocks",
        "1",
        "--res-channels",
        "4",
    ])
    .arg("--data")
    .arg(samples())
    .arg("--out")
    .arg(out)
    .args(extra);
    cmd
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
    let refused = tiny_train(&out, &[&steps[..], &["--resume", "--lr", "0.002"]].concat())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rvq: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("learning_rate 0.001, not 0.002"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!out.join("model.bpk").exists());
    tiny_train(&out, &[&steps[..], &["--resume"]].concat())
        .assert()
        .success();
    assert!(out.join("model.bpk").exists());
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
    let header = safetensors_header(&reference);
    assert_eq!(header["images"]["shape"], serde_json::json!([2, 3, 32, 32]));
    assert!(header.get("indices").is_some(), "{header}");
}

/// A safetensors file's header as JSON, read with the `safetensors` crate.
fn safetensors_header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::to_value(&meta).unwrap()
}

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
    // m = 1 costs the archive's one block less its header: exactly what `rvq encode` writes
    // for these images with names off, less its header (docs/EVAL.md), and, range-coded,
    // less than packing's 948 cells (256 + 247 + 247 + 150 + 3 × 16) × 10 bits = 1,185
    // bytes of indices, a flags byte, 18 bytes of sizes, a 2-byte length and a 4-byte
    // checksum: 1,210 bytes over the 7 samples.
    let archive = encode_samples_with(&dir, "1", &["--no-names"]);
    let info = rvq()
        .args(["info", "--json", s(&archive)])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let payload = info["total_bytes"].as_u64().unwrap() - info["header_bytes"].as_u64().unwrap();
    assert!(payload < 1210, "{payload}");
    let per_image = rvq1["payload_bytes_per_image"].as_f64().unwrap();
    assert!(
        (per_image - payload as f64 / 7.0).abs() < 1e-9,
        "{per_image}"
    );
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

/// The MSE of `rvq eval`'s one rvq point at m = 1, run with `args` (read from its JSON, at
/// full precision).
fn eval_mse_m1(dir: &TempDir, args: &[&OsStr]) -> f64 {
    let json = dir.path().join("eval.json");
    let out = rvq()
        .args(["eval", "--backend", "cpu", "--jpeg-qualities", "10"])
        .args(["--webp-qualities", "10", "--force", "--json"])
        .arg(&json)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let points: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rvq: Vec<_> = points.iter().filter(|p| p["codec"] == "rvq").collect();
    assert_eq!(rvq.len(), 1, "{points:?}");
    assert_eq!(rvq[0]["codebooks"], 1);
    rvq[0]["mse"].as_f64().unwrap()
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
    // A quick bench: one run, batches of 4, a 64×48 large image.
    let bench = |extra: &[&str]| {
        let quick = ["bench", "--backend", "cpu", "--runs", "1", "--batch", "4"];
        rvq()
            .args(quick)
            .args(["--large", "64x48"])
            .args(extra)
            .assert()
            .success()
    };
    bench(&["--json", json.to_str().unwrap()])
        .stdout(predicate::str::contains("encode one 64×48 image"));
    let m: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(m.len(), 6);
    assert!(
        m.iter()
            .all(|x| x["images_per_second"].as_f64().unwrap() > 0.0)
    );
    // What bench/cpu_vs_torch.sh times against PyTorch: greedy, every cell at every codebook.
    bench(&["--beam", "1", "--refine", "1", "--fixed-depth"]).stdout(predicate::str::contains(
        "encode one 64×48 image, fixed depth |",
    ));
    // A size that does not parse is a usage error, naming the flag and the form expected.
    let o = rvq().args(["bench", "--large", "64by48"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--large") && err.contains("expected WIDTHxHEIGHT"),
        "{err}"
    );
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

#[test]
fn out_of_range_beam_widths_refinements_and_stop_steps_are_usage_errors() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    let sample = samples().join("astronaut-32.png");
    let cases: [&[&str]; 5] = [
        &[
            "encode",
            "--beam",
            "0",
            "-o",
            out.to_str().unwrap(),
            sample.to_str().unwrap(),
        ],
        &[
            "encode",
            "--beam",
            "65",
            "-o",
            out.to_str().unwrap(),
            sample.to_str().unwrap(),
        ],
        &["train", "--data", "x", "--out", "y", "--stop-at", "0"],
        &[
            "encode",
            "--refine",
            "0",
            "-o",
            out.to_str().unwrap(),
            sample.to_str().unwrap(),
        ],
        &["eval", "--data", "x", "--refine", "65"],
    ];
    for args in cases {
        let o = rvq().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        // The flag given out of range is the one named.
        let flag = args
            .iter()
            .find(|a| a.starts_with("--") && !matches!(**a, "--data" | "--out"))
            .unwrap();
        assert!(err.contains(flag), "{args:?}: {err}");
    }
    no_files_but(dir.path(), &[]);
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn range_coded_archives_are_smaller_and_decode_to_the_same_images() {
    let dir = TempDir::new().unwrap();
    let coded = encode_samples(&dir, "8");
    let packed = encode_samples_with(&dir, "8", &["--no-entropy"]);
    let info = |p: &Path| -> serde_json::Value {
        let o = rvq().args(["info", "--json", s(p)]).output().unwrap();
        assert!(o.status.success());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (ci, pi) = (info(&coded), info(&packed));
    assert_eq!(
        (ci["entropy"].as_bool(), ci["coded_blocks"].as_u64()),
        (Some(true), Some(1))
    );
    assert_eq!(
        (pi["entropy"].as_bool(), pi["coded_blocks"].as_u64()),
        (Some(false), Some(0))
    );
    // The photographs reuse entries: well under 10 bits an index.
    let (cb, pb) = (
        ci["payload_bytes"].as_u64().unwrap(),
        pi["payload_bytes"].as_u64().unwrap(),
    );
    assert!(cb * 100 < pb * 95, "{cb} coded bytes against {pb} packed");
    let decode = |p: &Path, name: &str| {
        let out = dir.path().join(name);
        rvq()
            .args(["decode", "--backend", "cpu", "-o", s(&out), s(p)])
            .assert()
            .success();
        out
    };
    let (dc, dp) = (decode(&coded, "dc"), decode(&packed, "dp"));
    for e in std::fs::read_dir(&dp).unwrap() {
        let name = e.unwrap().file_name();
        assert_eq!(
            std::fs::read(dc.join(&name)).unwrap(),
            std::fs::read(dp.join(&name)).unwrap(),
            "{name:?}"
        );
    }
    // Truncating a coded archive gives what encoding fewer codebooks coded gives.
    let cut = dir.path().join("cut.rvq");
    rvq()
        .args(["truncate", "--codebooks", "2", s(&coded), s(&cut)])
        .assert()
        .success();
    assert_eq!(info(&cut)["entropy"].as_bool(), Some(true));
    let cut_packed = dir.path().join("cutp.rvq");
    rvq()
        .args(["truncate", "--codebooks", "2", s(&packed), s(&cut_packed)])
        .assert()
        .success();
    assert!(std::fs::metadata(&cut).unwrap().len() < std::fs::metadata(&cut_packed).unwrap().len());
}

#[test]
fn truncating_equals_encoding_fewer_codebooks_and_bad_requests_write_nothing() {
    let dir = TempDir::new().unwrap();
    // Packed, so that sizes depend on the number of indices alone.
    let full = encode_samples_with(&dir, "4", &["--no-entropy"]);
    let direct = encode_samples_with(&dir, "2", &["--no-entropy"]);
    let cut = dir.path().join("cut.rvq");
    rvq()
        .args(["truncate", "--codebooks", "2", s(&full), s(&cut)])
        .assert()
        .success();
    // The payload is level-major: the first two levels of a 4-level encode are what a 2-level
    // encode of the same images writes (beam search may pick other first levels when it
    // looks deeper, and refinement changes each cell's last level, so compare with greedy,
    // unrefined encodes).
    let greedy = |m: &str, name: &str| {
        let out = dir.path().join(name);
        rvq()
            .args([
                "encode",
                "--backend",
                "cpu",
                "--beam",
                "1",
                "--refine",
                "1",
                "--codebooks",
                m,
                "-o",
            ])
            .arg(&out)
            .arg(samples())
            .assert()
            .success();
        out
    };
    let (g4, g2) = (greedy("4", "g4.rvq"), greedy("2", "g2.rvq"));
    let g4cut = dir.path().join("g4cut.rvq");
    rvq()
        .args(["truncate", "--codebooks", "2", s(&g4), s(&g4cut)])
        .assert()
        .success();
    assert_eq!(std::fs::read(&g4cut).unwrap(), std::fs::read(&g2).unwrap());
    assert_eq!(
        std::fs::metadata(&cut).unwrap().len(),
        std::fs::metadata(&direct).unwrap().len()
    );
    // The cut archive decodes with the model.
    let out = dir.path().join("decoded");
    rvq()
        .args(["decode", "--backend", "cpu", "-o", s(&out), s(&cut)])
        .assert()
        .success();
    let made = || std::fs::read_dir(dir.path()).unwrap().count();
    let before = made();
    let o2 = dir.path().join("o2.rvq");
    fails_with(
        &["truncate", "--codebooks", "5", s(&full), s(&o2)],
        "cannot truncate to 5 codebooks: the archive stores 4",
    );
    fails_with(
        &["truncate", "--codebooks", "1", s(&full), s(&cut)],
        "already exists",
    );
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not an archive").unwrap();
    fails_with(
        &["truncate", "--codebooks", "1", s(&notes), s(&o2)],
        "bad magic",
    );
    assert_eq!(made(), before + 1, "only notes.txt was added");
    let o = rvq()
        .args(["truncate", "--codebooks", "0", s(&full), s(&o2)])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!o2.exists());
}

#[test]
fn shards_merge_into_the_unsharded_archive_and_mismatches_are_refused() {
    let dir = TempDir::new().unwrap();
    let whole = encode_samples(&dir, "2");
    let list = dir.path().join("list.txt");
    // The same inputs named through a list: folder given, so the stored names match.
    std::fs::write(&list, format!("{}\n\n", samples().display())).unwrap();
    let mut shards = Vec::new();
    for i in 1..=3 {
        let out = dir.path().join(format!("part{i}.rvq"));
        rvq()
            .args(["encode", "--backend", "cpu", "--codebooks", "2"])
            .args(["--shard", &format!("{i}/3"), "--files-from", s(&list), "-o"])
            .arg(&out)
            .assert()
            .success();
        shards.push(out);
    }
    let sizes: Vec<u64> = shards
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&n| n > 0));
    let merged = dir.path().join("merged.rvq");
    rvq()
        .args(["merge", "-o", s(&merged)])
        .args(&shards)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&whole).unwrap()
    );

    let before: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    let out = dir.path().join("bad.rvq");
    let deeper = encode_samples(&dir, "4");
    fails_with(
        &["merge", "-o", s(&out), s(&whole), s(&deeper)],
        "number of codebooks used",
    );
    fails_with(
        &["merge", "-o", s(&out), s(&whole), s(&shards[0])],
        "occurs in an earlier image",
    );
    fails_with(
        &[
            "merge",
            "-o",
            s(&out),
            s(&whole),
            s(&dir.path().join("none.rvq")),
        ],
        "none.rvq",
    );
    fails_with(&["merge", "-o", s(&merged), s(&whole)], "already exists");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        before.len() + 1,
        "only s4.rvq was added"
    );
    for shard in ["3/2", "0/2", "2", "a/b"] {
        let o = rvq()
            .args(["encode", "--shard", shard, "-o", s(&out), s(&samples())])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{shard}: {err}");
        assert!(err.contains("expected I/N"), "{shard}: {err}");
    }
    // Seven samples cut into eight shards leaves one empty: an archive of no images, and the
    // eight still merge into the whole.
    let mut eight = Vec::new();
    for i in 1..=8 {
        let part = dir.path().join(format!("eighth{i}.rvq"));
        rvq()
            .args(["encode", "--backend", "cpu", "--codebooks", "2"])
            .args(["--shard", &format!("{i}/8"), "-o", s(&part), s(&samples())])
            .assert()
            .success();
        eight.push(part);
    }
    let merged8 = dir.path().join("merged8.rvq");
    rvq()
        .args(["merge", "-o", s(&merged8)])
        .args(&eight)
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&merged8).unwrap(),
        std::fs::read(&whole).unwrap()
    );
    let dash = dir.path().join("dash.txt");
    std::fs::write(&dash, "-\n").unwrap();
    fails_with(
        &["encode", "--files-from", s(&dash), "-o", s(&out)],
        "standard input (-) cannot be listed",
    );
    assert!(!out.exists());
}

/// Without XDG_RUNTIME_DIR, Mesa's Vulkan drivers (installed where CI runs the wgpu parity
/// test) made libwayland print two error lines while `--backend auto` looked for a GPU.
#[test]
fn no_display_noise_without_a_runtime_folder() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    let o = rvq()
        .env_remove("XDG_RUNTIME_DIR")
        .args(["encode", "-o", s(&out)])
        .arg(samples().join("coffee-32.png"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    assert!(!err.contains("error"), "{err}");
}

/// Encoding streams records into a temporary file: an error found mid-way (here two inputs
/// that would be stored under one name, found when the second batch is read) leaves neither
/// the output nor the temporary file.
#[test]
fn an_encode_failing_mid_way_leaves_no_file() {
    let dir = TempDir::new().unwrap();
    for sub in ["one", "two"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::copy(
            samples().join("coffee-32.png"),
            dir.path().join(sub).join("a.png"),
        )
        .unwrap();
    }
    let out = dir.path().join("o.rvq");
    fails_with(
        &[
            "encode",
            "--backend",
            "cpu",
            "--batch",
            "1",
            "-o",
            s(&out),
            s(&dir.path().join("one")),
            s(&dir.path().join("two")),
        ],
        "two inputs would be stored as \"a.png\"",
    );
    no_files_but(
        dir.path(),
        &[&dir.path().join("one"), &dir.path().join("two")],
    );
}

/// Per image PSNR (dB) of the decoded files in `out` against the originals.
fn psnr_per_image(out: &Path, originals: &[PathBuf]) -> Vec<f64> {
    originals
        .iter()
        .map(|p| {
            let a = image::open(p).unwrap().to_rgb8();
            let b = image::open(out.join(p.file_name().unwrap()))
                .unwrap()
                .to_rgb8();
            assert_eq!(a.dimensions(), b.dimensions());
            let se: f64 = a
                .as_raw()
                .iter()
                .zip(b.as_raw())
                .map(|(x, y)| ((*x as f64 - *y as f64) / 255.0).powi(2))
                .sum();
            10.0 * (a.as_raw().len() as f64 / se).log10()
        })
        .collect()
}

fn sample_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(samples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    v.sort();
    v
}

fn info_json(archive: &Path) -> serde_json::Value {
    let out = rvq()
        .args(["info", "--json"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn quality_spends_codebooks_where_they_pay_and_is_monotone() {
    let dir = TempDir::new().unwrap();
    let originals = sample_files();
    let (mut last_size, mut last_psnr) = (0u64, 0f64);
    for q in ["5", "35", "65", "100"] {
        let archive = dir.path().join(format!("q{q}.rvq"));
        rvq()
            .args(["encode", "--backend", "cpu", "--quality", q, "-o"])
            .arg(&archive)
            .arg(samples())
            .assert()
            .success();
        let info = info_json(&archive);
        let size = info["total_bytes"].as_u64().unwrap();
        let depth = info["mean_depth"].as_f64().unwrap();
        let out = dir.path().join(format!("dec{q}"));
        rvq()
            .args(["decode", "--backend", "cpu", "-o"])
            .arg(&out)
            .arg(&archive)
            .assert()
            .success();
        let psnr = psnr_per_image(&out, &originals);
        let pooled =
            -10.0 * (psnr.iter().map(|p| 10f64.powf(-p / 10.0)).sum::<f64>() / 7.0).log10();
        assert!(
            size > last_size,
            "q = {q}: {size} bytes, not above {last_size}"
        );
        assert!(
            pooled > last_psnr,
            "q = {q}: {pooled} dB, not above {last_psnr}"
        );
        if q == "35" {
            // Cells differ: some stop early, some go deep.
            assert!(depth > 1.5 && depth < 6.5, "mean depth {depth}");
        }
        (last_size, last_psnr) = (size, pooled);
    }
    // Out of range, or both targets at once: refused by the argument parser.
    for args in [
        vec!["--quality", "101"],
        vec!["--quality", "50", "--psnr", "30"],
    ] {
        let o = rvq()
            .args(["encode", "-o", s(&dir.path().join("x.rvq")), s(&samples())])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    fails_with(
        &[
            "encode",
            "--psnr=-3",
            "-o",
            s(&dir.path().join("x.rvq")),
            s(&samples()),
        ],
        "expected a positive number of dB",
    );
    assert!(!dir.path().join("x.rvq").exists());
}

#[test]
fn psnr_targets_are_reached_or_the_shortfall_is_said() {
    let dir = TempDir::new().unwrap();
    let originals = sample_files();
    for target in [24.0, 29.0] {
        let archive = dir.path().join(format!("p{target}.rvq"));
        let o = rvq()
            .args([
                "encode",
                "--backend",
                "cpu",
                "--psnr",
                &target.to_string(),
                "-o",
            ])
            .arg(&archive)
            .arg(samples())
            .output()
            .unwrap();
        assert!(o.status.success());
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let out = dir.path().join(format!("dec{target}"));
        rvq()
            .args(["decode", "--backend", "cpu", "-o"])
            .arg(&out)
            .arg(&archive)
            .assert()
            .success();
        for (p, got) in originals.iter().zip(psnr_per_image(&out, &originals)) {
            let name = p.file_name().unwrap().to_str().unwrap();
            assert!(
                got >= target || err.contains(&format!("rvq: {name}: reaches")),
                "{name}: {got} dB at --psnr {target}, and no warning in {err:?}"
            );
        }
        if target == 24.0 {
            // Only the two busiest 32×32 crops need every codebook (and still fall short).
            assert_eq!(err.lines().count(), 2, "{err}");
            let depth = info_json(&archive)["mean_depth"].as_f64().unwrap();
            assert!(depth < 8.0, "mean depth {depth}");
        }
    }
}

#[test]
fn a_version_1_archive_still_decodes_to_the_same_pixels() {
    // tests/data/v1: three 32×32 samples encoded (4 codebooks) and decoded by rvq before
    // format version 2, with the model then shipped (run 3 of docs/MODEL.md, kept in
    // tests/data/v1/model; git stores it once with its days as models/default).
    let data = samples().parent().unwrap().join("tests/data/v1");
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("dec");
    rvq()
        .args(["decode", "--backend", "cpu", "--model"])
        .arg(data.join("model"))
        .arg("-o")
        .arg(&out)
        .arg(data.join("samples32.rvq"))
        .assert()
        .success();
    assert_eq!(info_json(&data.join("samples32.rvq"))["version"], 1);
    for name in ["astronaut-32.png", "chelsea-32.png", "coffee-32.png"] {
        let want = image::open(data.join(name)).unwrap().to_rgb8();
        let got = image::open(out.join(name)).unwrap().to_rgb8();
        assert_eq!(want, got, "{name}");
    }
}

#[test]
fn a_damaged_depth_map_is_refused_and_nothing_written() {
    // One flipped bit in the depth map: the block's checksum catches it (a depth map that is
    // malformed under a good checksum is refused too: crates/rvq-archive/tests/format.rs).
    let dir = TempDir::new().unwrap();
    let archive = dir.path().join("q.rvq");
    rvq()
        .args([
            "encode",
            "--backend",
            "cpu",
            "--quality",
            "30",
            "--no-names",
            "-o",
        ])
        .arg(&archive)
        .arg(samples().join("astronaut-32.png"))
        .assert()
        .success();
    let mut bytes = std::fs::read(&archive).unwrap();
    let h = header_len(&bytes);
    // Block: length (1 byte), flags (shared size, depth map), 32, 32, word count, words…
    assert_eq!(bytes[h + 1], 0b11);
    bytes[h + 6] ^= 0x10;
    let bad = dir.path().join("bad.rvq");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("out");
    fails_with(
        &["decode", "--backend", "cpu", "-o", s(&out), s(&bad)],
        "checksum mismatch in the block of images 0 to 0",
    );
    assert!(!out.exists());
}
