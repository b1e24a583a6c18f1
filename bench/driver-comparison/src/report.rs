//! Percentiles of one run, and the summary table over the repeats of every configuration.

use std::collections::BTreeMap;

use crate::Variant;

/// The outcome of one run.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub per_second: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Sample {
    pub fn new(per_second: f64, latencies_us: &mut [u64]) -> Self {
        latencies_us.sort_unstable();
        Self {
            per_second,
            p50_us: percentile(latencies_us, 0.50),
            p99_us: percentile(latencies_us, 0.99),
        }
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    // Nearest rank.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The repeats of one configuration: median rate, its min and max, median p50 and p99.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub per_second: f64,
    pub low: f64,
    pub high: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Summary {
    pub fn of(runs: &[Sample]) -> Self {
        let mut rates: Vec<f64> = runs.iter().map(|s| s.per_second).collect();
        let per_second = median(&mut rates);
        Self {
            per_second,
            low: rates.first().copied().unwrap_or(0.0),
            high: rates.last().copied().unwrap_or(0.0),
            p50_us: median(&mut runs.iter().map(|s| s.p50_us as f64).collect::<Vec<_>>()),
            p99_us: median(&mut runs.iter().map(|s| s.p99_us as f64).collect::<Vec<_>>()),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn print_summary(samples: &BTreeMap<(usize, Variant), Vec<Sample>>) {
    println!(
        "\n| C | variant | round trips per append | appends/s median | min–max | spread | vs sqlx-adapter | p50 µs | p99 µs |"
    );
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    let baseline = |c: usize| {
        samples
            .get(&(c, Variant::SqlxAdapter))
            .map(|s| Summary::of(s).per_second)
    };
    for (&(c, variant), runs) in samples {
        let Summary {
            per_second: mid,
            low,
            high,
            p50_us: p50,
            p99_us: p99,
        } = Summary::of(runs);
        let spread = if mid > 0.0 {
            (high - low) / mid * 100.0
        } else {
            0.0
        };
        let ratio = baseline(c).map_or("".to_owned(), |b| format!("{:.2}×", mid / b));
        println!(
            "| {c} | {} | {} | {mid:.0} | {low:.0}–{high:.0} | {spread:.0}% | {ratio} | {p50:.0} | {p99:.0} |",
            variant.name(),
            variant.round_trips()
        );
    }
}
