//! Helpers shared by the GPU timing tests.

pub mod kernel_timings;
