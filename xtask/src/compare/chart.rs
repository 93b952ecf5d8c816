//! The chart of the README: cachet's figure divided by each peer's, one bar
//! per figure and peer, with the targets drawn as lines (1x: at least
//! equal; 1.5x: the resumed-handshake target).

use std::path::Path;

use anyhow::{anyhow, Result};

use plotters::prelude::*;

use super::servers::{Kind, PEERS};

/// One bar: what it compares, against whom, and cachet / peer.
pub(crate) struct Bar {
    pub label: String,
    pub peer: Kind,
    pub ratio: f64,
}

/// Bars longer than this are cut.
const MAX_SHOWN: f64 = 3.0;

fn colour(peer: Kind) -> RGBColor {
    match peer {
        Kind::Nginx => RGBColor(0x00, 0x96, 0x39),
        Kind::Haproxy => RGBColor(0x1f, 0x5f, 0xa8),
        Kind::Hitch => RGBColor(0xd9, 0x7a, 0x00),
        Kind::Sozu => RGBColor(0x8e, 0x44, 0xad),
        Kind::Cachet => RGBColor(0x55, 0x55, 0x55),
    }
}

/// Draws `bars` (top to bottom) into an SVG file at `path`.
pub(crate) fn draw(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    draw_inner(path, title, bars).map_err(|e| anyhow!("{}: {e}", path.display()))
}

fn draw_inner(path: &Path, title: &str, bars: &[Bar]) -> Result<(), Box<dyn std::error::Error>> {
    let rows = bars.len().max(1);
    let height = 110 + 22 * rows as u32;
    let root = SVGBackend::new(path, (960, height)).into_drawing_area();
    root.fill(&WHITE)?;
    // Ratios far from 1 (a peer that cannot resume at all) would squash the
    // bars that matter; longer bars are cut at the edge and keep their
    // figure as a label.
    let widest = bars.iter().map(|b| b.ratio).fold(2.0, f64::max);
    let x_max = (widest.min(MAX_SHOWN) * 1.15).ceil();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(290)
        .build_cartesian_2d(0f64..x_max, (0..rows).into_segmented())?;
    // Row 0 is drawn at the bottom; the list reads top to bottom.
    let row_of = |i: usize| rows - 1 - i;
    let labels: Vec<String> = (0..rows)
        .map(|row| {
            bars.get(rows - 1 - row)
                .map_or_else(String::new, |b| b.label.clone())
        })
        .collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows)
        .y_label_formatter(&|value| match value {
            SegmentValue::CenterOf(row) => labels.get(*row).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .light_line_style(WHITE)
        .x_desc("cachet / peer (higher is better for cachet)")
        .x_label_formatter(&|x| format!("{x:.1}x"))
        .draw()?;
    for peer in PEERS {
        let style = colour(peer).filled();
        let series = bars
            .iter()
            .enumerate()
            .filter(|(_, b)| b.peer == peer)
            .map(|(i, b)| {
                let row = row_of(i);
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (b.ratio.min(x_max), SegmentValue::Exact(row + 1)),
                    ],
                    style,
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            });
        chart
            .draw_series(series)?
            .label(peer.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], style));
    }
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!(" {:.2}x", b.ratio),
            (b.ratio.min(x_max * 0.9), SegmentValue::CenterOf(row_of(i))),
            ("sans-serif", 12),
        )
    }))?;
    for (target, style) in [(1.0, BLACK), (1.5, RED)] {
        chart.draw_series(LineSeries::new(
            [
                (target, SegmentValue::Exact(0)),
                (target, SegmentValue::Exact(rows)),
            ],
            style.stroke_width(1),
        ))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg() {
        let svg_file = tempfile::Builder::new().suffix(".svg").tempfile().unwrap();
        let bars = [
            Bar {
                label: "resumed 1.3 (ECDSA)".into(),
                peer: Kind::Nginx,
                ratio: 1.7,
            },
            Bar {
                label: "resumed 1.3 (ECDSA)".into(),
                peer: Kind::Haproxy,
                ratio: 0.8,
            },
        ];
        draw(svg_file.path(), "test", &bars).unwrap();
        let svg = std::fs::read_to_string(svg_file.path()).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("resumed 1.3 (ECDSA)") && svg.contains("1.70x"));
    }
}
