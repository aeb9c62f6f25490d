//! `rvq decode`: the samples' round trip, one image, pipes, old and damaged archives.

use std::path::PathBuf;

use tempfile::TempDir;

use crate::support::*;

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

/// The photograph model is chosen by its name; its archive decodes without `--model` (the
/// built-in model it cites), `info` names it, and the default model refuses it. A name that
/// is neither a folder nor a built-in model gets one line listing the built-in ones.
#[test]
fn the_photo_model_is_chosen_by_name_and_found_again_by_its_archive() {
    let dir = TempDir::new().unwrap();
    let input = samples().join("chelsea.png");
    let archive = dir.path().join("photo.rvq");
    rvq()
        .args([
            "encode",
            "--backend",
            "cpu",
            "--model",
            "photo",
            "--codebooks",
            "2",
            "-o",
        ])
        .arg(&archive)
        .arg(&input)
        .assert()
        .success();
    let info = rvq().arg("info").arg(&archive).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("(built-in model photo)"), "{text}");
    let out = dir.path().join("out");
    decode_to(&out, &archive);
    let decoded = image::open(out.join("chelsea.png")).unwrap().to_rgb8();
    let original = image::open(&input).unwrap().to_rgb8();
    assert_eq!(decoded.dimensions(), original.dimensions());
    // Decoded by the photograph model, not by chance: the default model refuses the archive.
    let (a, o) = (s(&archive), dir.path().join("refused"));
    fails_with(
        &[
            "decode",
            "--backend",
            "cpu",
            "--model",
            "default",
            "-o",
            s(&o),
            a,
        ],
        "the archive was made with model",
    );
    assert!(!o.exists());
    let other = dir.path().join("other.rvq");
    fails_with(
        &[
            "encode",
            "--backend",
            "cpu",
            "--model",
            "phot",
            "-o",
            s(&other),
            s(&input),
        ],
        "phot: no such model folder, nor a built-in model of that name (built in: default, photo)",
    );
    no_files_but(dir.path(), &[&archive, &out]);
}

#[test]
fn names_that_decode_to_one_file_are_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let png = samples().join("coffee-32.png");
    // "a.jpg" is written as a.jpg.png, which is also "a.jpg.png"'s file.
    let one = dir.path().join("one");
    std::fs::create_dir(&one).unwrap();
    std::fs::copy(&png, one.join("a.jpg")).unwrap();
    std::fs::copy(&png, one.join("a.jpg.png")).unwrap();
    // From two input folders: a file "d.png" and "d.png/e.png", which needs d.png as a folder.
    let (two, three) = (dir.path().join("two"), dir.path().join("three"));
    std::fs::create_dir_all(three.join("d.png")).unwrap();
    std::fs::create_dir(&two).unwrap();
    std::fs::copy(&png, two.join("d.png")).unwrap();
    std::fs::copy(&png, three.join("d.png/e.png")).unwrap();
    let out = dir.path().join("out");
    for (inputs, needle) in [
        (
            vec![&one],
            "images \"a.jpg\" and \"a.jpg.png\" would both be written to",
        ),
        (
            vec![&two, &three],
            "image \"d.png/e.png\" would be written inside",
        ),
    ] {
        let archive = dir.path().join("clash.rvq");
        let mut encode = rvq();
        encode.args(["encode", "--backend", "cpu", "--codebooks", "1", "-o"]);
        encode.arg(&archive).args(inputs).assert().success();
        for force in [false, true] {
            let mut args = vec!["decode", "--backend", "cpu", "-o", s(&out), s(&archive)];
            if force {
                args.push("--force");
            }
            fails_with(&args, needle);
            assert!(!out.exists(), "{needle}: something was written");
        }
        std::fs::remove_file(&archive).unwrap();
    }
    no_files_but(dir.path(), &[&one, &two, &three]);
}

#[test]
fn targets_that_cannot_be_written_are_refused_before_anything_is_written() {
    let dir = TempDir::new().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let png = samples().join("coffee-32.png");
    std::fs::copy(&png, input.join("a.png")).unwrap();
    std::fs::copy(&png, input.join("sub/b.png")).unwrap();
    let archive = dir.path().join("two.rvq");
    let mut encode = rvq();
    encode.args(["encode", "--backend", "cpu", "--codebooks", "1", "-o"]);
    encode.arg(&archive).arg(&input).assert().success();
    // "sub/b.png" needs out/sub as a folder; a file is there. a.png sorts first and would
    // have been written before the failure.
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("sub"), b"a file").unwrap();
    let decode = ["decode", "--backend", "cpu", "-o", s(&out), s(&archive)];
    for force in [&[][..], &["--force"][..]] {
        fails_with(&[&decode[..], force].concat(), "sub: not a folder");
        no_files_but(&out, &[&out.join("sub")]);
    }
    // Nor does --force replace a folder that stands where an image goes.
    std::fs::remove_file(out.join("sub")).unwrap();
    std::fs::create_dir(out.join("a.png")).unwrap();
    fails_with(&[&decode[..], &["--force"]].concat(), "a.png: is a folder");
    no_files_but(&out, &[&out.join("a.png")]);
    assert!(!out.join("sub").exists());
    std::fs::remove_dir(out.join("a.png")).unwrap();
    rvq().args(decode).assert().success();
    assert!(out.join("sub/b.png").is_file() && out.join("a.png").is_file());
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
        decode_to(&out, &archive);
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
