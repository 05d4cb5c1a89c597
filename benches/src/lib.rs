//! EPA benchmarks.
//!
//! Criterion micro-benchmarks live under `benches/` of each crate that owns the measured code;
//! this crate will own the `epa bench` perf suite (ours against the anchors, side by side in one
//! process, JSON + Markdown report). Nothing is implemented here yet.
#![forbid(unsafe_code)]
