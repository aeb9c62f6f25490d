//! The library example (`examples/round_trip.rs`) runs as a test, so it cannot rot.

// The example's `main` is for `cargo run --example`; the test calls its function.
#[allow(dead_code)]
#[path = "../examples/round_trip.rs"]
mod round_trip;

#[test]
fn the_library_example_encodes_and_decodes_a_sample() {
    let sample = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap())
        .join("../../samples/chelsea-32.png");
    let (bytes, psnr) = round_trip::round_trip(&sample).unwrap();
    // One 32×32 image: a header and at most 8 codebooks of 16 ten-bit indices plus framing.
    assert!((60..260).contains(&bytes), "{bytes} bytes");
    assert!(psnr > 20.0, "{psnr} dB");
}
