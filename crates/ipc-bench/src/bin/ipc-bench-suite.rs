//! `ipc-bench-suite`: runs the benchmark scenarios against ipc-server and the reference servers
//! in one run, prints a table of figures and ratios, and writes them as JSON.
//!
//! Build everything in release mode first:
//! `cargo build --release -p localipc-cli -p localipc-bench`, then
//! `target/release/ipc-bench-suite [--quick] [--rounds N] [--placement same|split|free]`, or
//! `target/release/ipc-bench-suite --instructions [--quick]` for instruction counts (callgrind).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use localipc_bench::instructions;
use localipc_bench::suite::{self, Placement, SuiteConfig};
use localipc_cli::{self as cli, exit};

/// Benchmark ipc-server against the in-repo reference servers.
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Short runs and 500 idle connections: checks that the suite works, measures little.
    #[arg(long)]
    quick: bool,

    /// Rounds per scenario (the servers take turns; each figure is the median of its rounds).
    /// More rounds narrow run-to-run noise; a full run of 15 takes about eight minutes.
    /// [default: 15, or 1 with --quick]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,

    /// Where server and load generator run: same CPU, split across two, or unpinned.
    #[arg(long, value_enum, default_value_t = Placement::Same)]
    placement: Placement,

    /// Write the results as JSON here.
    #[arg(long, default_value = "target/bench/results.json", value_name = "FILE")]
    json: PathBuf,

    /// Only these scenarios (repeatable): lat1, tput64, pipe, big, churn, idle, and the Varlink
    /// ones v-lat1, v-tput64, v-pipe, v-churn, v-stream.
    #[arg(long = "only", value_name = "SCENARIO")]
    only: Vec<String>,

    /// Measure this ipc-server binary instead of the one built beside the suite (to compare
    /// builds).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,

    /// Load with the lean client: one thread, one epoll, sockets registered for read readiness
    /// only, as a hand-written client's are (the default is an ordinary tokio client, which also
    /// wakes for write readiness after every request, on the CPU the servers share).
    #[arg(long)]
    lean: bool,

    /// A Python with the `varlink` package, which runs the Python reference server of the
    /// Varlink scenarios (`bash .ci/run` makes one in target/pyenv).
    #[arg(long, env = "IPC_TEST_PYTHON", value_name = "PATH")]
    python: Option<PathBuf>,

    /// Count instructions instead of timing: each server under callgrind (valgrind), fixed
    /// message counts from the lean client, start-up and shutdown subtracted; prints
    /// instructions per message and the ratio to the coalescing C server (zlink for Varlink).
    /// Scenarios: lat1, tput64, pipe, churn, v-lat1, v-pipe, v-churn.
    #[arg(long)]
    instructions: bool,

    /// Extra flags passed to ipc-server (for example --server-arg=--workers=1).
    #[arg(long = "server-arg", value_name = "FLAG", allow_hyphen_values = true)]
    server_args: Vec<String>,
}

fn main() -> ExitCode {
    let cli: Cli = match cli::parse_args() {
        Ok((cli, _)) => cli,
        Err(code) => return code,
    };
    let work = match tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("ipc-bench-suite: cannot create a scratch directory: {e}");
            return ExitCode::from(exit::IO);
        }
    };
    let config = SuiteConfig {
        quick: cli.quick,
        rounds: cli.rounds.unwrap_or(if cli.quick { 1 } else { 15 }),
        placement: cli.placement,
        bin_dir: suite::own_bin_dir(),
        server_bin: cli.server_bin,
        work_dir: work.clone(),
        server_args: cli.server_args,
        only: cli.only,
        lean: cli.lean,
        // Else the one .ci/setup makes in the target directory this binary was built in.
        python: cli.python.or_else(|| {
            let exe = std::env::current_exe().ok()?;
            let venv = exe.ancestors().nth(2)?.join("pyenv/bin/python");
            venv.exists().then_some(venv)
        }),
    };
    if cli.instructions {
        let result = instructions::run(&config);
        let _ = std::fs::remove_dir_all(&work);
        let counts = match result {
            Ok(counts) => counts,
            Err(e) => {
                eprintln!("ipc-bench-suite: {e}");
                return ExitCode::from(exit::IO);
            }
        };
        println!("{}", instructions::table(&counts));
        if let Err(code) = write_json(&cli.json, &instructions::json(&counts)) {
            return code;
        }
        return verdict(counts.iter().all(|c| c.clean));
    }
    let result = suite::run(&config);
    let _ = std::fs::remove_dir_all(&work);
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            eprintln!("ipc-bench-suite: {e}");
            return ExitCode::from(exit::IO);
        }
    };
    println!("{}", suite::table(&rows, cli.placement));
    if let Err(code) = write_json(&cli.json, &suite::to_json(&rows, cli.placement, cli.quick)) {
        return code;
    }
    verdict(suite::all_clean(&rows))
}

/// Writes the results to `path` (its directory made if missing).
fn write_json(path: &std::path::Path, json: &serde_json::Value) -> Result<(), ExitCode> {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Err(e) = std::fs::write(path, format!("{json:#}\n")) {
        eprintln!("ipc-bench-suite: cannot write {}: {e}", path.display());
        return Err(ExitCode::from(exit::IO));
    }
    eprintln!("results written to {}", path.display());
    Ok(())
}

/// Success when every reply of every run was right.
fn verdict(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        eprintln!("ipc-bench-suite: some replies were lost, reordered or corrupted");
        ExitCode::from(exit::PROTOCOL)
    }
}

fn tempdir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ipc-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
