//! The EPA job scheduler.
//!
//! This crate will own jobs and their stages (`decap → execute → prove → publish`), per-tenant
//! fair queues with weights and reserved capacity, admission control by a memory estimate,
//! placement on NUMA-pinned CPU pools and GPUs (hwloc topologies), the durable RocksDB job
//! journal, crash recovery, cancellation and progress. It knows nothing of the network.
//! Nothing is implemented here yet: the appliance and NUMA issues fill it.
#![forbid(unsafe_code)]
