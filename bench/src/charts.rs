//! SVG charts of a run (plotters): `latency.svg` (distribution per scenario: box plot and every
//! sample, log scale), `phases.svg` (each scenario's phase breakdown as a 100% stacked bar, its
//! p50 on top) and `sweep.svg` (restore p50 against guest size per mode, log-log).
use crate::report::{Report, ScenarioResult};
use anyhow::anyhow;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.01, 1.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn label_of(names: &[String]) -> impl Fn(&SegmentValue<usize>) -> String + '_ {
    move |v| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            names.get(*i).cloned().unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// Latency distribution per scenario.
pub fn latency(r: &Report, path: &Path) -> anyhow::Result<()> {
    let sc: Vec<&ScenarioResult> = r.scenarios.iter().filter(|s| s.latency_ms.n > 0).collect();
    let names: Vec<String> = sc.iter().map(|s| s.name.clone()).collect();
    let (lo, hi) = bounds(sc.iter().flat_map(|s| s.samples_ms.iter().copied()));
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency per scenario (ms, log scale)", r.function.code),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..names.len()).into_segmented(),
            (lo as f32..hi as f32).log_scale(),
        )
        .map_err(err)?;
    let fmt = label_of(&names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() + 1)
        .x_label_formatter(&fmt)
        .y_desc("ms (restore-to-first-response; warm, density: invoke; provisioned, burst: lease-to-response; host-python3: process)")
        .draw()
        .map_err(err)?;
    for (i, s) in sc.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let q = Quartiles::new(&s.samples_ms);
        chart
            .draw_series(std::iter::once(
                Boxplot::new_vertical(SegmentValue::CenterOf(i), &q)
                    .width(28)
                    .style(color.stroke_width(2)),
            ))
            .map_err(err)?;
        chart
            .draw_series(s.samples_ms.iter().map(|v| {
                Circle::new(
                    (SegmentValue::CenterOf(i), *v as f32),
                    2,
                    color.mix(0.45).filled(),
                )
            }))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Phase breakdown as 100% stacked bars, p50 in ms above each bar.
pub fn phases(r: &Report, path: &Path) -> anyhow::Result<()> {
    let sc: Vec<&ScenarioResult> = r.scenarios.iter().filter(|s| s.latency_ms.n > 0).collect();
    let names: Vec<String> = sc.iter().map(|s| s.name.clone()).collect();
    let mut phase_names: Vec<String> = Vec::new();
    for s in &sc {
        for p in &s.phases {
            if !phase_names.contains(&p.name) {
                phase_names.push(p.name.clone());
            }
        }
    }
    let root = SVGBackend::new(path, (1060, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: where the time goes (share of mean; p50 ms on top)",
                r.function.code
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .right_y_label_area_size(10)
        .build_cartesian_2d((0..names.len()).into_segmented(), 0f64..112f64)
        .map_err(err)?;
    let fmt = label_of(&names);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() + 1)
        .x_label_formatter(&fmt)
        .y_desc("% of the scenario's mean latency")
        .draw()
        .map_err(err)?;
    let mut base = vec![0f64; sc.len()];
    for (j, pn) in phase_names.iter().enumerate() {
        let color = Palette99::pick(j + 3).to_rgba();
        let mut bars = Vec::new();
        for (i, s) in sc.iter().enumerate() {
            let total: f64 = s.phases.iter().map(|p| p.mean_ms).sum();
            let v = s
                .phases
                .iter()
                .find(|p| &p.name == pn)
                .map_or(0.0, |p| p.mean_ms);
            if total <= 0.0 || v <= 0.0 {
                continue;
            }
            let h = 100.0 * v / total;
            let mut rect = Rectangle::new(
                [
                    (SegmentValue::Exact(i), base[i]),
                    (SegmentValue::Exact(i + 1), base[i] + h),
                ],
                color.filled(),
            );
            rect.set_margin(0, 0, 14, 14);
            bars.push(rect);
            base[i] += h;
        }
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(pn.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .draw_series(sc.iter().enumerate().map(|(i, s)| {
            Text::new(
                format!("{:.2} ms", s.latency_ms.p50),
                (SegmentValue::CenterOf(i), 108.0),
                ("sans-serif", 13).into_font(),
            )
        }))
        .map_err(err)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Restore p50 against guest size, one line per mode.
pub fn sweep(r: &Report, path: &Path) -> anyhow::Result<()> {
    let pts: Vec<_> = r
        .sweep
        .iter()
        .filter_map(|p| p.latency_ms.map(|l| (p, l)))
        .collect();
    let (lo, hi) = bounds(pts.iter().flat_map(|(_, l)| [l.p50, l.p99]));
    let sizes = r.sweep.iter().map(|p| p.memory_mb as f64);
    let (xmin, xmax) = sizes.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if xmin > xmax {
        return Ok(());
    }
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: restore-to-first-response p50 vs guest size",
                r.function.code
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin / 1.2..xmax * 1.2).log_scale(), (lo..hi).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("guest memory (MiB)")
        .y_desc("p50 ms (log)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(err)?;
    let mut modes: Vec<&str> = Vec::new();
    for p in &r.sweep {
        if !modes.contains(&p.mode.as_str()) {
            modes.push(&p.mode);
        }
    }
    for (i, m) in modes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line: Vec<(f64, f64)> = pts
            .iter()
            .filter(|(p, _)| p.mode == *m)
            .map(|(p, l)| (p.memory_mb as f64, l.p50))
            .collect();
        chart
            .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(m.to_string())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                line.into_iter()
                    .map(|xy| Circle::new(xy, 3, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Draws every chart that has data into `dir`; returns the files written.
pub fn draw_all(r: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if r.scenarios.iter().any(|s| s.latency_ms.n > 0) {
        let p = dir.join("latency.svg");
        latency(r, &p)?;
        out.push(p);
        let p = dir.join("phases.svg");
        phases(r, &p)?;
        out.push(p);
    }
    if r.sweep.iter().any(|p| p.latency_ms.is_some()) {
        let p = dir.join("sweep.svg");
        sweep(r, &p)?;
        out.push(p);
    }
    Ok(out)
}
