//! Decoder-aware refinement of the indices an encode chose: a search in pixel space for each
//! cell's last entry.
//!
//! The residual search ([`crate::quantizer::quantize_beam`]) picks the entries nearest the
//! encoder's latent, but what a reader sees is the decoder's output, and the decoder is not the
//! encoder's inverse: of the entries nearly as close in latent space, another one often decodes
//! closer to the image. Refinement tries, for every cell, the `candidates` entries of the last
//! level it uses nearest its residual there and keeps the one whose decoded block is closest to
//! the image's pixels (compared before rounding to 8 bits, so that backends agree at near
//! ties). It runs after rate control has chosen each cell's depth (every cell at the archive's
//! depth without a target), so a cell's last level is the one it is decoded with. The archive
//! and the decoder do not change: the indices are simply different ones, so any reader decodes
//! them.
//!
//! A cell's block also depends on its neighbours' entries (the decoder's convolutions reach
//! about two cells across), so the cells are tried in four interleaved classes (row and column
//! parity): while one class tries a candidate, the cells next to each of its cells hold still.
//! Cells of one class two apart still move together, so a class's choices can add up to a
//! worse image than each promised; each image is therefore checked at the end and keeps its
//! original indices unless the refined ones decode better overall.
//!
//! That search decodes the batch once per class and candidate. With `linear`, refinement
//! instead estimates every candidate of every cell from one decode through the decoder's
//! linear path ([`crate::linear`]), moves every cell at once, and puts back the cells that
//! moving made worse (always where the moves made the image worse, and otherwise where those
//! cells hold enough of its error to be worth measuring again): at most three decodes,
//! whatever the number of candidates. Either way refinement
//! never loses to the search alone on any image, at any depth or target, whatever the
//! decoder; a PSNR target met before it is met after it.

use burn::prelude::*;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::image_io::Rgb;
use crate::linear::{self, Drawing};
use crate::model::{Model, latents_to_rows};
use crate::quantizer::EncodedBatch;
use crate::quantizer::{self, float_vec};

/// Interleaved classes of cells (row parity × column parity): no two cells of a class touch,
/// not even at a corner.
const CLASSES: usize = 4;

/// The share of an image's error after every move, at or below which the cells that decoded
/// worse are left moved instead of put back and measured by a third decode. Putting them back
/// gives back less than their excess (the moves of their neighbours helped through them): on
/// the development photographs at quality 90, where every image's excess is 0.2–0.9% of its
/// error, the third decode gained 0.007 dB (docs/BENCHMARKS.md, "Refinement's third decode
/// by its stake").
const PUT_BACK_STAKE: f64 = 0.01;

/// True when the cells that decoded worse after the moves (`moved` against `before`, per cell,
/// unrounded, in step) add more than [`PUT_BACK_STAKE`] of the image's error after them: only
/// then is putting them back worth decoding the image a third time.
fn worth_putting_back(moved: &[f64], before: impl Iterator<Item = f64>) -> bool {
    let (mut stake, mut total) = (0.0, 0.0);
    for (&m, b) in moved.iter().zip(before) {
        total += m;
        if m > b {
            stake += m - b;
        }
    }
    stake > PUT_BACK_STAKE * total
}

/// How refinement searches.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refinement {
    /// Entries each cell tries at its last level, its present one among them (1 or less: no
    /// change).
    pub candidates: usize,
    /// Judge them as [`crate::linear`] estimates them (on a model with the linear path)
    /// instead of decoding each.
    pub linear: bool,
    /// Keep the images' last decode in 8 bits where it is of the indices refinement leaves
    /// (the restoration filters are fitted to it).
    pub keep: bool,
}

/// Refines the last level each cell uses of `encoded`, the indices of a batch of images at
/// most `m` levels deep, quantized from the encoder's `latents` (`[b, d, h, w]`) of
/// `originals` (padded there; the images' own sizes bound the error). `depths` holds each image's
/// per-cell depths as rate control chose them, empty where every cell uses all `m`. Each cell
/// tries the entries nearest its residual at its last level and keeps the one that decodes
/// closest, as `how` says. Returns, for each image, its decode in 8 bits where refinement
/// already made the decode of the indices it leaves (so the encoder need not decode again),
/// `None` elsewhere.
pub(crate) fn refine_last_levels(
    model: &Model,
    latents: Tensor<4>,
    originals: &[&Rgb],
    encoded: &mut EncodedBatch,
    (depths, m): (&[Vec<u8>], usize),
    how: Refinement,
) -> Result<Vec<Option<Rgb>>> {
    let Refinement {
        candidates,
        linear,
        keep,
    } = how;
    let candidates = candidates.min(model.config.codebook_size);
    let none = || vec![None; originals.len()];
    if candidates <= 1 || m == 0 {
        return Ok(none());
    }
    let (gh, gw) = encoded.grid;
    let cells = gh * gw;
    // Where each cell's refined index sits in its image's level-major layout.
    let slots: Vec<Vec<usize>> = depths
        .iter()
        .map(|d| {
            (0..cells)
                .map(|c| (d.get(c).map_or(m, |&d| d as usize).max(1) - 1) * cells + c)
                .collect()
        })
        .collect();
    let mixed = depths.iter().any(|d| !d.is_empty());
    let full: Vec<Vec<u8>> = depths
        .iter()
        .map(|d| {
            if d.is_empty() {
                vec![m as u8; cells]
            } else {
                d.clone()
            }
        })
        .collect();
    let search = Search {
        candidates: nearest_entries(model, latents, encoded, &slots, candidates)?,
        per_cell: candidates,
        slots,
        cells,
        columns: gw,
    };
    let cell_depths = mixed.then_some(full.as_slice());
    if let (true, Some(drawn)) = (linear, Drawing::of(model)) {
        let at = (cell_depths, m);
        return refine_linear(model, &drawn, originals, encoded, &search, at, keep);
    }
    refine_decoding(model, originals, encoded, &search, cell_depths, m)?;
    Ok(none())
}

/// Refinement by decoding each class's candidates in turn.
fn refine_decoding(
    model: &Model,
    originals: &[&Rgb],
    encoded: &mut EncodedBatch,
    search: &Search,
    cell_depths: Option<&[Vec<u8>]>,
    m: usize,
) -> Result<()> {
    let decode = |indices: &[Vec<u32>]| {
        model.cell_errors(indices, cell_depths, encoded.grid, m, originals, false)
    };
    let decode_errors =
        |indices: &[Vec<u32>]| -> Result<Vec<Vec<f64>>> { Ok(decode(indices)?.unrounded) };
    let start = decode(&encoded.indices)?;
    let mut current = encoded.indices.clone();
    let mut errors = start.unrounded.clone();
    for class in 0..CLASSES {
        // Each class is tried against the others as they now stand.
        if class > 0 {
            errors = decode_errors(&current)?;
        }
        search.refine_class(class, &mut current, &errors, &decode_errors)?;
    }

    // Choices made class by class can, together, decode worse than they each promised: an
    // image whose refined total, as written, is not better keeps its original indices.
    let end = decode(&current)?.written;
    for (i, img) in current.into_iter().enumerate() {
        let before: f64 = start.written[i].iter().sum();
        let after: f64 = end[i].iter().sum();
        if after < before {
            encoded.indices[i] = img;
        }
    }
    Ok(())
}

/// Refinement through the linear path, in at most three decodes whatever the candidates: one
/// estimates every candidate of every cell ([`linear::estimate`]) and every cell takes its best
/// at once; the second measures that, and the cells it made worse go back (unless the moves
/// improved the image and those cells hold at most [`PUT_BACK_STAKE`] of its error); the third
/// measures the result. Each image keeps the best of those measured (its original indices unless one of
/// the others decodes better). Only the images a step changes are decoded again: most 32×32
/// images end with the indices of one of the first two decodes.
fn refine_linear(
    model: &Model,
    drawn: &Drawing,
    originals: &[&Rgb],
    encoded: &mut EncodedBatch,
    search: &Search,
    (depths, m): (Option<&[Vec<u8>]>, usize),
    keep: bool,
) -> Result<Vec<Option<Rgb>>> {
    let (cells, per, patch) = (search.cells, search.per_cell, drawn.patch);
    let shift = |i: usize, c: usize, moves: &mut [f32], _: &mut Vec<f32>| {
        let slot = search.slots[i][c];
        let level = slot / cells;
        let present = drawn.entry(level, encoded.indices[i][slot]);
        let tried = &search.candidates[(i * cells + c) * per..][..per];
        for (moved, &e) in moves.chunks_exact_mut(patch).zip(tried) {
            for ((s, &v), &p) in moved.iter_mut().zip(drawn.entry(level, e)).zip(present) {
                *s = v - p;
            }
        }
    };
    let est = linear::estimate(model, originals, (&*encoded, depths, m), per, shift)?;
    let grid = encoded.grid;
    let mut trial = encoded.indices.clone();
    for (i, img) in trial.iter_mut().enumerate() {
        for c in 0..cells {
            let errors = &est.variants[i][c * per..][..per];
            let best = (1..per).fold(0, |b, j| if errors[j] < errors[b] { j } else { b });
            img[search.slots[i][c]] = search.candidates[(i * cells + c) * per + best];
        }
    }
    // Cells moved together can undo each other through the convolutions: a cell that decodes
    // worse than before goes back to its entry (judged before rounding, as every choice of the
    // encoder is, so that backends agree at near ties), and each image keeps whichever of the
    // three decodes best, as written. An image the moves already improved keeps them all,
    // undecoded a third time, where the cells that decoded worse hold too little of its error
    // to be worth it.
    let total = |e: &[f64]| e.iter().sum::<f64>();
    let n = trial.len();
    let changed: Vec<usize> = (0..n).filter(|&i| trial[i] != encoded.indices[i]).collect();
    let mut second = measure(model, &trial, &changed, depths, (grid, m), originals, keep)?;
    let mut mixed = trial.clone();
    for (i, img) in mixed.iter_mut().enumerate() {
        let Some(moved) = &second[i] else { continue };
        let before = est.variants[i].iter().step_by(per);
        let improved = total(&moved.written) < total(&est.written[i]);
        if improved && !worth_putting_back(&moved.unrounded, before.clone().copied()) {
            continue;
        }
        let worse = moved.unrounded.iter().zip(before).map(|(a, b)| a > b);
        for (&slot, _) in search.slots[i].iter().zip(worse).filter(|(_, w)| *w) {
            img[slot] = encoded.indices[i][slot];
        }
    }
    let third: Vec<usize> = (0..n)
        .filter(|&i| mixed[i] != trial[i] && mixed[i] != encoded.indices[i])
        .collect();
    let mut last = measure(model, &mixed, &third, depths, (grid, m), originals, keep)?;
    let mut decoded = Vec::with_capacity(originals.len());
    for (i, (trial, mixed)) in trial.into_iter().zip(mixed).enumerate() {
        let start = total(&est.written[i]);
        let (moved, moved_image) = match second[i].take() {
            Some(d) => (total(&d.written), d.image),
            None => (start, None),
        };
        // An image not decoded a third time kept every move (the second decode's) or none
        // (the first's).
        let (kept, kept_image) = match last[i].take() {
            Some(d) => (total(&d.written), d.image),
            None if mixed == trial => (moved, None),
            None => (start, None),
        };
        if kept < start && kept <= moved {
            let same = mixed == trial;
            encoded.indices[i] = mixed;
            decoded.push(if same { moved_image } else { kept_image });
        } else if moved < start {
            // The moves kept whole: the second decode is this image's as written.
            encoded.indices[i] = trial;
            decoded.push(moved_image);
        } else {
            decoded.push(None);
        }
    }
    Ok(decoded)
}

/// One image's decode, measured: its error per cell both ways ([`crate::inference::CellErrors`])
/// and, where asked for, the image in 8 bits.
struct Measured {
    unrounded: Vec<f64>,
    written: Vec<f64>,
    image: Option<Rgb>,
}

/// The images `which` of `indices` decoded together and measured against their `originals`
/// (each cell at `depths`, or every cell at `m`, on a grid of `grid` cells), in place: `None`
/// for every other image; with `keep`, each with its image in 8 bits.
fn measure(
    model: &Model,
    indices: &[Vec<u32>],
    which: &[usize],
    depths: Option<&[Vec<u8>]>,
    (grid, m): ((usize, usize), usize),
    originals: &[&Rgb],
    keep: bool,
) -> Result<Vec<Option<Measured>>> {
    let mut out: Vec<Option<Measured>> = (0..indices.len()).map(|_| None).collect();
    if which.is_empty() {
        return Ok(out);
    }
    let some: Vec<Vec<u32>> = which.iter().map(|&i| indices[i].clone()).collect();
    let some_depths: Option<Vec<Vec<u8>>> =
        depths.map(|d| which.iter().map(|&i| d[i].clone()).collect());
    let some_originals: Vec<&Rgb> = which.iter().map(|&i| originals[i]).collect();
    let e = model.cell_errors(
        &some,
        some_depths.as_deref(),
        grid,
        m,
        &some_originals,
        keep,
    )?;
    let mut images = e.images.into_iter();
    for ((&i, unrounded), written) in which.iter().zip(e.unrounded).zip(e.written) {
        let image = images.next();
        out[i] = Some(Measured {
            unrounded,
            written,
            image,
        });
    }
    Ok(out)
}

/// Each image's error per cell, as the given indices decode.
type DecodeErrors<'a> = dyn Fn(&[Vec<u32>]) -> Result<Vec<Vec<f64>>> + 'a;

/// What one refinement searches: each cell's candidate entries and where they go.
struct Search {
    /// `per_cell` entries for every cell of the batch, image-major (see [`nearest_entries`]).
    candidates: Vec<u32>,
    per_cell: usize,
    /// Per image, where each cell's refined index sits (level · cells + cell).
    slots: Vec<Vec<usize>>,
    cells: usize,
    columns: usize,
}

impl Search {
    /// Tries every candidate for the cells of one class (`errors`: each cell's error as
    /// `current` decodes) and keeps, per cell, whichever decoded closest.
    fn refine_class(
        &self,
        class: usize,
        current: &mut [Vec<u32>],
        errors: &[Vec<f64>],
        decode_errors: &DecodeErrors,
    ) -> Result<()> {
        let (cells, gw, slots) = (self.cells, self.columns, &self.slots);
        let in_class = |c: &usize| ((c / gw) % 2) * 2 + (c % gw) % 2 == class;
        let mut best: Vec<Vec<(f64, u32)>> = current
            .iter()
            .zip(errors)
            .zip(slots)
            .map(|((idx, err), slot)| (0..cells).map(|c| (err[c], idx[slot[c]])).collect())
            .collect();
        for j in 1..self.per_cell {
            let mut trial = current.to_vec();
            for (i, img) in trial.iter_mut().enumerate() {
                for c in (0..cells).filter(in_class) {
                    img[slots[i][c]] = self.candidates[(i * cells + c) * self.per_cell + j];
                }
            }
            let trial_errors = decode_errors(&trial)?;
            for (i, errs) in trial_errors.iter().enumerate() {
                for c in (0..cells).filter(in_class) {
                    if errs[c] < best[i][c].0 {
                        best[i][c] = (errs[c], trial[i][slots[i][c]]);
                    }
                }
            }
        }
        for ((img, best), slot) in current.iter_mut().zip(&best).zip(slots) {
            for c in (0..cells).filter(in_class) {
                img[slot[c]] = best[c].1;
            }
        }
        Ok(())
    }
}

/// For every cell of the batch (image-major, then row-major), the `candidates` entries nearest
/// the residual the levels before its slot leave, of the codebook of its slot (`slots[i][c]`:
/// level · cells + c), nearest first; the cell's present entry is always among them, first.
fn nearest_entries(
    model: &Model,
    latents: Tensor<4>,
    encoded: &EncodedBatch,
    slots: &[Vec<usize>],
    candidates: usize,
) -> Result<Vec<u32>> {
    let codebooks = model.net.codebooks().ok_or(Error::NotQuantized)?;
    let [_, k, d] = codebooks.dims();
    let books = float_vec(codebooks);
    let rows = float_vec(latents_to_rows(latents));
    let (gh, gw) = encoded.grid;
    let cells = gh * gw;
    let entry = |l: usize, e: u32| &books[(l * k + e as usize) * d..(l * k + e as usize + 1) * d];
    let level = |at: usize| slots[at / cells][at % cells] / cells;
    // What each cell leaves to quantize at its slot's level, image-major.
    let mut residuals = vec![0f32; rows.len()];
    residuals.par_chunks_mut(d).enumerate().for_each(|(at, r)| {
        let (i, c) = (at / cells, at % cells);
        let before = (0..level(at)).map(|l| entry(l, encoded.indices[i][l * cells + c]));
        r.copy_from_slice(&quantizer::residual(&rows[at * d..(at + 1) * d], before));
    });
    // On the CPU path the entries worth measuring exactly are shortlisted by products, level
    // by level: twice as many as asked for, so that rounding in the products drops none but
    // near-duplicates of the last one kept.
    let listed = (2 * candidates).min(k);
    let shortlists = model.cpu.as_ref().and_then(|n| n.books.as_ref()).map(|b| {
        let mut lists = vec![0u32; residuals.len() / d * listed];
        for l in 0..model.config.num_codebooks {
            let at: Vec<usize> = (0..residuals.len() / d)
                .filter(|&a| level(a) == l)
                .collect();
            let rows: Vec<f32> = at
                .iter()
                .flat_map(|&a| &residuals[a * d..(a + 1) * d])
                .copied()
                .collect();
            for (a, list) in at.iter().zip(b.shortlist(l, &rows, listed).chunks(listed)) {
                lists[a * listed..(a + 1) * listed].copy_from_slice(list);
            }
        }
        lists
    });
    let mut out = vec![0u32; encoded.indices.len() * cells * candidates];
    // Cells are independent: threads take them in turn, each with its own distance list.
    let each = out.par_chunks_mut(candidates).enumerate();
    each.for_each_init(Vec::new, |dist: &mut Vec<(f32, u32)>, (at, out)| {
        let (i, c) = (at / cells, at % cells);
        let slot = slots[i][c];
        let (l, present) = (slot / cells, encoded.indices[i][slot]);
        let r = &residuals[at * d..(at + 1) * d];
        let measured = |e: u32| (quantizer::squared_distance(r, entry(l, e)), e);
        dist.clear();
        match &shortlists {
            Some(lists) => dist.extend(
                lists[at * listed..(at + 1) * listed]
                    .iter()
                    .map(|&e| measured(e)),
            ),
            None => dist.extend((0..k as u32).map(measured)),
        }
        let n = candidates.min(dist.len());
        dist.select_nth_unstable_by(n - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        dist[..n].sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        out[0] = present;
        let others = dist[..n].iter().map(|&(_, e)| e).filter(|&e| e != present);
        for (o, e) in out[1..].iter_mut().zip(others) {
            *o = e;
        }
    });
    Ok(out)
}

#[cfg(all(test, feature = "embedded-model"))]
mod tests {
    use super::*;

    /// A third decode is worth it only where the cells that decoded worse add more than the
    /// stake's share of the image's error after the moves.
    #[test]
    fn cells_put_back_only_where_their_excess_is_worth_a_decode() {
        let moved = [10.0, 10.0, 10.0, 10.0];
        let before = |last: f64| [10.0, 12.0, 10.0, last].into_iter();
        // Excess 0.1 of 40: a quarter of a per cent.
        assert!(!worth_putting_back(&moved, before(9.9)));
        // 0.41: over 1% of the 40 after the moves, under 1% of the 41.59 before them.
        assert!(worth_putting_back(&moved, before(9.59)));
        // 1 of 40.
        assert!(worth_putting_back(&moved, before(9.0)));
        // No cell worse.
        assert!(!worth_putting_back(&moved, [11.0; 4].into_iter()));
    }

    /// A cell's candidates are its present entry, then the nearest others, distinct, nearest
    /// first, from the codebook of the level its slot names.
    #[test]
    fn candidates_start_with_the_present_entry_then_the_nearest_others() {
        let device = Device::flex();
        let model = Model::load_default(&device).unwrap();
        let values: Vec<f32> = (0..2 * 3 * 32 * 32)
            .map(|i| ((i * 37 % 251) as f32) / 250.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(values, [2, 3, 32, 32]), &device);
        let encoded = model.encode_indices(x.clone(), 2, 1).unwrap();
        let cells = 16;
        // Image 0 at level 1 (the second) everywhere; image 1 mixes levels 0 and 1.
        let slots = vec![
            (0..cells).map(|c| cells + c).collect::<Vec<_>>(),
            (0..cells).map(|c| (c % 2) * cells + c).collect(),
        ];
        let k = 6;
        let cand =
            nearest_entries(&model, model.net.encode(x.clone()), &encoded, &slots, k).unwrap();
        assert_eq!(cand.len(), 2 * cells * k);

        let books = float_vec(model.net.codebooks().unwrap());
        let rows = float_vec(latents_to_rows(model.net.encode(x)));
        let (size, d) = (model.config.codebook_size, model.config.latent_dim);
        let entry = |l: usize, e: u32| &books[(l * size + e as usize) * d..][..d];
        for (i, slot) in slots.iter().enumerate() {
            for (c, &slot) in slot.iter().enumerate() {
                let level = slot / cells;
                let mut r = rows[(i * cells + c) * d..][..d].to_vec();
                if level == 1 {
                    let first = entry(0, encoded.indices[i][c]);
                    r.iter_mut().zip(first).for_each(|(v, e)| *v -= e);
                }
                let dist = |e: u32| -> f32 {
                    r.iter()
                        .zip(entry(level, e))
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum()
                };
                let got = &cand[(i * cells + c) * k..][..k];
                assert_eq!(got[0], encoded.indices[i][slot], "the present entry first");
                let mut seen = got.to_vec();
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), k, "distinct: {got:?}");
                let others = &got[1..];
                assert!(
                    others.windows(2).all(|w| dist(w[0]) <= dist(w[1])),
                    "nearest first"
                );
                // No entry outside the list (the present one aside) is nearer than its last.
                let worst = dist(others[k - 2]);
                let nearer = (0..size as u32)
                    .filter(|e| !got.contains(e) && dist(*e) < worst)
                    .count();
                assert_eq!(nearer, 0, "image {i} cell {c}");
            }
        }
    }

    /// Refinement decodes again only the images a step changed, on their own; the archives stay
    /// those of decoding every image only if an image decodes and measures the same whatever
    /// images share its pass (on the CPU path, which this is).
    #[test]
    fn some_images_measure_as_they_do_among_all() {
        let model = Model::load_default(&Device::flex()).unwrap();
        let originals: Vec<Rgb> = (0..5u32)
            .map(|s| {
                crate::restore::tests::image(32, 32, |x, y, c| {
                    (x * 7 + y * (3 + s) + c as u32 * 40) as u8
                })
            })
            .collect();
        let originals: Vec<&Rgb> = originals.iter().collect();
        let c = &model.config;
        let (k, m, side) = (c.codebook_size, c.num_codebooks, 32 / c.grid_factor);
        let cells = side * side;
        let indices: Vec<Vec<u32>> = (0..5)
            .map(|s| {
                (0..m * cells)
                    .map(|j| ((j * 131 + s * 17) % k) as u32)
                    .collect()
            })
            .collect();
        let depths: Vec<Vec<u8>> = (0..5)
            .map(|s| (0..cells).map(|c| 1 + ((c + s) % m) as u8).collect())
            .collect();
        let grid = (side, side);
        for depths in [None, Some(depths.as_slice())] {
            let all = model
                .cell_errors(&indices, depths, grid, m, &originals, true)
                .unwrap();
            let some = measure(
                &model,
                &indices,
                &[1, 3],
                depths,
                (grid, m),
                &originals,
                true,
            )
            .unwrap();
            for (i, got) in some.into_iter().enumerate() {
                match got {
                    Some(got) => {
                        assert!([1, 3].contains(&i), "image {i} was measured, not asked for");
                        assert_eq!(got.unrounded, all.unrounded[i], "image {i}");
                        assert_eq!(got.written, all.written[i], "image {i}");
                        assert_eq!(got.image.as_ref(), Some(&all.images[i]), "image {i}");
                    }
                    None => assert!(![1, 3].contains(&i), "image {i} was not measured"),
                }
            }
        }
    }
}
