//! The `epa bench` suites without the `epa` binary (which links the system RocksDB and
//! hwloc): for a GPU machine that has neither.
//!
//! ```text
//! cargo run --release -p epa-benches --example bench -- --suite kernels [--quick] [--json PATH]
//! ```
//!
//! It calls the same library function as `epa bench` ([`epa_benches::run_suite`]) with the
//! same sizes (full, or `--quick`; `EPA_BENCH_TINY=1` for the test sizes), prints the same
//! table and writes the same JSON.

use std::process::ExitCode;

use epa_benches::{SuiteOptions, run_suite};

const USAGE: &str = "usage: bench [--suite kernels|kem] [--quick] [--json PATH]";

fn main() -> ExitCode {
    let mut suite = "kernels".to_owned();
    let mut quick = false;
    let mut json = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--suite" | "--json" => {
                let Some(value) = args.next() else {
                    eprintln!("bench: `{arg}` needs a value\n{USAGE}");
                    return ExitCode::from(2);
                };
                if arg == "--suite" {
                    suite = value;
                } else {
                    json = Some(value);
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("bench: unknown argument `{other}`\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let options = if std::env::var_os("EPA_BENCH_TINY").is_some() {
        SuiteOptions::tiny()
    } else if quick {
        SuiteOptions::quick()
    } else {
        SuiteOptions::full()
    };
    let report = match run_suite(&suite, &options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench: running suite `{suite}`: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.table());
    if let Some(path) = json
        && let Err(e) = std::fs::write(&path, report.to_json())
    {
        eprintln!("bench: writing the report to {path}: {e}; check that the folder exists");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
