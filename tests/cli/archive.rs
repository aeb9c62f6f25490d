//! `rvq truncate`, `rvq merge` and sharded encodes: archives made from archives.

use std::path::PathBuf;

use tempfile::TempDir;

use crate::support::*;

#[test]
fn truncating_equals_encoding_fewer_codebooks_and_bad_requests_write_nothing() {
    let dir = TempDir::new().unwrap();
    // Packed, so that sizes depend on the number of indices alone, and without restoration
    // filters, which are fitted to each image's decode at its own depths (truncation drops
    // them).
    let full = encode_samples_with(&dir, "4", &["--no-entropy", "--no-filter"]);
    let direct = encode_samples_with(&dir, "2", &["--no-entropy", "--no-filter"]);
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
                "--no-filter",
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
    // A shard count so large that I × count overflows 64 bits: its last shard is the last
    // sample, as the eighth of eight is.
    let huge = 2_635_249_153_387_078_803u64;
    let last = dir.path().join("last.rvq");
    rvq()
        .args(["encode", "--backend", "cpu", "--codebooks", "2"])
        .args([
            "--shard",
            &format!("{huge}/{huge}"),
            "-o",
            s(&last),
            s(&samples()),
        ])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(&last).unwrap(),
        std::fs::read(&eight[7]).unwrap()
    );
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

/// A merge of whole blocks (the copying path) names the input a damaged block is in, and
/// writes nothing.
#[test]
fn a_damaged_input_to_a_merge_of_whole_blocks_is_named() {
    let dir = TempDir::new().unwrap();
    let block = dir.path().join("block");
    std::fs::create_dir(&block).unwrap();
    for i in 0..64 {
        std::fs::copy(
            samples().join("chelsea.png"),
            block.join(format!("c{i:02}.png")),
        )
        .unwrap();
    }
    let a = dir.path().join("a.rvq");
    let b = dir.path().join("b.rvq");
    for (out, input) in [(&a, &block), (&b, &samples())] {
        rvq()
            .args(["encode", "--backend", "cpu", "--codebooks", "2", "-o"])
            .arg(out)
            .arg(input)
            .assert()
            .success();
    }
    let out = dir.path().join("m.rvq");
    rvq()
        .args(["merge", "-o", s(&out), s(&a), s(&b)])
        .assert()
        .success();
    // Streamed from standard input to standard output, the same bytes.
    let piped = rvq()
        .args(["merge", "-o", "-", s(&a), "-"])
        .pipe_stdin(&b)
        .unwrap()
        .output()
        .unwrap();
    assert!(piped.status.success());
    assert_eq!(piped.stdout, std::fs::read(&out).unwrap());
    std::fs::remove_file(&out).unwrap();
    for damaged in [&a, &b] {
        let good = std::fs::read(damaged).unwrap();
        let mut bad = good.clone();
        let at = bad.len() - 3;
        bad[at] ^= 0x10;
        std::fs::write(damaged, &bad).unwrap();
        fails_with(
            &["merge", "-o", s(&out), s(&a), s(&b)],
            &format!("{}:", damaged.display()),
        );
        assert!(!out.exists());
        std::fs::write(damaged, &good).unwrap();
    }
}

/// `rvq merge` holds no part open between reads (it reads every header before the first
/// part's blocks): more parts than the process may open files at once (100 under a limit of
/// 48 descriptors) merge into the archive one encode of their images writes.
#[cfg(unix)]
#[test]
fn a_merge_takes_more_parts_than_the_process_may_open_files() {
    let dir = TempDir::new().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let encode = |out: &std::path::Path, input: &std::path::Path| {
        rvq()
            .args([
                "encode",
                "--backend",
                "cpu",
                "--no-names",
                "--codebooks",
                "2",
                "-o",
            ])
            .arg(out)
            .arg(input)
            .assert()
            .success();
    };
    let one = dir.path().join("one.rvq");
    encode(&one, &samples().join("coffee-32.png"));
    let parts: Vec<PathBuf> = (0..100)
        .map(|i| {
            let p = dir.path().join(format!("p{i:03}.rvq"));
            std::fs::hard_link(&one, &p).unwrap();
            std::fs::hard_link(
                samples().join("coffee-32.png"),
                images.join(format!("{i:03}.png")),
            )
            .unwrap();
            p
        })
        .collect();
    let out = dir.path().join("all.rvq");
    let bin = assert_cmd::cargo::cargo_bin("rvq");
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 48 && exec \"$@\"")
        .arg("sh")
        .arg(&bin)
        .args(["merge", "-o"])
        .arg(&out)
        .args(&parts)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let whole = dir.path().join("whole.rvq");
    encode(&whole, &images);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&whole).unwrap());
}
