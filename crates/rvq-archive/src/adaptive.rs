//! Adaptive symbol counts for the range coder: one row of counts per context, turned into
//! fixed-point probabilities the same way by the writer and every reader. The depth map and
//! the entropy-coded indices both code with it, each with its own increment and ceiling
//! (docs/FORMAT.md states the rule and both sets of constants). Integer arithmetic
//! throughout, so every reader computes the same model.

use std::collections::HashMap;

use constriction::stream::model::DefaultContiguousCategoricalEntropyModel;
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

/// Fixed-point precision of the probabilities (constriction's default range coder).
pub(crate) const PRECISION: u32 = 24;

/// Counts of `symbols` symbols in each of a number of contexts, every count starting at 1.
/// A context's row is allocated when it is first counted in, so a model of many contexts
/// (the index coder's, up to 64 levels × 256 high parts) costs only what a block uses.
pub(crate) struct AdaptiveCounts {
    symbols: usize,
    increment: u32,
    max_total: u32,
    rows: HashMap<usize, Vec<u32>>,
}

impl AdaptiveCounts {
    /// Rows of `symbols` (2 ≤ symbols < 2^PRECISION) counts at 1; coding a symbol adds
    /// `increment` to its count, and a row whose sum passes `max_total` is halved (rounding
    /// up, so no count reaches 0).
    pub(crate) fn new(symbols: usize, increment: u32, max_total: u32) -> Self {
        debug_assert!(symbols >= 2);
        Self {
            symbols,
            increment,
            max_total,
            rows: HashMap::new(),
        }
    }

    /// Probabilities for `context`: each symbol gets 1 plus its share of the rest in
    /// proportion to its count (rounded down); what rounding leaves goes to the first of the
    /// largest counts.
    fn model(&self, context: usize) -> DefaultContiguousCategoricalEntropyModel {
        let ones;
        let counts = match self.rows.get(&context) {
            Some(row) => row.as_slice(),
            None => {
                ones = vec![1; self.symbols];
                ones.as_slice()
            }
        };
        let total: u64 = counts.iter().map(|&c| c as u64).sum();
        let free = (1u64 << PRECISION) - self.symbols as u64;
        let mut p: Vec<u32> = counts
            .iter()
            .map(|&c| 1 + (c as u64 * free / total) as u32)
            .collect();
        let sum: u64 = p.iter().map(|&v| v as u64).sum();
        let top = (0..self.symbols)
            .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        p[top] += ((1u64 << PRECISION) - sum) as u32;
        DefaultContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(&p, false)
            .expect("probabilities are nonzero and sum to 2^PRECISION")
    }

    /// Codes `symbol` in `context`, then counts it.
    pub(crate) fn encode(
        &mut self,
        coder: &mut DefaultRangeEncoder,
        context: usize,
        symbol: usize,
    ) {
        coder
            .encode_symbol(symbol, self.model(context))
            .expect("a symbol of the model's alphabet always codes");
        self.update(context, symbol);
    }

    /// Decodes a symbol in `context`, then counts it; `None` when the words run out or are
    /// not a coding under this model.
    pub(crate) fn decode(
        &mut self,
        coder: &mut DefaultRangeDecoder,
        context: usize,
    ) -> Option<usize> {
        let symbol = coder.decode_symbol(self.model(context)).ok()?;
        self.update(context, symbol);
        Some(symbol)
    }

    /// Counts `symbol` in `context`.
    fn update(&mut self, context: usize, symbol: usize) {
        let (symbols, increment, max_total) = (self.symbols, self.increment, self.max_total);
        let row = self.rows.entry(context).or_insert_with(|| vec![1; symbols]);
        row[symbol] += increment;
        if row.iter().sum::<u32>() > max_total {
            for c in row.iter_mut() {
                *c = c.div_ceil(2);
            }
        }
    }
}
