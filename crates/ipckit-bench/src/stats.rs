//! Medians, spreads and the histogram summary used by every row.

use hdrhistogram::Histogram;
use serde::Serialize;

/// A spread over this many percent marks a row as noisy.
pub const NOISY_PCT: f64 = 20.0;

/// Median of the values (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// (max - min) / median, in percent; `None` with fewer than two values or a zero median.
pub fn spread_pct(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    let med = median(&v)?;
    if med == 0.0 {
        return None;
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((max - min) / med * 100.0)
}

/// The latency percentiles the report shows, in ns.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Summarises a histogram of ns samples.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: h.value_at_quantile(0.50) as f64,
            p99: h.value_at_quantile(0.99) as f64,
            p999: h.value_at_quantile(0.999) as f64,
            max: h.max() as f64,
        }
    }

    /// Field-wise median across repeats.
    pub fn median_of(all: &[Percentiles]) -> Option<Percentiles> {
        let f = |g: fn(&Percentiles) -> f64| median(&all.iter().map(g).collect::<Vec<_>>());
        Some(Percentiles {
            p50: f(|p| p.p50)?,
            p99: f(|p| p.p99)?,
            p999: f(|p| p.p999)?,
            max: f(|p| p.max)?,
        })
    }
}

/// A histogram for ns samples from 1 ns to 100 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    #[test]
    fn spread() {
        assert_eq!(spread_pct(&[10.0]), None);
        let s = spread_pct(&[90.0, 100.0, 110.0]).unwrap();
        assert!((s - 20.0).abs() < 1e-9);
        assert!(spread_pct(&[80.0, 100.0, 125.0]).unwrap() > NOISY_PCT);
    }

    #[test]
    fn percentiles_from_histogram() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h);
        assert!((p.p50 - 500.0).abs() <= 1.0);
        assert!((p.p99 - 990.0).abs() <= 1.0);
        assert_eq!(p.max, 1000.0);
    }
}
