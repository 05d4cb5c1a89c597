//! The crate's error type.

use crate::cpu::Isa;

/// Everything that can go wrong when building a backend or calling one of its operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An instruction set was requested (constructor argument or `EPA_SIMD`) that this CPU
    /// does not have.
    #[error(
        "the CPU backend was asked for {requested} but this CPU lacks it (best available: \
         {available}); request {available} or scalar, or unset EPA_SIMD"
    )]
    UnsupportedIsa {
        /// What was requested.
        requested: Isa,
        /// The best instruction set this CPU does support.
        available: Isa,
    },
    /// The `EPA_SIMD` environment variable holds something other than an instruction set name.
    #[error("EPA_SIMD is {value:?}; set it to one of scalar, avx2, avx512, or unset it")]
    InvalidSimdEnv {
        /// The value found.
        value: String,
    },
    /// A length that must be a power of two is not.
    #[error("{what} must be a power of two, but is {len}; pad the input to a power of two")]
    NotPowerOfTwo {
        /// Which length.
        what: &'static str,
        /// The length found.
        len: usize,
    },
    /// A transform is larger than Goldilocks' two-adic subgroup (2^32 points) or than memory
    /// indexing allows.
    #[error(
        "{what} needs 2^{log_size} points, more than the 2^{max_log} supported; split the work"
    )]
    TooLarge {
        /// Which transform.
        what: &'static str,
        /// Log2 of the requested size.
        log_size: u32,
        /// Log2 of the largest supported size.
        max_log: u32,
    },
    /// Matrix dimensions do not fit together.
    #[error("{what}: expected {expected}, found {found}; fix the matrix shape")]
    Shape {
        /// What was checked.
        what: &'static str,
        /// The expected value.
        expected: usize,
        /// The value found.
        found: usize,
    },
    /// A coset LDE was asked for with the zero domain offset (a coset needs a unit).
    #[error("the LDE domain offset is zero; use a non-zero offset such as the field generator")]
    ZeroOffset,
    /// A Merkle tree needs at least two leaves.
    #[error("a Merkle tree needs at least 2 leaves, got {leaves}; commit to a larger matrix")]
    TooFewLeaves {
        /// Number of leaves given.
        leaves: usize,
    },
    /// The backend does not implement the operation (see its `BackendInfo::capabilities`).
    #[error(
        "the {backend} backend does not implement {operation}; check its capabilities first \
         and use the CPU backend for this operation"
    )]
    Unsupported {
        /// Name of the backend.
        backend: String,
        /// The operation asked for.
        operation: &'static str,
    },
    /// No GPU adapter with 64-bit shader integers (`SHADER_INT64`) was found for the wgpu
    /// backend.
    #[error(
        "no wgpu adapter with 64-bit shader integers found ({detail}); install a Vulkan driver \
         (e.g. Mesa's lavapipe from mesa-vulkan-drivers) or use the CPU backend"
    )]
    NoAdapter {
        /// What was found instead.
        detail: String,
    },
    /// The GPU device reported an error (validation, out of memory, device lost) during an
    /// operation; its result is unusable.
    #[error(
        "the GPU device {adapter} failed during {what}: {detail}; retry the work on the CPU \
         backend and check the driver"
    )]
    Gpu {
        /// The adapter's name.
        adapter: String,
        /// The operation that failed.
        what: String,
        /// The device's error message.
        detail: String,
    },
    /// A buffer would exceed the device's limits.
    #[error(
        "{what} needs a device buffer of {bytes} bytes, more than this device allows \
         ({limit} bytes); split the work into smaller matrices or use the CPU backend"
    )]
    DeviceMemory {
        /// The buffer that was too large.
        what: &'static str,
        /// Bytes needed.
        bytes: u64,
        /// The device's limit in bytes.
        limit: u64,
    },
    /// The CUDA backend cannot start here: no CUDA driver library (`libcuda`), no device, or no
    /// NVRTC library to compile the kernels with.
    #[error(
        "no CUDA driver: {detail}; install the NVIDIA driver (and NVRTC for the kernels, e.g. \
         the nvidia-cuda-nvrtc-cu12 wheel on LD_LIBRARY_PATH) or use the wgpu or CPU backend"
    )]
    NoCuda {
        /// What is missing.
        detail: String,
    },
    /// A CUDA driver call or an NVRTC compilation failed during an operation; its result is
    /// unusable.
    #[error(
        "the CUDA device {device} failed during {what}: {detail}; retry the work on the CPU \
         backend and check the driver (nvidia-smi)"
    )]
    Cuda {
        /// The device's name (or `nvrtc` for a compilation).
        device: String,
        /// The operation that failed.
        what: String,
        /// The driver's or compiler's message.
        detail: String,
    },
}
