//! Prints an archive's images as JSON lines, one per image: width, height, grid (columns,
//! rows), m, k, and every cell's depth and indices in full layout (level-major, row-major
//! cells, 0 where a cell stops). For studying the indices' statistics outside Rust
//! (docs/FORMAT.md, "What the indices hold").
//!
//! `cargo run --release -p rvq-archive --example dump_indices -- ARCHIVE > indices.jsonl`

use rvq_archive::{Archive, Limits};

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: dump_indices ARCHIVE");
    let bytes = std::fs::read(&path).expect("the archive reads");
    let archive = Archive::parse(&bytes, &Limits::default()).expect("the archive parses");
    let header = &archive.header;
    for r in archive.records().expect("the records decode") {
        let (gw, gh) = header.grid_of(&r);
        let list = |v: Vec<String>| v.join(",");
        println!(
            "{{\"width\":{},\"height\":{},\"grid\":[{gw},{gh}],\"m\":{},\"k\":{},\"depths\":[{}],\"indices\":[{}]}}",
            r.width,
            r.height,
            header.codebooks_used,
            header.codebook_size,
            list(
                r.cell_depths(header)
                    .iter()
                    .map(|d| d.to_string())
                    .collect()
            ),
            list(
                r.full_indices(header)
                    .iter()
                    .map(|d| d.to_string())
                    .collect()
            ),
        );
    }
}
