//! Time from process start to first reply: `first-reply-std` (a hand-written standard-library
//! client) against `first-reply-blocking` (the blocking client of `localipc-client`), each
//! started as a new process, in alternating order, against one `ipc-server --mode echo`. Prints
//! the median and 90th percentile of each and the ratio of medians.
//!
//! `cargo build --release -p localipc-cli -p localipc-bench`, then, on their own (see
//! `crates/ipc-bench/first-reply/Cargo.toml`), `cargo build --release -p localipc-first-reply`,
//! then `target/release/ipc-bench-startup [--runs N]`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

/// Times from process start to first reply, std client against the blocking client.
#[derive(Debug, Parser)]
#[command(name = "ipc-bench-startup", max_term_width = 100)]
struct Cli {
    /// Processes started per client.
    #[arg(long, default_value_t = 400)]
    runs: usize,
    /// Where the binaries are (default: beside this one).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let bin_dir = cli.bin_dir.unwrap_or_else(|| {
        std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_owned()
    });
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("startup.sock");
    let mut server = Command::new(bin_dir.join("ipc-server"))
        .args(["--mode", "echo", "-q", "--socket"])
        .arg(&socket)
        .stdin(Stdio::null())
        .spawn()
        .expect("start ipc-server");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "ipc-server did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let clients = ["first-reply-std", "first-reply-blocking"];
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    // Warm the page cache, then alternate so that drift touches both alike.
    for client in clients {
        run(&bin_dir.join(client), &socket);
    }
    for round in 0..cli.runs {
        for i in [round % 2, 1 - round % 2] {
            times[i].push(run(&bin_dir.join(clients[i]), &socket));
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    let mut medians = [0.0; 2];
    for (i, client) in clients.iter().enumerate() {
        times[i].sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        medians[i] = us(times[i][times[i].len() / 2]);
        println!(
            "{client:22} median {:7.1} us   p90 {:7.1} us   ({} runs)",
            medians[i],
            us(times[i][times[i].len() * 9 / 10]),
            times[i].len()
        );
    }
    println!(
        "ratio of medians (blocking / std): {:.2}",
        medians[1] / medians[0]
    );
}

/// Starts `client` on `socket` and waits for it: the time from spawn to exit.
fn run(client: &Path, socket: &Path) -> Duration {
    let start = Instant::now();
    let status = Command::new(client)
        .arg(socket)
        .stdin(Stdio::null())
        .status()
        .expect("start the client");
    let elapsed = start.elapsed();
    assert!(status.success(), "{} failed", client.display());
    elapsed
}
