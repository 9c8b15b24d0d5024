//! `--svg FILE`: a bar chart of the ratios per row (shmproc ÷ Python, shmproc ÷ limit,
//! shmproc ÷ peer crate), log scale.

use std::error::Error;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::row::Row;

/// A row with its ratios: ÷ Python, ÷ limit, ÷ peer.
type Ratios<'a> = (&'a Row, Option<f64>, Option<f64>, Option<f64>);

/// Draws the chart of every row that has a ratio into `path`.
pub(crate) fn draw(path: &Path, rows: &[Row], title: &str) -> Result<(), Box<dyn Error>> {
    // A peers row has neither a Python nor a limit figure: its ×peer takes the limit's bar.
    let rows: Vec<Ratios<'_>> = rows
        .iter()
        .filter(|r| r.family != "limit" && r.family != "overhead")
        .map(|r| (r, r.ratio_python(), r.ratio_limit(), r.ratio_peer()))
        .filter(|(_, p, l, x)| p.is_some() || l.is_some() || x.is_some())
        .collect();
    let n = rows.len().max(1);
    let height = 140 + 34 * n as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let all = rows.iter().flat_map(|(_, p, l, x)| [*p, *l, *x]).flatten();
    let (lo, hi) = all.fold((0.1f64, 10.0f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    let (lo, hi) = (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil()),
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(300)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("shmproc ÷ other (log scale; > 1 means shmproc is faster)")
        .x_label_formatter(&|x| format!("{x}×"))
        .draw()?;
    let bar = |i: usize, k: f64, r: f64, color: RGBColor| {
        let y = n as f64 - i as f64 - 1.0;
        Rectangle::new(
            [(lo, y + 0.1 + 0.4 * k), (r, y + 0.5 + 0.4 * k)],
            color.filled(),
        )
    };
    let python = RGBColor(55, 118, 171);
    let limit = RGBColor(222, 165, 0);
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .filter_map(|(i, (_, p, _, _))| Some(bar(i, 1.0, (*p)?, python))),
        )?
        .label("shmproc ÷ Python multiprocessing")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], python.filled()));
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .filter_map(|(i, (_, _, l, _))| Some(bar(i, 0.0, (*l)?, limit))),
        )?
        .label("shmproc ÷ bare mechanism (machine limit)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], limit.filled()));
    let peer = RGBColor(60, 160, 90);
    chart
        .draw_series(
            rows.iter()
                .enumerate()
                .filter_map(|(i, (_, _, _, x))| Some(bar(i, 0.0, (*x)?, peer))),
        )?
        .label("shmproc ÷ peer crate (same run)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], peer.filled()));
    chart.draw_series(LineSeries::new([(1.0, 0.0), (1.0, n as f64)], &BLACK))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    let style = ("sans-serif", 13)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (r, _, _, _)) in rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(lo, n as f64 - i as f64 - 0.5));
        let label = match r.peer {
            Some((name, _)) => format!("{}: {} vs {name}", r.family, r.case),
            None => format!("{}: {}", r.family, r.case),
        };
        root.draw(&Text::new(label, (x - 6, y), style.clone()))?;
    }
    if rows.is_empty() {
        root.draw(&Text::new("no ratios to draw", (400, 80), style))?;
    }
    root.present()?;
    Ok(())
}
