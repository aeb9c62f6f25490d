//! Residual quantization by beam search, with the greedy path it is checked against.

use burn::prelude::*;
use rayon::prelude::*;

use super::{Paths, codebook_level, float_vec, int_vec, quantize, residual, squared_distance};
use crate::cpu::Books;

/// Residual quantization by beam search: keeps the `beam` best partial sums per row from level
/// to level and returns, per level, the indices of the sequence whose final residual is
/// smallest ([`Paths::levels`]), and for each shallower depth the sequence closest there
/// ([`Paths::prefixes`]). Greedy search ([`quantize`]) commits to the nearest entry at each
/// level; a slightly worse first choice can leave a residual the later codebooks fit much
/// better. A beam can also drop the greedy sequence and end worse than it, so at every depth
/// each row keeps whichever of the two is closer there: never worse than greedy. The decoder
/// is unchanged: it sums whatever entries the indices name. With `beam` ≤ 1 this is
/// [`quantize`] (on the CPU path, up to near-ties that the path's other order of summation can
/// break the other way).
///
/// On the CPU the search runs on the host over [`crate::cpu`]'s products (`cpu`'s codebooks,
/// or without them the codebooks packed for the call), its ranking exact in one fixed order
/// (see `BeamState::advance`), and the greedy path is followed alongside the beam
/// (`GreedyAlong`) instead of searched again. On a GPU the whole search runs on the device
/// (`device.rs`; the host reads back only the paths) and greedy's path is searched on it
/// afterwards. Without `per_depth` (every row stops at the full depth) no shallower path
/// is kept.
pub fn quantize_beam(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    (depth, beam): (usize, usize),
    cpu: Option<&Books>,
    per_depth: bool,
) -> Paths {
    if beam <= 1 {
        let levels = greedy_search(latents, codebooks, depth, cpu);
        return Paths {
            levels,
            prefixes: Vec::new(),
        };
    }
    let [_, d] = latents.dims();
    let [_, k, _] = codebooks.dims();
    let rows = float_vec(latents.clone());
    let books: Vec<Tensor<2>> = (0..depth)
        .map(|l| codebook_level(codebooks, l, k, d))
        .collect();
    let host_books: Vec<Vec<f32>> = books.iter().map(|b| float_vec(b.clone())).collect();
    let (found, greedy) = match cpu {
        Some(cpu) => host_search((&rows, d), cpu, &host_books, beam, per_depth),
        // On the CPU without the CPU path (a model whose network it cannot run), the host
        // search is still the faster, over the codebooks packed for this call.
        None if latents.device() == Device::flex() => {
            let packed = Books::new(&host_books.concat(), [depth, k, d]);
            host_search((&rows, d), &packed, &host_books, beam, per_depth)
        }
        None => {
            let found = super::device::search(latents.clone(), &books, beam, per_depth);
            (found, Vec::new())
        }
    };
    // Where greedy's path was not followed alongside the beam, it is searched on its own.
    let greedy = if greedy.is_empty() {
        greedy_search(latents, codebooks, depth, cpu)
    } else {
        greedy
    };
    keep_greedy_where_closer((&rows, d), &host_books, &greedy, found)
}

/// A beam can drop the greedy path at some level and end worse than it: at every depth, each
/// row of `found` keeps whichever of the two is closer there, so that a wider search never
/// loses to greedy on any cell at any depth.
fn keep_greedy_where_closer(
    (rows, d): (&[f32], usize),
    host_books: &[Vec<f32>],
    greedy: &[Vec<u32>],
    found: Paths,
) -> Paths {
    let Paths {
        levels: mut out,
        mut prefixes,
    } = found;
    let (n, depth) = (rows.len() / d, out.len());
    let error = |row: usize, path: &mut dyn Iterator<Item = u32>| {
        path_error(&rows[row * d..(row + 1) * d], host_books, path)
    };
    // Per row, a bit for each depth 1..=depth at which greedy's path is to be taken: at the
    // full depth where it is at least as close (as before there were shallower paths), at a
    // shallower one where it is closer.
    assert!(depth <= 64, "at most 64 levels");
    let greedy_wins: Vec<u64> = (0..n)
        .into_par_iter()
        .map(|row| {
            let mut wins = 0u64;
            let theirs = |p: usize| error(row, &mut greedy.iter().take(p).map(|l| l[row]));
            for (p, pre) in (1..).zip(&prefixes) {
                if theirs(p) < error(row, &mut pre[row * p..(row + 1) * p].iter().copied()) {
                    wins |= 1 << (p - 1);
                }
            }
            if theirs(depth) <= error(row, &mut out.iter().map(|l| l[row])) {
                wins |= 1 << (depth - 1);
            }
            wins
        })
        .collect();
    for (row, wins) in greedy_wins.into_iter().enumerate() {
        for p in (1..=depth).filter(|p| wins & (1 << (p - 1)) != 0) {
            match prefixes.get_mut(p - 1) {
                Some(pre) => {
                    for (level, slot) in pre[row * p..(row + 1) * p].iter_mut().enumerate() {
                        *slot = greedy[level][row];
                    }
                }
                None => {
                    for (level, col) in out.iter_mut().enumerate() {
                        col[row] = greedy[level][row];
                    }
                }
            }
        }
    }
    Paths {
        levels: out,
        prefixes,
    }
}

/// The beam on the host over [`crate::cpu`]'s products: its paths, as [`quantize_beam`]
/// returns them before they are checked against greedy's, and greedy's paths per level where
/// they could be followed alongside the beam (else none).
pub(super) fn host_search(
    (rows, d): (&[f32], usize),
    cpu: &Books,
    host_books: &[Vec<f32>],
    beam: usize,
    per_depth: bool,
) -> (Paths, Vec<Vec<u32>>) {
    let depth = host_books.len();
    let n = rows.len() / d;
    let norms: Vec<Vec<f32>> = host_books
        .iter()
        .map(|b| b.chunks(d).map(|e| e.iter().map(|v| v * v).sum()).collect())
        .collect();
    let mut out = vec![Vec::with_capacity(n); depth];
    let shallower = if per_depth { 1..depth } else { 1..1 };
    let mut prefixes: Vec<Vec<u32>> = shallower.map(|p| Vec::with_capacity(n * p)).collect();
    let alongside = GreedyAlong::same_products(d);
    let mut greedy = if alongside {
        vec![Vec::with_capacity(n); depth]
    } else {
        Vec::new()
    };
    // Cells are independent: a block at a time bounds the score matrix (block·beam × k).
    let mut dots = Vec::new();
    for start in (0..n).step_by(BEAM_CELLS) {
        let cells = BEAM_CELLS.min(n - start);
        let block = &rows[start * d..(start + cells) * d];
        let mut search = BeamState::new(block, d, depth);
        let mut along = alongside.then(|| GreedyAlong::new(block, d, depth));
        for level in 0..depth {
            cpu.dots_into(level, &search.residuals, &mut dots);
            if let Some(along) = &mut along {
                along.step(level, &search, &dots, cpu);
            }
            search.advance(&dots, &host_books[level], &norms[level], beam);
            if let Some(along) = &mut along {
                along.follow(&search);
            }
            if let Some(prefix) = prefixes.get_mut(level) {
                search.push_best(prefix);
            }
        }
        for (level, col) in search.best_paths().into_iter().enumerate() {
            out[level].extend(col);
        }
        if let Some(along) = along {
            for (level, col) in greedy.iter_mut().enumerate() {
                col.extend((0..cells).map(|c| along.paths[c * depth + level]));
            }
        }
    }
    let paths = Paths {
        levels: out,
        prefixes,
    };
    (paths, greedy)
}

/// [`quantize`]'s indices, level by level: on [`crate::cpu`]'s products with `cpu`, else on
/// tensors.
fn greedy_search(
    latents: Tensor<2>,
    codebooks: &Tensor<3>,
    depth: usize,
    cpu: Option<&Books>,
) -> Vec<Vec<u32>> {
    match cpu {
        Some(books) => books.greedy(&float_vec(latents), depth),
        None => quantize(latents, codebooks, depth)
            .0
            .into_iter()
            .map(int_vec)
            .collect(),
    }
}

/// Squared norm of what `path` (one index per level) leaves of `latent`.
fn path_error(latent: &[f32], books: &[Vec<f32>], path: impl Iterator<Item = u32>) -> f32 {
    let d = latent.len();
    let entries = books
        .iter()
        .zip(path)
        .map(|(book, c)| &book[c as usize * d..(c as usize + 1) * d]);
    residual(latent, entries).iter().map(|v| v * v).sum()
}

/// Cells searched together: a block's scores (cells × beam × k floats, 16 MiB at a beam of 4)
/// are one buffer kept from level to level and block to block. Blocks of 256 measured slower
/// once greedy's path was followed alongside, which costs a pass over the cells per level
/// (docs/BENCHMARKS.md, "The beam's own work").
const BEAM_CELLS: usize = 1024;

/// Scores a beam's shortlist passes over at once when none of them would enter it.
const SCAN: usize = 32;

/// A candidate's distance as the dots give it, `‖r‖² + ‖e‖² − 2·r·e`: one expression for the
/// run minima and the shortlist, so that a minimum bounds its run's scores to the last bit.
#[inline(always)]
fn score(err: f32, dot: f32, norm: f32) -> f32 {
    err + norm - 2.0 * dot
}

/// Puts `item` into `list` (ascending by `key`, at most `n` long) after its equals, unless
/// `list` is full of nearer or equal ones: the `n` least of a sequence, the first on a tie.
fn keep_least<T>(list: &mut Vec<T>, item: T, n: usize, key: impl Fn(&T) -> f32) {
    let v = key(&item);
    if list.len() == n && v >= key(&list[n - 1]) {
        return;
    }
    let at = list.partition_point(|b| key(b) <= v);
    list.insert(at, item);
    list.truncate(n);
}

/// Appends the least [`score`] of each run of [`SCAN`] scores to `out`, with the
/// widest vectors the CPU has: the one pass of a beam level over every score.
fn run_minima(err: f32, dots: &[f32], norms: &[f32], out: &mut Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, as just checked.
        unsafe { run_minima_avx2(err, dots, norms, out) };
        return;
    }
    run_minima_in(err, dots, norms, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_minima_avx2(err: f32, dots: &[f32], norms: &[f32], out: &mut Vec<f32>) {
    run_minima_in(err, dots, norms, out);
}

#[inline(always)]
fn run_minima_in(err: f32, dots: &[f32], norms: &[f32], out: &mut Vec<f32>) {
    let dist = |dot: f32, norm: f32| score(err, dot, norm);
    out.extend(
        dots.chunks(SCAN)
            .zip(norms.chunks(SCAN))
            .map(|(dots, norms)| {
                let mut lanes = [f32::INFINITY; 8];
                for (t, n) in dots.chunks_exact(8).zip(norms.chunks_exact(8)) {
                    for l in 0..8 {
                        // Not f32::min, whose NaN rule keeps this from one instruction a lane.
                        let v = dist(t[l], n[l]);
                        lanes[l] = if v < lanes[l] { v } else { lanes[l] };
                    }
                }
                let tail = dots.chunks_exact(8).remainder().iter();
                let tail = tail.zip(norms.chunks_exact(8).remainder());
                let lanes = lanes.into_iter();
                lanes
                    .chain(tail.map(|(&t, &n)| dist(t, n)))
                    .fold(f32::INFINITY, f32::min)
            }),
    );
}

/// Greedy search's path for each cell of a beam's block, followed alongside the beam on
/// [`crate::cpu`]'s path. While greedy's path is one of the beam's candidates, its next entry is
/// read off that candidate's dots (the same product of the same residual as
/// [`Books::greedy`]'s, so the same entry, where [`GreedyAlong::same_products`]); only the cells
/// whose greedy path has left the beam take products of their own, instead of every cell
/// searching twice.
struct GreedyAlong {
    dim: usize,
    depth: usize,
    /// `[cells][dim]`: what greedy's path leaves of each cell.
    residuals: Vec<f32>,
    /// `[cells][depth]`: greedy's indices so far.
    paths: Vec<u32>,
    /// Per cell, the beam's row whose path is greedy's, while one is.
    member: Vec<Option<usize>>,
}

impl GreedyAlong {
    /// Whether a row's product with the entries comes out the same whatever the rows around
    /// it, so that a candidate's dots are greedy's own: `gemm` sums each dot in one chain of
    /// fused multiply-adds on x86-64 up to 512 dimensions, in the main kernel and for a single
    /// row alike; elsewhere, or deeper, a single row or another depth blocking rounds otherwise.
    fn same_products(dim: usize) -> bool {
        cfg!(target_arch = "x86_64") && dim <= 512
    }

    fn new(latents: &[f32], dim: usize, depth: usize) -> Self {
        let cells = latents.len() / dim;
        Self {
            dim,
            depth,
            residuals: latents.to_vec(),
            paths: vec![0; cells * depth],
            // A beam starts as the cells themselves, one row each.
            member: (0..cells).map(Some).collect(),
        }
    }

    /// Level `level`'s greedy entries, from `dots` (`beam`'s rows against that level) where
    /// greedy's path is one of `beam`'s.
    fn step(&mut self, level: usize, beam: &BeamState, dots: &[f32], books: &Books) {
        let (d, depth) = (self.dim, self.depth);
        let k = dots.len() / beam.rows();
        let lost: Vec<usize> = (0..self.member.len())
            .filter(|&c| self.member[c].is_none())
            .collect();
        let gathered: Vec<f32> = lost
            .iter()
            .flat_map(|&c| &self.residuals[c * d..(c + 1) * d])
            .copied()
            .collect();
        let own = books.dots(level, &gathered);
        let mut scores: Vec<&[f32]> = self
            .member
            .iter()
            .map(|m| m.map_or(&[][..], |row| &dots[row * k..(row + 1) * k]))
            .collect();
        for (&c, row) in lost.iter().zip(own.chunks_exact(k.max(1))) {
            scores[c] = row;
        }
        self.residuals
            .par_chunks_mut(d)
            .zip(self.paths.par_chunks_mut(depth))
            .zip(scores)
            .for_each(|((r, path), scores)| {
                let e = books.nearest(level, scores);
                path[level] = e as u32;
                r.iter_mut()
                    .zip(books.entry(level, e))
                    .for_each(|(a, v)| *a -= v);
            });
    }

    /// After `beam` advanced a level: which of its rows, if any, still holds greedy's path.
    fn follow(&mut self, beam: &BeamState) {
        let (depth, width) = (self.depth, beam.width);
        for (c, member) in self.member.iter_mut().enumerate() {
            let path = &self.paths[c * depth..c * depth + beam.level];
            *member = (c * width..(c + 1) * width).find(|&row| beam.path(row) == path);
        }
    }
}

/// The candidates of a beam search over a block of cells: `width` partial sums per cell.
struct BeamState {
    cells: usize,
    dim: usize,
    width: usize,
    /// Levels each path has room for.
    depth: usize,
    /// Levels chosen so far.
    level: usize,
    /// `[cells·width][dim]`: what each candidate leaves to quantize.
    residuals: Vec<f32>,
    /// Squared norm of each residual.
    errors: Vec<f32>,
    /// `[cells·width][depth]`: the indices each candidate chose, its first `level` in use.
    paths: Vec<u32>,
    /// The next level's `residuals`, `errors` and `paths`, kept to be written over.
    next: (Vec<f32>, Vec<f32>, Vec<u32>),
}

/// A cell's working space in [`BeamState::advance`], kept by each thread from cell to cell.
#[derive(Default)]
struct Shortlist {
    /// `(distance as the dots give it, row, entry)`, nearest first.
    listed: Vec<(f32, usize, usize)>,
    /// The least distance in each run of [`SCAN`] scores of each of the cell's rows.
    least: Vec<f32>,
    /// The smallest values of `least`, ascending.
    bars: Vec<f32>,
}

impl BeamState {
    fn new(latents: &[f32], dim: usize, depth: usize) -> Self {
        let cells = latents.len() / dim;
        Self {
            cells,
            dim,
            width: 1,
            depth,
            level: 0,
            residuals: latents.to_vec(),
            errors: latents
                .chunks(dim)
                .map(|r| r.iter().map(|v| v * v).sum())
                .collect(),
            paths: vec![0; cells * depth],
            next: Default::default(),
        }
    }

    fn rows(&self) -> usize {
        self.cells * self.width
    }

    /// The indices row `row` chose so far.
    fn path(&self, row: usize) -> &[u32] {
        &self.paths[row * self.depth..row * self.depth + self.level]
    }

    /// One level: every candidate extended by every entry (`dots[row][entry]` = residual ·
    /// entry), and the `beam` best kept per cell.
    ///
    /// The dots are a matrix product's, which sums in an order of its own (another on another
    /// CPU's widest vectors, on the GPU search of `device.rs`), and `‖r‖² + ‖e‖² − 2·r·e`
    /// cancels two large numbers: ranked by that alone, two candidates a few ulps apart could
    /// swap places, and with them every later level of the cell. So the dots only shortlist (the `beam` best and as many again, the first in
    /// row and entry order on a tie); the shortlist is ranked by its exact squared distance,
    /// summed on the host in one fixed order, ties broken by parent and entry: the same choice
    /// wherever the latents agree.
    fn advance(&mut self, dots: &[f32], book: &[f32], norms: &[f32], beam: usize) {
        let (k, d) = (norms.len(), self.dim);
        assert!(self.level < self.depth, "a level past the paths' room");
        let width = beam.min(self.width * k);
        let listed = (2 * width).min(self.width * k);
        let (mut residuals, mut errors, mut paths) = std::mem::take(&mut self.next);
        // Every value is written below: sizes only.
        residuals.resize(self.cells * width * d, 0.0);
        errors.resize(self.cells * width, 0.0);
        paths.resize(self.cells * width * self.depth, 0);
        // Cells are independent: threads take them in turn, each with its own shortlist.
        let out = residuals
            .par_chunks_mut(width * d)
            .zip(errors.par_chunks_mut(width))
            .zip(paths.par_chunks_mut(width * self.depth))
            .enumerate();
        out.for_each_init(Shortlist::default, |work, (cell, ((res, err), path))| {
            let rows = cell * self.width..(cell + 1) * self.width;
            self.shortlist(work, rows, dots, norms, listed);
            let short = &mut work.listed;
            for s in short.iter_mut() {
                let parent = &self.residuals[s.1 * d..(s.1 + 1) * d];
                s.0 = squared_distance(parent, &book[s.2 * d..(s.2 + 1) * d]);
            }
            short.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
            for (j, &(e, row, c)) in short[..width].iter().enumerate() {
                let parent = &self.residuals[row * d..(row + 1) * d];
                let entry = &book[c * d..(c + 1) * d];
                let r = &mut res[j * d..(j + 1) * d];
                r.iter_mut()
                    .zip(parent.iter().zip(entry))
                    .for_each(|(r, (p, e))| *r = p - e);
                err[j] = e;
                let p = &mut path[j * self.depth..(j + 1) * self.depth];
                p[..self.level].copy_from_slice(self.path(row));
                p[self.level] = c as u32;
            }
        });
        self.width = width;
        self.level += 1;
        let residuals = std::mem::replace(&mut self.residuals, residuals);
        let errors = std::mem::replace(&mut self.errors, errors);
        let paths = std::mem::replace(&mut self.paths, paths);
        self.next = (residuals, errors, paths);
    }

    /// Fills `work.listed` with the `listed` candidates of `rows` nearest by the dots, nearest
    /// first, the first in row and entry order on a tie.
    ///
    /// Most entries are far. The least score of each run of [`SCAN`] is taken first (a pass
    /// the compiler vectorises); the `listed`-th smallest of those bounds the `listed`-th
    /// smallest score, so only runs that reach below that bar are looked at one by one, and no
    /// score above it can be among the nearest.
    fn shortlist(
        &self,
        work: &mut Shortlist,
        rows: std::ops::Range<usize>,
        dots: &[f32],
        norms: &[f32],
        listed: usize,
    ) {
        let k = norms.len();
        work.listed.clear();
        if listed == 0 {
            return;
        }
        let Shortlist {
            listed: short,
            least,
            bars,
        } = work;
        least.clear();
        for row in rows.clone() {
            run_minima(
                self.errors[row],
                &dots[row * k..(row + 1) * k],
                norms,
                least,
            );
        }
        bars.clear();
        for &m in least.iter() {
            keep_least(bars, m, listed, |&b| b);
        }
        // Fewer runs than places leave no bar: every score is looked at. (Scores are finite
        // wherever the latents are; the minima pass over a NaN.)
        let bar = bars.get(listed - 1).copied().unwrap_or(f32::INFINITY);
        let runs_per_row = k.div_ceil(SCAN);
        for (r, row) in rows.enumerate() {
            let err = self.errors[row];
            let scores = dots[row * k..(row + 1) * k].chunks(SCAN);
            for (i, (dots, norms)) in scores.zip(norms.chunks(SCAN)).enumerate() {
                let least = least[r * runs_per_row + i];
                let full = short.len() == listed;
                if least > bar || (full && least >= short[listed - 1].0) {
                    continue;
                }
                for (j, (&dot, &norm)) in dots.iter().zip(norms).enumerate() {
                    let dist = score(err, dot, norm);
                    if dist > bar {
                        continue;
                    }
                    keep_least(short, (dist, row, i * SCAN + j), listed, |b| b.0);
                }
            }
        }
    }

    /// Appends each cell's closest candidate, as far as the search has gone.
    fn push_best(&self, out: &mut Vec<u32>) {
        // `advance` keeps each cell's candidates closest first.
        for cell in 0..self.cells {
            out.extend_from_slice(self.path(cell * self.width));
        }
    }

    /// Per level, each cell's index on its candidate with the smallest final error.
    fn best_paths(&self) -> Vec<Vec<u32>> {
        let mut out = vec![Vec::with_capacity(self.cells); self.level];
        for cell in 0..self.cells {
            let rows = cell * self.width..(cell + 1) * self.width;
            let best = rows
                .min_by(|&a, &b| self.errors[a].total_cmp(&self.errors[b]))
                .expect("every cell has candidates");
            for (level, &c) in self.path(best).iter().enumerate() {
                out[level].push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
