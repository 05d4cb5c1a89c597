//! The EPA embedded light node.
//!
//! This crate will own the wire protocol (a sans-IO, versioned, length-checked codec), the QUIC
//! server and client (quinn, ALPN `epa/1`), peer authentication with ML-DSA, shard
//! subscriptions with server-pushed commitments, the light-client view of the chain and the HTTP
//! face (`/metrics`, `/status`, `/healthz`, `/readyz`). It knows nothing of the scheduler.
//! Nothing is implemented here yet: the appliance issue fills it.
#![forbid(unsafe_code)]
