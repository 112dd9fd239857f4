//! `ipc-bench`: a load generator for any server speaking the ipc protocol, as redis-benchmark is
//! for Redis. Every reply is checked against its request (echo servers), and lost, reordered or
//! corrupted replies are counted.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use localipc_bench::load::{self, LoadConfig, Protocol, Stop};
use localipc_bench::procstat;
use localipc_cli::{self as cli, exit};
use localipc_core::Framing;

/// Load an ipc server and report msgs/s, MB/s, latency percentiles and server CPU per reply.
///
/// Exit codes: 0 every reply checked out; 64 bad usage; 76 replies were lost, reordered or
/// corrupted, or connections failed.
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Server socket path, or a `tcp:HOST:PORT` address (with the --tls-* flags, or
    /// --plain-tcp).
    #[arg(long, env = "IPC_SOCKET", value_name = "ADDRESS")]
    socket: PathBuf,

    #[command(flatten)]
    tls: cli::TlsArgs,

    /// The protocol the server speaks: `plain` messages, or `varlink` calls of
    /// io.ipc.Messages.Echo (NUL framing).
    #[arg(long, value_enum, default_value_t = Protocol::Plain)]
    protocol: Protocol,

    /// Framing the server speaks.
    #[arg(long, value_parser = cli::framing_parser(), default_value_t = Framing::Line)]
    framing: Framing,

    /// Concurrent connections.
    #[arg(long, default_value_t = 1, value_name = "C")]
    conns: usize,

    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1, value_name = "D")]
    pipeline: usize,

    /// Request size in bytes (at least 16: the request counter).
    #[arg(long, default_value_t = 64, value_name = "B")]
    size: usize,

    /// Stop after this many requests in all.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    msgs: Option<u64>,

    /// Stop after this many seconds [default: 5].
    #[arg(long, value_parser = cli::parse_secs, value_name = "S")]
    duration: Option<Duration>,

    /// Open a new connection for every request, as a one-shot client does.
    #[arg(long)]
    oneshot: bool,

    /// Accept any reply (for servers that do not echo); only count.
    #[arg(long)]
    no_verify: bool,

    /// The lean client: one thread, one epoll, sockets registered for read readiness only, as a
    /// hand-written epoll client does (an ordinary tokio client also wakes for write readiness
    /// after every request).
    #[arg(long)]
    lean: bool,

    /// The server's process id, to report its CPU time per reply.
    #[arg(long, value_name = "PID")]
    pid: Option<i32>,
}

fn main() -> ExitCode {
    let cli: Cli = match cli::parse_args() {
        Ok((cli, _)) => cli,
        Err(code) => return code,
    };
    let stop = match (cli.msgs, cli.duration) {
        (Some(n), _) => Stop::Msgs(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(5)),
    };
    let tcp = match localipc_core::Address::parse(&cli.socket) {
        Ok(address) if address.tcp_target().is_some() => match cli.tls.options() {
            Ok(options) => Some(options),
            Err(e) => {
                eprintln!("ipc-bench: {e}");
                return ExitCode::from(64);
            }
        },
        _ => None,
    };
    let config = LoadConfig {
        tcp,
        protocol: cli.protocol,
        socket: cli.socket,
        framing: cli.framing,
        conns: cli.conns,
        pipeline: cli.pipeline,
        size: cli.size,
        stop,
        oneshot: cli.oneshot,
        verify: !cli.no_verify,
        lean: cli.lean,
    };
    let cpu_before = cli.pid.and_then(procstat::cpu_time);
    let report = match load::run(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ipc-bench: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let cpu_after = cli.pid.and_then(procstat::cpu_time);
    println!(
        "msgs {}  {:.0} msgs/s  {:.2} MB/s  latency p50 {:.1} us  p99 {:.1} us  p99.9 {:.1} us",
        report.msgs,
        report.msgs_per_sec(),
        report.mb_per_sec(),
        report.latency_us(0.5),
        report.latency_us(0.99),
        report.latency_us(0.999)
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let per = (b - a).as_nanos() as f64 / report.msgs.max(1) as f64 / 1e3;
        println!(
            "server cpu {:.3} s  {per:.2} us/reply",
            (b - a).as_secs_f64()
        );
    }
    println!(
        "lost {}  reordered {}  corrupted {}  connection errors {}",
        report.lost, report.reordered, report.corrupted, report.io_errors
    );
    if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(exit::PROTOCOL)
    }
}
