//! What `/metrics` reports, in the Prometheus text format: requests by module and status,
//! runs by verdict, traps and timeouts, warm instances alive, queue length, and request
//! latency quantiles over the most recent requests.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

/// Latencies kept for the quantiles.
const WINDOW: usize = 10_000;

#[derive(Default)]
pub struct Metrics {
    /// (module or route, HTTP status) → requests.
    requests: BTreeMap<(String, u16), u64>,
    /// (module, verdict) → runs.
    verdicts: BTreeMap<(String, &'static str), u64>,
    traps: BTreeMap<String, u64>,
    timeouts: BTreeMap<String, u64>,
    /// Seconds, most recent last.
    latencies: VecDeque<f64>,
    latency_sum: f64,
    latency_count: u64,
}

impl Metrics {
    pub fn request(&mut self, module: &str, status: u16, seconds: f64) {
        *self.requests.entry((module.to_string(), status)).or_default() += 1;
        if self.latencies.len() == WINDOW {
            self.latencies.pop_front();
        }
        self.latencies.push_back(seconds);
        self.latency_sum += seconds;
        self.latency_count += 1;
    }

    pub fn run(&mut self, module: &str, verdict: &'static str, trapped: bool, timed_out: bool) {
        *self.verdicts.entry((module.to_string(), verdict)).or_default() += 1;
        if trapped {
            *self.traps.entry(module.to_string()).or_default() += 1;
        }
        if timed_out {
            *self.timeouts.entry(module.to_string()).or_default() += 1;
        }
    }

    /// The exposition; `pools` is (module, warm instances alive), `queued` the runs waiting.
    pub fn render(&self, pools: &[(String, usize)], queued: usize, workers: usize) -> String {
        let mut out = String::new();
        let label = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out += "# HELP wasce_requests_total HTTP requests answered, by module (or route) and status.\n# TYPE wasce_requests_total counter\n";
        for ((m, status), n) in &self.requests {
            let _ = writeln!(out, "wasce_requests_total{{module=\"{}\",status=\"{status}\"}} {n}", label(m));
        }
        out += "# HELP wasce_runs_total Runs finished, by module and verdict.\n# TYPE wasce_runs_total counter\n";
        for ((m, v), n) in &self.verdicts {
            let _ = writeln!(out, "wasce_runs_total{{module=\"{}\",verdict=\"{v}\"}} {n}", label(m));
        }
        out += "# HELP wasce_traps_total Runs that ended in a trap (timeouts included).\n# TYPE wasce_traps_total counter\n";
        for (m, n) in &self.traps {
            let _ = writeln!(out, "wasce_traps_total{{module=\"{}\"}} {n}", label(m));
        }
        out += "# HELP wasce_timeouts_total Runs interrupted at their time limit.\n# TYPE wasce_timeouts_total counter\n";
        for (m, n) in &self.timeouts {
            let _ = writeln!(out, "wasce_timeouts_total{{module=\"{}\"}} {n}", label(m));
        }
        out += "# HELP wasce_pool_instances Warm instances alive (one per worker unless one could not be reset).\n# TYPE wasce_pool_instances gauge\n";
        for (m, n) in pools {
            let _ = writeln!(out, "wasce_pool_instances{{module=\"{}\"}} {n}", label(m));
        }
        let _ = writeln!(out, "# HELP wasce_workers Worker threads.\n# TYPE wasce_workers gauge\nwasce_workers {workers}");
        let _ = writeln!(out, "# HELP wasce_queued_runs Runs waiting for a worker.\n# TYPE wasce_queued_runs gauge\nwasce_queued_runs {queued}");
        out += "# HELP wasce_request_duration_seconds Time from a request's arrival to its response, over the last 10000 requests.\n# TYPE wasce_request_duration_seconds summary\n";
        let mut sorted: Vec<f64> = self.latencies.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let v = if sorted.is_empty() { f64::NAN } else { sorted[((sorted.len() - 1) as f64 * q).round() as usize] };
            let _ = writeln!(out, "wasce_request_duration_seconds{{quantile=\"{q}\"}} {v}");
        }
        let _ = writeln!(out, "wasce_request_duration_seconds_sum {}", self.latency_sum);
        let _ = writeln!(out, "wasce_request_duration_seconds_count {}", self.latency_count);
        out
    }
}
