//! What a comparison benchmark reports, and where (`STYLE.md` §6): figures as medians of
//! the repetitions ([`Stat`]); at the end of a run ([`finish`]) the table on stdout, then
//! in a full run `results.md`, `results.csv` and a plot under [`output_dir`], then one
//! RESULT line per case. The plot is a bench's own bars in a frame every bench shares
//! ([`bar_chart`]), or lines through medians, in panels ([`line_panels`]). Included by path (`#[path = "common/report.rs"] mod report;`) next to
//! `harness.rs`, whose [`Mode`] decides what is written.

#![allow(dead_code)] // each bench uses a different subset

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::harness::Mode;

/// Median, min and max of a set of repetitions.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    /// The middle value (the repetition counts are odd, so it is a sample).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Stat {
    /// The statistics of `v`, which must not be empty.
    pub fn of(mut v: Vec<f64>) -> Stat {
        assert!(!v.is_empty(), "Stat::of: no values");
        v.sort_by(f64::total_cmp);
        Stat { median: v[v.len() / 2], min: v[0], max: v[v.len() - 1] }
    }
}

/// `x` with `digits` decimals, `nan` if it is not a number (the RESULT lines' spelling).
pub fn num(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "nan".into()
    } else {
        format!("{x:.digits$}")
    }
}

/// `x` with `digits` decimals, `-` if it is not a number (the tables' spelling).
pub fn cell(x: f64, digits: usize) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.digits$}")
    }
}

/// A table cell for `st`: `median (min-max)`, or `-` if there is no median.
pub fn stat_cell(st: Stat, digits: usize) -> String {
    if st.median.is_nan() {
        return "-".into();
    }
    format!("{} ({}-{})", cell(st.median, digits), cell(st.min, digits), cell(st.max, digits))
}

/// `<target>/parlib-bench/<bench>`: `<target>` is `$CARGO_TARGET_DIR`, or `target/` in
/// the workspace.
pub fn output_dir(bench: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("parlib-bench").join(bench)
}

/// What a bench prints and writes once it has measured.
pub struct Report<'a> {
    /// The bench's name, as in `cargo bench --bench <bench>`: also the name of its
    /// folder under [`output_dir`] and of its plot, `<bench>.svg`.
    pub bench: &'static str,
    /// The title of `results.md`, after `<bench>: `.
    pub title: &'a str,
    /// The run's header ([`Machine::header`](crate::machine::Machine::header)).
    pub head: &'a str,
    /// The paragraph of `results.md` between the header and the table.
    pub note: &'a str,
    /// The Markdown table, one row per case.
    pub table: String,
    /// `results.csv`: a line of column names, then one line per window.
    pub csv: String,
    /// One `RESULT <bench> case=...` line per case.
    pub result_lines: Vec<String>,
    /// Whether `results.md` ends with the RESULT lines too, as an indented block.
    pub result_lines_in_md: bool,
}

/// Ends a bench's output. Prints the table. In a full run, writes `results.md`,
/// `results.csv` and `<bench>.svg` (drawn by `plot`, given the file's path) to
/// [`output_dir`], and says where, or on stderr why not. Then, unless this is a smoke
/// test, prints the RESULT lines, which end the output.
pub fn finish(mode: Mode, report: &Report, plot: impl FnOnce(&Path) -> Result<(), Box<dyn Error>>) {
    let bench = report.bench;
    println!();
    print!("{}", report.table);
    println!();
    if mode.writes_files() {
        let dir = output_dir(bench);
        match write_files(&dir, report, plot) {
            Ok(()) => println!("wrote {0}/results.md, {0}/results.csv, {0}/{bench}.svg", dir.display()),
            Err(e) => eprintln!("{bench}: could not write results to {}: {e}", dir.display()),
        }
        println!();
    }
    if mode == Mode::Smoke {
        println!("smoke test only: run `cargo bench --bench {bench}` for figures");
        return;
    }
    for line in &report.result_lines {
        println!("{line}");
    }
}

fn write_files(
    dir: &Path,
    r: &Report,
    plot: impl FnOnce(&Path) -> Result<(), Box<dyn Error>>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut md = format!("# {}: {}\n\n```text\n{}```\n\n{}\n\n{}", r.bench, r.title, r.head, r.note, r.table);
    if r.result_lines_in_md {
        md.push('\n');
        for line in &r.result_lines {
            md.push_str(&format!("    {line}\n"));
        }
    }
    std::fs::write(dir.join("results.md"), md)?;
    std::fs::write(dir.join("results.csv"), &r.csv)?;
    plot(&dir.join(format!("{}.svg", r.bench))).map_err(|e| std::io::Error::other(e.to_string()))
}

/// The chart [`bar_chart`] hands to a bench's drawing: one case per whole x from 0,
/// a logarithmic y axis of ns.
pub type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, LogCoord<f64>>>;

/// What frames a bench's plot.
pub struct Frame<'a> {
    /// The plot's title line.
    pub title: &'a str,
    /// Its font size, px.
    pub title_size: u32,
    /// Height of the band above the chart that holds the title and the run's header, px.
    pub band: u32,
    /// The run's header, one small line each under the title.
    pub head: &'a str,
    /// One name per case, under its bars.
    pub names: &'a [String],
    /// The y axis's description.
    pub y_desc: &'a str,
    /// The y axis's range, ns (log scale).
    pub y: (f64, f64),
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

/// Draws one series of bars into `chart`: each `(x, half_width, stat)` as a bar from the
/// axis floor `lo` up to its median, a min-max whisker, and the median above the whisker
/// in `font_px` type; `label` and `color` go to the legend.
pub fn stat_bars(
    chart: &mut Chart<'_, '_>,
    bars: &[(f64, f64, Stat)],
    lo: f64,
    color: RGBColor,
    label: impl Into<String>,
    font_px: u32,
) -> Result<(), Box<dyn Error>> {
    chart
        .draw_series(
            bars.iter().map(|(x, w, s)| Rectangle::new([(x - w, lo), (x + w, s.median)], color.filled())),
        )?
        .label(label)
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    chart.draw_series(
        bars.iter().map(|(x, _, s)| PathElement::new(vec![(*x, s.min), (*x, s.max)], BLACK.stroke_width(1))),
    )?;
    chart.draw_series(bars.iter().map(|(x, w, s)| {
        Text::new(format!("{:.0}", s.median), (x - w * 0.9, s.max * 1.15), ("sans-serif", font_px))
    }))?;
    Ok(())
}

/// Draws an SVG of 960 x 560 px to `path`: a white page, the title and the header in a
/// band at the top, and under it a chart with `frame.names.len()` cases on its x axis and
/// a log-scale y axis. `bars` draws the series into the chart, with their legend labels;
/// then the legend is drawn.
pub fn bar_chart(
    path: &Path,
    frame: &Frame,
    bars: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(frame.band);
    draw_band(&title, frame.title, frame.title_size, frame.head)?;
    let n = frame.names.len() as f64;
    let (lo, hi) = frame.y;
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..n - 0.5, (lo..hi).log_scale())?;
    let names = frame.names;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
                names[i as usize].clone()
            } else {
                String::new()
            }
        })
        .y_desc(frame.y_desc)
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    bars(&mut chart)?;
    draw_legend(&mut chart, &frame.legend)?;
    root.present()?;
    Ok(())
}

/// The series' legend at `pos`, framed, on a light background: every chart's.
fn draw_legend<'a, 'b: 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    pos: &SeriesLabelPosition,
) -> Result<(), Box<dyn Error>> {
    chart
        .configure_series_labels()
        .position(pos.clone())
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Draws `title` in `size` px type at the top left of `band`, and under it the run's
/// header `head`, one small line each.
fn draw_band(
    band: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    size: u32,
    head: &str,
) -> Result<(), Box<dyn Error>> {
    band.draw(&Text::new(title, (12, 8), ("sans-serif", size)))?;
    // The header's lines, 12 px apart, start 6 px below the title.
    let head_top = 8 + 6 + size as i32;
    for (i, line) in head.lines().enumerate() {
        band.draw(&Text::new(line.to_string(), (12, head_top + 12 * i as i32), ("sans-serif", 11)))?;
    }
    Ok(())
}

/// One line of a [`line_panels`] plot.
pub struct Line {
    /// Its legend label.
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// Its points: x, and the statistics of y over the repetitions. A point whose median
    /// is not a positive number (a side that did not run) is left out.
    pub points: Vec<(f64, Stat)>,
}

/// One panel of a [`line_panels`] plot: a chart of its own, side by side with the others.
pub struct Panel {
    /// Its caption, above the chart.
    pub caption: String,
    /// Its lines.
    pub lines: Vec<Line>,
}

/// What frames a [`line_panels`] plot: the band above the panels, and the axes every
/// panel shares.
pub struct LineFrame<'a> {
    /// The plot's title line.
    pub title: &'a str,
    /// Its font size, px.
    pub title_size: u32,
    /// Height of the band above the panels that holds the title and the run's header, px.
    pub band: u32,
    /// The run's header, one small line each under the title.
    pub head: &'a str,
    /// The x axis's description.
    pub x_desc: &'a str,
    /// The x axis's range (linear).
    pub x: (f64, f64),
    /// About how many labelled ticks the x axis has.
    pub x_labels: usize,
    /// How an x tick reads.
    pub x_format: &'a dyn Fn(&f64) -> String,
    /// The y axis's description.
    pub y_desc: &'a str,
    /// The y axis's range (log scale).
    pub y: (f64, f64),
    /// Where each panel's legend goes.
    pub legend: SeriesLabelPosition,
}

/// Draws an SVG of 960 x 560 px to `path`: the title and the header in a band at the top
/// (as [`bar_chart`]), and under it `panels` side by side, each a chart with a linear x
/// axis and a log-scale y axis, and each of its lines drawn through the medians of its
/// points, with a dot and a min-max whisker at every point.
pub fn line_panels(path: &Path, frame: &LineFrame, panels: &[Panel]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (band, body) = root.split_vertically(frame.band);
    draw_band(&band, frame.title, frame.title_size, frame.head)?;
    let (x0, x1) = frame.x;
    let (lo, hi) = frame.y;
    for (panel, area) in panels.iter().zip(body.split_evenly((1, panels.len().max(1)))) {
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.caption, ("sans-serif", 14))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, (lo..hi).log_scale())?;
        chart
            .configure_mesh()
            .x_labels(frame.x_labels)
            .x_label_formatter(frame.x_format)
            .x_desc(frame.x_desc)
            .y_desc(frame.y_desc)
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for line in &panel.lines {
            let color = line.color;
            let pts: Vec<(f64, Stat)> =
                line.points.iter().copied().filter(|(_, s)| s.median.is_finite() && s.median > 0.0).collect();
            chart
                .draw_series(LineSeries::new(pts.iter().map(|(x, s)| (*x, s.median)), color.stroke_width(2)))?
                .label(line.label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
            chart.draw_series(pts.iter().map(|(x, s)| Circle::new((*x, s.median), 3, color.filled())))?;
            chart.draw_series(
                pts.iter()
                    .filter(|(_, s)| s.min > 0.0)
                    .map(|(x, s)| PathElement::new(vec![(*x, s.min), (*x, s.max)], color.stroke_width(1))),
            )?;
        }
        draw_legend(&mut chart, &frame.legend)?;
    }
    root.present()?;
    Ok(())
}
