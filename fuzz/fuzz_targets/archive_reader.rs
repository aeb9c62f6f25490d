//! Feeds arbitrary bytes to the archive reader: it must return an error or records, never
//! panic, and whatever it accepts must write back to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvq_archive::{Archive, Limits, write_archive};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_side: 4096,
        max_pixels: 1 << 20,
    };
    if let Ok(archive) = Archive::parse(data, &limits)
        && let Ok(records) = archive.records()
    {
        let again = write_archive(&archive.header, &records).expect("accepted records rewrite");
        assert_eq!(again, data);
    }
});
