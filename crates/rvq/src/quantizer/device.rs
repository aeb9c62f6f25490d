//! The beam search on a GPU (wgpu): each level's candidates are scored, shortlisted, ranked
//! and extended as tensor operations, and the host reads the paths once per block of cells.
//! Until 2026-12-06 a GPU encode ran `beam.rs`'s host search over the device's dots, reading
//! every candidate's dots back at every level (a `[cells·beam, k]` matrix, 16 MiB per 1,024
//! cells at a beam of 4), which bound it by the transfers and the host's passes
//! (docs/BENCHMARKS.md, "The beam on the device").
//!
//! The ranking is the host's in two steps: the dots only shortlist (the `beam` best and as many
//! again, by `‖r‖² + ‖e‖² − 2·r·e`), and the shortlist is ranked by each candidate's squared
//! distance summed from its residual, so that dots a few ulps apart on another backend do not
//! reorder it. What differs from the host: those sums are the device's, in its order, and an
//! exact tie goes whichever way the device's top-k takes it.

use burn::prelude::*;

use super::Paths;

/// Cells searched together: a block's scores take `cells · beam · k` floats on the device
/// (64 MiB at 4,096 cells, a beam of 4 and 1,024 entries).
const DEVICE_CELLS: usize = 4096;

/// The beam's paths for `latents` (`[n, d]`) over `books` (one `[k, d]` tensor per level), as
/// the host search finds them ([`super::quantize_beam`] then checks them against greedy's):
/// the shallower depths' only with `per_depth`.
pub(super) fn search(
    latents: Tensor<2>,
    books: &[Tensor<2>],
    beam: usize,
    per_depth: bool,
) -> Paths {
    let [n, d] = latents.dims();
    let depth = books.len();
    let mut levels = vec![Vec::with_capacity(n); depth];
    let shallower = if per_depth { 1..depth } else { 1..1 };
    let mut prefixes: Vec<Vec<u32>> = shallower.map(|p| Vec::with_capacity(n * p)).collect();
    let norms: Vec<Tensor<3>> = books
        .iter()
        .map(|b| b.clone().square().sum_dim(1).reshape([1, 1, -1]))
        .collect();
    for start in (0..n).step_by(DEVICE_CELLS) {
        let cells = DEVICE_CELLS.min(n - start);
        let block = latents.clone().slice([start..start + cells, 0..d]);
        let mut state = Block::new(block);
        let mut closest = Vec::with_capacity(depth);
        for (book, norms) in books.iter().zip(&norms) {
            state.advance(book, norms, beam);
            if closest.len() < prefixes.len() {
                closest.push(state.closest());
            }
        }
        // One read of the block's paths: every shallower depth's closest, then the full
        // depth's, each `[cells, p]` flattened and joined.
        closest.push(state.closest());
        let all = super::int_vec(Tensor::cat(
            closest.into_iter().map(|t| t.flatten(0, 1)).collect(),
            0,
        ));
        let mut rest = &all[..];
        for (p, prefix) in (1..).zip(prefixes.iter_mut()) {
            let (mine, after) = rest.split_at(cells * p);
            prefix.extend_from_slice(mine);
            rest = after;
        }
        for (level, col) in levels.iter_mut().enumerate() {
            col.extend(rest.iter().skip(level).step_by(depth));
        }
    }
    Paths { levels, prefixes }
}

/// A block's candidates on the device: `width` partial sums per cell.
struct Block {
    /// `[cells, width, d]`: what each candidate leaves to quantize.
    residuals: Tensor<3>,
    /// `[cells, width]`: each residual's squared norm.
    errors: Tensor<2>,
    /// `[cells, width, levels so far]`: the indices each candidate chose.
    paths: Option<Tensor<3, Int>>,
}

impl Block {
    fn new(latents: Tensor<2>) -> Self {
        let [cells, d] = latents.dims();
        let residuals = latents.reshape([cells, 1, d]);
        let errors = residuals.clone().square().sum_dim(2).reshape([cells, 1]);
        Self {
            residuals,
            errors,
            paths: None,
        }
    }

    /// One level: every candidate extended by every entry of `book`, and the `beam` closest
    /// kept per cell.
    fn advance(&mut self, book: &Tensor<2>, norms: &Tensor<3>, beam: usize) {
        let [cells, width, d] = self.residuals.dims();
        let k = book.dims()[0];
        let kept = beam.min(width * k);
        let listed = (2 * kept).min(width * k);
        let dots = self
            .residuals
            .clone()
            .reshape([cells * width, d])
            .matmul(book.clone().transpose())
            .reshape([cells, width, k]);
        let scores =
            self.errors.clone().reshape([cells, width, 1]) + norms.clone() - dots.mul_scalar(2.0);
        // The nearest are the largest of the negated scores: each candidate's `listed` nearest
        // first (a row of k per thread group), then the cell's among those.
        let per_row = listed.min(k);
        let (near, at) = scores.neg().topk_with_indices(per_row, 2);
        let (_, pick) = near
            .reshape([cells, width * per_row])
            .topk_with_indices(listed, 1);
        let entries = at.reshape([cells, width * per_row]).gather(1, pick.clone());
        let parents = pick.div_scalar(per_row as i64);
        let from = self.residuals.clone().gather(
            1,
            parents
                .clone()
                .unsqueeze_dim::<3>(2)
                .expand([cells, listed, d]),
        );
        let chosen = book
            .clone()
            .select(0, entries.clone().reshape([cells * listed]))
            .reshape([cells, listed, d]);
        let candidates = from - chosen;
        let exact = candidates
            .clone()
            .square()
            .sum_dim(2)
            .reshape([cells, listed]);
        let (_, order) = exact.clone().neg().topk_with_indices(kept, 1);
        self.residuals = candidates.gather(
            1,
            order.clone().unsqueeze_dim::<3>(2).expand([cells, kept, d]),
        );
        self.errors = exact.gather(1, order.clone());
        let parents = parents.gather(1, order.clone());
        let entries = entries.gather(1, order).unsqueeze_dim::<3>(2);
        self.paths = Some(match self.paths.take() {
            None => entries,
            Some(paths) => {
                let levels = paths.dims()[2];
                let kept_paths = paths.gather(
                    1,
                    parents.unsqueeze_dim::<3>(2).expand([cells, kept, levels]),
                );
                Tensor::cat(vec![kept_paths, entries], 2)
            }
        });
    }

    /// `[cells, levels so far]`: each cell's path with the least error, on the device.
    fn closest(&self) -> Tensor<2, Int> {
        let paths = self.paths.clone().expect("a level searched");
        let [cells, _, levels] = paths.dims();
        let best = self.errors.clone().argmin(1); // [cells, 1]
        paths
            .gather(1, best.unsqueeze_dim::<3>(2).expand([cells, 1, levels]))
            .reshape([cells, levels])
    }
}

#[cfg(test)]
mod tests {
    use super::super::beam::host_search;
    use super::{DEVICE_CELLS, search};
    use crate::cpu::Books;
    use burn::prelude::*;

    /// Continuous values in [−1, 1): no ties for the two searches to break their own ways.
    fn values(seed: u64, n: usize) -> Vec<f32> {
        super::super::test_values(seed, n, 1 << 24)
            .into_iter()
            .map(|v| v * 2.0)
            .collect()
    }

    /// On burn's tensors the device search keeps what the host search keeps, before either is
    /// checked against greedy: the same full paths and the same shallower ones, over more than
    /// one block, with a beam wider than a level has candidates, and at one level.
    #[test]
    fn the_device_beam_keeps_the_host_beams_paths() {
        let cases = [
            (DEVICE_CELLS + 300, 24, 5, 2, true),
            (DEVICE_CELLS + 300, 24, 5, 3, false),
            (700, 24, 5, 8, true),
            (300, 2, 3, 8, true),
            (300, 24, 1, 4, true),
        ];
        let d = 6;
        let device = Device::flex();
        for (n, k, depth, beam, per_depth) in cases {
            let latents = values(1, n * d);
            let entries = values(2, depth * k * d);
            let books = Books::new(&entries, [depth, k, d]);
            let host: Vec<Vec<f32>> = entries.chunks(k * d).map(<[f32]>::to_vec).collect();
            let tensors: Vec<Tensor<2>> = host
                .iter()
                .map(|b| Tensor::from_data(TensorData::new(b.clone(), [k, d]), &device))
                .collect();
            let rows = Tensor::<2>::from_data(TensorData::new(latents.clone(), [n, d]), &device);
            let on_device = search(rows, &tensors, beam, per_depth);
            let (on_host, greedy) = host_search((&latents, d), &books, &host, beam, per_depth);
            let case = format!("n {n} k {k} depth {depth} beam {beam}");
            assert_eq!(on_device.levels, on_host.levels, "{case}");
            assert_eq!(on_device.prefixes, on_host.prefixes, "{case}");
            let shallower = if per_depth { depth - 1 } else { 0 };
            assert_eq!(on_device.prefixes.len(), shallower, "{case}");
            // Not greedy's paths in disguise: a beam wider than one leaves them somewhere.
            if depth > 1 && !greedy.is_empty() {
                let moved =
                    (0..n).filter(|&r| (0..depth).any(|l| greedy[l][r] != on_host.levels[l][r]));
                assert!(moved.count() > n / 20, "{case}: the beam is greedy");
            }
        }
    }
}
