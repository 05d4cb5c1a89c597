//! The EPA appliance configuration.
//!
//! This crate will own the versioned TOML schema for `epa run` (listen addresses, data dir,
//! keys, tenants, backends, limits, logging), its defaults, validation with errors that name the
//! file, line, field and fix, the host tuning profile and the `epa doctor` checks.
//! Nothing is implemented here yet: the appliance and operator issues fill it.
#![forbid(unsafe_code)]
