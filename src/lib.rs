//! The EPA appliance library: the command-line front end and the wiring of the member crates.
//!
//! The binary `epa` is a thin shell over [`cli`]; everything it does is reachable from here so
//! the tests drive the same code paths an operator does.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod cli;
pub mod doctor;
pub mod logging;
