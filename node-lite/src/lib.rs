//! The EPA embedded light node: the wire protocol, the QUIC server and client, and the HTTP
//! face. It knows nothing of the scheduler: the appliance plugs its logic in through the
//! [`server::Service`] trait and its numbers through the [`http::StatusProvider`] trait.
//!
//! Using it, in steps:
//!
//! 1. Create the appliance's TLS identity with [`tls::Identity::generate`] and publish its
//!    [`tls::Identity::fingerprint`]: clients pin it.
//! 2. Implement [`server::Service`] (what to do with a batch, a proving job, a status query, a
//!    proof fetch, a subscription) and start a [`server::Server`] on a UDP address.
//! 3. Clients (aggregators, validators, the CLI) [`client::Client::connect`] with the pinned
//!    fingerprint and call `submit_batch`, `submit_proving_job`, `job_status`, `fetch_proof`,
//!    `subscribe`.
//! 4. Serve `/metrics`, `/status`, `/healthz` and `/readyz` with [`http::HttpServer::bind`]
//!    over a [`http::StatusProvider`].
//!
//! The byte format is defined in [`wire`] (sans-IO, usable without any runtime) and specified
//! in `docs/wire.md`.
#![forbid(unsafe_code)]

pub mod client;
mod error;
pub mod http;
pub mod server;
pub mod tls;
pub mod wire;

pub use error::Error;
