//! The lab's plots, as SVG (plotters' SVG backend writes text as `<text>` elements, so
//! no font library is needed): speedup against workers with the ideal line, the core
//! count and the prediction; and a stacked bar of the phase breakdown per configuration.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use downpour_server::job::ConsistencyMode;

use crate::config::mode_label;
use crate::output::{OVERLAP, PHASES};
use crate::results::BenchReport;

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {reason}")]
pub struct PlotError {
    /// The plot's file.
    pub path: String,
    /// The backend's message.
    pub reason: String,
}

fn plot_error(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |reason| PlotError {
        path: path.display().to_string(),
        reason,
    }
}

/// One colour per consistency mode.
fn mode_colour(mode: ConsistencyMode) -> RGBColor {
    match mode {
        ConsistencyMode::Sync => RGBColor(31, 119, 180),
        ConsistencyMode::Async => RGBColor(214, 39, 40),
        ConsistencyMode::Ssp => RGBColor(44, 160, 44),
    }
}

/// One colour per phase, in [`PHASES`] order.
const PHASE_COLOURS: [RGBColor; 9] = [
    RGBColor(199, 199, 199), // wait
    RGBColor(31, 119, 180),  // pull
    RGBColor(174, 199, 232), // decode
    RGBColor(148, 103, 189), // evaluate
    RGBColor(44, 160, 44),   // compute
    RGBColor(255, 187, 120), // encode
    RGBColor(255, 127, 14),  // push
    RGBColor(214, 39, 40),   // apply
    RGBColor(127, 127, 127), // other
];

/// Draws `speedup.svg` and `phases.svg` into `dir`; returns their paths.
///
/// # Errors
/// [`PlotError`] when a file cannot be drawn or written.
pub fn draw(r: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let speedup = dir.join("speedup.svg");
    draw_speedup(r, &speedup).map_err(plot_error(&speedup))?;
    let phases = dir.join("phases.svg");
    draw_phases(r, &phases).map_err(plot_error(&phases))?;
    Ok(vec![speedup, phases])
}

fn title(r: &BenchReport) -> String {
    match r.simulate_compute_ms {
        None => format!("{} on {} cores", r.job_source, r.machine.cores),
        Some(ms) => format!(
            "{}, simulated compute {ms} ms, {} cores",
            r.job_source, r.machine.cores
        ),
    }
}

fn draw_speedup(r: &BenchReport, path: &Path) -> Result<(), String> {
    let max_workers = r
        .summaries
        .iter()
        .map(|s| s.config.workers)
        .max()
        .unwrap_or(1) as f64;
    let max_y = r
        .summaries
        .iter()
        .flat_map(|s| {
            [
                s.speedup.map_or(0.0, |x| x.max),
                s.prediction.map_or(0.0, |p| p.speedup),
            ]
        })
        .fold(max_workers.max(r.machine.cores as f64), f64::max);
    // Two reference lines, then per mode drawn: measured and up to two predictions.
    let modes = [ConsistencyMode::Sync, ConsistencyMode::Async]
        .iter()
        .filter(|&&m| {
            r.summaries
                .iter()
                .any(|s| s.config.mode == m && s.speedup.is_some())
        })
        .count();
    let root = SVGBackend::new(path, (800, SPEEDUP_HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Speedup T1/TN: {}", title(r)), ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(52)
        .build_cartesian_2d(
            0.0..max_workers * 1.05 + 0.5,
            0.0..speedup_y_top(max_y, 2 + 3 * modes),
        )
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_labels(max_workers as usize + 2)
        .x_label_formatter(&worker_tick)
        .x_desc("workers N")
        .y_desc("speedup (throughput / throughput at N = 1)")
        .draw()
        .map_err(|e| e.to_string())?;

    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (max_workers, max_workers)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label("ideal (N)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK));
    let cores = r.machine.cores as f64;
    chart
        .draw_series(DashedLineSeries::new(
            [(0.0, cores), (max_workers * 1.05, cores)],
            4,
            4,
            RGBColor(127, 127, 127).stroke_width(1),
        ))
        .map_err(|e| e.to_string())?
        .label(format!("{} cores", r.machine.cores))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RGBColor(127, 127, 127)));

    for mode in [ConsistencyMode::Sync, ConsistencyMode::Async] {
        let rows: Vec<_> = r
            .summaries
            .iter()
            .filter(|s| s.config.mode == mode && s.speedup.is_some())
            .collect();
        if rows.is_empty() {
            continue;
        }
        let colour = mode_colour(mode);
        let measured: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|s| Some((s.config.workers as f64, s.speedup?.median)))
            .collect();
        chart
            .draw_series(LineSeries::new(measured.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!(
                "{} measured (median, range)",
                mode_label(mode, r.prefetch)
            ))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart
            .draw_series(
                measured
                    .iter()
                    .map(|&(x, y)| Circle::new((x, y), 4, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(rows.iter().filter_map(|s| {
                let sp = s.speedup?;
                let x = s.config.workers as f64;
                Some(PathElement::new(
                    [(x, sp.min), (x, sp.max)],
                    colour.stroke_width(2),
                ))
            }))
            .map_err(|e| e.to_string())?;
        let predicted: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|s| Some((s.config.workers as f64, s.prediction?.speedup)))
            .collect();
        draw_prediction(
            &mut chart,
            predicted,
            Prediction::cost_model(mode),
            colour,
            format!("{} predicted (cost model)", mode_label(mode, r.prefetch)),
        )?;
        let under_load: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|s| Some((s.config.workers as f64, s.prediction_under_load?.speedup)))
            .collect();
        draw_prediction(
            &mut chart,
            under_load,
            Prediction::under_load(mode),
            colour,
            format!(
                "{} predicted on the cores others left free",
                mode_label(mode, r.prefetch)
            ),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The speedup plot's height in pixels.
const SPEEDUP_HEIGHT: u32 = 560;
/// Pixels of the plotting area: the height less the caption, margins and the x labels.
const SPEEDUP_PLOT_PIXELS: f64 = (SPEEDUP_HEIGHT - 20 - 2 * 16 - 44) as f64;
/// A legend row and the legend's padding, in pixels (plotters' default 12-pixel font).
const LEGEND_ROW_PIXELS: f64 = 19.0;
const LEGEND_PAD_PIXELS: f64 = 16.0;

/// The top of the speedup axis: high enough that a legend of `rows` entries in the upper
/// left lies wholly above `max_y`, so it covers no point and no line.
fn speedup_y_top(max_y: f64, rows: usize) -> f64 {
    let legend = (rows as f64 * LEGEND_ROW_PIXELS + LEGEND_PAD_PIXELS) / SPEEDUP_PLOT_PIXELS;
    max_y * 1.05 / (1.0 - legend.min(0.6))
}

/// Worker ticks are whole numbers: other positions get no label.
fn worker_tick(x: &f64) -> String {
    if (x - x.round()).abs() < 1e-9 && *x >= 0.0 {
        format!("{}", x.round() as u64)
    } else {
        String::new()
    }
}

/// How a predicted curve is drawn, so that sync's and async's stay apart even where their
/// values coincide: each mode has its own dash and its own marker at every point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Prediction {
    /// Dash and gap lengths, in pixels.
    dash: (u32, u32),
    /// Line width.
    width: u32,
    /// Markers: triangles (sync) or crosses (async and SSP).
    triangles: bool,
}

impl Prediction {
    fn cost_model(mode: ConsistencyMode) -> Self {
        match mode {
            ConsistencyMode::Sync => Self {
                dash: (10, 4),
                width: 2,
                triangles: true,
            },
            _ => Self {
                dash: (4, 4),
                width: 2,
                triangles: false,
            },
        }
    }

    fn under_load(mode: ConsistencyMode) -> Self {
        match mode {
            ConsistencyMode::Sync => Self {
                dash: (2, 6),
                width: 1,
                triangles: true,
            },
            _ => Self {
                dash: (1, 3),
                width: 1,
                triangles: false,
            },
        }
    }
}

/// Draws a predicted curve, dashed with markers as `style` says, with its legend entry;
/// nothing when there are no points.
fn draw_prediction<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    points: Vec<(f64, f64)>,
    style: Prediction,
    colour: RGBColor,
    label: String,
) -> Result<(), String> {
    if points.is_empty() {
        return Ok(());
    }
    let Prediction {
        dash: (dash, gap),
        width,
        triangles,
    } = style;
    let size = 3 + width as i32;
    if triangles {
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| TriangleMarker::new(p, size, colour.stroke_width(1))),
            )
            .map_err(|e| e.to_string())?;
    } else {
        chart
            .draw_series(
                points
                    .iter()
                    .map(|&p| Cross::new(p, size, colour.stroke_width(1))),
            )
            .map_err(|e| e.to_string())?;
    }
    let series = chart
        .draw_series(DashedLineSeries::new(
            points,
            dash,
            gap,
            colour.stroke_width(width),
        ))
        .map_err(|e| e.to_string())?
        .label(label);
    // Legend entries: the line with the mode's marker on it (coordinates relative to the entry).
    let line = move || PathElement::new([(0, 0), (20, 0)], colour.stroke_width(width));
    if triangles {
        series.legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + line()
                + TriangleMarker::new((10, 0), size, colour.stroke_width(1))
        });
    } else {
        series.legend(move |(x, y)| {
            EmptyElement::at((x, y)) + line() + Cross::new((10, 0), size, colour.stroke_width(1))
        });
    }
    Ok(())
}

fn draw_phases(r: &BenchReport, path: &Path) -> Result<(), String> {
    let bars: Vec<_> = r.summaries.iter().collect();
    let max_ms = bars
        .iter()
        .map(|s| PHASES.iter().map(|p| s.phase(p)).sum::<f64>() * 1e3)
        .fold(0.0, f64::max)
        .max(1e-3);
    let labels: Vec<String> = bars
        .iter()
        .map(|s| format!("{} N={}", s.config.label(), s.config.workers))
        .collect();
    let width = (160 + 70 * bars.len()).max(640) as u32;
    let root = SVGBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Where a worker step goes: {}", title(r)),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(60)
        // Headroom above the bars for the legend's nine entries.
        .build_cartesian_2d(-0.5..bars.len() as f64 - 0.5, 0.0..max_ms * 1.9)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("milliseconds per worker step (median)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, phase) in PHASES.iter().enumerate() {
        let colour = PHASE_COLOURS[k];
        let rects = bars.iter().enumerate().map(|(i, s)| {
            let below: f64 = PHASES[..k].iter().map(|p| s.phase(p)).sum::<f64>() * 1e3;
            let height = s.phase(phase) * 1e3;
            let x = i as f64;
            Rectangle::new(
                [(x - 0.35, below), (x + 0.35, below + height)],
                colour.filled(),
            )
        });
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(*phase)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
    }
    // With prefetch the phases overlap: a line marks where the step (wall clock) ends.
    if bars.iter().any(|s| s.phase(OVERLAP) > 0.0) {
        let marks = bars.iter().enumerate().map(|(i, s)| {
            let x = i as f64;
            let y = s.step_seconds.median * 1e3;
            PathElement::new([(x - 0.45, y), (x + 0.45, y)], BLACK.stroke_width(3))
        });
        chart
            .draw_series(marks)
            .map_err(|e| e.to_string())?
            .label("step, wall clock (phases overlap)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(3)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_ticks_are_whole_numbers_only() {
        assert_eq!(worker_tick(&0.0), "0");
        assert_eq!(worker_tick(&4.0), "4");
        assert_eq!(worker_tick(&2.000_000_000_01), "2");
        assert_eq!(worker_tick(&1.5), "");
        assert_eq!(worker_tick(&0.25), "");
    }

    #[test]
    fn the_legend_sits_above_every_value_it_could_cover() {
        for rows in [2, 5, 8] {
            for max_y in [1.0, 2.2, 8.8] {
                let top = speedup_y_top(max_y, rows);
                // The legend's lowest edge, in data units, measured from the top.
                let legend = (rows as f64 * LEGEND_ROW_PIXELS + LEGEND_PAD_PIXELS)
                    / SPEEDUP_PLOT_PIXELS
                    * top;
                assert!(top - legend > max_y, "rows {rows}, max {max_y}: top {top}");
            }
        }
    }

    #[test]
    fn sync_and_async_predictions_are_drawn_differently() {
        for style in [Prediction::cost_model, Prediction::under_load] {
            let (sync, asynchronous) =
                (style(ConsistencyMode::Sync), style(ConsistencyMode::Async));
            assert_ne!(sync.dash, asynchronous.dash);
            assert_ne!(sync.triangles, asynchronous.triangles);
        }
        assert_ne!(
            Prediction::cost_model(ConsistencyMode::Sync).dash,
            Prediction::under_load(ConsistencyMode::Sync).dash
        );
    }
}
