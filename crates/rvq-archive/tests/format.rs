//! The archive format against its spec (docs/FORMAT.md): a golden archive byte for byte,
//! property tests over the whole parameter range, corruption detection, and the fuzz corpus.

use proptest::prelude::*;
use rvq_archive::*;

fn golden_header() -> Header {
    let mut h = Header::new(
        [0x11; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 5,
            num_codebooks: 2,
            grid_factor: 8,
        },
        2,
    );
    h.names = true;
    h.version = VERSION_1;
    h
}

fn golden_record() -> Record {
    // A 9×8 image has a 2×1 grid at factor 8: 2 cells × 2 levels = 4 indices of 3 bits.
    Record {
        width: 9,
        height: 8,
        name: Some("a.png".into()),
        indices: vec![1, 4, 0, 3],
        depths: Vec::new(),
        filter: None,
        half: false,
    }
}

/// The golden archive, spelled out field by field as docs/FORMAT.md describes it.
fn golden_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RVQA"); // magic
    b.push(1); // version
    b.push(0b0000_0001); // flags: names
    b.push(0); // payload coder: fixed-width packing
    b.extend_from_slice(&[0x11; 16]); // fingerprint
    b.extend_from_slice(&[2, 5, 2]); // d, k, n_q (varints)
    b.push(8); // grid factor
    b.push(2); // codebooks used (varint)
    b.push(3); // bits per index = ceil(log2 5)
    b.push(1); // image count (varint)
    b.extend_from_slice(&0x534a_ce72u32.to_le_bytes()); // CRC-32 of the 30 bytes above
    b.extend_from_slice(&[9, 8]); // width, height
    b.push(5); // name length
    b.extend_from_slice(b"a.png");
    // indices 1, 4, 0, 3 at 3 bits MSB-first: 001 100 000 011 + 4 zero bits
    b.extend_from_slice(&[0b0011_0000, 0b0011_0000]);
    b.extend_from_slice(&0x6aec_77d2u32.to_le_bytes()); // CRC-32 of the record
    b
}

#[test]
fn golden_archive_matches_the_spec_byte_for_byte() {
    let bytes = write_archive(&golden_header(), &[golden_record()]).unwrap();
    assert_eq!(bytes, golden_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, golden_header());
    assert_eq!(a.image_count, 1);
    assert_eq!(a.header_len, 34);
    assert_eq!(a.records().unwrap(), vec![golden_record()]);
}

#[test]
fn payload_sizes_follow_the_spec() {
    let h = Header::new(
        [0; 16],
        Geometry {
            latent_dim: 64,
            codebook_size: 1024,
            num_codebooks: 8,
            grid_factor: 8,
        },
        8,
    );
    assert_eq!(h.payload_len(32, 32), 160);
    let h1 = Header {
        codebooks_used: 1,
        ..h.clone()
    };
    assert_eq!(h1.payload_len(32, 32), 20);
    assert_eq!(payload_bits(&h1, 16), 160);
    // 33×33 pads to a 5×5 grid.
    assert_eq!(h1.index_count(33, 33), 25);
}

#[test]
fn every_flipped_byte_is_reported() {
    let bytes = golden_bytes();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let r = Archive::parse(&b, &Limits::default()).and_then(|a| a.records());
            assert!(r.is_err(), "flipping bit {bit} of byte {i} went unnoticed");
        }
    }
}

#[test]
fn every_truncation_is_reported() {
    let bytes = golden_bytes();
    for n in 0..bytes.len() {
        let r = Archive::parse(&bytes[..n], &Limits::default()).and_then(|a| a.records());
        assert!(r.is_err(), "truncation to {n} bytes went unnoticed");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    let a = Archive::parse(&longer, &Limits::default()).unwrap();
    assert!(matches!(a.records(), Err(ArchiveError::TrailingBytes(1))));
}

/// The header of `bytes`, which hold a header and no images.
fn parse_header_only(bytes: &[u8]) -> Header {
    let mut with_count = bytes.to_vec();
    let n = with_count.len();
    // The golden header's image count is its last byte before the CRC: make it 0.
    with_count[n - 5] = 0;
    let with_count = with_crc(with_count[..n - 4].to_vec());
    Archive::parse(&with_count, &Limits::default())
        .unwrap()
        .header
        .clone()
}

fn with_crc(mut header_body: Vec<u8>) -> Vec<u8> {
    let crc = crc32fast::hash(&header_body);
    header_body.extend_from_slice(&crc.to_le_bytes());
    header_body
}

#[test]
fn newer_versions_and_entropy_coding_are_refused_clearly() {
    let bytes = golden_bytes();
    let body = &bytes[..30];
    let mut v5 = body.to_vec();
    v5[4] = 5;
    let e = Archive::parse(&with_crc(v5), &Limits::default()).unwrap_err();
    assert!(matches!(e, ArchiveError::UnsupportedVersion(5)), "{e}");
    assert!(e.to_string().contains("upgrade rvq"), "{e}");
    // Coders 1 and 2 are version 2's; a later coder is refused by number, and the flag and
    // the coder byte must agree.
    let mut coded = body.to_vec();
    coded[5] |= FLAG_ENTROPY;
    coded[6] = 1;
    let e = Archive::parse(&with_crc(coded.clone()), &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("need format version 2"), "{e}");
    coded[4] = 2;
    let h = parse_header_only(&with_crc(coded.clone()));
    assert!(h.entropy && !h.neighbours && h.payload_coder() == 1);
    coded[6] = 2;
    let h = parse_header_only(&with_crc(coded.clone()));
    assert!(h.entropy && h.neighbours && h.payload_coder() == 2);
    coded[6] = 3;
    let e = Archive::parse(&with_crc(coded.clone()), &Limits::default()).unwrap_err();
    assert!(matches!(e, ArchiveError::UnsupportedCoder(3)), "{e}");
    assert!(e.to_string().contains("upgrade rvq"));
    for (flag, coder) in [(FLAG_ENTROPY, 0), (0, 1), (0, 2)] {
        let mut odd = coded.clone();
        odd[5] = (odd[5] & !FLAG_ENTROPY) | flag;
        odd[6] = coder;
        let e = Archive::parse(&with_crc(odd), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
    }
    let e = Archive::parse(b"PNG\x89whatever", &Limits::default()).unwrap_err();
    assert!(matches!(e, ArchiveError::BadMagic));
}

#[test]
fn oversized_images_are_refused_before_allocation() {
    let h = Header::new(
        [0; 16],
        Geometry {
            latent_dim: 1,
            codebook_size: 2,
            num_codebooks: 1,
            grid_factor: 8,
        },
        1,
    );
    let big = Record {
        width: 20_000,
        height: 8,
        name: None,
        indices: vec![0; 2500],
        depths: Vec::new(),
        filter: None,
        half: false,
    };
    let bytes = write_archive(&h, &[big]).unwrap();
    let e = Archive::parse(&bytes, &Limits::default())
        .unwrap()
        .records()
        .unwrap_err();
    assert!(e.to_string().contains("exceeds the limit"), "{e}");
    // A forged image count far beyond the bytes present is refused without sizing anything.
    let mut forged = write_header(&h, u64::MAX >> 1).unwrap();
    forged.extend_from_slice(&[0; 32]);
    assert!(Archive::parse(&forged, &Limits::default()).is_err());
}

#[test]
fn embedded_codebooks_round_trip_in_both_precisions() {
    for dtype in [CodebookDType::F16, CodebookDType::F32] {
        let mut h = Header::new(
            [3; 16],
            Geometry {
                latent_dim: 2,
                codebook_size: 4,
                num_codebooks: 3,
                grid_factor: 4,
            },
            2,
        );
        let values: Vec<f32> = (0..16).map(|i| i as f32 * 0.25 - 1.0).collect();
        h.codebook = Some(EmbeddedCodebook { dtype, values });
        let bytes = write_archive(&h, &[]).unwrap();
        let a = Archive::parse(&bytes, &Limits::default()).unwrap();
        assert_eq!(a.header, h); // quarter steps are exact in f16
        let width = if dtype == CodebookDType::F16 { 2 } else { 4 };
        assert_eq!(a.header_len, 35 + 16 * width); // 30 fixed bytes, dtype, values, CRC
    }
}

#[test]
fn writer_refuses_records_that_do_not_fit() {
    let h = golden_header();
    let mut r = golden_record();
    r.indices[0] = 5;
    assert!(write_archive(&h, &[r]).is_err());
    let mut r = golden_record();
    r.indices.pop();
    assert!(write_archive(&h, &[r]).is_err());
    let mut r = golden_record();
    r.name = Some("../etc/passwd".into());
    assert!(write_archive(&h, &[r]).is_err());
    let mut h2 = h.clone();
    h2.codebooks_used = 3;
    assert!(write_archive(&h2, &[]).is_err());
}

/// Replays the fuzz corpus (fuzz/corpus/archive_reader): every input must be read or refused
/// without a panic, and the seeds that are valid archives must round-trip.
#[test]
fn fuzz_corpus_replays_without_panics() {
    // The manifest folder as cargo gives it when it runs the test, not when it built it: a
    // shared target folder may hold a binary built from another checkout.
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../fuzz/corpus/archive_reader");
    let mut seen = 0;
    let mut valid = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus present") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        seen += 1;
        if let Ok(a) = Archive::parse(&bytes, &Limits::default())
            && let Ok(records) = a.records()
        {
            valid += 1;
            let again = write_archive(&a.header, &records).unwrap();
            assert_eq!(again, bytes, "a valid archive is canonical");
        }
    }
    assert!(seen >= 5, "corpus has {seen} files");
    assert!(valid >= 1, "corpus has no valid archive");
}

fn arb_case() -> impl Strategy<Value = (Header, Vec<Record>)> {
    (2u32..=65_536, 1u32..=64, prop::bool::ANY, prop::bool::ANY)
        .prop_flat_map(|(k, n_q, names, f8)| {
            let m = 1..=n_q;
            (Just((k, n_q, names, f8)), m)
        })
        .prop_flat_map(|((k, n_q, names, f8), m)| {
            let mut h = Header::new(
                [9; 16],
                Geometry {
                    latent_dim: 8,
                    codebook_size: k,
                    num_codebooks: n_q,
                    grid_factor: if f8 { 8 } else { 4 },
                },
                m,
            );
            h.names = names;
            if k % 2 == 0 {
                h.version = VERSION_1;
            }
            // Half the version-2 cases entropy-coded (half of those under neighbour contexts);
            // indices mostly from a few entries, so that coding wins in some blocks and loses
            // in others.
            h.entropy = k % 4 == 1;
            h.neighbours = k % 8 == 1;
            // A sixth of the cases at version 4, where an image may be coded at half size,
            // coded and packed, with and without neighbour contexts.
            let halves = k % 2 == 1 && k % 3 == 0;
            if halves {
                h.version = VERSION;
            }
            let rec = (1u32..=100, 1u32..=100, 0u32..1000).prop_flat_map(move |(w, h_, n)| {
                let hh = Header::new(
                    [9; 16],
                    Geometry {
                        latent_dim: 8,
                        codebook_size: k,
                        num_codebooks: n_q,
                        grid_factor: if f8 { 8 } else { 4 },
                    },
                    m,
                );
                let half = halves && n % 2 == 0;
                let (cw, ch) = if half {
                    (w.div_ceil(2), h_.div_ceil(2))
                } else {
                    (w, h_)
                };
                let count = hh.index_count(cw, ch) as usize;
                let index = prop_oneof![3 => 0..k.min(4), 1 => 0..k];
                (
                    Just((w, h_, n)),
                    prop::collection::vec(index, count..=count),
                )
                    .prop_map(move |((w, h_, n), indices)| Record {
                        width: w,
                        height: h_,
                        name: names.then(|| format!("dir/img{n}.png")),
                        indices,
                        depths: Vec::new(),
                        filter: None,
                        half,
                    })
            });
            (Just(h), prop::collection::vec(rec, 0..4))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn write_then_read_is_identity((header, records) in arb_case()) {
        let bytes = write_archive(&header, &records).unwrap();
        let a = Archive::parse(&bytes, &Limits::default()).unwrap();
        prop_assert_eq!(&a.header, &header);
        let entries = a.index().unwrap();
        for (e, r) in entries.iter().zip(&records).filter(|_| header.version == VERSION_1) {
            let name_len = r.name.as_ref().map_or(0, |n| n.len());
            let varints = varint_len(r.width as u64) + varint_len(r.height as u64)
                + if header.names { varint_len(name_len as u64) } else { 0 };
            let payload = (r.indices.len() as u64 * header.bits_per_index() as u64).div_ceil(8);
            prop_assert_eq!(e.len() as u64, varints as u64 + name_len as u64 + payload + 4);
        }
        prop_assert_eq!(a.records().unwrap(), records);
    }
}

fn varint_len(v: u64) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

fn sample(m: u32, names: bool, fingerprint: u8) -> (Header, Vec<Record>) {
    let mut h = Header::new(
        [fingerprint; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 5,
            num_codebooks: 3,
            grid_factor: 8,
        },
        m,
    );
    h.names = names;
    let recs = (0..3u32)
        .map(|i| {
            // 9×8, 12×8, 15×8: two cells each.
            let cells = 2;
            Record {
                width: 9 + 3 * i,
                height: 8,
                name: names.then(|| format!("{fingerprint}/{i}.png")),
                indices: (0..cells * m).map(|j| (i + j) % 5).collect(),
                depths: Vec::new(),
                filter: None,
                half: false,
            }
        })
        .collect();
    (h, recs)
}

#[test]
fn truncation_keeps_each_records_first_levels_byte_for_byte() {
    let (mut h, recs) = sample(3, true, 1);
    h.codebook = Some(EmbeddedCodebook {
        dtype: CodebookDType::F32,
        values: (0..h.codebook_values()).map(|v| v as f32).collect(),
    });
    let full = write_archive(&h, &recs).unwrap();
    for m in 1..=3u32 {
        let cut = truncate(&full, m, &Limits::default()).unwrap();
        // What an encoder writing m levels directly would have written.
        let mut hm = h.clone();
        hm.codebooks_used = m;
        hm.codebook
            .as_mut()
            .unwrap()
            .values
            .truncate((m * 5 * 2) as usize);
        let want: Vec<Record> = recs
            .iter()
            .map(|r| Record {
                indices: r.indices[..(2 * m) as usize].to_vec(),
                ..r.clone()
            })
            .collect();
        assert_eq!(cut, write_archive(&hm, &want).unwrap(), "m = {m}");
        assert!(m == 3 || cut.len() < full.len());
    }
    for m in [0, 4] {
        let err = truncate(&full, m, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::TruncateBeyond { asked, stored: 3 } if asked == m),
            "{err}"
        );
    }
    let mut bad = full.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        truncate(&bad, 1, &Limits::default()),
        Err(ArchiveError::BlockChecksum { first: 0, last: 2 })
    ));
}

/// `count` records of varied sizes (some blocks of one size, some mixed), indices mostly from
/// a few entries so that range coding wins in some blocks, named `img{i}.png` when `names`.
fn many_records(h: &Header, count: u32, names: bool) -> Vec<Record> {
    let mut state = 12345u64;
    let mut next = move |n: u32| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % n as u64) as u32
    };
    (0..count)
        .map(|i| {
            let (w, hgt) = if (i / 64) % 2 == 0 {
                (32, 32)
            } else {
                (8 + next(40), 8 + next(30))
            };
            let n = h.index_count(w, hgt) as usize;
            Record {
                width: w,
                height: hgt,
                name: names.then(|| format!("img{i}.png")),
                indices: (0..n)
                    .map(|_| {
                        if next(4) > 0 {
                            next(3)
                        } else {
                            next(h.codebook_size)
                        }
                    })
                    .collect(),
                depths: Vec::new(),
                filter: None,
                half: false,
            }
        })
        .collect()
}

/// Parts of whole blocks merge by copying their blocks, to the bytes a merge of their records
/// gives; parts that end inside a block are merged record by record, to the same bytes.
#[test]
fn merging_whole_blocks_copies_them_to_the_same_bytes() {
    let limits = Limits::default();
    for (names, entropy) in [(true, true), (false, true), (true, false)] {
        let mut h = Header::new(
            [5; 16],
            Geometry {
                latent_dim: 4,
                codebook_size: 1024,
                num_codebooks: 3,
                grid_factor: 8,
            },
            3,
        );
        h.names = names;
        h.entropy = entropy;
        let recs = many_records(&h, 200, names);
        let whole = write_archive(&h, &recs).unwrap();
        for cuts in [
            vec![64, 128],
            vec![128],
            vec![0, 64, 64, 192],
            vec![50, 130],
        ] {
            let mut bounds = vec![0];
            bounds.extend(&cuts);
            bounds.push(recs.len());
            let parts: Vec<Vec<u8>> = bounds
                .windows(2)
                .map(|w| write_archive(&h, &recs[w[0]..w[1]]).unwrap())
                .collect();
            let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            assert_eq!(merge(&slices, &limits).unwrap(), whole, "cuts {cuts:?}");
        }
        // A damaged block and a name met twice are refused on the copying path too.
        let a = write_archive(&h, &recs[..64]).unwrap();
        let mut b = write_archive(&h, &recs[64..]).unwrap();
        let last = b.len() - 10;
        b[last] ^= 0x40;
        assert!(matches!(
            merge(&[&a, &b], &limits),
            Err(ArchiveError::BlockChecksum { .. } | ArchiveError::InvalidRecord { .. })
        ));
        if names {
            assert!(matches!(
                merge(&[&a, &a], &limits),
                Err(ArchiveError::DuplicateName { name, index: 1 }) if name == "img0.png"
            ));
        }
    }
}

/// Bytes read from every part so far, shared by their readers and the writer below.
#[derive(Clone, Default)]
struct Flow(std::rc::Rc<std::cell::Cell<(u64, u64, u64)>>);

impl Flow {
    /// Counts `n` bytes in (`read`) or out, keeping the most ever read and not yet written.
    fn add(&self, n: usize, read: bool) {
        let (mut r, mut w, most) = self.0.get();
        if read {
            r += n as u64;
        } else {
            w += n as u64;
        }
        self.0.set((r, w, most.max(r.saturating_sub(w))));
    }
}

struct Counted<T>(T, Flow);

impl<T: std::io::Read> std::io::Read for Counted<T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1.add(n, true);
        Ok(n)
    }
}

impl<T: std::io::Write> std::io::Write for Counted<T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1.add(n, false);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// A streamed merge writes what [`merge`] returns, on both of its paths, while holding about
/// a block of the parts at a time; parts that do not match leave the output untouched.
#[test]
fn merging_streams_writes_the_merge_a_block_at_a_time() {
    let mut h = Header::new(
        [6; 16],
        Geometry {
            latent_dim: 4,
            codebook_size: 1024,
            num_codebooks: 3,
            grid_factor: 8,
        },
        3,
    );
    h.names = true;
    // 256×256 images of 1,024 cells: about 3.8 KB an image packed, 250 KB a block.
    let recs: Vec<Record> = (0..640u32)
        .map(|i| Record {
            width: 256,
            height: 256,
            name: Some(format!("big{i}.png")),
            indices: (0..3 * 1024).map(|j| (i * 7 + j * 13) % 1024).collect(),
            ..Record::default()
        })
        .collect();
    let limits = Limits::default();
    // Whole blocks are copied; a part cut inside a block sends the merge record by record.
    for cuts in [[192, 448], [200, 448]] {
        let parts: Vec<Vec<u8>> = [0, cuts[0], cuts[1], recs.len()]
            .windows(2)
            .map(|w| write_archive(&h, &recs[w[0]..w[1]]).unwrap())
            .collect();
        let slices: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let expected = merge(&slices, &limits).unwrap();
        assert!(expected.len() > 2_000_000, "{}", expected.len());
        let flow = Flow::default();
        let readers = parts
            .iter()
            .map(|p| ArchiveReader::new(Counted(p.as_slice(), flow.clone()), &limits).unwrap())
            .collect();
        let out = merge_streams(readers, Counted(Vec::new(), flow.clone())).unwrap();
        assert_eq!(out.0, expected, "cuts {cuts:?}");
        // Each reader reads ahead a chunk of 64 KiB; the record path also holds a block of
        // records before writing it.
        let most = flow.0.get().2;
        assert!(
            most < 800_000,
            "cuts {cuts:?}: {most} bytes read ahead of the output"
        );
    }
    // Damage inside a part's block is named by the part's place, on both paths; merge
    // itself returns what reading found.
    for cut in [192, 200] {
        let a = write_archive(&h, &recs[..cut]).unwrap();
        let mut b = write_archive(&h, &recs[cut..]).unwrap();
        let at = b.len() - 100;
        b[at] ^= 0x08;
        let readers = [&a, &b]
            .iter()
            .map(|p| ArchiveReader::new(p.as_slice(), &limits).unwrap())
            .collect();
        let err = merge_streams(readers, Vec::new()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::InPart { index: 1, error } if !matches!(**error, ArchiveError::InPart { .. })),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("archive 1 of the merge: "),
            "{err}"
        );
        assert!(!matches!(
            merge(&[&a, &b], &limits),
            Err(ArchiveError::InPart { .. }) | Ok(_)
        ));
    }
    // Another model's part is refused before a byte is written.
    let other = write_archive(
        &Header {
            fingerprint: [9; 16],
            ..h.clone()
        },
        &recs[..1],
    )
    .unwrap();
    let ours = write_archive(&h, &recs[1..2]).unwrap();
    let readers = [&ours, &other]
        .iter()
        .map(|p| ArchiveReader::new(p.as_slice(), &limits).unwrap())
        .collect();
    let mut out = Vec::new();
    assert!(matches!(
        merge_streams(readers, &mut out),
        Err(ArchiveError::MergeMismatch { index: 1, .. })
    ));
    assert!(out.is_empty());
    assert!(matches!(
        merge_streams(Vec::<ArchiveReader<&[u8]>>::new(), Vec::new()),
        Err(ArchiveError::NothingToMerge)
    ));
}

#[test]
fn merging_concatenates_records_of_matching_archives() {
    let (h, recs) = sample(2, true, 1);
    let whole = write_archive(&h, &recs).unwrap();
    let a = write_archive(&h, &recs[..1]).unwrap();
    let b = write_archive(&h, &recs[1..]).unwrap();
    let empty = write_archive(&h, &[]).unwrap();
    let limits = Limits::default();
    assert_eq!(merge(&[&a, &empty, &b], &limits).unwrap(), whole);
    assert_eq!(merge(&[&whole], &limits).unwrap(), whole);
    assert!(matches!(
        merge(&[], &limits),
        Err(ArchiveError::NothingToMerge)
    ));
    assert!(matches!(
        merge(&[&a, &whole], &limits),
        Err(ArchiveError::DuplicateName { name, index: 1 }) if name == "1/0.png"
    ));
    // Without names there is nothing to collide.
    let (hn, rn) = sample(2, false, 1);
    let plain = write_archive(&hn, &rn).unwrap();
    assert_eq!(
        Archive::parse(&merge(&[&plain, &plain], &limits).unwrap(), &limits)
            .unwrap()
            .image_count,
        6
    );
}

#[test]
fn merging_a_version_1_archive_with_a_version_2_one_writes_version_2() {
    let (h2, recs) = sample(2, true, 4);
    let mut h1 = h2.clone();
    h1.version = VERSION_1;
    let v1 = write_archive(&h1, &recs[..1]).unwrap();
    let v2 = write_archive(&h2, &recs[1..]).unwrap();
    let merged = merge(&[&v1, &v2], &Limits::default()).unwrap();
    assert_eq!(merged, write_archive(&h2, &recs).unwrap());
}

#[test]
fn merging_refuses_archives_that_differ_in_their_header() {
    let (h, recs) = sample(2, true, 1);
    let base = write_archive(&h, &recs[..1]).unwrap();
    let other = |f: &dyn Fn(&mut Header)| {
        let mut h2 = h.clone();
        f(&mut h2);
        let recs2: Vec<Record> = recs[1..]
            .iter()
            .map(|r| Record {
                name: h2.names.then(|| r.name.clone().unwrap()),
                indices: r.indices[..(2 * h2.codebooks_used) as usize].to_vec(),
                ..r.clone()
            })
            .collect();
        write_archive(&h2, &recs2).unwrap()
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (other(&|h| h.fingerprint = [2; 16]), "model fingerprint"),
        (other(&|h| h.num_codebooks = 4), "geometry"),
        (other(&|h| h.codebooks_used = 1), "number of codebooks used"),
        (other(&|h| h.names = false), "name storage"),
        (
            other(&|h| {
                h.codebook = Some(EmbeddedCodebook {
                    dtype: CodebookDType::F32,
                    values: vec![0.0; h.codebook_values() as usize],
                })
            }),
            "embedded codebook",
        ),
    ];
    for (bytes, what) in cases {
        let err = merge(&[&base, &bytes], &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::MergeMismatch { index: 1, what: w, .. } if w.starts_with(what)),
            "{what}: {err}"
        );
    }
}

/// Hands out its bytes a few at a time, as a pipe or socket may.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

/// What the streaming reader makes of `bytes`: the header and every record, or the first error.
fn stream(bytes: &[u8], step: usize) -> Result<(Header, Vec<Record>)> {
    let r = ArchiveReader::new(Trickle { bytes, step }, &Limits::default())?;
    let header = r.header().clone();
    let records = r.collect::<Result<Vec<_>>>()?;
    Ok((header, records))
}

/// What the in-memory reader makes of `bytes`.
fn in_memory(bytes: &[u8]) -> Result<(Header, Vec<Record>)> {
    let a = Archive::parse(bytes, &Limits::default())?;
    Ok((a.header.clone(), a.records()?))
}

#[test]
fn the_streaming_reader_agrees_with_the_in_memory_one() {
    let (mut h, recs) = sample(3, true, 4);
    h.codebook = Some(EmbeddedCodebook {
        dtype: CodebookDType::F16,
        values: vec![0.5; h.codebook_values() as usize],
    });
    let bytes = write_archive(&h, &recs).unwrap();
    for step in [1, 3, 7, 64, 1 << 20] {
        assert_eq!(stream(&bytes, step).unwrap(), (h.clone(), recs.clone()));
    }
    // Every truncation and every flipped byte is an error for both, never a short success.
    for cut in 0..bytes.len() {
        assert!(stream(&bytes[..cut], 5).is_err(), "cut at {cut}");
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        assert!(stream(&bad, 5).is_err(), "byte {i} flipped");
        assert!(in_memory(&bad).is_err(), "byte {i} flipped");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0, 0]);
    assert!(matches!(
        stream(&longer, 3),
        Err(ArchiveError::TrailingBytes(2))
    ));
    // Offsets in errors count from the start of the stream, not of the reader's buffer.
    let short = &bytes[..bytes.len() - 1];
    match (stream(short, 2), in_memory(short)) {
        (
            Err(ArchiveError::Truncated { offset: a, .. }),
            Err(ArchiveError::Truncated { offset: b, .. }),
        ) => assert_eq!(a, b),
        other => panic!("{other:?}"),
    }
}

/// 200 records of [`sample`]'s shapes (three whole blocks and one of 8) and their archive.
fn two_hundred(version: u8) -> (Vec<Record>, Vec<u8>) {
    let (mut h, one) = sample(3, true, 9);
    h.version = version;
    let recs: Vec<Record> = (0..200)
        .map(|i| Record {
            name: Some(format!("{i}.png")),
            ..one[i % 3].clone()
        })
        .collect();
    let bytes = write_archive(&h, &recs).unwrap();
    (recs, bytes)
}

fn trickling(bytes: &[u8]) -> ArchiveReader<Trickle<'_>> {
    ArchiveReader::new(Trickle { bytes, step: 5 }, &Limits::default()).unwrap()
}

#[test]
fn a_streaming_reader_skips_whole_blocks_without_decoding_them() {
    for version in [VERSION_1, VERSION_2] {
        let (recs, bytes) = two_hundred(version);
        for skip in 0..=5u64 {
            let mut r = trickling(&bytes);
            let n = r.skip_blocks(skip).unwrap();
            assert_eq!(n, (skip * 64).min(200), "version {version}, skip {skip}");
            let rest = r.collect::<Result<Vec<_>>>().unwrap();
            assert_eq!(rest, recs[n as usize..], "version {version}, skip {skip}");
        }
        // Skipped in steps, from each block's start, and not from inside one.
        let mut r = trickling(&bytes);
        assert_eq!(r.skip_blocks(1).unwrap() + r.skip_blocks(2).unwrap(), 192);
        assert_eq!(r.next().unwrap().unwrap(), recs[192]);
        assert!(matches!(
            r.skip_blocks(0),
            Err(ArchiveError::NotAtBlockStart { image: 193 })
        ));
        // Bytes after the last block are still found once the blocks are skipped.
        let mut longer = bytes.clone();
        longer.push(0);
        let mut r = trickling(&longer);
        assert_eq!(r.skip_blocks(9).unwrap(), 200);
        assert!(matches!(
            r.next(),
            Some(Err(ArchiveError::TrailingBytes(1)))
        ));
        // A stream that ends inside a skipped block is truncated where the whole read says.
        let short = &bytes[..bytes.len() - 1];
        match (trickling(short).skip_blocks(5), in_memory(short)) {
            (
                Err(ArchiveError::Truncated { offset: a, .. }),
                Err(ArchiveError::Truncated { offset: b, .. }),
            ) => assert_eq!(a, b, "version {version}"),
            other => panic!("version {version}: {other:?}"),
        }
    }
    // An archive of no images has nothing to skip.
    let (h, _) = sample(3, true, 9);
    let empty = write_archive(&h, &[]).unwrap();
    assert_eq!(trickling(&empty).skip_blocks(3).unwrap(), 0);
}

#[test]
fn a_skipped_block_is_checked_but_not_decoded() {
    let (_, bytes) = two_hundred(VERSION_2);
    let header_len = Archive::parse(&bytes, &Limits::default())
        .unwrap()
        .header_len;
    // Block 0's body ends in packed indices of 3 bits (k = 5, 1,152 bits, no padding): ones
    // there make an index of 7, which no reader accepts; the checksum is made to match.
    let (mut len, mut shift, mut at) = (0usize, 0, header_len);
    loop {
        let byte = bytes[at];
        len |= ((byte & 0x7f) as usize) << shift;
        at += 1;
        shift += 7;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let end = at + len;
    let mut forged = bytes.clone();
    forged[end - 1] = 0xff;
    let crc = crc32fast::hash(&forged[header_len..end]).to_le_bytes();
    forged[end..end + 4].copy_from_slice(&crc);
    assert!(in_memory(&forged).is_err(), "the forged block decodes");
    assert!(trickling(&forged).next().unwrap().is_err());
    // Stepped over, it passes: its records were never decoded.
    let mut r = trickling(&forged);
    assert_eq!(r.skip_blocks(1).unwrap(), 64);
    assert!(r.next().unwrap().is_ok());
    // Damage to a skipped block is found by its checksum all the same.
    let mut damaged = bytes.clone();
    damaged[header_len + 10] ^= 0x01;
    match trickling(&damaged).skip_blocks(2) {
        Err(ArchiveError::BlockChecksum { first: 0, last: 63 }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_streaming_reader_agrees_on_the_fuzz_corpus() {
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../fuzz/corpus/archive_reader");
    for entry in std::fs::read_dir(&dir).expect("fuzz corpus present") {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let (a, b) = (stream(&bytes, 3), in_memory(&bytes));
        match (&a, &b) {
            (Ok(x), Ok(y)) => assert_eq!(x, y, "{}", path.display()),
            (Err(_), Err(_)) => {}
            _ => panic!("{}: streaming {a:?}, in memory {b:?}", path.display()),
        }
        // As the fuzz target checks: the streamed description and truncation accept exactly
        // what the readers accept, and a merge of an accepted archive alone gives it back (a
        // merge copying whole blocks checks checksums and names, not indices, so it may copy
        // a block the readers refuse).
        let limits = Limits::default();
        let cut =
            ArchiveReader::new(&bytes[..], &limits).and_then(|r| truncate_stream(r, 1, Vec::new()));
        let described = read_info(&bytes[..], &limits);
        for (what, ok) in [("truncate", cut.is_ok()), ("info", described.is_ok())] {
            assert_eq!(ok, b.is_ok(), "{}: {what}", path.display());
        }
        if b.is_ok() {
            let merged = ArchiveReader::new(&bytes[..], &limits)
                .and_then(|r| merge_streams(vec![r], Vec::new()));
            assert_eq!(merged.unwrap(), bytes, "{}", path.display());
        }
        // Stepping over the first block reads the same records after it.
        if let Ok((_, records)) = &b {
            let mut r = ArchiveReader::new(
                Trickle {
                    bytes: &bytes,
                    step: 3,
                },
                &Limits::default(),
            )
            .unwrap();
            let skipped = r.skip_blocks(1).unwrap() as usize;
            let rest = r.collect::<Result<Vec<_>>>().unwrap();
            assert_eq!(rest, records[skipped..], "{}", path.display());
        }
    }
}

#[test]
fn the_writer_streams_exactly_the_announced_records() {
    let (h, recs) = sample(2, true, 6);
    let mut w = ArchiveWriter::new(Vec::new(), &h, 3).unwrap();
    for r in &recs {
        w.write(r).unwrap();
    }
    assert!(matches!(
        w.write(&recs[0]),
        Err(ArchiveError::Unwritable { index: 3, .. })
    ));
    assert_eq!(w.finish().unwrap(), write_archive(&h, &recs).unwrap());
    let mut short = ArchiveWriter::new(Vec::new(), &h, 3).unwrap();
    short.write(&recs[0]).unwrap();
    let err = short.finish().unwrap_err().to_string();
    assert!(err.contains("only 1 of the 3 announced images"), "{err}");
    // A record that does not fit is refused and nothing of it is written.
    let mut w = ArchiveWriter::new(Vec::new(), &h, 1).unwrap();
    let mut bad = recs[0].clone();
    bad.indices.pop();
    assert!(w.write(&bad).is_err());
    w.write(&recs[0]).unwrap();
    assert_eq!(w.finish().unwrap(), write_archive(&h, &recs[..1]).unwrap());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn streaming_reads_what_was_written((header, records) in arb_case(), step in 1usize..100) {
        let bytes = write_archive(&header, &records).unwrap();
        prop_assert_eq!(stream(&bytes, step).unwrap(), (header, records));
    }
}

/// Accepts `room` bytes, then fails every write.
struct Full {
    room: usize,
}

impl std::io::Write for Full {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::other("disk full"));
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A writer of `h`'s archive of 3 images into a sink with room for the header and 3 bytes.
fn nearly_full_writer(h: &Header) -> ArchiveWriter<Full> {
    let header_len = write_header(h, 3).unwrap().len();
    ArchiveWriter::new(
        Full {
            room: header_len + 3,
        },
        h,
        3,
    )
    .unwrap()
}

#[test]
fn a_writer_that_failed_refuses_to_go_on() {
    let (mut h, recs) = sample(2, true, 6);
    h.version = VERSION_1;
    let mut w = nearly_full_writer(&h);
    assert!(matches!(w.write(&recs[0]), Err(ArchiveError::Io(_))));
    let err = w.write(&recs[1]).unwrap_err().to_string();
    assert!(err.contains("an earlier write failed"), "{err}");
    assert!(w.finish().is_err());
}

#[test]
fn a_version_2_writer_reports_a_failed_block_at_finish() {
    let (h, recs) = sample(2, true, 6);
    let mut w = nearly_full_writer(&h);
    // The records wait for their block, which fills at 64 records or at finish.
    for r in &recs {
        w.write(r).unwrap();
    }
    assert!(matches!(w.finish(), Err(ArchiveError::Io(_))));
}

/// Version 2's example in docs/FORMAT.md: two 9×8 images, names off, d = 2, k = 5, n_q = 2,
/// m = 2; the second image's right cell uses one codebook.
fn golden_v2() -> (Header, Vec<Record>) {
    let h = Header::new(
        [0x22; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 5,
            num_codebooks: 2,
            grid_factor: 8,
        },
        2,
    );
    let recs = vec![
        Record {
            width: 9,
            height: 8,
            indices: vec![1, 4, 0, 3],
            ..Record::default()
        },
        Record {
            width: 9,
            height: 8,
            indices: vec![2, 3, 4],
            depths: vec![2, 1],
            ..Record::default()
        },
    ];
    (h, recs)
}

fn golden_v2_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RVQA");
    b.extend_from_slice(&[2, 0, 0]); // version 2, no flags, coder 0
    b.extend_from_slice(&[0x22; 16]);
    b.extend_from_slice(&[2, 5, 2, 8, 2, 3, 2]); // d, k, n_q, f, m, b, image_count
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let mut body = vec![0b11, 9, 8]; // flags: shared size, depth map; 9×8
    body.push(1); // depth map: one 32-bit word
    body.extend_from_slice(&GOLDEN_V2_DEPTH_WORD.to_le_bytes());
    // Image 0: 1 4 | 0 3; image 1: 2 3 | 4 (its cell 1 stops at level 0), at 3 bits:
    // 001 100 000 011 010 011 100 + 3 zero bits.
    body.extend_from_slice(&[0b0011_0000, 0b0011_0100, 0b1110_0000]);
    let mut block = vec![body.len() as u8]; // the body's length, a one-byte varint
    block.extend_from_slice(&body);
    let crc = crc32fast::hash(&block); // of the length and the body
    b.extend_from_slice(&block);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The range coder's output for depths 2 2 2 1 under the model docs/FORMAT.md specifies.
const GOLDEN_V2_DEPTH_WORD: u32 = 0xc666_6680;

#[test]
fn golden_v2_archive_matches_the_spec_byte_for_byte() {
    let (h, recs) = golden_v2();
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes, golden_v2_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, h);
    assert_eq!(a.records().unwrap(), recs);
    assert_eq!(a.block(0).unwrap(), recs);
}

/// docs/FORMAT.md's version-3 example: two 65×8 images (9 cells each), d = 2, k = 5, n_q = m =
/// 1, names off; the first with a restoration filter of one unit, the second without.
fn golden_v3() -> (Header, Vec<Record>) {
    let mut h = Header::new(
        [0x33; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 5,
            num_codebooks: 1,
            grid_factor: 8,
        },
        1,
    );
    h.version = VERSION_3;
    let mut coefficients = vec![240, 4, 4, 0, 0, 8, 0, 100, 256, 0, 0, 0, 0, 0, 0, -3];
    coefficients.extend_from_slice(&IDENTITY);
    let recs = vec![
        Record {
            width: 65,
            height: 8,
            indices: vec![0, 1, 2, 3, 4, 0, 1, 2, 3],
            filter: Some(Filter {
                unit: 0,
                coefficients,
            }),
            ..Record::default()
        },
        Record {
            width: 65,
            height: 8,
            indices: vec![4; 9],
            ..Record::default()
        },
    ];
    (h, recs)
}

fn golden_v3_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RVQA");
    b.extend_from_slice(&[3, 0, 0]); // version 3, no flags, coder 0
    b.extend_from_slice(&[0x33; 16]);
    b.extend_from_slice(&[2, 5, 1, 8, 1, 3, 2]); // d, k, n_q, f, m, b, image_count
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let mut body = vec![0x11, 65, 8]; // flags: shared size, filters; 65×8
    body.push(1); // image 0's filter: one unit (side 0, stored + 1)
    // Red's differences from 256 0 0 0 0 0 0 0, zigzag: -16 +4 +4 0 0 +8 0 +100.
    body.extend_from_slice(&[0x1f, 0x08, 0x08, 0x00, 0x00, 0x10, 0x00, 0xc8, 0x01]);
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x05]); // green: bias -3
    body.extend_from_slice(&[0; 8]); // blue: the identity
    body.push(0); // image 1: no filter
    // 0 1 2 3 4 0 1 2 3 | 4 × 9 at 3 bits, then 2 zero bits.
    body.extend_from_slice(&[0x05, 0x38, 0x0a, 0x72, 0x49, 0x24, 0x90]);
    b.extend_from_slice(&block(&body));
    b
}

#[test]
fn golden_v3_archive_matches_the_spec_byte_for_byte() {
    let (h, recs) = golden_v3();
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes, golden_v3_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, h);
    assert_eq!(a.records().unwrap(), recs);
    let mut streamed = Vec::new();
    for r in ArchiveReader::new(bytes.as_slice(), &Limits::default()).unwrap() {
        streamed.push(r.unwrap());
    }
    assert_eq!(streamed, recs);
    let info = a.info().unwrap();
    assert_eq!((info.version, info.filtered_images), (3, 1));
    assert_eq!(
        info.filter_bytes, 26,
        "the unit byte and 9 + 8 + 8 coefficient bytes"
    );
}

/// Re-frames a golden version-3 block body with its length and checksum.
fn v3_with_body(body: &[u8]) -> Vec<u8> {
    [&golden_v3_bytes()[..34], &block(body)].concat()
}

#[test]
fn restoration_filters_are_refused_where_the_format_does_not_allow_them() {
    let golden = golden_v3_bytes();
    let body = golden[35..golden.len() - 4].to_vec();
    assert_eq!(
        Archive::parse(&v3_with_body(&body), &Limits::default())
            .unwrap()
            .image_count,
        2
    );
    let refused = |body: &[u8], what: &str| {
        let e = Archive::parse(&v3_with_body(body), &Limits::default())
            .and_then(|a| a.records())
            .unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    };
    // A unit side that is not a multiple of 64, or not below the image's larger side.
    let mut b = body.clone();
    b[3] = 33;
    refused(&b, "filter unit side 32");
    let b = [&body[..3], &[0x81, 0x01], &body[4..]].concat(); // 129: side 128
    refused(&b, "filter unit side 128");
    // The red bias past 16 bits: 32,800.
    let mut b = body[..11].to_vec();
    b.extend_from_slice(&[0xc0, 0x80, 0x04]); // zigzag of 32,800 (65,600)
    b.extend_from_slice(&body[13..]);
    refused(&b, "outside 16 bits");
    // A filter of identities only (the red channel's differences zeroed).
    let mut b = body[..4].to_vec();
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&[0; 8]);
    b.extend_from_slice(&body[4 + 9 + 8 + 8..]);
    refused(&b, "changes nothing");
    // The flag with no image filtered, and the flag in a version-2 archive.
    let mut b = vec![0x11, 65, 8, 0, 0];
    b.extend_from_slice(&body[body.len() - 7..]);
    refused(&b, "none of its images has one");
    let mut v2 = golden.clone();
    v2[4] = 2;
    let crc = crc32fast::hash(&v2[..30]);
    v2[30..34].copy_from_slice(&crc.to_le_bytes());
    let e = Archive::parse(&v2, &Limits::default())
        .and_then(|a| a.records())
        .unwrap_err();
    assert!(e.to_string().contains("need format version 3"), "{e}");
    // Writers refuse a filter under a version-2 header, and a filter of the wrong length.
    let (mut h, mut recs) = golden_v3();
    h.version = 2;
    let e = write_archive(&h, &recs).unwrap_err();
    assert!(e.to_string().contains("need format version 3"), "{e}");
    h.version = VERSION_3;
    recs[0].filter.as_mut().unwrap().coefficients.pop();
    let e = write_archive(&h, &recs).unwrap_err();
    assert!(e.to_string().contains("23 filter coefficients"), "{e}");
}

/// Truncating a record to fewer codebooks drops its filter (fitted to the full decode); a
/// record that keeps its depths keeps it.
#[test]
fn truncation_drops_a_filter_only_where_the_depths_change() {
    let (mut h, mut recs) = golden_v3();
    h.num_codebooks = 2;
    h.codebooks_used = 2;
    recs[0].indices = [recs[0].indices.clone(), vec![1; 3]].concat();
    recs[0].depths = vec![2, 2, 2, 1, 1, 1, 1, 1, 1];
    let cut = recs[0].truncated(&h, 1);
    assert!(cut.filter.is_none());
    let kept = recs[0].truncated(&h, 2);
    assert_eq!(kept.filter, recs[0].filter);
}

/// What `Archive::info` (and so `rvq info`) says of the golden version-2 archive, counted by
/// hand from its bytes above.
#[test]
fn info_of_the_golden_archive_counts_its_bytes() {
    let bytes = golden_v2_bytes();
    let info = Archive::parse(&bytes, &Limits::default())
        .unwrap()
        .info()
        .unwrap();
    assert_eq!((info.version, info.images, info.total_bytes), (2, 2, 50));
    assert_eq!(info.fingerprint, "22".repeat(16));
    // 34 header bytes; the block: 1 length byte, 11 body bytes (3 of them indices), 4 CRC.
    assert_eq!((info.header_bytes, info.payload_bytes), (34, 3));
    assert_eq!(info.record_overhead_bytes, 13);
    assert_eq!((info.bits_per_index, info.codebooks_used), (3, 2));
    assert_eq!(info.mean_depth, 7.0 / 4.0); // depths 2 2 | 2 1
    assert_eq!(info.pixels, 2 * 9 * 8);
    assert_eq!(info.bits_per_pixel, 50.0 * 8.0 / 144.0);
    assert!(!info.entropy && !info.names && info.embedded_codebook.is_none());
    // The block's 3 index bytes shared 4 : 3 by the images' indices, rounded down.
    let entries: Vec<(u32, u32, u64)> = info
        .entries
        .iter()
        .map(|e| (e.width, e.height, e.bytes))
        .collect();
    assert_eq!(entries, [(9, 8, 1), (9, 8, 1)]);
}

/// The golden entropy-coded archive (docs/FORMAT.md): one 64×8 image, d = 2, k = 5, n_q = m
/// = 2, every index 0 but the last cell's level-0 index, 3.
fn golden_coded() -> (Header, Vec<Record>) {
    let mut h = Header::new(
        [0x33; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 5,
            num_codebooks: 2,
            grid_factor: 8,
        },
        2,
    );
    h.entropy = true;
    let mut indices = vec![0; 16];
    indices[7] = 3;
    let recs = vec![Record {
        width: 64,
        height: 8,
        indices,
        ..Record::default()
    }];
    (h, recs)
}

fn golden_coded_bytes() -> Vec<u8> {
    // d, k, n_q, f, m, b, image_count; block flags: shared size, coded; 64×8
    coded_archive_bytes(
        1,
        &[2, 5, 2, 8, 2, 3, 1],
        &[0b101, 64, 8],
        &GOLDEN_CODED_WORDS,
    )
}

/// A one-block archive of coder `coder` (version 2, flag ENTROPY, fingerprint sixteen 0x33):
/// the header's `fields` after the fingerprint, then a block of `body` (flags and size) and
/// the coded `words` with their count.
fn coded_archive_bytes(coder: u8, fields: &[u8], body: &[u8], words: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RVQA");
    b.extend_from_slice(&[2, 0b100, coder]);
    b.extend_from_slice(&[0x33; 16]);
    b.extend_from_slice(fields);
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let mut body = body.to_vec();
    body.push(words.len() as u8);
    for w in words {
        body.extend_from_slice(&w.to_le_bytes());
    }
    let mut block = vec![body.len() as u8];
    block.extend_from_slice(&body);
    let crc = crc32fast::hash(&block);
    b.extend_from_slice(&block);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The range coder's output for the golden coded archive's 16 indices under the model
/// docs/FORMAT.md specifies (packed, they would take 6 bytes).
const GOLDEN_CODED_WORDS: [u32; 1] = [0x0964_0ab1];

#[test]
fn golden_coded_archive_matches_the_spec_byte_for_byte() {
    let (h, recs) = golden_coded();
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes, golden_coded_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, h);
    assert_eq!(a.records().unwrap(), recs);
    assert_eq!(stream(&bytes, 3).unwrap(), (h, recs));
    // The reader's account of the block: one varint word count and one word, coded.
    assert_eq!(
        a.records_and_blocks().unwrap().1,
        [BlockIndices {
            bytes: 5,
            coded: true
        }]
    );
}

/// The golden archive of payload coder 2 (docs/FORMAT.md): one 128×8 image (a 16×1 grid),
/// d = 2, k = 5, n_q = 2, m = 1, its indices runs of four: 1 1 1 1 3 3 3 3 4 4 4 4 2 2 2 2.
fn golden_neighbours() -> (Header, Vec<Record>) {
    let (mut h, _) = golden_coded();
    h.codebooks_used = 1;
    h.neighbours = true;
    let recs = vec![Record {
        width: 128,
        height: 8,
        indices: (0..16).map(|c| [1, 3, 4, 2][c / 4]).collect(),
        ..Record::default()
    }];
    (h, recs)
}

fn golden_neighbours_bytes() -> Vec<u8> {
    // d, k, n_q, f, m = 1, b, image_count; block flags: shared size, coded, by neighbour
    // contexts; 128×8
    coded_archive_bytes(
        2,
        &[2, 5, 2, 8, 1, 3, 1],
        &[0b1101, 0x80, 0x01, 8],
        &GOLDEN_NEIGHBOURS_WORDS,
    )
}

/// The range coder's output for the golden archive of coder 2 (packed, its 16 indices take
/// 6 bytes; coder 1's model codes them in two words, 9 bytes with their count).
const GOLDEN_NEIGHBOURS_WORDS: [u32; 1] = [0x465a_46fd];

#[test]
fn golden_neighbours_archive_matches_the_spec_byte_for_byte() {
    let (h, recs) = golden_neighbours();
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes, golden_neighbours_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, h);
    assert_eq!(a.records().unwrap(), recs);
    assert_eq!(stream(&bytes, 3).unwrap(), (h, recs));
    // Under coder 1 the same indices pack, 1 byte longer.
    let (mut h1, recs) = golden_neighbours();
    h1.neighbours = false;
    let (_, blocks) = Archive::parse(&write_archive(&h1, &recs).unwrap(), &Limits::default())
        .unwrap()
        .records_and_blocks()
        .unwrap();
    assert_eq!((blocks[0].bytes, blocks[0].coded), (6, false));
    // The same words under coder 1's model, or with the flag cleared, are refused.
    let mut other = bytes.clone();
    other[35] = 0b101;
    let at = 34;
    let crc = crc32fast::hash(&other[at..other.len() - 4]);
    let n = other.len();
    other[n - 4..].copy_from_slice(&crc.to_le_bytes());
    assert!(
        Archive::parse(&other, &Limits::default())
            .unwrap()
            .records()
            .is_err()
    );
    // The flag in an archive of coder 1 is refused by name.
    let mut coder1 = golden_coded_bytes();
    coder1[35] |= 0b1000;
    let n = coder1.len();
    let crc = crc32fast::hash(&coder1[at..n - 4]);
    coder1[n - 4..].copy_from_slice(&crc.to_le_bytes());
    let e = in_memory(&coder1).unwrap_err().to_string();
    assert!(e.contains("only coded blocks of payload coder 2"), "{e}");
}

#[test]
fn the_reader_accounts_for_coded_and_packed_blocks() {
    // The corpus seed whose first block codes and whose second (uniform indices in 1,024
    // entries) packs: 4 indices of 10 bits pack into 5 bytes.
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../fuzz/corpus/archive_reader/v2_coded_and_packed.rvq");
    let bytes = std::fs::read(dir).unwrap();
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    let (records, blocks) = a.records_and_blocks().unwrap();
    assert_eq!(records, a.records().unwrap());
    assert_eq!(
        blocks.iter().map(|b| b.coded).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(blocks[1].bytes, 5);
    for (g, b) in records.chunks(BLOCK_RECORDS as usize).zip(&blocks) {
        assert_eq!(index_bytes(&a.header, g), (b.bytes, b.coded));
    }
    // Version 1: each record on its own, its indices packed to a byte.
    let v1 = write_archive(&golden_header(), &[golden_record(), golden_record()]).unwrap();
    let v1 = Archive::parse(&v1, &Limits::default()).unwrap();
    let (records, blocks) = v1.records_and_blocks().unwrap();
    assert_eq!(records, [golden_record(), golden_record()]);
    let packed = (golden_record().indices.len() * 3).div_ceil(8) as u64;
    assert_eq!(
        blocks,
        vec![
            BlockIndices {
                bytes: packed,
                coded: false
            };
            2
        ]
    );
}

#[test]
fn malformed_coded_blocks_are_refused() {
    let good = golden_coded_bytes();
    let at = 34; // the block: length byte, 8 bytes of body, checksum
    let refuse = |bytes: Vec<u8>, needle: &str| {
        let e = in_memory(&bytes).unwrap_err().to_string();
        assert!(e.contains(needle), "{e} lacks {needle:?}");
        assert!(stream(&bytes, 5).is_err());
    };
    let block = |body: &[u8]| {
        let mut b = good[..at].to_vec();
        let mut block = vec![body.len() as u8];
        block.extend_from_slice(body);
        let crc = crc32fast::hash(&block);
        b.extend_from_slice(&block);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    };
    let body = &good[at + 1..good.len() - 4];
    // A coded block under a header without the entropy flag.
    let mut plain = good.clone();
    plain[5] = 0;
    plain[6] = 0;
    let crc = crc32fast::hash(&plain[..30]);
    plain[30..34].copy_from_slice(&crc.to_le_bytes());
    refuse(plain, "does not say so");
    // A byte after the words.
    let mut longer = body.to_vec();
    longer.push(0);
    refuse(block(&longer), "bytes follow");
    // Other words.
    let mut other = body.to_vec();
    other[5] ^= 0x10;
    refuse(block(&other), "not the coding of any indices");
    // Coded where packing is no longer: the same words for a 9×8 image (two cells, four
    // indices: 2 packed bytes, against 5 coded).
    let mut short = body.to_vec();
    short.splice(1..3, [9, 8]);
    refuse(block(&short), "packing stores in no more bytes");
    // Dense: 16,384 × 8 pixels (2,048 cells, 4,096 indices) from one word, within the work
    // bound per cell but not per index.
    let mut dense = body.to_vec();
    dense.splice(1..3, [0x80, 0x80, 0x01, 0x08]);
    refuse(block(&dense), "too dense to decode");
    // The same indices packed (6 bytes) where the coder needs 5: not the canonical choice.
    refuse(
        block(&[0b001, 64, 8, 0, 0, 0b0000_0011, 0, 0, 0]),
        "would code in fewer bytes",
    );
    // A forged size: 16,384 × 4,096 pixels (a million cells) from one word.
    let mut forged = body.to_vec();
    forged.splice(1..3, [0x80, 0x80, 0x01, 0x80, 0x20]);
    refuse(block(&forged), "too short for its images' cells");
}

#[test]
fn a_block_holds_at_most_512_indices_a_byte_at_any_codebook_size() {
    // A flat 16,384 × 4,096 image (a million cells) at k = 2, coded as coder 1 codes it: 18
    // zero words. Before an index's work had a floor of 64 the reader took it (2 an index, so
    // up to 16,384 indices a byte): 4 MiB of indices from 118 bytes.
    let forged = coded_archive_bytes(
        1,
        &[1, 2, 1, 8, 1, 1, 1],
        &[0b101, 0x80, 0x80, 0x01, 0x80, 0x20],
        &[0; 18],
    );
    // Refused before a word is decoded: its cells alone pass the bound.
    let e = in_memory(&forged).unwrap_err().to_string();
    assert!(e.contains("too short for its images' cells"), "{e}");
    assert!(stream(&forged, 5).is_err());
    // The writer packs that image now (a bit an index), and reads back what it writes.
    let mut h = Header::new(
        [0x33; 16],
        Geometry {
            latent_dim: 1,
            codebook_size: 2,
            num_codebooks: 1,
            grid_factor: 8,
        },
        1,
    );
    h.entropy = true;
    let recs = vec![Record {
        width: 16384,
        height: 4096,
        indices: vec![0; 2048 * 512],
        ..Record::default()
    }];
    assert_eq!(index_bytes(&h, &recs), (131_072, false));
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(in_memory(&bytes).unwrap(), (h, recs));
}

/// One 1,024×8 image (128 cells at one level) in runs of 16 entries: payload coder 2's
/// neighbour contexts code it in fewer bytes than coder 1's model, which codes it in fewer than
/// packing.
fn neighbour_runs() -> (Header, Vec<Record>) {
    let (h, _) = golden_neighbours();
    let recs = vec![Record {
        width: 1024,
        height: 8,
        indices: (0..128).map(|c| [1, 3, 4, 2][(c / 16) % 4]).collect(),
        ..Record::default()
    }];
    (h, recs)
}

#[test]
fn a_block_coded_by_the_longer_of_coder_2s_models_is_refused() {
    let (mut h, recs) = neighbour_runs();
    let two = write_archive(&h, &recs).unwrap();
    h.neighbours = false;
    let one = write_archive(&h, &recs).unwrap();
    let block = |bytes: &[u8]| {
        let a = Archive::parse(bytes, &Limits::default()).unwrap();
        a.records_and_blocks().unwrap().1[0]
    };
    let (by_two, by_one) = (block(&two), block(&one));
    let packed = (128 * 3u64).div_ceil(8);
    assert!(by_two.coded && by_one.coded, "{by_two:?} {by_one:?}");
    assert!(by_two.bytes < by_one.bytes && by_one.bytes < packed);
    let header_len = |b: &[u8]| Archive::parse(b, &Limits::default()).unwrap().header_len;
    let at = header_len(&two);
    assert_eq!(at, header_len(&one));
    // The block's flags follow its one-byte length.
    assert_eq!(
        two[at + 1] & 0b1000,
        0b1000,
        "coder 2 chose its neighbour contexts"
    );
    // Coder 1's block (its flags without NEIGHBOURS) under coder 2's header: a valid coding of
    // the same indices, but not the shorter of the two, so not the one coder 2 writes.
    let mut forged = two[..at].to_vec();
    forged.extend_from_slice(&one[at..]);
    let needle = "coded by the longer of payload coder 2's two models";
    let e = in_memory(&forged).unwrap_err().to_string();
    assert!(e.contains(needle), "{e}");
    let e = stream(&forged, 7).unwrap_err().to_string();
    assert!(e.contains(needle), "{e}");
}

#[test]
fn a_coded_index_beyond_k_is_refused() {
    // k = 5 and k = 6 split indices alike (one low bit, high parts 0..=2), so an archive
    // coded at k = 6 holding index 5 reads under a header that says k = 5 as index 5 ≥ k.
    let (mut h, mut recs) = golden_coded();
    h.codebook_size = 6;
    recs[0].indices[3] = 5;
    let mut bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes[35] & 0b100, 0b100, "the block is coded");
    bytes[24] = 5;
    let crc = crc32fast::hash(&bytes[..30]);
    bytes[30..34].copy_from_slice(&crc.to_le_bytes());
    let e = in_memory(&bytes).unwrap_err().to_string();
    assert!(e.contains("index 5 is not below codebook_size 5"), "{e}");
}

#[test]
fn entropy_coding_needs_version_2_and_survives_merging() {
    let (h, recs) = golden_coded();
    let v1 = Header {
        version: VERSION_1,
        ..h.clone()
    };
    let e = write_archive(&v1, &recs).unwrap_err().to_string();
    assert!(e.contains("need format version 2"), "{e}");
    // A packed part and a coded one merge into a coded archive (any coded part makes the
    // whole need a reader of coder 1), whose block codes all the images.
    let packed = Header {
        entropy: false,
        ..h.clone()
    };
    let parts = [
        write_archive(&packed, &recs).unwrap(),
        write_archive(&h, &recs).unwrap(),
    ];
    let merged = merge(&[&parts[0], &parts[1]], &Limits::default()).unwrap();
    let (mh, mrecs) = in_memory(&merged).unwrap();
    assert!(mh.entropy);
    assert_eq!(mrecs, [recs.clone(), recs].concat());
    assert_eq!(merged[35] & 0b100, 0b100, "the merged block is coded");
}

/// `bytes` (the golden version-2 archive, its block at `at`) with the block's checksum made
/// right again after an edit, so that the reader's other checks are what refuse it.
fn recrc(mut bytes: Vec<u8>, at: usize) -> Vec<u8> {
    let end = bytes.len() - 4;
    let crc = crc32fast::hash(&bytes[at..end]);
    bytes[end..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn malformed_blocks_with_good_checksums_are_refused() {
    let good = golden_v2_bytes();
    let block = good.len() - 4 - 12; // length byte + 11 bytes of body
    let a = Archive::parse(&good, &Limits::default()).unwrap();
    assert_eq!(a.header_len, block);
    let refuse = |bytes: Vec<u8>, needle: &str| {
        let e = Archive::parse(&bytes, &Limits::default())
            .unwrap()
            .records()
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{e} lacks {needle:?}");
        // The streaming reader refuses it too.
        assert!(stream(&bytes, 7).is_err());
    };
    // A depth-map word that decodes to other depths, or to no canonical coding at all.
    let mut bad = good.clone();
    bad[block + 5] ^= 0x01;
    refuse(recrc(bad, block), "depth map");
    // Flags: a reserved bit.
    let mut bad = good.clone();
    bad[block + 1] |= 0x80;
    refuse(recrc(bad, block), "reserved block flag bits");
    // Nonzero padding after the last index.
    let mut bad = good.clone();
    let last = good.len() - 5;
    bad[last] |= 0x01;
    refuse(recrc(bad, block), "padding");
    // A length beyond what two images within the limits could need is refused before the
    // reader waits for that many bytes.
    let mut forged = good[..block].to_vec();
    forged.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    refuse(
        forged,
        "more than 2 image(s) of the largest size the reader's limits allow",
    );
}

#[test]
fn a_damaged_block_is_pinned_down_and_the_others_still_decode() {
    let h = Header::new(
        [5; 16],
        Geometry {
            latent_dim: 4,
            codebook_size: 1024,
            num_codebooks: 8,
            grid_factor: 8,
        },
        3,
    );
    let recs: Vec<Record> = (0..150u32)
        .map(|i| Record {
            width: 32,
            height: 32,
            indices: (0..48).map(|j| (i * 7 + j) % 1024).collect(),
            ..Record::default()
        })
        .collect();
    let bytes = write_archive(&h, &recs).unwrap();
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.block_count(), 3);
    // Flip one byte inside block 1 (records 64..=127): found, and blocks 0 and 2 still read.
    let at = a.header_len + (bytes.len() - a.header_len) / 2;
    let mut bad = bytes.clone();
    bad[at] ^= 0x40;
    let b = Archive::parse(&bad, &Limits::default()).unwrap();
    assert!(matches!(
        b.block(1),
        Err(ArchiveError::BlockChecksum {
            first: 64,
            last: 127
        })
    ));
    assert!(b.records().is_err());
    assert_eq!(b.block(0).unwrap(), recs[..64]);
    assert_eq!(b.block(2).unwrap(), recs[128..]);
    // A damaged length (block 0's, off by one) loses the blocks after it, and reading one of
    // them names the damaged block, not the one asked for.
    let mut bad = bytes.clone();
    bad[a.header_len] ^= 0x01;
    let b = Archive::parse(&bad, &Limits::default()).unwrap();
    assert!(matches!(
        b.block(2),
        Err(ArchiveError::BlockChecksum { first: 0, last: 63 })
    ));
}

#[test]
fn small_images_cost_under_a_byte_beyond_their_indices() {
    // 1,000 32×32 images, names off, 4 codebooks of 1,024: everything but the indices
    // (header, block lengths, flags, shared sizes, checksums) amortised per image.
    let h = Header::new(
        [5; 16],
        Geometry {
            latent_dim: 64,
            codebook_size: 1024,
            num_codebooks: 8,
            grid_factor: 8,
        },
        4,
    );
    let recs: Vec<Record> = (0..1000u32)
        .map(|i| Record {
            width: 32,
            height: 32,
            indices: (0..64).map(|j| (i + j) % 1024).collect(),
            ..Record::default()
        })
        .collect();
    let bytes = write_archive(&h, &recs).unwrap();
    let payload = 1000 * 64 * 10 / 8;
    let beyond = (bytes.len() - payload) as f64 / 1000.0;
    assert!(beyond <= 1.0, "{beyond} bytes per image beyond the payload");
}

#[test]
fn depth_maps_round_trip_and_bad_depths_are_refused() {
    let h = Header::new(
        [5; 16],
        Geometry {
            latent_dim: 4,
            codebook_size: 16,
            num_codebooks: 4,
            grid_factor: 4,
        },
        4,
    );
    // A 10×7 image at f = 4: 3×2 cells.
    let depths = vec![1, 4, 2, 3, 3, 1];
    let count: usize = depths.iter().map(|&d| d as usize).sum();
    let r = Record {
        width: 10,
        height: 7,
        indices: (0..count as u32).map(|i| i % 16).collect(),
        depths: depths.clone(),
        ..Record::default()
    };
    let bytes = write_archive(&h, std::slice::from_ref(&r)).unwrap();
    assert_eq!(
        Archive::parse(&bytes, &Limits::default())
            .unwrap()
            .records()
            .unwrap(),
        vec![r.clone()]
    );
    // Truncation keeps each cell's first levels.
    let cut = truncate(&bytes, 2, &Limits::default()).unwrap();
    let back = Archive::parse(&cut, &Limits::default())
        .unwrap()
        .records()
        .unwrap();
    assert_eq!(back[0].depths, vec![1, 2, 2, 2, 2, 1]);
    let level0 = &r.indices[..6];
    assert_eq!(&back[0].indices[..6], level0);
    // A record whose explicit depths are all m reads back as a uniform one.
    let full = Record {
        depths: vec![4; 6],
        indices: vec![0; 24],
        ..r.clone()
    };
    let bytes = write_archive(&h, std::slice::from_ref(&full)).unwrap();
    let back = Archive::parse(&bytes, &Limits::default())
        .unwrap()
        .records()
        .unwrap();
    assert!(back[0].depths.is_empty());
    for (depths, why) in [
        (vec![1, 4, 2, 3, 3], "depths for a grid"),
        (vec![1, 4, 2, 3, 3, 0], "outside 1..=4"),
        (vec![1, 5, 2, 3, 3, 1], "outside 1..=4"),
    ] {
        let bad = Record {
            depths,
            ..r.clone()
        };
        let e = write_archive(&h, &[bad]).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
    let mut h1 = h.clone();
    h1.version = VERSION_1;
    let e = write_archive(&h1, &[r]).unwrap_err().to_string();
    assert!(e.contains("no per-cell depths"), "{e}");
}

fn arb_v2_case() -> impl Strategy<Value = (Header, Vec<Record>)> {
    (2u32..=64, 1u32..=8, prop::bool::ANY, 1usize..140).prop_flat_map(|(k, m, names, n)| {
        let mut h = Header::new(
            [9; 16],
            Geometry {
                latent_dim: 8,
                codebook_size: k,
                num_codebooks: 8,
                grid_factor: 4,
            },
            m,
        );
        h.names = names;
        let hh = h.clone();
        let rec = (1u32..=24, 1u32..=24, prop::bool::ANY, 0u32..100000).prop_flat_map(
            move |(w, hgt, same, seed)| {
                let (w, hgt) = if same { (16, 8) } else { (w, hgt) };
                let (gw, gh) = hh.grid(w, hgt);
                let cells = (gw * gh) as usize;
                let depths = prop::collection::vec(1..=m as u8, cells..=cells);
                (Just((w, hgt, seed)), depths, prop::bool::ANY)
            },
        );
        (Just(h), prop::collection::vec(rec, n..=n)).prop_map(move |(h, recs)| {
            let records = recs
                .into_iter()
                .map(|((w, hgt, seed), depths, uniform)| {
                    let depths = if uniform { Vec::new() } else { depths };
                    let mut r = Record {
                        width: w,
                        height: hgt,
                        name: names.then(|| format!("d/{seed}.png")),
                        depths,
                        ..Record::default()
                    };
                    let count = r.index_count(&h) as u32;
                    r.indices = (0..count).map(|i| (i * 31 + seed) % k).collect();
                    if !r.has_depth_map(&h) {
                        r.depths.clear();
                    }
                    r
                })
                .collect::<Vec<_>>();
            (h, records)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn version_2_round_trips_through_both_readers(
        (header, records) in arb_v2_case(),
        step in 1usize..200,
    ) {
        let names: std::collections::HashSet<_> = records.iter().map(|r| &r.name).collect();
        prop_assume!(!header.names || names.len() == records.len());
        let bytes = write_archive(&header, &records).unwrap();
        let (h, back) = in_memory(&bytes).unwrap();
        prop_assert_eq!(&h, &header);
        prop_assert_eq!(&back, &records);
        let (h2, streamed) = stream(&bytes, step).unwrap();
        prop_assert_eq!(h2, header.clone());
        prop_assert_eq!(streamed, records.clone());
        let mut w = ArchiveWriter::new(Vec::new(), &header, records.len() as u64).unwrap();
        for r in &records {
            w.write(r).unwrap();
        }
        prop_assert_eq!(w.finish().unwrap(), bytes.clone());
        // Range-coded where that is shorter: the same records back, and the reader's account
        // of each block's index bytes is what coding the block's records again gives.
        let mut coded = header.clone();
        coded.entropy = true;
        let coded_bytes = write_archive(&coded, &records).unwrap();
        let archive = Archive::parse(&coded_bytes, &Limits::default()).unwrap();
        let (back, blocks) = archive.records_and_blocks().unwrap();
        prop_assert_eq!(&back, &records);
        let expected: Vec<BlockIndices> = records
            .chunks(BLOCK_RECORDS as usize)
            .map(|g| {
                let (bytes, coded) = index_bytes(&coded, g);
                BlockIndices { bytes, coded }
            })
            .collect();
        // `info`, which sums a block at a time, accounts for the same blocks.
        let info = archive.info().unwrap();
        prop_assert_eq!(info.payload_bytes, expected.iter().map(|b| b.bytes).sum::<u64>());
        prop_assert_eq!(info.coded_blocks, expected.iter().filter(|b| b.coded).count() as u64);
        prop_assert_eq!(info.entries.len(), records.len());
        prop_assert_eq!(blocks, expected);
        for m in 1..=header.codebooks_used {
            let cut = truncate(&bytes, m, &Limits::default()).unwrap();
            let (_, cut_records) = in_memory(&cut).unwrap();
            for (c, r) in cut_records.iter().zip(&records) {
                prop_assert_eq!(c, &r.truncated(&header, m));
            }
            // Streamed, the bytes the whole archive's records written at once give.
            let mut hm = header.clone();
            hm.codebooks_used = m;
            let values = hm.codebook_values() as usize;
            if let Some(cb) = &mut hm.codebook {
                cb.values.truncate(values);
            }
            let whole: Vec<Record> = records.iter().map(|r| r.truncated(&header, m)).collect();
            prop_assert_eq!(&cut, &write_archive(&hm, &whole).unwrap());
        }
    }
}

/// Writes the version-2 seeds of the fuzz corpus (`cargo test --release -p rvq-archive --
/// --ignored write_fuzz_seeds`); the corpus replay above then keeps them checked.
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../fuzz/corpus/archive_reader");
    let (h, recs) = golden_v2();
    std::fs::write(dir.join("v2_golden.rvq"), write_archive(&h, &recs).unwrap()).unwrap();
    let (h, recs) = golden_v3();
    std::fs::write(dir.join("v3_golden.rvq"), write_archive(&h, &recs).unwrap()).unwrap();
    let (h, recs) = golden_v4();
    std::fs::write(dir.join("v4_golden.rvq"), write_archive(&h, &recs).unwrap()).unwrap();
    let mut h = Header::new(
        [3; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 6,
            num_codebooks: 3,
            grid_factor: 4,
        },
        3,
    );
    h.names = true;
    let recs: Vec<Record> = (0..70u32)
        .map(|i| {
            let (w, hgt) = if i < 66 { (8, 4) } else { (5 + i, 3) };
            let mut r = Record {
                width: w,
                height: hgt,
                name: (i % 3 != 0).then(|| format!("a/{i}.png")),
                depths: if i % 2 == 0 {
                    Vec::new()
                } else {
                    vec![1 + (i % 3) as u8; (w.div_ceil(4) * hgt.div_ceil(4)) as usize]
                },
                ..Record::default()
            };
            if !r.has_depth_map(&h) {
                r.depths.clear();
            }
            r.indices = (0..r.index_count(&h) as u32).map(|j| (i + j) % 6).collect();
            r
        })
        .collect();
    std::fs::write(dir.join("v2_blocks.rvq"), write_archive(&h, &recs).unwrap()).unwrap();
    // The same images entropy-coded (both blocks code), and an archive whose second block of
    // uniform indices in 1,024 entries packs.
    h.entropy = true;
    std::fs::write(
        dir.join("v2_coded_blocks.rvq"),
        write_archive(&h, &recs).unwrap(),
    )
    .unwrap();
    let mut h = Header::new(
        [4; 16],
        Geometry {
            latent_dim: 2,
            codebook_size: 1024,
            num_codebooks: 2,
            grid_factor: 8,
        },
        2,
    );
    h.entropy = true;
    let mut state = 1u32;
    let recs: Vec<Record> = (0..65u32)
        .map(|i| Record {
            width: 16,
            height: 8,
            indices: (0..4)
                .map(|_| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) % if i < 64 { 3 } else { 1024 }
                })
                .collect(),
            ..Record::default()
        })
        .collect();
    let bytes = write_archive(&h, &recs).unwrap();
    std::fs::write(dir.join("v2_coded_and_packed.rvq"), bytes).unwrap();
    let (h, recs) = golden_coded();
    std::fs::write(
        dir.join("v2_coded_golden.rvq"),
        write_archive(&h, &recs).unwrap(),
    )
    .unwrap();
    // A block of payload coder 2 coded by its neighbour contexts (the NEIGHBOURS flag).
    let (h, recs) = neighbour_runs();
    std::fs::write(
        dir.join("v2_neighbours_runs.rvq"),
        write_archive(&h, &recs).unwrap(),
    )
    .unwrap();
}

/// docs/FORMAT.md's version-4 example: two 17×16 images, the first coded at half size (a 9×8
/// image: 2 cells), the second at its size (6 cells), one codebook of k = 5.
fn golden_v4() -> (Header, Vec<Record>) {
    let (mut h, _) = golden_v3();
    h.version = VERSION;
    let recs = vec![
        Record {
            width: 17,
            height: 16,
            indices: vec![1, 2],
            half: true,
            ..Record::default()
        },
        Record {
            width: 17,
            height: 16,
            indices: vec![0, 1, 2, 3, 4, 0],
            ..Record::default()
        },
    ];
    (h, recs)
}

fn golden_v4_bytes() -> Vec<u8> {
    let mut b = golden_v3_bytes()[..30].to_vec();
    b[4] = 4; // version 4
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let mut body = vec![0x21, 17, 16]; // flags: shared size, scaled; 17×16
    body.extend_from_slice(&[1, 0]); // image 0 at half size, image 1 at its size
    // 1 2 | 0 1 2 3 4 0 at 3 bits: 001 010 000 001 010 011 100 000.
    body.extend_from_slice(&[0x28, 0x14, 0xe0]);
    b.extend_from_slice(&block(&body));
    b
}

/// A block of a short `body`: its one-byte length, the body and their CRC-32.
fn block(body: &[u8]) -> Vec<u8> {
    let mut block = vec![body.len() as u8];
    block.extend_from_slice(body);
    let crc = crc32fast::hash(&block);
    block.extend_from_slice(&crc.to_le_bytes());
    block
}

#[test]
fn golden_v4_archive_matches_the_spec_byte_for_byte() {
    let (h, recs) = golden_v4();
    let bytes = write_archive(&h, &recs).unwrap();
    assert_eq!(bytes, golden_v4_bytes());
    let a = Archive::parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.header, h);
    assert_eq!(a.records().unwrap(), recs);
    let streamed: Vec<Record> = ArchiveReader::new(bytes.as_slice(), &Limits::default())
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(streamed, recs);
    assert_eq!(recs[0].coded_size(), (9, 8));
    assert_eq!(recs[0].index_count(&h), 2);
}

#[test]
fn half_size_images_are_refused_where_the_format_does_not_allow_them() {
    let golden = golden_v4_bytes();
    let head = golden[..34].to_vec();
    let body = golden[35..golden.len() - 4].to_vec();
    let framed = |head: &[u8], body: &[u8]| [head, &block(body)].concat();
    let refused = |bytes: Vec<u8>, what: &str| {
        let e = Archive::parse(&bytes, &Limits::default())
            .and_then(|a| a.records())
            .unwrap_err();
        assert!(e.to_string().contains(what), "{what}: {e}");
    };
    assert_eq!(
        Archive::parse(&framed(&head, &body), &Limits::default())
            .unwrap()
            .records()
            .unwrap(),
        golden_v4().1
    );
    // A scale field other than 0 or 1.
    let mut b = body.clone();
    b[3] = 2;
    refused(framed(&head, &b), "scale field 2");
    // The flag with no image at half size.
    let mut b = body.clone();
    b[3] = 0;
    refused(framed(&head, &b), "none of its images is one");
    // The flag in a version-3 archive.
    let mut v3 = head[..30].to_vec();
    v3[4] = 3;
    let crc = crc32fast::hash(&v3);
    v3.extend_from_slice(&crc.to_le_bytes());
    refused(framed(&v3, &body), "need format version 4");
    // Writers refuse a half-size image under a version-3 header.
    let (mut h, recs) = golden_v4();
    h.version = VERSION_3;
    let e = write_archive(&h, &recs).unwrap_err();
    assert!(e.to_string().contains("need format version 4"), "{e}");
    // Without the flag, a half-size image's 2 indices read as a full-size image's 6: refused.
    let mut b = vec![0x01, 17, 16];
    b.extend_from_slice(&body[5..]);
    assert!(
        Archive::parse(&framed(&head, &b), &Limits::default())
            .and_then(|a| a.records())
            .is_err()
    );
}
