//! Times writing and reading archives of 10,000 32×32 images at 8 codebooks of 1,024
//! entries with range coding allowed: indices spread over the whole codebook (each block
//! stays packed, as CIFAR-10's do) and indices skewed to 61 entries (each block codes). The
//! archive code alone, without a model, so that two versions of the coder can be timed back
//! to back in seconds. Prints the median of 5 runs and the archive's size and CRC-32, which
//! two versions of the coder must agree on.
//!
//! `cargo run --release -p rvq-archive --example archive_speed`

use std::time::Instant;

use rvq_archive::{Archive, FINGERPRINT_LEN, Geometry, Header, Limits, Record, write_archive};

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let (n, m, k) = (10_000u32, 8u32, 1024u32);
    let mut header = Header::new(
        [0; FINGERPRINT_LEN],
        Geometry {
            latent_dim: 64,
            codebook_size: k,
            num_codebooks: m,
            grid_factor: 8,
        },
        m,
    );
    header.entropy = true;
    for (label, skew) in [("spread (packed)", false), ("skewed (coded)", true)] {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                width: 32,
                height: 32,
                indices: (0..16 * m)
                    .map(|j| {
                        let v = (i * 7919 + j * 104_729) % k;
                        if skew { v % 61 } else { v }
                    })
                    .collect(),
                ..Record::default()
            })
            .collect();
        let (mut writes, mut reads, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            let t = Instant::now();
            bytes = write_archive(&header, &records).expect("the records fit the header");
            writes.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let back = Archive::parse(&bytes, &Limits::default())
                .and_then(|a| a.records())
                .expect("the archive just written reads");
            reads.push(t.elapsed().as_secs_f64());
            assert_eq!(back.len(), records.len());
        }
        println!(
            "{label}: {} bytes, CRC-32 {:08x}; write {:.3} s, read {:.3} s",
            bytes.len(),
            crc32fast::hash(&bytes),
            median(writes),
            median(reads)
        );
    }
}
