//! `rvq info`: what an archive says about itself (read by the format crate, without a model),
//! with the ratio against the input files when they are given, as text or JSON.

use std::path::Path;

use rvq::archive::ArchiveInfo;

/// What `rvq info` reports: the archive's own facts and, when the inputs were given, how
/// much smaller than them it is.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Report {
    /// The archive's facts.
    #[serde(flatten)]
    pub archive: ArchiveInfo,
    /// Input file bytes over archive bytes, when the inputs were given.
    pub ratio_vs_inputs: Option<f64>,
}

/// The report as `rvq info` prints it without `--json`.
pub(crate) fn print_text(path: &Path, report: &Report) {
    let info = &report.archive;
    println!("archive            {}", path.display());
    println!("format version     {}", info.version);
    match rvq::Model::built_in_for(&info.fingerprint) {
        Some(name) => println!(
            "model fingerprint  {} (built-in model {name})",
            info.fingerprint
        ),
        None => println!("model fingerprint  {}", info.fingerprint),
    }
    println!(
        "geometry           d = {}, k = {}, n_q = {}, grid factor {}",
        info.latent_dim, info.codebook_size, info.num_codebooks, info.grid_factor
    );
    println!(
        "codebooks used     {} of {} ({} bits per index)",
        info.codebooks_used, info.num_codebooks, info.bits_per_index
    );
    println!("codebooks per cell {:.2} on average", info.mean_depth);
    if info.entropy {
        let blocks = info.images.div_ceil(rvq::archive::BLOCK_RECORDS);
        println!(
            "index coding       range-coded (payload coder {}) in {} of {blocks} blocks (packed where shorter)",
            info.payload_coder, info.coded_blocks
        );
    } else {
        println!(
            "index coding       packed, {} bits each",
            info.bits_per_index
        );
    }
    println!(
        "names stored       {}",
        if info.names { "yes" } else { "no" }
    );
    if let Some(c) = &info.embedded_codebook {
        println!("embedded codebook  {c}");
    }
    println!("images             {}", info.images);
    println!(
        "bytes              {} total = {} header + {} indices + {} other (sizes, names, filters, depth maps, checksums)",
        info.total_bytes, info.header_bytes, info.payload_bytes, info.record_overhead_bytes
    );
    if info.version >= 3 {
        println!(
            "filters            {} of {} images, {} bytes",
            info.filtered_images, info.images, info.filter_bytes
        );
    }
    if info.version >= 4 {
        println!(
            "half size          {} of {} images (coded at half size, upsampled on decode)",
            info.half_images, info.images
        );
    }
    println!(
        "bits per image     {:.1} (payload)",
        info.payload_bits_per_image
    );
    println!(
        "bits per pixel     {:.4} (everything included)",
        info.bits_per_pixel
    );
    println!("ratio vs raw RGB   {:.1}:1", info.ratio_vs_raw_rgb);
    if let Some(r) = report.ratio_vs_inputs {
        println!("ratio vs inputs    {r:.1}:1");
    }
}
