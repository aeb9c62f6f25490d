//! Charts as PNG, drawn with plotters into an RGB buffer (text in the embedded DejaVu Sans, so
//! no system fonts are needed) and written with rvq's own PNG encoder.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

use crate::compare::{Codec, Point};
use rvq::image_io::write_atomic;
use rvq::image_io::{self, Rgb};
use rvq::{Error, Result};

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

/// Draws PSNR against payload bits per pixel, one line per codec (rvq's fixed depths and its
/// qualities apart), to a PNG file at `path`.
pub fn rate_distortion(points: &[Point], title: &str, path: &Path) -> Result<()> {
    let mut series: Vec<Series> = Vec::new();
    for p in points {
        if !p.psnr.is_finite() {
            continue;
        }
        let name = match (p.codec, p.quality) {
            (Codec::Rvq, Some(_)) => "rvq --quality".to_string(),
            (Codec::Rvq, None) => "rvq --codebooks".to_string(),
            (other, _) => other.to_string(),
        };
        match series.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push((p.payload_bits_per_pixel, p.psnr)),
            None => series.push((name, vec![(p.payload_bits_per_pixel, p.psnr)])),
        }
    }
    line_chart(
        &series,
        title,
        "bits per pixel (image data, headers shared)",
        "PSNR (dB)",
        Scale::LogX,
        path,
    )
}

/// Which axes of a chart are logarithmic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// x logarithmic, y linear (rate-distortion: PSNR against bits).
    LogX,
    /// Both logarithmic (the study's MSE charts).
    LogLog,
}

/// What one chart shows, gathered so that the drawing helpers take one argument for it rather
/// than six.
struct Chart<'s> {
    series: &'s [Series],
    title: &'s str,
    x_label: &'s str,
    y_label: &'s str,
    scale: Scale,
    bounds: Bounds,
}

/// The smallest and largest x and y over every point: the axes' ranges are set from them.
#[derive(Clone, Copy, Debug)]
struct Bounds {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

/// The drawing helpers' result: plotters' errors differ by backend, so they are boxed and
/// turned into one [`Error`] by [`line_chart`].
type PlotResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Draws `series` as lines with markers to a PNG at `path`; a series named "the study…" is a
/// published reference and is drawn in grey.
pub fn line_chart(
    series: &[Series],
    title: &str,
    x_label: &str,
    y_label: &str,
    scale: Scale,
    path: &Path,
) -> Result<()> {
    register_font();
    let (w, h) = (900u32, 600u32);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let bounds = checked_bounds(series, scale, path)?;
    let spec = Chart {
        series,
        title,
        x_label,
        y_label,
        scale,
        bounds,
    };
    draw(&mut buf, (w, h), &spec).map_err(|e| Error::Other(format!("plotting failed: {e}")))?;
    let png = image_io::encode_png(&Rgb::new(w, h, buf)?)?;
    write_atomic(path, &png)
}

/// Checked before any drawing, so that a chart with nothing on it, or with a value a log axis
/// cannot place, is refused with a plain message rather than a plotting error.
fn checked_bounds(series: &[Series], scale: Scale, path: &Path) -> Result<Bounds> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    if all.is_empty() {
        return Err(Error::Other("nothing to plot".into()));
    }
    if all
        .iter()
        .any(|&(x, y)| x <= 0.0 || (scale == Scale::LogLog && y <= 0.0))
    {
        return Err(Error::Other(format!(
            "{}: a log axis needs positive values",
            path.display()
        )));
    }
    let fold = |f: fn(f64, f64) -> f64, init: f64, sel: fn(&(f64, f64)) -> f64| {
        all.iter().map(sel).fold(init, f)
    };
    Ok(Bounds {
        x0: fold(f64::min, f64::INFINITY, |p| p.0),
        x1: fold(f64::max, f64::NEG_INFINITY, |p| p.0),
        y0: fold(f64::min, f64::INFINITY, |p| p.1),
        y1: fold(f64::max, f64::NEG_INFINITY, |p| p.1),
    })
}

/// Sets up the canvas and the axes' ranges, which differ in type between a linear and a log y
/// axis; [`draw_lines`] then draws either the same way.
fn draw(buf: &mut [u8], size: (u32, u32), spec: &Chart) -> PlotResult {
    let root = BitMapBackend::with_buffer(buf, size).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(spec.title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(60);
    let Bounds { x0, x1, y0, y1 } = spec.bounds;
    let pad = ((y1 - y0) * 0.05).max(0.5);
    let xs = (x0 * 0.8..x1 * 1.25).log_scale();
    match spec.scale {
        Scale::LogX => {
            let ys = y0 - pad..y1 + pad;
            draw_lines(builder.build_cartesian_2d(xs, ys)?, spec)?
        }
        Scale::LogLog => {
            let ys = (y0 * 0.8..y1 * 1.25).log_scale();
            draw_lines(builder.build_cartesian_2d(xs, ys)?, spec)?
        }
    }
    root.present()?;
    Ok(())
}

/// The mesh, the lines and the legend: generic over the y axis, so that the PSNR charts
/// (linear) and the MSE charts (logarithmic) share one body.
fn draw_lines<'a, 'b: 'a, Y>(
    mut chart: ChartContext<'a, BitMapBackend<'b>, Cartesian2d<LogCoord<f64>, Y>>,
    spec: &Chart,
) -> PlotResult
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_tick = |v: &f64| match spec.scale {
        Scale::LogX => format!("{v:.1}"),
        Scale::LogLog => log_tick(*v),
    };
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .x_labels(30)
        .y_labels(30)
        .x_label_formatter(&|v| log_tick(*v))
        .y_label_formatter(&y_tick)
        .label_style(("sans-serif", 16))
        .draw()?;
    for (i, (name, pts)) in spec.series.iter().enumerate() {
        let color = series_color(i, name);
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
        // Where the falling (MSE) or rising (PSNR) lines leave room.
        .position(match spec.scale {
            Scale::LogX => SeriesLabelPosition::LowerRight,
            Scale::LogLog => SeriesLabelPosition::UpperRight,
        })
        .draw()?;
    Ok(())
}

/// This run's series cycle through distinct colours; a published reference is drawn in grey,
/// apart from them.
fn series_color(i: usize, name: &str) -> &'static RGBColor {
    const COLORS: [&RGBColor; 6] = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    const GREY: RGBColor = RGBColor(140, 140, 140);
    if name.starts_with("the study") {
        &GREY
    } else {
        COLORS[i % COLORS.len()]
    }
}

/// A log axis' label: only at 1, 2 and 5 times a power of ten, since plotters labels every
/// minor tick and they run into each other; empty elsewhere.
fn log_tick(v: f64) -> String {
    let e = v.log10().floor();
    let m = v / 10f64.powf(e);
    if ![1.0, 2.0, 5.0].iter().any(|n| (m - n).abs() < 1e-6) {
        return String::new();
    }
    let digits = (-e).max(0.0) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axis_labels_only_round_values_with_the_digits_they_need() {
        let labels: Vec<String> = [0.002, 0.003, 0.05, 1.0, 20.0, 30.0, 500.0, 1000.0]
            .into_iter()
            .map(log_tick)
            .collect();
        assert_eq!(labels, ["0.002", "", "0.05", "1", "20", "", "500", "1000"]);
    }
}
