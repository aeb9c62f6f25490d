//! The layers of the CPU path against their definitions, written out as loops.
use super::*;

/// A direct convolution, the definition, to check the product form against.
fn direct_conv(x: &Map, w: &[f32], c_out: usize, k: usize, s: usize, p: usize) -> Map {
    let oh = (x.h + 2 * p - k) / s + 1;
    let ow = (x.w + 2 * p - k) / s + 1;
    let mut data = vec![0.0; x.b * oh * ow * c_out];
    for b in 0..x.b {
        for oy in 0..oh {
            for ox in 0..ow {
                for o in 0..c_out {
                    let mut sum = 0.0f64;
                    for i in 0..x.c {
                        for ky in 0..k {
                            for kx in 0..k {
                                let y = (oy * s + ky) as isize - p as isize;
                                let xx = (ox * s + kx) as isize - p as isize;
                                if y < 0 || xx < 0 || y >= x.h as isize || xx >= x.w as isize {
                                    continue;
                                }
                                let v =
                                    x.data[((b * x.h + y as usize) * x.w + xx as usize) * x.c + i];
                                sum += (v * w[((o * x.c + i) * k + ky) * k + kx]) as f64;
                            }
                        }
                    }
                    data[((b * oh + oy) * ow + ox) * c_out + o] = sum as f32;
                }
            }
        }
    }
    Map {
        data,
        b: x.b,
        h: oh,
        w: ow,
        c: c_out,
    }
}

fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn close(a: &Map, b: &Map) {
    assert_eq!((a.b, a.h, a.w, a.c), (b.b, b.h, b.w, b.c));
    let worst = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        // f32::max passes over a NaN; a NaN here is the worst difference there is.
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        );
    assert!(worst < 1e-4, "largest difference {worst}");
}

#[test]
fn a_convolution_as_a_product_is_the_direct_convolution() {
    for (k, s, p, h, w) in [(3, 2, 1, 7, 6), (3, 1, 1, 4, 5), (1, 1, 0, 3, 3)] {
        let x = Map {
            data: values(2 * h * w * 5, 1),
            b: 2,
            h,
            w,
            c: 5,
        };
        let weight = values(4 * 5 * k * k, 2);
        let conv = Conv::new(&weight, [4, 5, k, k], None, s, p);
        let want = direct_conv(&x, &weight, 4, k, s, p);
        // One product, then chunks of one row and of three; each time the kept im2col buffer
        // holds NaNs, so an element the fill did not write would reach the output.
        for chunk in [CHUNK_FLOATS, 1, 3 * k * k * 5] {
            COL.set(vec![f32::NAN; 4 * 9 * 5 * h * w]);
            close(&conv.forward_in_chunks(&x, chunk, false), &want);
        }
        // The relu taken while filling the buffer is the relu of the input (`values` has
        // negatives, so the two differ).
        let want = direct_conv(&x.clone().relu(), &weight, 4, k, s, p);
        assert_ne!(want, direct_conv(&x, &weight, 4, k, s, p));
        COL.set(vec![f32::NAN; 4 * 9 * 5 * h * w]);
        close(&conv.forward_relu(&x), &want);
    }
}

#[test]
fn a_3x3_convolution_by_winograd_is_the_direct_convolution() {
    // Odd and even sizes (tiles of two rows and columns overhang), and a 1×1 image.
    for (b, h, w) in [(2, 4, 4), (1, 5, 3), (3, 1, 1)] {
        let (ci, co) = (5, winograd::MIN_OUT);
        let x = Map {
            data: values(b * h * w * ci, 6),
            b,
            h,
            w,
            c: ci,
        };
        let weight = values(co * ci * 9, 7);
        let conv = Conv::new(&weight, [co, ci, 3, 3], None, 1, 1);
        assert!(conv.winograd.is_some());
        for relu in [false, true] {
            let input = if relu { x.clone().relu() } else { x.clone() };
            let want = direct_conv(&input, &weight, co, 3, 1, 1);
            let tile_row = 16 * w.div_ceil(2) * co;
            for chunk in [CHUNK_FLOATS, 1, 2 * tile_row] {
                let winograd = conv.winograd.as_ref().unwrap();
                close(&with_nan_slabs(|| winograd.forward(&x, chunk, relu)), &want);
            }
        }
        close(&conv.forward(&x), &direct_conv(&x, &weight, co, 3, 1, 1));
        // A map without columns has no tiles and an empty output of its shape.
        let empty = Map {
            data: Vec::new(),
            w: 0,
            ..x.clone()
        };
        let none = conv
            .winograd
            .as_ref()
            .unwrap()
            .forward(&empty, CHUNK_FLOATS, false);
        assert_eq!((none.data.len(), none.b, none.h, none.w), (0, b, h, 0));
        let relu = x.clone().relu();
        close(
            &conv.forward_relu(&x),
            &direct_conv(&relu, &weight, co, 3, 1, 1),
        );
    }
}

#[test]
fn upsampling_by_phases_is_the_transposed_convolution() {
    // Odd and even heights and widths: Winograd's tiles of two rows and columns then overhang.
    for (b, h, w, ci, co) in [
        (2, 3, 4, 5, 3),
        (2, 4, 5, 3, 2),
        (1, 1, 1, 2, 3),
        (2, 3, 5, 3, 16),
    ] {
        let x = Map {
            data: values(b * h * w * ci, 3),
            b,
            h,
            w,
            c: ci,
        };
        let weight = values(ci * co * 16, 4);
        let bias = values(co, 5);
        let want = transposed_conv(&x, &weight, &bias, co);
        let up = Upsample::new(&weight, [ci, co, 4, 4], Some(bias.clone()));
        // One band, then bands of one, two and three input rows (across the images).
        let row = w * 16 * co;
        for chunk in [CHUNK_FLOATS, 1, 4 * row, 5 * row] {
            close(&up.forward_in_bands(&x, chunk), &want);
        }
        // By Winograd's F(2×2, 2×2) (forced where the layer is too narrow to choose it), in
        // one band, then bands of one and two tile rows, each thread's kept buffer full of
        // NaNs first, so that a transformed patch left unwritten would reach the output.
        let winograd = Winograd::new((2, 2), [ci, co], bias.clone(), |phase, ty, tx, i, o| {
            let (py, px) = (phase / 2, phase % 2);
            weight[(i * co + o) * 16 + upsample::tap(py, px, ty, tx)]
        });
        assert_eq!(up.winograd.is_some(), co >= winograd::MIN_OUT);
        let tile_row = 36 * w.div_ceil(2) * co;
        for chunk in [CHUNK_FLOATS, 1, 2 * tile_row] {
            close(
                &with_nan_slabs(|| winograd.forward(&x, chunk, false)),
                &want,
            );
        }
        close(&up.forward(&x), &want);
    }
}

/// `f` run in a pool of two threads whose kept patch buffers hold NaNs: the buffers that
/// `Winograd::forward`'s products use are the pool's threads', not the caller's.
fn with_nan_slabs(f: impl FnOnce() -> Map + Send) -> Map {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.broadcast(|_| winograd::SLAB.set(vec![f32::NAN; 4096]));
    pool.install(f)
}

/// A transposed convolution (4×4, stride 2, padding 1) by its definition: each input pixel
/// scattered through the kernel.
fn transposed_conv(x: &Map, weight: &[f32], bias: &[f32], co: usize) -> Map {
    let (b, h, w, ci) = (x.b, x.h, x.w, x.c);
    let mut want = Map {
        data: vec![0.0; b * 4 * h * w * co],
        b,
        h: 2 * h,
        w: 2 * w,
        c: co,
    };
    for (i, v) in want.data.iter_mut().enumerate() {
        *v = bias[i % co];
    }
    for bi in 0..b {
        for iy in 0..h {
            for ix in 0..w {
                for ky in 0..4 {
                    for kx in 0..4 {
                        let (y, xx) = (2 * iy + ky, 2 * ix + kx);
                        if y < 1 || xx < 1 || y > 2 * h || xx > 2 * w {
                            continue;
                        }
                        for i in 0..ci {
                            for o in 0..co {
                                let at = ((bi * 2 * h + y - 1) * 2 * w + xx - 1) * co + o;
                                want.data[at] += x.data[((bi * h + iy) * w + ix) * ci + i]
                                    * weight[((i * co + o) * 4 + ky) * 4 + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    want
}

#[test]
fn shuffle_undoes_unshuffle_in_the_order_of_the_burn_layers() {
    let x = Map {
        data: values(2 * 8 * 4 * 3, 6),
        b: 2,
        h: 8,
        w: 4,
        c: 3,
    };
    let cells = unshuffle(&x, 4);
    assert_eq!((cells.h, cells.w, cells.c), (2, 1, 48));
    // Channel 1, patch row 2, column 3 of the second image's lower cell.
    assert_eq!(
        cells.data[(2 + 1) * 48 + (4 + 2) * 4 + 3],
        x.data[((8 + 6) * 4 + 3) * 3 + 1]
    );
    assert_eq!(shuffle(cells, 4), x);
}

#[test]
fn a_batch_runs_in_groups_of_whole_images_and_comes_back_in_order() {
    // 128×128 images: two to a group, so five images run as 2 + 2 + 1.
    let x = Map {
        data: (0..5 * 128 * 128).map(|v| v as f32).collect(),
        b: 5,
        h: 128,
        w: 128,
        c: 1,
    };
    let sizes = std::sync::Mutex::new(Vec::new());
    let y = in_groups(&x, 1, |part| {
        sizes.lock().unwrap().push(part.b);
        Map {
            data: part.data.iter().map(|v| v * 2.0).collect(),
            ..part.clone()
        }
    });
    assert_eq!(*sizes.lock().unwrap(), [2, 2, 1]);
    assert_eq!((y.b, y.h, y.w, y.c), (5, 128, 128, 1));
    assert!(y.data.iter().zip(&x.data).all(|(a, b)| *a == 2.0 * b));
    // Each latent position stands for 64 pixels: 4×4 latents are 32×32 images, 32 to a group,
    // so 600 of them run as 18 groups of 32 and one of 24.
    let z = Map {
        data: vec![1.0; 600 * 16],
        b: 600,
        h: 4,
        w: 4,
        c: 1,
    };
    sizes.lock().unwrap().clear();
    let out = in_groups(&z, 64, |part| {
        sizes.lock().unwrap().push(part.b);
        part.clone()
    });
    let mut expected = vec![32; 18];
    expected.push(24);
    assert_eq!(*sizes.lock().unwrap(), expected);
    assert_eq!(out, z);
}
