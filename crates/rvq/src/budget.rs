//! The memory budget of inference: how many pixels go through the network at once, and how an
//! image larger than that is cut into tiles whose seams do not show.
//!
//! Batches used to be formed by image count alone, so an archive of 64 large images (or one
//! that only claims to hold them: its bytes bound the work, not the tensors) asked the network
//! for one batch of billions of pixels. Now every pass of the network is planned here: images
//! of one padded size are batched while their pixels fit the budget, and an image that does not
//! fit alone is encoded and decoded in tiles of the latent grid, each with a margin of
//! neighbouring cells (the halo) that the network reads and the result drops. The network has
//! no normalisation over space, only convolutions, so with a halo wider than its reach a tile's
//! inner cells are computed from exactly the values a whole-image pass uses, bit for bit on
//! the CPU path where tiles start at even cells (the tests of `crates/rvq/src/tests/inference.rs`
//! check latents, indices and pixels against a whole-image pass).

use std::ops::Range;

use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// The memory inference may take for its tensors, in bytes: the activations of one pass of the
/// network, which are by far its largest allocations, and where latents are fitted to the
/// decoder the fit's own buffers beside them (`crate::fit::bytes_per_pixel`). Decoded and
/// encoded results (8-bit pixels, latents, indices) come on top, in proportion to the images
/// held, not to the network's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    bytes: u64,
}

impl Budget {
    /// The default on the CPU: 1 GiB.
    pub const CPU: Budget = Budget { bytes: 1 << 30 };
    /// The default on a GPU: 512 MiB, within the buffer limits of small devices.
    pub const GPU: Budget = Budget { bytes: 512 << 20 };
    /// The smallest budget accepted: 16 MiB, enough for the shipped models' tiles of a few
    /// cells plus their halo (a far wider model may need more: too small a budget is refused
    /// when its tiles are planned).
    pub const MIN_BYTES: u64 = 16 << 20;

    /// A budget of `bytes`; refused below [`Budget::MIN_BYTES`].
    pub fn new(bytes: u64) -> Result<Self> {
        if bytes < Self::MIN_BYTES {
            return Err(Error::InvalidOption(format!(
                "a memory budget of {bytes} bytes is below the smallest, {} MiB",
                Self::MIN_BYTES >> 20
            )));
        }
        Ok(Self { bytes })
    }

    /// The budget in bytes.
    pub fn bytes(self) -> u64 {
        self.bytes
    }

    /// Padded pixels one pass of `config`'s network may hold within this budget, each pixel
    /// also holding `extra` bytes of the caller's own buffers (a fit's, [`crate::fit`]).
    pub(crate) fn pixels(self, config: &ModelConfig, extra: u64) -> u64 {
        self.bytes / (bytes_per_pixel(config) + extra)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::CPU
    }
}

/// Parses a size such as `512M`, `2G`, `1.5GiB` or `100000000` (bytes); the units are binary
/// (K = 1,024). Errors name what was not understood.
impl std::str::FromStr for Budget {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => {
                return Err(Error::InvalidOption(format!(
                    "memory {s:?}: expected a size such as 512M or 2G"
                )));
            }
        };
        let value: f64 = number.parse().map_err(|_| {
            Error::InvalidOption(format!("memory {s:?}: expected a size such as 512M or 2G"))
        })?;
        let bytes = value * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(Error::InvalidOption(format!("memory {s:?} is too large")));
        }
        Budget::new(bytes as u64)
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB", self.bytes >> 20)
    }
}

/// Bytes one padded pixel costs in a pass of `config`'s network: the floats every level of the
/// network holds per image pixel (its channels over the area of its level, plus the input, the
/// output and the linear path), times the tensors alive at once and the convolutions' unfolded
/// inputs. The factor was measured with `bench/memory.sh` (docs/BENCHMARKS.md, "Memory").
pub(crate) fn bytes_per_pixel(config: &ModelConfig) -> u64 {
    let f2 = (config.grid_factor * config.grid_factor) as u64;
    let mut floats = 6 + 3 * config.latent_dim as u64 / f2;
    let mut area = 1;
    for &c in config.stage_channels() {
        area *= 4;
        floats += (c as u64).div_ceil(area);
    }
    floats = floats.max(config.res_channels as u64 / f2);
    4 * LIVE_FACTOR * floats
}

/// Tensors alive at once, unfolded convolution inputs included, per float of the levels' sum
/// (see [`bytes_per_pixel`]).
const LIVE_FACTOR: u64 = 4;

/// How many cells beyond its own a cell's latent (encoding) or pixels (decoding) depend on:
/// one per 3×3 convolution at the latent grid or after an upsampling stage, and at most two
/// for the strided, transposed or shuffled convolutions between the pixels and the grid, whose
/// reach halves at every finer level (exactly two for the pixel-shuffle decoder).
pub(crate) fn halo(config: &ModelConfig) -> usize {
    config.res_blocks + config.up_res_blocks + 2
}

/// A tile of a latent grid: the cells it computes and keeps (`rows`, `cols`), and the cells it
/// reads (`outer_*`: its own plus a halo, cut at the grid's edges).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tile {
    pub rows: Range<usize>,
    pub cols: Range<usize>,
    pub outer_rows: Range<usize>,
    pub outer_cols: Range<usize>,
}

/// Cuts a grid of `grid` (rows, columns) cells into tiles that read at most `capacity` cells
/// each (halo included), row by row, every tile and read area starting at an even cell (the
/// halo rounded up to even). A grid within the capacity is one tile with no halo. Refused when
/// not even two cells and their halo fit.
pub(crate) fn tiles(grid: (usize, usize), capacity: usize, halo: usize) -> Result<Vec<Tile>> {
    let (gh, gw) = grid;
    if gh * gw <= capacity {
        return Ok(vec![Tile {
            rows: 0..gh,
            cols: 0..gw,
            outer_rows: 0..gh,
            outer_cols: 0..gw,
        }]);
    }
    // Every tile, and so every read area, starts at an even cell: the CPU path's Winograd
    // convolutions compute blocks of 2×2 outputs counted from a pass's origin, and a block's
    // outputs round differently by where they lie in it, so only passes that start at even
    // cells give the values of a whole-image pass bit for bit.
    let halo = halo.next_multiple_of(2);
    // Square tiles waste least on halos; a grid narrower than a square takes whole rows.
    let side = (capacity as f64).sqrt() as usize;
    let tw = if gw <= side {
        gw
    } else {
        side.saturating_sub(2 * halo) & !1
    };
    let outer_w = if tw == gw { gw } else { tw + 2 * halo };
    let th = (capacity / outer_w.max(1)).saturating_sub(2 * halo);
    let th = if th >= gh { gh } else { th & !1 };
    if tw == 0 || th == 0 {
        return Err(Error::InvalidOption(format!(
            "the memory budget holds {capacity} cells of the latent grid, too few for two cells and their halo of {halo}"
        )));
    }
    let mut out = Vec::new();
    for r0 in (0..gh).step_by(th) {
        let rows = r0..(r0 + th).min(gh);
        for c0 in (0..gw).step_by(tw) {
            let cols = c0..(c0 + tw).min(gw);
            out.push(Tile {
                outer_rows: rows.start.saturating_sub(halo)..(rows.end + halo).min(gh),
                outer_cols: cols.start.saturating_sub(halo)..(cols.end + halo).min(gw),
                rows: rows.clone(),
                cols,
            });
        }
    }
    Ok(out)
}

/// How many images of `pixels` padded pixels each go through the network together: at most
/// `batch_size` and as many as the budget's `capacity` (pixels) holds, and always at least one
/// (an image over the capacity alone is tiled).
pub(crate) fn images_per_pass(pixels: u64, capacity: u64, batch_size: usize) -> usize {
    let fit = (capacity / pixels.max(1)).max(1);
    (fit.min(batch_size.max(1) as u64)) as usize
}

/// Consecutive runs of `items` with the same `key` (the padded size: one tensor shape), in
/// order, each at most `most(key)` long (what the budget holds of that size).
pub(crate) fn batches<T, K: PartialEq>(
    items: &[T],
    most: impl Fn(&K) -> usize,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let first = key(rest.first()?);
        let len = rest
            .iter()
            .take(most(&first).max(1))
            .take_while(|item| key(item) == first)
            .count();
        let (batch, tail) = rest.split_at(len);
        rest = tail;
        Some(batch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_small_ones_are_refused() {
        assert_eq!("512M".parse::<Budget>().unwrap().bytes(), 512 << 20);
        assert_eq!("2G".parse::<Budget>().unwrap().bytes(), 2 << 30);
        assert_eq!("1.5GiB".parse::<Budget>().unwrap().bytes(), 3 << 29);
        assert_eq!("100000000".parse::<Budget>().unwrap().bytes(), 100_000_000);
        for bad in ["", "lots", "12Q", "-1G", "1M", "1e400G"] {
            assert!(bad.parse::<Budget>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tiles_cover_the_grid_once_within_the_capacity() {
        for (grid, capacity, halo) in [
            ((1024, 1024), 28_000, 4),
            ((7, 300), 500, 4),
            ((300, 7), 500, 4),
            ((13, 17), 100, 1),
            ((41, 61), 441, 3),
            ((41, 61), 520, 4),
            ((4, 4), 16, 4),
        ] {
            let plan = tiles(grid, capacity, halo).unwrap();
            let mut seen = vec![0u8; grid.0 * grid.1];
            for t in &plan {
                assert!(
                    t.outer_rows.len() * t.outer_cols.len() <= capacity,
                    "{t:?} over {capacity}"
                );
                let halo = halo.next_multiple_of(2);
                let inner = |o: &Range<usize>, i: &Range<usize>, n: usize| {
                    o.start == i.start.saturating_sub(halo) && o.end == (i.end + halo).min(n)
                };
                if plan.len() > 1 {
                    assert!(inner(&t.outer_rows, &t.rows, grid.0), "{t:?}");
                    assert!(inner(&t.outer_cols, &t.cols, grid.1), "{t:?}");
                }
                let starts = [
                    t.rows.start,
                    t.cols.start,
                    t.outer_rows.start,
                    t.outer_cols.start,
                ];
                assert!(
                    starts.iter().all(|s| s % 2 == 0),
                    "{t:?} starts at an odd cell"
                );
                for r in t.rows.clone() {
                    for c in t.cols.clone() {
                        seen[r * grid.1 + c] += 1;
                    }
                }
            }
            assert!(
                seen.iter().all(|&n| n == 1),
                "{grid:?}: cells not covered once"
            );
        }
        assert_eq!(tiles((4, 4), 16, 4).unwrap().len(), 1);
        assert!(tiles((100, 100), 50, 4).is_err());
        // A side of 9 holds one cell and a halo of 4 on each side, but not the two cells an
        // even tile needs; 10 holds them.
        assert!(tiles((100, 100), 81, 4).is_err());
        assert_eq!(tiles((100, 100), 100, 4).unwrap()[0].rows, 0..2);
    }

    #[test]
    fn passes_hold_what_the_budget_allows_and_never_nothing() {
        assert_eq!(images_per_pass(1024, 1 << 20, 64), 64);
        assert_eq!(images_per_pass(1 << 20, 4 << 20, 64), 4);
        assert_eq!(images_per_pass(1 << 26, 4 << 20, 64), 1);
        assert_eq!(images_per_pass(1024, 1 << 20, 0), 1);
    }

    #[test]
    fn batches_split_at_size_changes_and_at_the_batch_size() {
        let items = [1, 1, 1, 2, 2, 1, 1, 1, 1, 1];
        let got: Vec<&[i32]> = batches(&items, |_| 3, |v| *v).collect();
        let want: Vec<&[i32]> = vec![&[1, 1, 1], &[2, 2], &[1, 1, 1], &[1, 1]];
        assert_eq!(got, want);
        assert_eq!(batches(&items, |_| 0, |v| *v).count(), items.len());
        assert_eq!(batches(&[] as &[i32], |_| 4, |v| *v).count(), 0);
    }
}
