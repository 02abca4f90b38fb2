//! The client's merge-and-render throughput: gadget-trace's bench-only
//! `merge_throughput` example, K simulated node streams through the
//! client's real merge and renderer, run as a child so that its CPU time
//! and peak memory are its own.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use super::process::{reset_own_peak_rss, wait_with_usage};

/// One run of the merge harness.
#[derive(Debug, Clone, Copy)]
pub struct MergeRun {
    /// Simulated nodes.
    pub nodes: usize,
    /// Events merged and rendered.
    pub events: u64,
    /// Wall-clock seconds of the merge.
    pub seconds: f64,
    /// CPU seconds of the whole process (decoding, merging, rendering,
    /// writing to /dev/null; its start-up is a few milliseconds).
    pub cpu_seconds: f64,
    /// Peak resident memory, KiB.
    pub peak_rss_kib: u64,
    /// Events the merge printed before their window passed because its
    /// buffer was full.
    pub released_early: u64,
    /// Events printed out of order.
    pub out_of_order: u64,
}

/// Runs `harness` for `nodes` streams of `events` events in all, rendered
/// as `format`, its rows written to /dev/null.
pub fn measure(harness: &Path, nodes: usize, events: u64, format: &str) -> Result<MergeRun> {
    reset_own_peak_rss()?;
    let child = Command::new(harness)
        .args([&nodes.to_string(), &events.to_string(), format])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", harness.display()))?;
    // The harness writes a few short lines to stderr at its end, which
    // fit in the pipe: reading them after the exit cannot deadlock.
    let mut child = child;
    let mut stderr = child.stderr.take().context("no stderr pipe")?;
    let (status, usage) = wait_with_usage(child)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text)?;
    if !status.success() {
        bail!("{} failed ({status}): {}", harness.display(), text.trim());
    }
    let summary: serde_json::Value = serde_json::from_str(
        text.lines()
            .last()
            .context("the merge harness printed no summary")?,
    )
    .with_context(|| format!("the merge harness printed: {text}"))?;
    let number = |key: &str| {
        summary[key]
            .as_u64()
            .with_context(|| format!("no {key} in {text}"))
    };
    Ok(MergeRun {
        nodes,
        events: number("events")?,
        seconds: summary["seconds"].as_f64().context("no seconds")?,
        cpu_seconds: usage.cpu_seconds,
        peak_rss_kib: usage.peak_rss_kib,
        released_early: number("released_early")?,
        out_of_order: number("out_of_order")?,
    })
}
