//! The libtest-mimic harness of the CUDA device tests (`kernels/tests/cuda.rs`,
//! `kernels/tests/cuda_mlkem.rs`, and `prover/tests/accel_cuda.rs`, which includes this file by
//! path): the backend is opened once; where there is no CUDA driver (or NVRTC, or a device)
//! every device test is reported as *ignored* and one line "skipped: no CUDA driver (<reason>)"
//! goes to stderr; running them anyway (`--ignored`) fails them. With `EPA_REQUIRE_CUDA=1` a
//! missing driver fails them instead, and any other start-up error fails them too.

use std::sync::Arc;

use libtest_mimic::{Arguments, Failed, Trial};

/// Environment variable that turns a missing driver into a failure.
pub const REQUIRE_ENV: &str = "EPA_REQUIRE_CUDA";

/// Whether `EPA_REQUIRE_CUDA=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1")
}

/// What opening the backend found, once for the whole run.
pub enum Driver<B> {
    /// A working backend, shared by the device tests.
    Present(Arc<B>),
    /// No CUDA driver, NVRTC or device (`NoCuda`), with the reason.
    Missing(String),
    /// A driver that failed to start the backend: a real failure.
    Broken(String),
}

impl<B> Clone for Driver<B> {
    fn clone(&self) -> Self {
        match self {
            Self::Present(b) => Self::Present(Arc::clone(b)),
            Self::Missing(r) => Self::Missing(r.clone()),
            Self::Broken(e) => Self::Broken(e.clone()),
        }
    }
}

impl<B: Send + Sync + 'static> Driver<B> {
    /// The trial `name` running `test` on the shared backend: ignored when `measurement` is
    /// set or without a driver (unless `EPA_REQUIRE_CUDA=1`), and failing with the reason when
    /// run without one.
    pub fn trial(
        &self,
        name: &str,
        test: impl FnOnce(Arc<B>) + Send + 'static,
        measurement: bool,
    ) -> Trial {
        let driver = self.clone();
        let skip = matches!(self, Self::Missing(_)) && !required();
        Trial::test(name, move || match driver {
            Self::Present(b) => {
                test(b);
                Ok(())
            }
            Self::Missing(reason) if required() => Err(Failed::from(format!(
                "{REQUIRE_ENV}=1 but the CUDA backend is unavailable: {reason}"
            ))),
            Self::Missing(reason) => Err(Failed::from(format!(
                "this test needs a CUDA driver, and there is none: {reason}; run it on a GPU \
                 machine (scripts/gpu-suite.sh)"
            ))),
            Self::Broken(error) => Err(Failed::from(format!(
                "the CUDA backend failed to start: {error}"
            ))),
        })
        .with_ignored_flag(skip || measurement)
    }

    /// Runs `trials` under `args`, first printing the one "skipped: no CUDA driver" line where
    /// a device test the run selects is skipped for want of a driver.
    pub fn run(&self, args: &Arguments, trials: Vec<Trial>) -> ! {
        if let Self::Missing(reason) = self
            && !required()
            && !args.list
            && trials
                .iter()
                .any(|t| t.has_ignored_flag() && !args.is_filtered_out(t))
        {
            eprintln!("skipped: no CUDA driver ({reason})");
        }
        libtest_mimic::run(args, trials).exit()
    }
}
