//! Latency figures shared by the benchmarks.

use std::time::{Duration, Instant};

/// p50, p99 and throughput of a run of sequential calls.
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub per_sec: f64,
}

/// Calls `call` `calls` times one after another, after a tenth as many to
/// warm up, and measures each.
pub async fn sequential<F, Fut>(calls: usize, mut call: F) -> Figures
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for _ in 0..calls / 10 {
        call().await;
    }
    let mut samples = Vec::with_capacity(calls);
    let start = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        call().await;
        samples.push(t.elapsed());
    }
    let total = start.elapsed();
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    Figures { p50: at(0.5), p99: at(0.99), per_sec: calls as f64 / total.as_secs_f64() }
}
