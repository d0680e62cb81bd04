//! Horizontal grouped bar charts as standalone SVG (no dependencies: a few elements of text).

/// A chart: one group of bars per row, one bar per series.
pub struct Bars {
    pub title: String,
    /// Unit of the values, shown on the axis.
    pub unit: String,
    pub series: Vec<String>,
    /// (row label, one value per series; NaN = no bar).
    pub rows: Vec<(String, Vec<f64>)>,
    /// A vertical reference line (e.g. ratio 1.0).
    pub reference: Option<f64>,
    /// Logarithmic value axis (for values spanning orders of magnitude).
    pub log: bool,
}

const COLORS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];
const LABEL_W: f64 = 230.0;
const PLOT_W: f64 = 560.0;
const BAR_H: f64 = 11.0;
const GAP: f64 = 7.0;
const TOP: f64 = 52.0;

impl Bars {
    pub fn render(&self) -> String {
        let values = self.rows.iter().flat_map(|r| r.1.iter().copied()).chain(self.reference).filter(|v| v.is_finite() && *v > 0.0);
        let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let hi = if hi > 0.0 { hi } else { 1.0 };
        let (axis_lo, axis_hi) = if self.log { (10f64.powf(lo.min(hi).log10().floor()), 10f64.powf(hi.log10().ceil())) } else { (0.0, hi * 1.08) };
        let x = |v: f64| -> f64 {
            let f = if self.log { (v.max(axis_lo).log10() - axis_lo.log10()) / (axis_hi.log10() - axis_lo.log10()) } else { v / axis_hi };
            LABEL_W + f.clamp(0.0, 1.0) * PLOT_W
        };
        let group_h = self.series.len() as f64 * BAR_H + GAP;
        let height = TOP + self.rows.len() as f64 * group_h + 40.0;
        let width = LABEL_W + PLOT_W + 90.0;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
            esc(&self.title)
        );
        for (i, name) in self.series.iter().enumerate() {
            let lx = LABEL_W + i as f64 * 150.0;
            s += &format!(
                "<rect x=\"{lx}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"37\">{}</text>\n",
                COLORS[i % COLORS.len()],
                lx + 14.0,
                esc(name)
            );
        }
        for (r, (label, vals)) in self.rows.iter().enumerate() {
            let y0 = TOP + r as f64 * group_h;
            s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", LABEL_W - 6.0, y0 + group_h / 2.0, esc(label));
            for (i, v) in vals.iter().enumerate() {
                if !v.is_finite() {
                    continue;
                }
                let y = y0 + i as f64 * BAR_H;
                let w = (x(*v) - LABEL_W).max(1.0);
                s += &format!(
                    "<rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{}\" font-size=\"9\">{}</text>\n",
                    BAR_H - 1.0,
                    COLORS[i % COLORS.len()],
                    LABEL_W + w + 3.0,
                    y + BAR_H - 2.0,
                    short(*v)
                );
            }
        }
        let bottom = height - 30.0;
        s += &format!("<line x1=\"{LABEL_W}\" y1=\"{TOP}\" x2=\"{LABEL_W}\" y2=\"{bottom}\" stroke=\"black\"/>\n");
        let ticks: Vec<f64> = if self.log {
            let mut t = vec![axis_lo];
            while *t.last().unwrap() < axis_hi {
                let next = t.last().unwrap() * 10.0;
                t.push(next);
            }
            t
        } else {
            (0..=4).map(|i| axis_hi * i as f64 / 4.0).collect()
        };
        for t in ticks {
            s += &format!(
                "<line x1=\"{0:.1}\" y1=\"{bottom}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#999\"/><text x=\"{0:.1}\" y=\"{2}\" text-anchor=\"middle\" font-size=\"9\">{3}</text>\n",
                x(t),
                bottom + 4.0,
                bottom + 14.0,
                short(t)
            );
        }
        s += &format!("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", LABEL_W + PLOT_W / 2.0, bottom + 27.0, esc(&self.unit));
        if let Some(r) = self.reference {
            s += &format!("<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{bottom}\" stroke=\"red\" stroke-dasharray=\"4 3\"/>\n", x(r));
        }
        s + "</svg>\n"
    }
}

fn short(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_every_bar_and_escapes_labels() {
        let chart = super::Bars {
            title: "t<1>".into(),
            unit: "ms".into(),
            series: vec!["a".into(), "b".into()],
            rows: vec![("x".into(), vec![1.0, 2.0]), ("y".into(), vec![f64::NAN, 30.0])],
            reference: Some(1.0),
            log: true,
        };
        let svg = chart.render();
        // Three bars (the NaN has none) and the first legend swatch start at the label column.
        assert_eq!(svg.matches("<rect x=\"230\"").count(), 4);
        assert!(svg.contains("t&lt;1&gt;") && svg.ends_with("</svg>\n"));
    }
}
