//! Training and evaluation data: CIFAR-10 in its official binary layout, or a folder of images
//! (listed by [`collect_images`]) cut into random crops. Images are held as 8-bit planar RGB
//! (`[3][h][w]`), as CIFAR stores them, and turned into `[b, 3, h, w]` tensors in [0, 1] a
//! batch at a time.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use rand::{Rng, RngExt};

use crate::error::{Error, Result};
use crate::image_io;

/// Side of a CIFAR-10 image, and of the crops a folder of images is cut into for training.
pub const CIFAR_SIDE: usize = 32;
/// Bytes of one CIFAR-10 record: a label, then the three planes.
pub const CIFAR_RECORD: usize = 1 + 3 * CIFAR_SIDE * CIFAR_SIDE;
/// The CIFAR-10 training files, in order.
pub const CIFAR_TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The CIFAR-10 test file.
pub const CIFAR_TEST_FILE: &str = "test_batch.bin";

/// Equally sized RGB images, planar, 8 bits per value.
#[derive(Clone, Debug, Default)]
pub struct ImageSet {
    /// Side length of every (square) image.
    pub size: usize,
    /// `len() × 3 × size × size` bytes.
    pub pixels: Vec<u8>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        if self.size == 0 {
            0
        } else {
            self.pixels.len() / self.image_bytes()
        }
    }

    /// True when the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes per image.
    pub fn image_bytes(&self) -> usize {
        3 * self.size * self.size
    }

    /// Image `i`'s planar bytes.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Image `i` as interleaved 8-bit RGB.
    pub fn rgb(&self, i: usize) -> image_io::Rgb {
        let plane = self.size * self.size;
        let img = self.image(i);
        let rgb = (0..plane)
            .flat_map(|p| [img[p], img[plane + p], img[2 * plane + p]])
            .collect();
        let side = self.size as u32;
        image_io::Rgb::new(side, side, rgb).expect("a set's images are size × size × 3 bytes")
    }

    /// The first `n` images (all of them when `n` is larger).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        ImageSet {
            size: self.size,
            pixels: self.pixels[..n * self.image_bytes()].to_vec(),
        }
    }

    /// Images `ids` as a `[b, 3, s, s]` tensor in [0, 1]; with `flips`, each image is mirrored
    /// left–right where its flag is set.
    pub fn batch(&self, ids: &[usize], flips: Option<&[bool]>, device: &Device) -> Tensor<4> {
        let s = self.size;
        let mut values = Vec::with_capacity(ids.len() * self.image_bytes());
        for (j, &i) in ids.iter().enumerate() {
            let img = self.image(i);
            let flip = flips.is_some_and(|f| f[j]);
            for row in img.chunks_exact(s) {
                if flip {
                    values.extend(row.iter().rev().map(|&v| v as f32 / 255.0));
                } else {
                    values.extend(row.iter().map(|&v| v as f32 / 255.0));
                }
            }
        }
        Tensor::from_data(TensorData::new(values, [ids.len(), 3, s, s]), device)
    }
}

/// A training set and a validation set.
#[derive(Clone, Debug)]
pub struct Splits {
    /// Images to train on.
    pub train: ImageSet,
    /// Images to validate on (never trained on).
    pub valid: ImageSet,
    /// What the data is, for the model card.
    pub description: String,
}

/// Reads one CIFAR-10 binary file.
pub fn read_cifar_file(path: &Path) -> Result<ImageSet> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_cifar(&bytes).map_err(|reason| Error::BadData {
        path: path.to_path_buf(),
        reason,
    })
}

/// Parses CIFAR-10 binary records (labels are checked, then dropped).
pub fn parse_cifar(bytes: &[u8]) -> std::result::Result<ImageSet, String> {
    if bytes.is_empty() {
        return Err("empty file: expected CIFAR-10 records of 3,073 bytes".into());
    }
    if !bytes.len().is_multiple_of(CIFAR_RECORD) {
        return Err(format!(
            "{} bytes is not a whole number of 3,073-byte CIFAR-10 records (truncated?)",
            bytes.len()
        ));
    }
    let mut pixels = Vec::with_capacity(bytes.len() / CIFAR_RECORD * (CIFAR_RECORD - 1));
    for (i, rec) in bytes.chunks_exact(CIFAR_RECORD).enumerate() {
        if rec[0] > 9 {
            return Err(format!(
                "record {i} has label {}, outside 0..=9: not a CIFAR-10 file",
                rec[0]
            ));
        }
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok(ImageSet {
        size: CIFAR_SIDE,
        pixels,
    })
}

/// True when `dir` looks like the CIFAR-10 binary folder.
pub fn is_cifar_dir(dir: &Path) -> bool {
    dir.join(CIFAR_TEST_FILE).is_file() || dir.join(CIFAR_TRAIN_FILES[0]).is_file()
}

/// The CIFAR-10 test set (`test_batch.bin`) of a CIFAR-10 folder.
pub fn cifar_test(dir: &Path) -> Result<ImageSet> {
    read_cifar_file(&require(dir, CIFAR_TEST_FILE)?)
}

fn require(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(Error::BadData {
            path: p,
            reason: "missing: expected the CIFAR-10 binary version (data_batch_1..5.bin, test_batch.bin)"
                .into(),
        })
    }
}

/// Training data from `path`: a CIFAR-10 binary folder (train on data_batch_1..5, validate
/// on the first `valid` test images) or a folder of PNG/JPEG images (`crops` random
/// `side`×`side` crops per image; every 20th crop is held out for validation). At a `side`
/// above 32, CIFAR-10's training images are laid out (`side`/32)² to a mosaic (in the
/// order of its files) and its validation images stay 32×32, so that its figures compare with any
/// other run's. `side` must be a multiple of 32 from 32 to [`MAX_CROP_SIDE`].
pub fn load_training(
    path: &Path,
    valid: usize,
    (crops, side): (usize, usize),
    rng: &mut impl Rng,
) -> Result<Splits> {
    check_crop_side(side)?;
    if !path.is_dir() {
        return Err(Error::BadData {
            path: path.to_path_buf(),
            reason: "not a folder: expected the CIFAR-10 binary folder or a folder of images"
                .into(),
        });
    }
    if is_cifar_dir(path) {
        let mut train = ImageSet {
            size: CIFAR_SIDE,
            pixels: Vec::new(),
        };
        for name in CIFAR_TRAIN_FILES {
            train
                .pixels
                .extend_from_slice(&read_cifar_file(&require(path, name)?)?.pixels);
        }
        let valid = cifar_test(path)?.take(valid);
        let count = train.len();
        let laid_out = if side == CIFAR_SIDE {
            String::new()
        } else {
            train = mosaics(&train, side);
            format!(
                ", laid out {0}×{0} to {1} mosaics of {side}×{side}",
                side / CIFAR_SIDE,
                train.len()
            )
        };
        return Ok(Splits {
            description: format!(
                "CIFAR-10 binary (data_batch_1..5.bin): {count} training images{laid_out}; validation: test_batch.bin images 0..{}",
                valid.len()
            ),
            train,
            valid,
        });
    }
    let files = collect_images(&[path.to_path_buf()])?;
    let all = crops_from_files(&files, side, crops, rng)?;
    let mut train = ImageSet {
        size: side,
        pixels: Vec::new(),
    };
    let mut held = train.clone();
    for i in 0..all.len() {
        let dst = if i % 20 == 19 { &mut held } else { &mut train };
        dst.pixels.extend_from_slice(all.image(i));
    }
    if train.is_empty() || held.is_empty() {
        return Err(Error::BadData {
            path: path.to_path_buf(),
            reason: "too few images to hold out a validation set (need at least 20 crops)".into(),
        });
    }
    Ok(Splits {
        description: format!(
            "{} images of a folder named {:?}, cut into {crops} random {side}×{side} crops each; every 20th crop held out",
            files.len(),
            path.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        ),
        train,
        valid: held,
    })
}

/// Training data from several sources, each as [`load_training`] reads it: the model trains
/// on all their training images together (a mixture, in proportion to their counts) and
/// validates on the first's validation images alone, so that a model fine-tuned on CIFAR-10
/// and photographs reports figures comparable with one trained on CIFAR-10 (give it first).
/// The other sources' validation images (a folder's every 20th crop) are not used. One source
/// is exactly [`load_training`]'s data, drawn with the same random numbers.
pub fn load_mixture(
    paths: &[PathBuf],
    valid: usize,
    crops: (usize, usize),
    rng: &mut impl Rng,
) -> Result<Splits> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(Error::BadData {
            path: PathBuf::new(),
            reason: "no training data given".into(),
        });
    };
    let mut splits = load_training(first, valid, crops, rng)?;
    for path in rest {
        let more = load_training(path, valid, crops, rng)?;
        splits.train.pixels.extend_from_slice(&more.train.pixels);
        splits.description = format!(
            "{}; and {} training images of {} (those held out unused)",
            splits.description,
            more.train.len(),
            more.description
        );
    }
    if !rest.is_empty() {
        splits.description += "; validation: the first source's only";
    }
    Ok(splits)
}

/// The largest training crop side (`rvq train --crop-size`).
pub const MAX_CROP_SIDE: usize = 512;

/// Refuses a crop side that is not a multiple of 32 from 32 to [`MAX_CROP_SIDE`]: a multiple
/// of the model's cell side for every shipped grid, and of CIFAR-10's side for its mosaics.
fn check_crop_side(side: usize) -> Result<()> {
    if side == 0 || !side.is_multiple_of(CIFAR_SIDE) || side > MAX_CROP_SIDE {
        return Err(Error::InvalidOption(format!(
            "a training crop of {side}×{side}: the side must be a multiple of {CIFAR_SIDE} from {CIFAR_SIDE} to {MAX_CROP_SIDE}"
        )));
    }
    Ok(())
}

/// `set`'s images (each `set.size` square) laid out `side / set.size` to a side in
/// `side`×`side` mosaics, row by row in the order given; images left over that fill no
/// mosaic are dropped. Training at a larger side shows the network cells whose
/// neighbourhood lies inside the image, as most of a photograph's do, where a 32×32 image
/// has three quarters of its cells on its border.
fn mosaics(set: &ImageSet, side: usize) -> ImageSet {
    let s = set.size;
    let per_side = side / s;
    let per = per_side * per_side;
    let count = set.len() / per;
    let mut pixels = vec![0u8; count * 3 * side * side];
    for (m, out) in pixels.chunks_exact_mut(3 * side * side).enumerate() {
        for t in 0..per {
            let img = set.image(m * per + t);
            let (ty, tx) = (t / per_side, t % per_side);
            for c in 0..3 {
                for y in 0..s {
                    let from = &img[(c * s + y) * s..][..s];
                    let at = (c * side + ty * s + y) * side + tx * s;
                    out[at..at + s].copy_from_slice(from);
                }
            }
        }
    }
    ImageSet { size: side, pixels }
}

/// The most bytes of training crops one folder may make (8 GiB, about 2.8 million 32×32
/// crops; training then holds them about twice, split into training and held-out sets): a
/// `--crops` beyond it is refused before any image is read, rather than failing an
/// allocation part way.
pub const MAX_CROP_BYTES: u64 = 8 << 30;

/// `crops` random `size`×`size` crops from each image file (images smaller than a crop are
/// refused; more than [`MAX_CROP_BYTES`] of crops in all too).
pub fn crops_from_files(
    files: &[PathBuf],
    size: usize,
    crops: usize,
    rng: &mut impl Rng,
) -> Result<ImageSet> {
    let bytes = (files.len() as u64)
        .saturating_mul(crops as u64)
        .saturating_mul((size * size * 3) as u64);
    if bytes > MAX_CROP_BYTES {
        return Err(Error::InvalidOption(format!(
            "{crops} crops of each of {} images would take {:.1} GiB, more than the {} GiB one folder's crops may; give fewer --crops",
            files.len(),
            bytes as f64 / (1u64 << 30) as f64,
            MAX_CROP_BYTES >> 30
        )));
    }
    let mut set = ImageSet {
        size,
        pixels: Vec::new(),
    };
    for f in files {
        // The folder walk collected JPEGs too (training data need not be lossless).
        let img = image_io::read_rgb(f, &image_io::Limits::default())?.image;
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w < size || h < size {
            return Err(Error::BadData {
                path: f.clone(),
                reason: format!("{w}×{h} is smaller than a {size}×{size} training crop"),
            });
        }
        for _ in 0..crops {
            let x0 = rng.random_range(0..=w - size);
            let y0 = rng.random_range(0..=h - size);
            for c in 0..3 {
                for y in y0..y0 + size {
                    for x in x0..x0 + size {
                        set.pixels.push(img.pixels()[(y * w + x) * 3 + c]);
                    }
                }
            }
        }
    }
    Ok(set)
}

/// A smooth, textured synthetic image (benchmarks and reference exports need no data set);
/// refuses a side of 0.
pub fn synthetic(width: u32, height: u32, seed: u32) -> Result<image_io::Rgb> {
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height {
        for x in 0..width {
            for c in 0..3u32 {
                let v = ((x * (3 + c) + y * (5 + seed % 7) + seed * 17) % 256) as f32;
                let w = ((x as f32 * 0.05 + c as f32).sin() * 60.0 + 128.0 + v * 0.25) as u32;
                rgb.push(w.min(255) as u8);
            }
        }
    }
    image_io::Rgb::new(width, height, rgb)
}

/// Expands `inputs` (files and folders) into the image files to process: folders are
/// searched recursively for PNG, JPEG and WebP files (by extension,
/// [`image_io::EXTENSIONS`]), files are taken as given. The result is sorted, so archives
/// built from it are reproducible.
pub fn collect_images(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(|e| Error::Io {
            path: input.clone(),
            source: e,
        })?;
        if meta.is_dir() {
            walk(input, &mut out)?;
        } else {
            out.push(input.clone());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Every PNG, JPEG and WebP file below `dir`, following symbolic links; a
/// link back to a folder above it is an error, not an endless walk. A dangling link is
/// skipped unless its name is an image's, which is listed and then fails when read, naming it.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let wanted = |path: &Path| {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        image_io::EXTENSIONS.contains(&ext.as_str())
    };
    for entry in walkdir::WalkDir::new(dir).follow_links(true) {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                let dangling = e
                    .io_error()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                    && path
                        .symlink_metadata()
                        .is_ok_and(|m| m.file_type().is_symlink());
                if dangling {
                    if wanted(&path) {
                        out.push(path);
                    }
                    continue;
                }
                return Err(Error::Io {
                    path,
                    source: e.into(),
                });
            }
        };
        if !entry.file_type().is_dir() && wanted(entry.path()) {
            out.push(entry.into_path());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_folder_linking_to_its_parent_is_an_error_not_an_endless_walk() {
        let dir = tempfile::TempDir::new().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::fs::write(dir.path().join("a/x.png"), b"not read here").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("a/up")).unwrap();
        let err = collect_images(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
        // A link elsewhere is followed.
        let other = tempfile::TempDir::new().unwrap();
        std::fs::write(other.path().join("y.png"), b"").unwrap();
        let clean = tempfile::TempDir::new().unwrap();
        std::os::unix::fs::symlink(other.path(), clean.path().join("there")).unwrap();
        // A dangling link is skipped, unless it names an image (which then fails when read).
        std::os::unix::fs::symlink("/nonexistent/rvq", clean.path().join("stale")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/z.png", clean.path().join("z.png")).unwrap();
        let found = collect_images(&[clean.path().to_path_buf()]).unwrap();
        assert_eq!(
            found,
            vec![clean.path().join("there/y.png"), clean.path().join("z.png")]
        );
    }

    /// A folder of JPEGs is training data, as the README says (it was collected, then refused).
    #[test]
    fn a_folder_of_jpegs_trains() {
        let dir = tempfile::TempDir::new().unwrap();
        let pixels: Vec<u8> = (0..48 * 40 * 3).map(|v| (v % 251) as u8).collect();
        for name in ["a.jpg", "b.jpeg"] {
            image::save_buffer(
                dir.path().join(name),
                &pixels,
                48,
                40,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let splits = load_training(dir.path(), 0, (20, 32), &mut rng).unwrap();
        assert_eq!(splits.train.len() + splits.valid.len(), 40);
    }

    /// A mixture trains on every source's training images and validates on the first's.
    #[test]
    fn a_mixture_trains_on_every_source_and_validates_on_the_first() {
        let folders: Vec<tempfile::TempDir> =
            (0..2).map(|_| tempfile::TempDir::new().unwrap()).collect();
        // The first folder's image varies below 100 (so that crops differ), the second's is 140.
        for (k, dir) in folders.iter().enumerate() {
            let pixels: Vec<u8> = (0..40 * 36 * 3)
                .map(|v| if k == 0 { (v % 97) as u8 } else { 140 })
                .collect();
            image::save_buffer(
                dir.path().join("a.png"),
                &pixels,
                40,
                36,
                image::ExtendedColorType::Rgb8,
            )
            .unwrap();
        }
        let paths: Vec<PathBuf> = folders.iter().map(|d| d.path().to_path_buf()).collect();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let splits = load_mixture(&paths, 0, (40, 32), &mut rng).unwrap();
        // 40 crops of each: 38 of each trained on, the first folder's 2 held out.
        assert_eq!(splits.train.len(), 76);
        assert_eq!(splits.valid.len(), 2);
        let first = |set: &ImageSet| -> Vec<bool> {
            (0..set.len()).map(|i| set.image(i)[0] < 100).collect()
        };
        assert_eq!(
            first(&splits.train),
            [vec![true; 38], vec![false; 38]].concat()
        );
        assert_eq!(first(&splits.valid), vec![true; 2]);
        assert!(
            splits.description.contains("and 38 training images"),
            "{}",
            splits.description
        );
        assert!(load_mixture(&[], 0, (40, 32), &mut rng).is_err());
        // One source is that source's data, drawn alike.
        let seeded = || <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let alone = load_training(&paths[0], 0, (40, 32), &mut seeded()).unwrap();
        let mixed = load_mixture(&paths[..1], 0, (40, 32), &mut seeded()).unwrap();
        assert_eq!(mixed.train.pixels, alone.train.pixels);
        assert_eq!(mixed.valid.pixels, alone.valid.pixels);
        assert_eq!(mixed.description, alone.description);
    }

    /// Larger crops: a folder's crops are cut at the side asked, each a window of its image;
    /// sides that are not a multiple of 32 within the bound are refused before any image is
    /// read.
    #[test]
    fn crops_are_cut_at_the_side_asked_and_odd_sides_are_refused() {
        let dir = tempfile::TempDir::new().unwrap();
        // Each pixel's red value names its column and green its row, so a crop tells where
        // it was cut from.
        let (w, h) = (100u32, 90u32);
        let pixels: Vec<u8> = (0..w * h)
            .flat_map(|p| [(p % w) as u8, (p / w) as u8, 7])
            .collect();
        image::save_buffer(
            dir.path().join("a.png"),
            &pixels,
            w,
            h,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let splits = load_training(dir.path(), 0, (20, 64), &mut rng).unwrap();
        assert_eq!((splits.train.size, splits.valid.size), (64, 64));
        assert_eq!(splits.train.len() + splits.valid.len(), 20);
        assert!(
            splits.description.contains("64×64 crops"),
            "{}",
            splits.description
        );
        for i in 0..splits.train.len() {
            let img = splits.train.image(i);
            let plane = 64 * 64;
            let (x0, y0) = (img[0] as usize, img[plane] as usize);
            assert!(x0 + 64 <= w as usize && y0 + 64 <= h as usize);
            for (y, x) in [(0, 63), (63, 0), (40, 17)] {
                assert_eq!(img[y * 64 + x] as usize, x0 + x);
                assert_eq!(img[plane + y * 64 + x] as usize, y0 + y);
                assert_eq!(img[2 * plane + y * 64 + x], 7);
            }
        }
        for side in [0, 16, 48, 544] {
            let err = load_training(dir.path(), 0, (20, side), &mut rng).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidOption(m) if m.contains("multiple of 32")),
                "{side}: {err}"
            );
        }
        // A photograph smaller than the crop is named.
        let err = load_training(dir.path(), 0, (20, 128), &mut rng).unwrap_err();
        assert!(err.to_string().contains("smaller than a 128×128"), "{err}");
    }

    /// Mosaics lay images out row by row, each at its place, and drop what fills none.
    #[test]
    fn mosaics_lay_images_out_in_order() {
        let s = 32;
        // Image i is filled with i in red, 100 + i in green and 200 + i in blue.
        let pixels: Vec<u8> = (0..9u8)
            .flat_map(|i| {
                [i, 100 + i, 200 + i]
                    .into_iter()
                    .flat_map(|v| std::iter::repeat_n(v, s * s))
            })
            .collect();
        let set = ImageSet { size: s, pixels };
        let m = mosaics(&set, 64);
        // Nine images make two mosaics of four; the ninth is dropped.
        assert_eq!((m.size, m.len()), (64, 2));
        for (k, first) in [0u8, 4].into_iter().enumerate() {
            let img = m.image(k);
            for (c, base) in [0u8, 100, 200].into_iter().enumerate() {
                for (y, x, tile) in [(0, 0, 0), (5, 40, 1), (33, 2, 2), (63, 63, 3)] {
                    assert_eq!(
                        img[(c * 64 + y) * 64 + x],
                        base + first + tile,
                        "{k} {c} {y} {x}"
                    );
                }
            }
        }
        assert_eq!(mosaics(&set, 32).pixels, set.pixels);
    }

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(fill, CIFAR_RECORD - 1));
        r
    }

    #[test]
    fn parses_records_and_drops_labels() {
        let mut bytes = record(3, 7);
        bytes.extend(record(9, 200));
        let set = parse_cifar(&bytes).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.image(0).iter().all(|&v| v == 7));
        assert!(set.image(1).iter().all(|&v| v == 200));
    }

    #[test]
    fn refuses_truncated_empty_and_mislabelled_files() {
        let bytes = record(1, 0);
        assert!(
            parse_cifar(&bytes[..100])
                .unwrap_err()
                .contains("truncated")
        );
        assert!(parse_cifar(&[]).unwrap_err().contains("empty"));
        assert!(
            parse_cifar(&record(10, 0))
                .unwrap_err()
                .contains("label 10")
        );
    }

    #[test]
    fn rgb_interleaves_the_planes() {
        let mut set = ImageSet {
            size: 32,
            pixels: vec![0; 3 * 32 * 32],
        };
        set.pixels[1] = 10; // red, pixel 1
        set.pixels[1024 + 1] = 20; // green, pixel 1
        set.pixels[2048 + 1] = 30; // blue, pixel 1
        let rgb = set.rgb(0);
        assert_eq!(
            (rgb.width(), rgb.height(), rgb.pixels().len()),
            (32, 32, 3 * 1024)
        );
        assert_eq!(&rgb.pixels()[3..6], &[10, 20, 30]);
        assert!(rgb.pixels()[..3].iter().all(|&v| v == 0));
    }

    #[test]
    fn batch_scales_and_flips() {
        let mut set = ImageSet {
            size: 32,
            pixels: vec![0; 3 * 32 * 32],
        };
        set.pixels[0] = 255; // red, row 0, column 0
        let device = Device::flex();
        let t = set.batch(&[0], Some(&[true]), &device);
        let v = t.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(v[31], 1.0);
        assert_eq!(v[0], 0.0);
    }
}
