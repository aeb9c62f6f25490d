//! What every group of tests shares: the command builder, failure checks, the samples.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub(crate) fn rvq() -> Command {
    let mut c = Command::cargo_bin("rvq").unwrap();
    // A private runtime folder, as a desktop session has: without one, Mesa's Vulkan loader
    // (present where lavapipe is installed) prints a warning when rvq looks for GPUs.
    static XDG: std::sync::OnceLock<TempDir> = std::sync::OnceLock::new();
    let xdg = XDG.get_or_init(|| TempDir::new().unwrap());
    c.env("RUST_BACKTRACE", "0")
        .env("XDG_RUNTIME_DIR", xdg.path());
    c
}

pub(crate) fn samples() -> PathBuf {
    // Read when the test runs, not when it was built: a shared target folder may hold a binary
    // built from another checkout.
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("samples")
}

/// Runs `rvq args` expecting failure with a single-line message containing `needle`.
pub(crate) fn fails_with(args: &[&str], needle: &str) {
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
    // Nothing said twice: no part of the line ends both before and after a ": ".
    let line = lines[0];
    for (at, _) in line.match_indices(": ") {
        let tail = &line[at + 2..];
        assert!(
            !line[..at].ends_with(tail),
            "{args:?}: repeats itself: {err:?}"
        );
    }
}

/// `rvq encode --backend cpu -o out input` must fail with `needle` (see [`fails_with`]).
pub(crate) fn encode_fails(out: &Path, input: &Path, needle: &str) {
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

pub(crate) fn encode_samples(dir: &TempDir, m: &str) -> PathBuf {
    encode_samples_with(dir, m, &[])
}

/// The samples encoded at `m` codebooks with `extra` flags, into `s{m}{flags}.rvq`.
pub(crate) fn encode_samples_with(dir: &TempDir, m: &str, extra: &[&str]) -> PathBuf {
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

/// `rvq decode --backend cpu -o out archive`, which must succeed.
pub(crate) fn decode_to(out: &Path, archive: &Path) {
    rvq()
        .args(["decode", "--backend", "cpu", "-o"])
        .arg(out)
        .arg(archive)
        .assert()
        .success();
}

pub(crate) fn no_files_but(dir: &Path, keep: &[&Path]) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(keep.contains(&p.as_path()), "left behind: {}", p.display());
    }
}

pub(crate) fn crc32(bytes: &[u8]) -> u32 {
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

/// Header length of an archive without embedded codebook: 23 fixed bytes, the varint fields,
/// and the CRC.
pub(crate) fn header_len(bytes: &[u8]) -> usize {
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

/// `rvq train` of a tiny model on the sample photographs into `out`, with `extra` flags.
pub(crate) fn tiny_train(out: &Path, extra: &[&str]) -> Command {
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

/// [`tiny_train`] that must be refused: exit 1, no panic, and one error line among the data's
/// description and progress (that line is returned).
pub(crate) fn tiny_train_refused(out: &Path, extra: &[&str]) -> String {
    let o = tiny_train(out, extra).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
    assert!(!err.contains("panicked"), "{extra:?}: {err}");
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("rvq: error"))
        .collect();
    assert_eq!(errors.len(), 1, "{extra:?}: {err}");
    errors[0].to_string()
}

/// A safetensors file's header as JSON, read with the `safetensors` crate.
pub(crate) fn safetensors_header(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    serde_json::to_value(&meta).unwrap()
}

/// The MSE of `rvq eval`'s one rvq point at m = 1, run with `args` (read from its JSON, at
/// full precision).
pub(crate) fn eval_mse_m1(dir: &TempDir, args: &[&OsStr]) -> f64 {
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

pub(crate) fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub(crate) fn info_json(archive: &Path) -> serde_json::Value {
    let out = rvq()
        .args(["info", "--json"])
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}
