//! Compute backends for EPA.
//!
//! This crate will own the `Backend` API from the design (what a backend is: name, device,
//! memory, capabilities) and its implementations:
//!
//! 1. `cpu`: a scalar reference path plus AVX2 / AVX-512 paths chosen at run time;
//! 2. `wgpu`: WGSL compute shaders for any Vulkan, Metal or DX12 GPU;
//! 3. `cuda`: CUDA kernels through `cudarc` with dynamic loading.
//!
//! Operations: batched Goldilocks NTT and coset LDE, Rescue-Prime / BLAKE3 Merkle trees and
//! batched ML-KEM-768 decapsulation, with one conformance suite every backend must pass.
//! It is the only crate of the workspace allowed to contain `unsafe` code, each block with a
//! `// SAFETY:` comment. Nothing is implemented here yet: the accelerated-backend issues fill it.
