//! `rvq sweep report`: reads a sweep's `results.csv` (written by `sweep`), draws the study's
//! figures from it, fits a power law to the residual-VQ points, and writes `report.md`.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Serialize;

use rvq::{Error, Result};

use crate::plot::{self, line_chart};
use crate::sweep::{self, Row};

/// A fitted power law `mse ≈ a · bits^(−b) + c`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PowerLaw {
    /// Scale.
    pub a: f64,
    /// Exponent.
    pub b: f64,
    /// Floor.
    pub c: f64,
    /// Root mean squared error of the fit in log10(mse).
    pub rmse_log10: f64,
}

impl PowerLaw {
    /// The predicted MSE at `bits`.
    pub fn predict(&self, bits: f64) -> f64 {
        self.a * bits.powf(-self.b) + self.c
    }

    /// Bits needed for `target` MSE, or `None` if the target is at or below the floor.
    pub fn bits_for(&self, target: f64) -> Option<f64> {
        (target > self.c).then(|| (self.a / (target - self.c)).powf(1.0 / self.b))
    }
}

/// Fits `mse ≈ a · bits^(−b) + c` to `(bits, mse)` points: for each candidate floor c below
/// the smallest MSE, a least-squares line through log(mse − c) against log(bits) gives a and
/// b; the c whose fit has the smallest error in log(mse) wins. Needs 3 points.
pub fn fit_power_law(points: &[(f64, f64)]) -> Option<PowerLaw> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| x > 0.0 && y > 0.0)
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let min = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut best: Option<PowerLaw> = None;
    for i in 0..2000 {
        let c = min * i as f64 / 2000.0;
        let xs: Vec<f64> = pts.iter().map(|p| p.0.ln()).collect();
        let ys: Vec<f64> = pts.iter().map(|p| (p.1 - c).ln()).collect();
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        if sxx == 0.0 {
            return None;
        }
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let slope = sxy / sxx;
        let law = PowerLaw {
            a: (my - slope * mx).exp(),
            b: -slope,
            c,
            rmse_log10: 0.0,
        };
        let err = (pts
            .iter()
            .map(|&(x, y)| (law.predict(x).log10() - y.log10()).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        if best.is_none_or(|b| err < b.rmse_log10) {
            best = Some(PowerLaw {
                rmse_log10: err,
                ..law
            });
        }
    }
    best
}

/// What `rvq sweep report` found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Rows read.
    pub rows: usize,
    /// Charts written (file names under `figures/`).
    pub figures: Vec<String>,
    /// Power law fitted to the residual-VQ runs (MSE against bits per image).
    pub fit: Option<PowerLaw>,
}

fn series_by<K: Ord + std::fmt::Display>(
    rows: &[&Row],
    key: impl Fn(&Row) -> K,
    label: &str,
    x: impl Fn(&Row) -> f64,
) -> Vec<crate::plot::Series> {
    let mut map: std::collections::BTreeMap<K, Vec<(f64, f64)>> = Default::default();
    for r in rows {
        map.entry(key(r)).or_default().push((x(r), r.mse));
    }
    map.into_iter()
        .map(|(k, v)| (format!("{label}{k}"), v))
        .collect()
}

/// The study's plain autoencoders, (d, MSE), as read off its plots (±10%;
/// `../shared/reference/README.md`): drawn beside a sweep's own points for comparison.
const STUDY_AE: [(f64, f64); 8] = [
    (2.0, 0.011),
    (4.0, 0.008),
    (8.0, 0.0049),
    (16.0, 0.0029),
    (32.0, 0.0013),
    (64.0, 0.0005),
    (128.0, 0.0009),
    (256.0, 0.00065),
];

/// The study's residual VQ at d = 64, k = 1,024, (codebooks, MSE), read off the same way.
const STUDY_RVQ_K1024: [(f64, f64); 6] = [
    (1.0, 0.0087),
    (2.0, 0.0056),
    (4.0, 0.0034),
    (8.0, 0.0018),
    (16.0, 0.0011),
    (32.0, 0.0008),
];

/// The rows each of the study's figures draws, chosen by what was trained rather than by
/// experiment name, since a model is trained once however many experiments name it:
/// autoencoders; single codebooks on the 4×4 grid; residual VQ (every depth of each (d, k)
/// trained with more than one codebook); and 4×4 against 8×8 (single codebooks at each d
/// trained on both grids).
#[allow(clippy::type_complexity)]
fn figure_rows(rows: &[Row]) -> (Vec<&Row>, Vec<&Row>, Vec<&Row>, Vec<&Row>) {
    let quantized = |r: &&Row| r.codebook_size > 0;
    let ae = rows.iter().filter(|r| r.codebook_size == 0).collect();
    let vq = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && r.grid_factor == 8)
        .collect();
    let deep: BTreeSet<(usize, usize)> = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks > 1 && r.grid_factor == 8)
        .map(|r| (r.latent_dim, r.codebook_size))
        .collect();
    let rvq = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.grid_factor == 8 && deep.contains(&(r.latent_dim, r.codebook_size)))
        .collect();
    let fine: BTreeSet<usize> = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && r.grid_factor != 8)
        .map(|r| r.latent_dim)
        .collect();
    let grid = rows
        .iter()
        .filter(quantized)
        .filter(|r| r.num_codebooks == 1 && fine.contains(&r.latent_dim))
        .collect();
    (ae, vq, rvq, grid)
}

/// Draws the study's figures from `dir/results.csv` into `dir/figures/`, fits the power law
/// to the residual-VQ runs, and writes `dir/report.md`.
pub fn report(dir: &Path) -> Result<Report> {
    let rows = sweep::read_csv(&dir.join("results.csv"))?;
    if rows.is_empty() {
        return Err(Error::BadData {
            path: dir.join("results.csv"),
            reason: "no results yet: run `rvq sweep` first".into(),
        });
    }
    let figures = dir.join("figures");
    std::fs::create_dir_all(&figures).map_err(|e| Error::Io {
        path: figures.clone(),
        source: e,
    })?;
    let (ae, vq, rvq, grid) = figure_rows(&rows);
    let written = draw_figures(&figures, &ae, &vq, &rvq, &grid)?;
    let fit = fit_power_law(
        &rvq.iter()
            .map(|r| (r.bits_per_image as f64, r.mse))
            .collect::<Vec<_>>(),
    );
    let md = markdown(&rows, fit.as_ref(), &written);
    rvq::image_io::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    Ok(Report {
        rows: rows.len(),
        figures: written,
        fit,
    })
}

/// The charts drawn so far: the report lists only the figures that exist, and a sweep that
/// ran some of the study's experiments has nothing to draw for the others.
struct Charts<'a> {
    /// `dir/figures`.
    figures: &'a Path,
    /// File names written, in order.
    written: Vec<String>,
}

impl Charts<'_> {
    /// Skips a chart whose series are all empty rather than writing a blank figure; the
    /// study's own points, when given, are drawn beside the sweep's for comparison.
    fn draw(
        &mut self,
        name: &str,
        mut series: Vec<plot::Series>,
        title: &str,
        x: &str,
        study: Option<plot::Series>,
    ) -> Result<()> {
        if series.iter().all(|(_, v)| v.is_empty()) {
            return Ok(());
        }
        series.extend(study);
        line_chart(
            &series,
            title,
            x,
            "MSE",
            plot::Scale::LogLog,
            &self.figures.join(name),
        )?;
        self.written.push(name.to_string());
        Ok(())
    }
}

/// Each figure takes its own rows (see `figure_rows`), since one trained model can appear in
/// several of them; returns the names of the charts written, in the order the report lists.
fn draw_figures(
    figures: &Path,
    ae: &[&Row],
    vq: &[&Row],
    rvq: &[&Row],
    grid: &[&Row],
) -> Result<Vec<String>> {
    let mut charts = Charts {
        figures,
        written: Vec::new(),
    };
    charts.draw(
        "ae_mse_vs_d.png",
        series_by(
            ae,
            |r| {
                let side = 32 / r.grid_factor;
                format!("{side}×{side}")
            },
            "autoencoder ",
            |r| r.latent_dim as f64,
        ),
        "Plain autoencoder: MSE against latent channels d",
        "d",
        Some(("the study, 4×4".into(), STUDY_AE.to_vec())),
    )?;
    charts.draw(
        "vq_mse_vs_k.png",
        series_by(vq, |r| r.latent_dim, "d=", |r| r.codebook_size as f64),
        "Single codebook: MSE against k, per d",
        "codebook size k",
        None,
    )?;
    draw_rvq_figures(&mut charts, rvq)?;
    charts.draw(
        "grid_mse_vs_bits_per_image.png",
        series_by(
            grid,
            |r| (32 / r.grid_factor).to_string(),
            "grid ",
            |r| r.bits_per_image as f64,
        )
        .into_iter()
        .map(|(n, v)| {
            let side = n.trim_start_matches("grid ").to_string();
            (format!("{side}×{side} grid"), v)
        })
        .collect(),
        "Single codebook, 4×4 against 8×8 latent grid",
        "bits per image",
        None,
    )?;
    Ok(charts.written)
}

/// Apart from `draw_figures` because the residual-VQ runs are drawn three ways, against each
/// measure of size the study compares them by: codebooks, codebook vectors and bits.
fn draw_rvq_figures(charts: &mut Charts<'_>, rows: &[&Row]) -> Result<()> {
    charts.draw(
        "rvq_mse_vs_codebooks.png",
        series_by(rows, |r| r.codebook_size, "k=", |r| r.num_codebooks as f64),
        "Residual VQ (d=64): MSE against number of codebooks, per k",
        "codebooks",
        Some(("the study, k=1024".into(), STUDY_RVQ_K1024.to_vec())),
    )?;
    charts.draw(
        "rvq_mse_vs_total_vectors.png",
        series_by(
            rows,
            |r| r.codebook_size,
            "k=",
            |r| r.total_codebook_vectors as f64,
        ),
        "Residual VQ: MSE against total codebook vectors (k × n_q)",
        "codebook vectors",
        None,
    )?;
    charts.draw(
        "rvq_mse_vs_bits.png",
        series_by(
            rows,
            |r| r.codebook_size,
            "k=",
            |r| r.bits_per_vector as f64,
        ),
        "Residual VQ: MSE against bits per latent vector",
        "bits per vector (= log2 of possible quantizations)",
        Some((
            "the study, k=1024".into(),
            STUDY_RVQ_K1024
                .iter()
                .map(|&(q, mse)| (q * 10.0, mse))
                .collect(),
        )),
    )?;
    Ok(())
}

/// The text of `report.md`: every run, the fit and what it predicts, and the figures, so that
/// the report reads on its own without the CSV.
fn markdown(rows: &[Row], fit: Option<&PowerLaw>, written: &[String]) -> String {
    let mut md = String::from("# Sweep report\n\n");
    md.push_str(&format!("{} runs from results.csv.\n\n", rows.len()));
    md.push_str("| run | bits/image | MSE | PSNR dB | utilisation | epochs | seconds |\n|---|---|---|---|---|---|---|\n");
    for r in rows {
        md.push_str(&format!(
            "| {} | {} | {:.5} | {:.2} | {:.2} | {:.1} | {:.0} |\n",
            r.run, r.bits_per_image, r.mse, r.psnr, r.utilisation, r.epochs, r.train_seconds
        ));
    }
    if let Some(f) = fit {
        md.push_str(&format!(
            "\nResidual VQ fit: MSE ≈ {:.4} · bits^(−{:.4}) + {:.6} (RMS error {:.4} in log10 MSE).\n",
            f.a, f.b, f.c, f.rmse_log10
        ));
        for target in [0.005, 0.003, 0.002, 0.001] {
            match f.bits_for(target) {
                Some(b) => md.push_str(&format!("- MSE {target}: about {b:.0} bits per image\n")),
                None => md.push_str(&format!("- MSE {target}: below the fitted floor\n")),
            }
        }
    }
    md.push_str("\nFigures: ");
    md.push_str(
        &written
            .iter()
            .map(|f| format!("figures/{f}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_draw_rows_by_what_was_trained() {
        let row = |experiment: &str, d: usize, k: usize, n_q: usize, f: usize| Row {
            run: format!("{experiment}-d{d}-k{k}-q{n_q}-f{f}"),
            experiment: experiment.into(),
            latent_dim: d,
            codebook_size: k,
            num_codebooks: n_q,
            grid_factor: f,
            bits_per_vector: 0,
            bits_per_image: 0,
            total_codebook_vectors: 0,
            log2_quantizations: 0.0,
            mse: 0.01,
            psnr: 20.0,
            utilisation: 1.0,
            epochs: 1.0,
            train_seconds: 1.0,
            backend: "cpu".into(),
        };
        let rows = vec![
            row("ae", 64, 0, 0, 8),
            row("rvq", 64, 16, 1, 8),
            row("rvq", 64, 16, 4, 8),
            row("vq", 64, 4096, 1, 8),
            row("vq", 8, 16, 1, 8),
            row("grid", 64, 16, 1, 4),
        ];
        let (ae, vq, rvq, grid) = figure_rows(&rows);
        let ids = |v: Vec<&Row>| v.iter().map(|r| r.run.clone()).collect::<Vec<_>>();
        assert_eq!(ids(ae), ["ae-d64-k0-q0-f8"]);
        assert_eq!(
            ids(vq),
            ["rvq-d64-k16-q1-f8", "vq-d64-k4096-q1-f8", "vq-d8-k16-q1-f8"]
        );
        // k = 4096 was only trained with one codebook: no residual series of its own.
        assert_eq!(ids(rvq), ["rvq-d64-k16-q1-f8", "rvq-d64-k16-q4-f8"]);
        // d = 8 has no 8×8 run to compare with.
        assert_eq!(
            ids(grid),
            [
                "rvq-d64-k16-q1-f8",
                "vq-d64-k4096-q1-f8",
                "grid-d64-k16-q1-f4"
            ]
        );
    }

    #[test]
    fn power_law_fit_recovers_known_parameters() {
        let (a, b, c) = (2.0, 0.6, 0.0004);
        let pts: Vec<(f64, f64)> = [160.0, 320.0, 640.0, 1280.0, 2560.0, 5120.0]
            .iter()
            .map(|&x: &f64| (x, a * x.powf(-b) + c))
            .collect();
        let fit = fit_power_law(&pts).unwrap();
        assert!((fit.b - b).abs() < 0.02, "{fit:?}");
        assert!((fit.a - a).abs() / a < 0.1, "{fit:?}");
        assert!((fit.c - c).abs() < 5e-5, "{fit:?}");
        assert!(fit.rmse_log10 < 0.01);
        let bits = fit.bits_for(0.002).unwrap();
        assert!((fit.predict(bits) - 0.002).abs() < 1e-9);
        assert_eq!(fit.bits_for(c / 2.0), None);
        assert!(fit_power_law(&pts[..2]).is_none());
    }
}
