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
//! original indices unless the refined ones decode better overall. Refinement thus never
//! loses to the search alone on any image, at any depth or target, whatever the decoder; a
//! PSNR target met before it is met after it.

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::image_io::Rgb;
use crate::model::{EncodedBatch, Model, latents_to_rows};
use crate::quantizer::{self, float_vec};

/// Interleaved classes of cells (row parity × column parity): no two cells of a class touch,
/// not even at a corner.
const CLASSES: usize = 4;

/// Refines the last level each cell uses of `encoded`, the indices of a batch of images at
/// most `m` levels deep, quantized from the encoder's `latents` (`[b, d, h, w]`) of
/// `originals` (padded there; the images' own sizes bound the error). `depths` holds each image's
/// per-cell depths as rate control chose them, empty where every cell uses all `m`. Each cell
/// tries the `candidates` entries nearest its residual at its last level (1 or less: no
/// change) and keeps the one that decodes closest.
pub(crate) fn refine_last_levels(
    model: &Model,
    latents: Tensor<4>,
    originals: &[&Rgb],
    encoded: &mut EncodedBatch,
    depths: &[Vec<u8>],
    m: usize,
    candidates: usize,
) -> Result<()> {
    let candidates = candidates.min(model.config.codebook_size);
    if candidates <= 1 || m == 0 {
        return Ok(());
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
    let decode = |indices: &[Vec<u32>]| {
        let cell_depths = mixed.then_some(full.as_slice());
        model.cell_errors(indices, cell_depths, encoded.grid, m, originals)
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
    let mut out = Vec::with_capacity(encoded.indices.len() * cells * candidates);
    let mut dist: Vec<(f32, u32)> = Vec::with_capacity(k);
    for ((i, idx), slot) in encoded.indices.iter().enumerate().zip(slots) {
        for (c, &slot) in slot.iter().enumerate() {
            let level = slot / cells;
            let r = quantizer::residual(
                &rows[(i * cells + c) * d..(i * cells + c + 1) * d],
                (0..level).map(|l| entry(l, idx[l * cells + c])),
            );
            let present = idx[slot];
            let book = &books[level * k * d..(level + 1) * k * d];
            dist.clear();
            dist.extend(
                book.chunks_exact(d)
                    .enumerate()
                    .map(|(e, v)| (quantizer::squared_distance(&r, v), e as u32)),
            );
            let n = candidates.min(dist.len());
            dist.select_nth_unstable_by(n - 1, |a, b| a.0.total_cmp(&b.0));
            dist[..n].sort_by(|a, b| a.0.total_cmp(&b.0));
            out.push(present);
            out.extend(
                dist[..n]
                    .iter()
                    .map(|&(_, e)| e)
                    .filter(|&e| e != present)
                    .take(candidates - 1),
            );
        }
    }
    Ok(out)
}

#[cfg(all(test, feature = "embedded-model"))]
mod tests {
    use super::*;

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
}
