//! Feeds arbitrary bytes to the archive readers: each must return an error or records, never
//! panic; whatever the in-memory reader accepts must write back to the same bytes; and the
//! streaming reader must accept exactly what the in-memory one accepts, with the same records;
//! one that steps over the first block without decoding it must read the same records after it;
//! the streamed description and truncation must accept exactly what it accepts, and a merge of
//! an accepted archive alone must give it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvq_archive::{Archive, ArchiveReader, Limits, merge_streams, read_info, truncate_stream, write_archive};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_side: 4096,
        max_pixels: 1 << 20,
    };
    let in_memory = Archive::parse(data, &limits).and_then(|a| Ok((a.header.clone(), a.records()?)));
    let streamed = ArchiveReader::new(data, &limits)
        .and_then(|r| {
            let header = r.header().clone();
            Ok((header, r.collect::<Result<Vec<_>, _>>()?))
        });
    match (&in_memory, &streamed) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => panic!("in memory {in_memory:?}, streamed {streamed:?}"),
    }
    if let Ok((_, records)) = &in_memory {
        let mut r = ArchiveReader::new(data, &limits).expect("accepted header");
        let skipped = r.skip_blocks(1).expect("accepted block") as usize;
        let rest = r.collect::<Result<Vec<_>, _>>().expect("accepted records");
        assert_eq!(rest, records[skipped..]);
    }
    let info = read_info(data, &limits);
    let merged = ArchiveReader::new(data, &limits).and_then(|r| merge_streams(vec![r], Vec::new()));
    let cut = ArchiveReader::new(data, &limits).and_then(|r| truncate_stream(r, 1, Vec::new()));
    assert_eq!(info.is_ok(), in_memory.is_ok(), "info {info:?}");
    assert_eq!(cut.is_ok(), in_memory.is_ok(), "truncate {cut:?}");
    // A merge of whole blocks checks their checksums and names, not their indices: it may
    // copy a block the readers refuse, but never refuses an archive they accept.
    if in_memory.is_ok() {
        assert_eq!(merged.expect("accepted archive merges"), data);
    }
    if let Ok((header, records)) = in_memory {
        let again = write_archive(&header, &records).expect("accepted records rewrite");
        assert_eq!(again, data);
    }
});
