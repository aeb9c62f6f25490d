//! `rvq encode`: PNG, JPEG and WebP inputs; bad inputs refused with nothing written; rate
//! control as the user sees it; range coding.

use std::path::Path;

use tempfile::TempDir;

use crate::support::*;

#[test]
fn not_a_png_is_refused_and_nothing_written() {
    let dir = TempDir::new().unwrap();
    let txt = dir.path().join("notes.png");
    std::fs::write(&txt, "hello").unwrap();
    let out = dir.path().join("o.rvq");
    encode_fails(&out, &txt, "notes.png: not a readable image: not a PNG");
    no_files_but(dir.path(), &[&txt]);
}

/// Photographs as people hold them: a folder of JPEG and WebP files (and a PNG) encodes, each
/// stored under its own name; a corrupt JPEG is one line naming it, and nothing is written.
#[test]
fn a_folder_of_jpeg_and_webp_photographs_encodes_and_a_corrupt_jpeg_is_named() {
    let dir = TempDir::new().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir(&photos).unwrap();
    let sample = image::open(samples().join("chelsea.png"))
        .unwrap()
        .to_rgb8();
    sample
        .save_with_format(photos.join("cat.jpg"), image::ImageFormat::Jpeg)
        .unwrap();
    sample
        .save_with_format(photos.join("cat.webp"), image::ImageFormat::WebP)
        .unwrap();
    std::fs::copy(samples().join("coffee.png"), photos.join("coffee.png")).unwrap();
    let out = dir.path().join("p.rvq");
    rvq()
        .args(["encode", "--backend", "cpu", "-o"])
        .arg(&out)
        .arg(&photos)
        .assert()
        .success();
    let info = info_json(&out);
    let names: Vec<&str> = info["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cat.jpg", "cat.webp", "coffee.png"]);

    let jpeg = std::fs::read(photos.join("cat.jpg")).unwrap();
    std::fs::write(photos.join("broken.jpg"), &jpeg[..20]).unwrap();
    let again = dir.path().join("q.rvq");
    encode_fails(&again, &photos, "broken.jpg: not a readable image");
    assert!(!again.exists());
    // Cut short in its scan data, which the JPEG decoder would fill with grey.
    std::fs::write(photos.join("broken.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    encode_fails(
        &again,
        &photos,
        "broken.jpg: not a readable image: the JPEG data ends",
    );
    assert!(!again.exists());
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
        "no PNG, JPEG or WebP files",
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
fn unwritable_output_folder_is_refused() {
    let dir = TempDir::new().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let out = blocker.join("o.rvq");
    let png = samples().join("coffee-32.png");
    encode_fails(&out, &png, "o.rvq");
}

#[test]
fn range_coded_archives_are_smaller_and_decode_to_the_same_images() {
    let dir = TempDir::new().unwrap();
    let coded = encode_samples(&dir, "8");
    let packed = encode_samples_with(&dir, "8", &["--no-entropy"]);
    let plain = encode_samples_with(&dir, "8", &["--no-neighbours"]);
    let info = |p: &Path| -> serde_json::Value {
        let o = rvq().args(["info", "--json", s(p)]).output().unwrap();
        assert!(o.status.success());
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (ci, pi, ni) = (info(&coded), info(&packed), info(&plain));
    assert_eq!(
        (ci["entropy"].as_bool(), ci["coded_blocks"].as_u64()),
        (Some(true), Some(1))
    );
    let coders = [&ci, &ni, &pi].map(|i| i["payload_coder"].as_u64());
    assert_eq!(coders, [Some(2), Some(1), Some(0)]);
    // Coder 2 takes coder 1's model where neighbours rarely match (these small, busy crops):
    // never more bytes.
    let bytes = |i: &serde_json::Value| i["payload_bytes"].as_u64().unwrap();
    assert!(
        bytes(&ci) <= bytes(&ni),
        "{} against {}",
        bytes(&ci),
        bytes(&ni)
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
    let (dc, dp, dn) = (
        decode(&coded, "dc"),
        decode(&packed, "dp"),
        decode(&plain, "dn"),
    );
    for e in std::fs::read_dir(&dp).unwrap() {
        let name = e.unwrap().file_name();
        let packed = std::fs::read(dp.join(&name)).unwrap();
        assert_eq!(std::fs::read(dc.join(&name)).unwrap(), packed, "{name:?}");
        assert_eq!(std::fs::read(dn.join(&name)).unwrap(), packed, "{name:?}");
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

/// The rate flags as a user meets them; rate control's own properties (sizes and PSNR monotone
/// in quality, targets met) are the library's tests (`crates/rvq/src/tests/rate.rs`).
#[test]
fn quality_and_psnr_flags_are_checked_and_shortfalls_said() {
    let dir = TempDir::new().unwrap();
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

    // A target two of the samples cannot reach: one warning line each, and the archive.
    let archive = dir.path().join("p24.rvq");
    let o = rvq()
        .args(["encode", "--backend", "cpu", "--psnr", "24", "-o"])
        .arg(&archive)
        .arg(samples())
        .output()
        .unwrap();
    assert!(o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    // The two busiest 32×32 crops, by name (the library's test checks that no other image
    // falls short).
    for (line, name) in lines.iter().zip(["astronaut-32.png", "coffee-32.png"]) {
        assert!(
            line.starts_with(&format!("rvq: {name}: reaches"))
                && line.contains("short of --psnr 24"),
            "{err}"
        );
    }
    assert!(archive.exists());
}

/// `--effort` sets the beam, refinement and rate search together, level 4 by default; the
/// expert flags override it one by one.
#[test]
fn effort_sets_the_search_and_the_expert_flags_override_it() {
    let dir = TempDir::new().unwrap();
    let encode = |name: &str, extra: &[&str]| -> Vec<u8> {
        let out = dir.path().join(name);
        rvq()
            .args(["encode", "--backend", "cpu", "--quality", "50", "-o"])
            .arg(&out)
            .args(extra)
            .arg(samples().join("chelsea.png"))
            .arg(samples().join("coffee.png"))
            .assert()
            .success();
        std::fs::read(&out).unwrap()
    };
    let default = encode("d.rvq", &[]);
    assert_eq!(default, encode("e4.rvq", &["--effort", "4"]));
    let overridden = [
        "--effort",
        "0",
        "--beam",
        "4",
        "--refine",
        "4",
        "--rate-search",
        "linear",
    ];
    assert_eq!(default, encode("e0-as-4.rvq", &overridden));
    let fastest = encode("e0.rvq", &["--effort", "0"]);
    let greedy = ["--beam", "1", "--refine", "1", "--rate-search", "latent"];
    assert_eq!(fastest, encode("greedy.rvq", &greedy));
    assert_ne!(fastest, default, "effort 0 searches as the default does");
}

/// An image of flat patches, each its own colour: neighbouring cells of a patch reuse an entry,
/// which payload coder 2 codes in a fraction of a bit, while coder 1's model sees two dozen
/// entries equally often.
#[test]
fn neighbour_contexts_shrink_flat_images_and_decode_the_same() {
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("flat.png");
    // 6×4 patches of 48×48 pixels (6×6 cells each).
    let image = image::RgbImage::from_fn(288, 192, |x, y| {
        let patch = (y / 48 * 6 + x / 48).wrapping_mul(2_654_435_761);
        image::Rgb([(patch >> 8) as u8, (patch >> 16) as u8, (patch >> 24) as u8])
    });
    image.save(&png).unwrap();
    let encode = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        rvq()
            .args(["encode", "--backend", "cpu", "--effort", "0", "-o", s(&out)])
            .args(extra)
            .arg(&png)
            .assert()
            .success();
        out
    };
    let (two, one) = (encode("2.rvq", &[]), encode("1.rvq", &["--no-neighbours"]));
    let (i2, i1) = (info_json(&two), info_json(&one));
    let bytes = |i: &serde_json::Value| i["payload_bytes"].as_u64().unwrap();
    assert!(
        bytes(&i2) * 10 < bytes(&i1) * 9,
        "{} against {}",
        bytes(&i2),
        bytes(&i1)
    );
    let decode = |archive: &Path, name: &str| {
        let out = dir.path().join(name);
        rvq()
            .args(["decode", "--backend", "cpu", "-o", s(&out), s(archive)])
            .assert()
            .success();
        std::fs::read(out.join("flat.png")).unwrap()
    };
    assert_eq!(decode(&two, "d2"), decode(&one, "d1"));
}
