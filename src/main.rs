//! `epa`: the Ecliptica Prover Appliance command line.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    epa::cli::main()
}
