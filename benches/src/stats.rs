//! Small statistics: medians and percentiles of samples, ratios of interleaved pairs.

use std::fmt;

/// The value at quantile `q` (0..=1) of `v` (nearest rank).
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * q).round() as usize]
}

pub fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

pub fn geomean(v: &[f64]) -> f64 {
    (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp()
}

/// A median with its range.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(v: &[f64]) -> Spread {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Spread { median: median(v), min, max }
    }

    /// The ratio `a / b` of each interleaved pair (sample i of each was taken back to back).
    pub fn ratios(a: &[f64], b: &[f64]) -> Spread {
        assert_eq!(a.len(), b.len(), "ratios need pairs");
        Spread::of(&a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>())
    }

    /// Format with `digits` decimals as `median [min–max]`.
    pub fn fmt(&self, digits: usize) -> String {
        format!("{:.d$} [{:.d$}–{:.d$}]", self.median, self.min, self.max, d = digits)
    }
}

/// A ratio shown as `1.23× (1.10–1.40)`.
impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = if self.median >= 10.0 { 0 } else if self.median >= 1.0 { 2 } else { 3 };
        write!(f, "{:.d$}× ({:.d$}–{:.d$})", self.median, self.min, self.max, d = d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_percentiles_and_means() {
        let r = Spread::ratios(&[2.0, 3.0, 8.0], &[1.0, 1.0, 2.0]);
        assert_eq!((r.median, r.min, r.max), (3.0, 2.0, 4.0));
        assert_eq!(percentile(&[5.0, 1.0, 3.0, 2.0, 4.0], 0.99), 5.0);
        assert!((geomean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert_eq!(format!("{r}"), "3.00× (2.00–4.00)");
    }
}
