//! Charts as PNG, drawn with plotters into an RGB buffer (text in the embedded DejaVu Sans, so
//! no system fonts are needed) and written with rvq's own PNG encoder.

use std::path::Path;

use plotters::prelude::*;

use crate::compare::Point;
use crate::error::{Error, Result};
use crate::image_io::{self, Rgb};
use crate::model::write_atomic;

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure leaves text undrawn only.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One line on a chart: a name and its (x, y) points.
pub type Series = (String, Vec<(f64, f64)>);

/// Draws PSNR against payload bits per pixel, one line per codec, to a PNG file at `path`.
pub fn rate_distortion(points: &[Point], title: &str, path: &Path) -> Result<()> {
    let mut series: Vec<Series> = Vec::new();
    for p in points {
        if !p.psnr.is_finite() {
            continue;
        }
        match series.iter_mut().find(|(name, _)| *name == p.codec) {
            Some((_, v)) => v.push((p.payload_bits_per_pixel, p.psnr)),
            None => series.push((p.codec.clone(), vec![(p.payload_bits_per_pixel, p.psnr)])),
        }
    }
    line_chart(
        &series,
        title,
        "bits per pixel (image data, headers shared)",
        "PSNR (dB)",
        true,
        path,
    )
}

/// Draws `series` as lines with markers (x on a log scale when `log_x`) to a PNG at `path`.
pub fn line_chart(
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
    log_x: bool,
    path: &Path,
) -> Result<()> {
    register_font();
    let (w, h) = (900u32, 600u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    if all.is_empty() {
        return Err(Error::Other("nothing to plot".into()));
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, sel: fn(&(f64, f64)) -> f64| {
        all.iter().map(sel).fold(init, f)
    };
    let (x0, x1) = (
        fold(f64::min, f64::INFINITY, |p| p.0),
        fold(f64::max, f64::NEG_INFINITY, |p| p.0),
    );
    let (y0, y1) = (
        fold(f64::min, f64::INFINITY, |p| p.1),
        fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    );
    let pad = ((y1 - y0) * 0.05).max(0.5);
    let draw = |buf: &mut [u8]| -> std::result::Result<(), Box<dyn std::error::Error>> {
        let root = BitMapBackend::with_buffer(buf, (w, h)).into_drawing_area();
        root.fill(&WHITE)?;
        let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .label_style(("sans-serif", 16))
                    .draw()?;
                for (i, (name, pts)) in series.iter().enumerate() {
                    let color = colors[i % colors.len()];
                    let mut pts = pts.clone();
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    chart
                        .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
                }
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 16))
                    .position(SeriesLabelPosition::LowerRight)
                    .draw()?;
            }};
        }
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(60);
        if log_x {
            body!(
                builder
                    .build_cartesian_2d((x0 * 0.8..x1 * 1.25).log_scale(), y0 - pad..y1 + pad)?
            );
        } else {
            let xp = ((x1 - x0) * 0.05).max(1e-9);
            body!(builder.build_cartesian_2d(x0 - xp..x1 + xp, y0 - pad..y1 + pad)?);
        }
        root.present()?;
        Ok(())
    };
    draw(&mut buf).map_err(|e| Error::Other(format!("plotting failed: {e}")))?;
    let png = image_io::encode_png(&Rgb {
        width: w,
        height: h,
        rgb: buf,
    })?;
    write_atomic(path, &png)
}
