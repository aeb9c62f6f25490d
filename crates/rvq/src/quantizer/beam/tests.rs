//! The beam search and its greedy follower, checked against exact distances, a full sort and
//! the plain greedy search.
use super::*;

/// One level of a beam one wide over a single 1-D cell at 0.5, with the device's dots off
/// by `noise` for the second entry: what it keeps.
fn keeps(entries: [f32; 2], noise: f32) -> u32 {
    let mut beam = BeamState::new(&[0.5], 1, 1);
    let norms: Vec<f32> = entries.iter().map(|e| e * e).collect();
    let dots = [0.5 * entries[0], 0.5 * entries[1] + noise];
    beam.advance(&dots, &entries, &norms, 1);
    beam.paths[0]
}

/// Backends sum the dots in other orders: a few ulps either way must not change what the
/// beam keeps, at an exact tie (broken by the entry's number) or near one.
#[test]
fn the_beam_ranks_by_exact_distances_not_by_the_devices_dots() {
    for noise in [-1e-6, 0.0, 1e-6] {
        // 0 and 1 are both 0.25 from 0.5.
        assert_eq!(keeps([0.0, 1.0], noise), 0, "tie, noise {noise}");
        // 0.999 is 0.249001 away: nearer by less than the noise moves the score.
        assert_eq!(
            keeps([0.0, 0.999], noise - 2e-3),
            1,
            "near tie, noise {noise}"
        );
    }
}

use super::super::test_values as values;

/// The shortlist is the `listed` nearest by the dots, ties taken in row and entry order,
/// whatever the number of entries (runs cut short, fewer runs than places).
#[test]
fn the_shortlist_is_the_nearest_first_in_row_and_entry_order() {
    let cases = [
        (70, 3, 5),
        (64, 4, 3),
        (4, 1, 2),
        (33, 2, 1000),
        (1, 3, 7),
        (45, 2, 9),
    ];
    for (k, width, ties) in cases {
        let cells = 3;
        let beam = BeamState {
            cells,
            dim: 1,
            width,
            depth: 1,
            level: 0,
            residuals: vec![0.0; cells * width],
            errors: values(k as u64, cells * width, ties),
            paths: vec![0; cells * width],
            next: Default::default(),
        };
        let dots = values(7 + k as u64, cells * width * k, ties);
        let norms = values(9, k, ties);
        // Whichever vectors the CPU has, the minima are the portable code's.
        for row in 0..cells * width {
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            let dots = &dots[row * k..(row + 1) * k];
            run_minima(beam.errors[row], dots, &norms, &mut fast);
            run_minima_in(beam.errors[row], dots, &norms, &mut plain);
            assert_eq!(fast, plain, "k {k}");
        }
        let mut work = Shortlist::default();
        for listed in [1, 2, 5, 8, 13].map(|l: usize| l.min(width * k)) {
            for cell in 0..cells {
                let rows = cell * width..(cell + 1) * width;
                beam.shortlist(&mut work, rows.clone(), &dots, &norms, listed);
                let mut all: Vec<(f32, usize, usize)> = rows
                    .flat_map(|row| (0..k).map(move |e| (row, e)))
                    .map(|(row, e)| {
                        let d = beam.errors[row] + norms[e] - 2.0 * dots[row * k + e];
                        (d, row, e)
                    })
                    .collect();
                // Stable: equal distances stay in row and entry order.
                all.sort_by(|a, b| a.0.total_cmp(&b.0));
                all.truncate(listed);
                assert_eq!(work.listed, all, "k {k} width {width} listed {listed}");
            }
        }
    }
}

/// Greedy's path followed alongside a beam is the greedy search's, on cells whose greedy
/// path leaves the beam (its own products) and on cells where it stays (the beam's).
#[test]
fn greedy_followed_alongside_a_beam_is_the_greedy_search() {
    let (n, d, k, depth, width) = (300, 6, 24, 5, 3);
    let latents: Vec<f32> = values(1, n * d, 1 << 20).iter().map(|v| v * 3.0).collect();
    let entries = values(2, depth * k * d, 1 << 20);
    let books = Books::new(&entries, [depth, k, d]);
    let norms: Vec<Vec<f32>> = entries
        .chunks(k * d)
        .map(|b| b.chunks(d).map(|e| e.iter().map(|v| v * v).sum()).collect())
        .collect();
    let mut beam = BeamState::new(&latents, d, depth);
    let mut along = GreedyAlong::new(&latents, d, depth);
    let (mut dots, mut left, mut stayed) = (Vec::new(), 0, 0);
    for level in 0..depth {
        books.dots_into(level, &beam.residuals, &mut dots);
        along.step(level, &beam, &dots, &books);
        let book = &entries[level * k * d..(level + 1) * k * d];
        beam.advance(&dots, book, &norms[level], width);
        along.follow(&beam);
        left += along.member.iter().filter(|m| m.is_none()).count();
        stayed += along.member.iter().filter(|m| m.is_some()).count();
    }
    assert!(left > 50 && stayed > 50, "left {left} stayed {stayed}");
    let want = books.greedy(&latents, depth);
    for (level, want) in want.iter().enumerate() {
        let got: Vec<u32> = (0..n).map(|c| along.paths[c * depth + level]).collect();
        assert_eq!(&got, want, "level {level}");
    }
}

/// The whole search on the CPU path, several blocks: at every depth each row's path is at
/// least as close as greedy search's, to the last bit (the greedy path it is checked
/// against is the one followed alongside the beam).
#[test]
fn the_beam_on_the_cpu_path_never_loses_to_greedy_at_any_depth() {
    let (n, d, k, depth) = (2 * BEAM_CELLS + 300, 6, 24, 5);
    let latents: Vec<f32> = values(3, n * d, 1 << 20).iter().map(|v| v * 3.0).collect();
    let entries = values(4, depth * k * d, 1 << 20);
    let books = Books::new(&entries, [depth, k, d]);
    let host: Vec<Vec<f32>> = entries.chunks(k * d).map(<[f32]>::to_vec).collect();
    let device = Device::flex();
    let rows = Tensor::<2>::from_data(TensorData::new(latents.clone(), [n, d]), &device);
    let codebooks = Tensor::<3>::from_data(TensorData::new(entries, [depth, k, d]), &device);
    let greedy = books.greedy(&latents, depth);
    let paths = quantize_beam(rows, &codebooks, (depth, 2), Some(&books), true);
    let mut closer = 0;
    for row in 0..n {
        let latent = &latents[row * d..(row + 1) * d];
        for p in 1..=depth {
            let theirs = path_error(latent, &host, greedy.iter().take(p).map(|l| l[row]));
            let ours = match paths.prefixes.get(p - 1) {
                Some(pre) => path_error(latent, &host, pre[row * p..][..p].iter().copied()),
                None => path_error(latent, &host, paths.levels.iter().map(|l| l[row])),
            };
            assert!(ours <= theirs, "row {row} depth {p}: {ours} > {theirs}");
            closer += usize::from(ours < theirs);
        }
    }
    assert!(
        closer > n / 10,
        "the beam is closer than greedy only {closer} times"
    );
}
