//! Adaptive symbol counts for the range coder: one row of counts per context, turned into
//! fixed-point probabilities the same way by the writer and every reader. The depth map and
//! the entropy-coded indices both code with it, each with its own increment and ceiling
//! (docs/FORMAT.md states the rule and both sets of constants). Integer arithmetic
//! throughout, so every reader computes the same model.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::num::NonZeroU32;

use constriction::stream::model::{DecoderModel, EncoderModel, EntropyModel};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

/// Fixed-point precision of the probabilities (constriction's default range coder).
pub(crate) const PRECISION: usize = 24;

/// One context's counts, with their sum and the first of the largest kept up to date, so
/// that coding a symbol reads the row once instead of building a probability table.
struct Row {
    counts: Vec<u32>,
    total: u64,
    top: usize,
}

impl Row {
    fn new(symbols: usize) -> Self {
        Self {
            counts: vec![1; symbols],
            total: symbols as u64,
            top: 0,
        }
    }

    fn count(&mut self, symbol: usize, increment: u32, max_total: u32) {
        self.counts[symbol] += increment;
        self.total += increment as u64;
        let (c, t) = (self.counts[symbol], self.counts[self.top]);
        if c > t || (c == t && symbol < self.top) {
            self.top = symbol;
        }
        if self.total > max_total as u64 {
            for c in self.counts.iter_mut() {
                *c = c.div_ceil(2);
            }
            self.total = self.counts.iter().map(|&c| c as u64).sum();
            self.top = first_largest(&self.counts);
        }
    }
}

fn first_largest(counts: &[u32]) -> usize {
    (0..counts.len())
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .unwrap_or(0)
}

/// The most symbols a row has: the index coder's alphabets have at most 256 (k = 65,536
/// splits into 256 high parts of 8 low bits), the depth map's at most 64.
const MAX_SYMBOLS: usize = 256;

/// A row's fixed-point probabilities: each symbol gets 1 plus its share of the rest in
/// proportion to its count (rounded down), and what rounding leaves goes to the first of the
/// largest counts.
struct RowModel {
    probabilities: [u32; MAX_SYMBOLS],
    symbols: usize,
}

impl RowModel {
    fn new(row: &Row) -> Self {
        let symbols = row.counts.len();
        let free = (1u64 << PRECISION) - symbols as u64;
        // floor(x / total) by a multiplication: `q` is at most one short, and the check
        // after it mends that, so the result is exactly the division's.
        let inverse = u64::MAX / row.total;
        let mut probabilities = [0u32; MAX_SYMBOLS];
        let mut sum = 0u64;
        for (p, &c) in probabilities.iter_mut().zip(&row.counts) {
            let x = c as u64 * free;
            let mut q = ((x as u128 * inverse as u128) >> 64) as u64;
            if x - q * row.total >= row.total {
                q += 1;
            }
            *p = 1 + q as u32;
            sum += *p as u64;
        }
        probabilities[row.top] += ((1u64 << PRECISION) - sum) as u32;
        Self {
            probabilities,
            symbols,
        }
    }
}

impl EntropyModel<PRECISION> for RowModel {
    type Symbol = usize;
    type Probability = u32;
}

impl EncoderModel<PRECISION> for RowModel {
    fn left_cumulative_and_probability(
        &self,
        symbol: impl Borrow<usize>,
    ) -> Option<(u32, NonZeroU32)> {
        let symbol = *symbol.borrow();
        let p = NonZeroU32::new(*self.probabilities[..self.symbols].get(symbol)?)?;
        Some((self.probabilities[..symbol].iter().sum(), p))
    }
}

impl DecoderModel<PRECISION> for RowModel {
    fn quantile_function(&self, quantile: u32) -> (usize, u32, NonZeroU32) {
        let mut left = 0;
        let last = self.symbols - 1;
        for (symbol, &p) in self.probabilities[..last].iter().enumerate() {
            if quantile < left + p {
                return (
                    symbol,
                    left,
                    NonZeroU32::new(p).expect("every probability is at least 1"),
                );
            }
            left += p;
        }
        let p = self.probabilities[last];
        (
            last,
            left,
            NonZeroU32::new(p).expect("every probability is at least 1"),
        )
    }
}

/// Counts of `symbols` symbols in each of a number of contexts, every count starting at 1.
/// A context's row is allocated when it is first coded in, so a model of many contexts
/// (the index coder's, up to 64 levels × 256 high parts) costs only what a block uses.
pub(crate) struct AdaptiveCounts {
    symbols: usize,
    increment: u32,
    max_total: u32,
    rows: HashMap<usize, Row>,
}

impl AdaptiveCounts {
    /// Rows of `symbols` (2 ≤ symbols ≤ 256) counts at 1; coding a symbol adds
    /// `increment` to its count, and a row whose sum passes `max_total` is halved (rounding
    /// up, so no count reaches 0).
    pub(crate) fn new(symbols: usize, increment: u32, max_total: u32) -> Self {
        assert!((2..=MAX_SYMBOLS).contains(&symbols));
        Self {
            symbols,
            increment,
            max_total,
            rows: HashMap::new(),
        }
    }

    fn row(&mut self, context: usize) -> &mut Row {
        let symbols = self.symbols;
        self.rows
            .entry(context)
            .or_insert_with(|| Row::new(symbols))
    }

    /// Codes `symbol` in `context`, then counts it.
    pub(crate) fn encode(
        &mut self,
        coder: &mut DefaultRangeEncoder,
        context: usize,
        symbol: usize,
    ) {
        let (increment, max_total) = (self.increment, self.max_total);
        let row = self.row(context);
        coder
            .encode_symbol(symbol, RowModel::new(row))
            .expect("a symbol of the model's alphabet always codes");
        row.count(symbol, increment, max_total);
    }

    /// Decodes a symbol in `context`, then counts it; `None` when the words run out or are
    /// not a coding under this model.
    pub(crate) fn decode(
        &mut self,
        coder: &mut DefaultRangeDecoder,
        context: usize,
    ) -> Option<usize> {
        let (increment, max_total) = (self.increment, self.max_total);
        let row = self.row(context);
        let symbol = coder.decode_symbol(RowModel::new(row)).ok()?;
        row.count(symbol, increment, max_total);
        Some(symbol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule as docs/FORMAT.md states it, computed the plain way from the counts.
    fn probabilities_by_the_spec(counts: &[u32]) -> Vec<u32> {
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        let free = (1u64 << PRECISION) - counts.len() as u64;
        let mut p: Vec<u32> = counts
            .iter()
            .map(|&c| 1 + (c as u64 * free / total) as u32)
            .collect();
        let sum: u64 = p.iter().map(|&v| v as u64).sum();
        p[first_largest(counts)] += ((1u64 << PRECISION) - sum) as u32;
        p
    }

    #[test]
    fn rows_keep_the_spec_probabilities_through_many_halvings() {
        // Skewed draws over alphabets of every size in use, at both coders' increments, for
        // long enough that each row halves many times; the kept sum and first largest must
        // give the spec's probabilities after every update.
        let mut state = 5u32;
        for symbols in [2usize, 3, 7, 8, 32, 33, 64, 255, 256] {
            for increment in [4u32, 8] {
                let mut row = Row::new(symbols);
                for _ in 0..20_000 {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let r = (state >> 8) as usize;
                    let symbol = if r & 3 == 0 {
                        r % symbols
                    } else {
                        (r >> 2) % 3 % symbols
                    };
                    row.count(symbol, increment, 1 << 12);
                    let model = RowModel::new(&row);
                    assert_eq!(
                        model.probabilities[..symbols],
                        probabilities_by_the_spec(&row.counts)[..],
                        "{symbols} symbols, increment {increment}"
                    );
                    assert_eq!(row.total, row.counts.iter().map(|&c| c as u64).sum::<u64>());
                }
            }
        }
    }
}
