//! Every command: help, usage errors, backends, the runtime folder.

use predicates::prelude::*;
use tempfile::TempDir;

use crate::support::*;

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
            "encode", "decode", "info", "truncate", "merge", "eval", "train", "extend", "sweep",
            "bench", "export", "help"
        ],
        "{help}"
    );
}

#[test]
fn out_of_range_flags_are_usage_errors_that_name_the_flag() {
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("o.rvq");
    let sample = samples().join("astronaut-32.png");
    let cases: [&[&str]; 15] = [
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
        &["bench", "--effort", "6"],
        &["train", "--data", "x", "--out", "y", "--batch-size", "0"],
        &["train", "--data", "x", "--out", "y", "--valid", "0"],
        &[
            "train",
            "--data",
            "x",
            "--out",
            "y",
            "--checkpoint-every",
            "0",
        ],
        &["train", "--data", "x", "--out", "y", "--crop-size", "16"],
        &["train", "--data", "x", "--out", "y", "--crop-size", "544"],
        &["sweep", "--batch-size", "0"],
        &["sweep", "--valid", "0"],
        &["eval", "--data", "x", "--jpeg-qualities", "50,0"],
        &["eval", "--data", "x", "--webp-qualities", "101"],
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

/// `rvq info a.rvq | head -1`: a reader that goes away ends rvq quietly (by SIGPIPE, as other
/// Unix tools), never with a panic about printing to standard output.
#[cfg(unix)]
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let dir = TempDir::new().unwrap();
    let archive = encode_samples(&dir, "2");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rvq"))
        .args(["info", "--against"])
        .arg(samples())
        .arg(&archive)
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The read end closes before rvq has read the archive, let alone printed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.signal() == Some(libc::SIGPIPE) || out.status.success(),
        "{:?}: {err}",
        out.status
    );
}
