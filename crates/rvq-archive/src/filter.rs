//! A record's restoration filter (format version 3): integer coefficients of a small linear
//! filter the decoder applies to each decoded image, one set per square unit of the image
//! (docs/FORMAT.md, "Restoration filter"). This module stores and checks the integers; what
//! they do to pixels is `rvq`'s (`restore.rs`), as the format page defines it.

use crate::{ArchiveError, Cursor, Result, varint};

/// Coefficients of one channel in one unit: the centre tap, the four point-symmetric pairs
/// (right, below, below-right, below-left), the two other channels at the same pixel, and
/// the bias.
pub const CHANNEL_TAPS: usize = 8;
/// Coefficients of one unit: [`CHANNEL_TAPS`] for each of red, green and blue.
pub const UNIT_TAPS: usize = 3 * CHANNEL_TAPS;
/// A channel's coefficients that change nothing: the centre tap at 256/256, the rest 0. The
/// first unit's coefficients are stored as differences from it.
pub const IDENTITY: [i16; CHANNEL_TAPS] = [256, 0, 0, 0, 0, 0, 0, 0];
/// The smallest unit side a filter may have, in pixels (a unit side is a multiple of it).
pub const MIN_UNIT: u32 = 64;

/// An image's restoration filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Side of its square units in pixels (a multiple of [`MIN_UNIT`], below the image's
    /// larger side), or 0: one unit, the whole image.
    pub unit: u32,
    /// [`UNIT_TAPS`] coefficients per unit, units in raster order (rows of units top to
    /// bottom, each left to right), each unit's channels red, green, blue.
    pub coefficients: Vec<i16>,
}

impl Filter {
    /// Units of a `width`×`height` image under this filter's unit side.
    pub fn units(&self, width: u32, height: u32) -> u64 {
        units(self.unit, width, height)
    }

    /// Bytes the filter's field takes in a block (docs/FORMAT.md), what an encoder weighs
    /// against what the filter gains.
    pub fn stored_len(&self) -> usize {
        let mut out = Vec::new();
        put(Some(self), &mut out);
        out.len()
    }

    /// Checks the filter against the image it belongs to: a valid unit side, exactly
    /// [`UNIT_TAPS`] coefficients per unit, and not the identity everywhere (an image that
    /// has none stores none).
    pub fn check(&self, width: u32, height: u32) -> std::result::Result<(), String> {
        if !valid_unit(self.unit, width, height) {
            return Err(unit_error(self.unit, width, height));
        }
        let want = self.units(width, height) * UNIT_TAPS as u64;
        if self.coefficients.len() as u64 != want {
            return Err(format!(
                "{} filter coefficients for a {width}×{height} image; expected {want}",
                self.coefficients.len()
            ));
        }
        let identity = IDENTITY.repeat(3);
        if self
            .coefficients
            .chunks_exact(UNIT_TAPS)
            .all(|u| u == identity)
        {
            return Err("the filter changes nothing (an image without one stores none)".into());
        }
        Ok(())
    }
}

/// Whether `unit` is a unit side a `width`×`height` image's filter may have.
fn valid_unit(unit: u32, width: u32, height: u32) -> bool {
    unit == 0 || (unit.is_multiple_of(MIN_UNIT) && unit < width.max(height))
}

fn unit_error(unit: impl std::fmt::Display, width: u32, height: u32) -> String {
    format!(
        "filter unit side {unit} is not 0 or a multiple of {MIN_UNIT} below the image's larger \
         side ({})",
        width.max(height)
    )
}

fn units(unit: u32, width: u32, height: u32) -> u64 {
    if unit == 0 {
        1
    } else {
        width.div_ceil(unit) as u64 * height.div_ceil(unit) as u64
    }
}

/// The most bytes an image's filter field can take at `pixels` pixels and `side` pixels a side
/// at most: the smallest units, every coefficient's difference at its longest varint (3
/// bytes), and the unit side's varint.
pub(crate) fn max_bytes(pixels: u64, side: u64) -> u64 {
    let min = MIN_UNIT as u64;
    let units = pixels / (min * min) + 2 * side.div_ceil(min) + 1;
    units.saturating_mul(UNIT_TAPS as u64 * 3) + 5
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// Appends an image's filter field: varint 0 for none; else the unit side + 1 (so 1 for one
/// unit), then each coefficient as the zigzag varint of its difference from the same
/// coefficient of the unit before (the first unit's from [`IDENTITY`]).
pub(crate) fn put(filter: Option<&Filter>, out: &mut Vec<u8>) {
    let Some(f) = filter else {
        varint::put(out, 0);
        return;
    };
    varint::put(out, f.unit as u64 + 1);
    let mut previous = IDENTITY.repeat(3);
    for unit in f.coefficients.chunks_exact(UNIT_TAPS) {
        for (p, &c) in previous.iter_mut().zip(unit) {
            varint::put(out, zigzag(c as i64 - *p as i64));
            *p = c;
        }
    }
}

/// Reads the filter field of record `index`, a `width`×`height` image, refusing what
/// [`Filter::check`] refuses and coefficients outside 16 bits.
pub(crate) fn parse(
    index: u64,
    (width, height): (u32, u32),
    c: &mut Cursor,
) -> Result<Option<Filter>> {
    let bad = |reason: String| ArchiveError::InvalidRecord { index, reason };
    let code = c.varint("filter unit")?;
    if code == 0 {
        return Ok(None);
    }
    let unit = u32::try_from(code - 1)
        .ok()
        .filter(|&u| valid_unit(u, width, height))
        .ok_or_else(|| bad(unit_error(code - 1, width, height)))?;
    let count = units(unit, width, height) as usize * UNIT_TAPS;
    // Each coefficient takes a byte at least: a forged count cannot outgrow the body.
    if count > c.remaining() {
        return Err(ArchiveError::Truncated {
            what: "filter coefficients",
            offset: c.pos,
        });
    }
    let mut coefficients = Vec::with_capacity(count);
    let mut previous = IDENTITY.repeat(3);
    for i in 0..count {
        let p = &mut previous[i % UNIT_TAPS];
        let v = unzigzag(c.varint("filter coefficient")?)
            .checked_add(*p as i64)
            .and_then(|v| i16::try_from(v).ok())
            .ok_or_else(|| bad("a filter coefficient outside 16 bits".into()))?;
        coefficients.push(v);
        *p = v;
    }
    let filter = Filter { unit, coefficients };
    filter.check(width, height).map_err(bad)?;
    Ok(Some(filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_round_trips_and_orders_by_magnitude() {
        for v in [-65_535i64, -2, -1, 0, 1, 2, 65_535] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(
            [0, -1, 1, -2, 2].map(zigzag),
            [0, 1, 2, 3, 4],
            "small differences take small varints"
        );
    }

    #[test]
    fn a_filter_reads_back_as_written() {
        let mut coefficients = IDENTITY.repeat(3 * 4);
        coefficients[0] = 300;
        coefficients[UNIT_TAPS + 7] = -32_768;
        coefficients[3 * UNIT_TAPS + 1] = 32_767;
        let f = Filter {
            unit: 64,
            coefficients,
        };
        f.check(100, 70).unwrap();
        let mut out = Vec::new();
        put(Some(&f), &mut out);
        let mut c = Cursor {
            bytes: &out,
            pos: 0,
        };
        assert_eq!(parse(0, (100, 70), &mut c).unwrap(), Some(f));
        assert_eq!(c.pos, out.len());
    }

    #[test]
    fn unit_sides_and_counts_are_checked() {
        let one = |unit, n| Filter {
            unit,
            coefficients: [[257i16; 1].as_slice(), &[0; UNIT_TAPS - 1]]
                .concat()
                .repeat(n),
        };
        assert!(one(0, 1).check(64, 64).is_ok());
        assert!(one(64, 4).check(65, 65).is_ok());
        assert!(
            one(64, 1).check(64, 64).is_err(),
            "a unit as large as the image"
        );
        assert!(one(96, 1).check(200, 20).is_err(), "not a multiple of 64");
        assert!(one(0, 2).check(64, 64).is_err(), "too many coefficients");
        let identity = Filter {
            unit: 0,
            coefficients: IDENTITY.repeat(3),
        };
        assert!(identity.check(64, 64).is_err());
    }
}
