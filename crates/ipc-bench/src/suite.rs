//! The scenario runner: starts the real `ipc-server` binary and the reference servers kept in
//! this crate, one after the other in the same run, loads each the same way, and reports figures
//! and ratios ours/reference.
//!
//! Placement matters on small VMs (a cross-CPU wake-up costs far more than a same-CPU round
//! trip), so server and load generator are pinned: to the same CPU by default, to different
//! CPUs with `split`, or not at all with `free`. The placement is recorded with the results.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use localipc_core::Framing;
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::load::{self, LoadConfig, LoadReport, Protocol, Stop};
use crate::procstat;
use crate::stream;

/// Where server and load generator run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Placement {
    /// Both on CPU 0.
    Same,
    /// Server on CPU 0, load generator on CPU 1.
    Split,
    /// Not pinned.
    Free,
}

/// The servers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// The real `ipc-server` binary.
    Ours,
    /// The real `ipc-server` binary in the plain protocol, in a Varlink scenario: our own
    /// baseline, measured in the same rounds.
    OursPlain,
    /// `ref-std-server`: blocking std, a thread per connection.
    RefStd,
    /// `ref-tokio-server`: tokio `Framed` with `LinesCodec`.
    RefTokio,
    /// `ref-tokio-floor`: the coalescing C reference's design on tokio's current-thread
    /// runtime, a task per connection: the floor of that model, in the instruction counts.
    RefTokioFloor,
    /// `ref-c-server`: hand-written C, epoll, one thread, the replies of one read sent
    /// together (`c/ref-c-server.c` with `COALESCE`): the reference of the ratios.
    RefC,
    /// `ref-c-naive`: the same C server sending each reply as soon as its request is complete.
    RefCNaive,
    /// `ref-zlink-server`: Varlink with zlink, the Rust implementation.
    RefZlink,
    /// `tests/peers/varlink_server.py`: Varlink with the reference Python `varlink` package.
    RefPython,
    /// The real `ipc-server` binary, loaded over TCP with mutual TLS (127.0.0.1), beside its
    /// Unix socket: compared with [`Ours`](Self::Ours) in the same rounds.
    OursTls,
}

impl ServerKind {
    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Ours => "ipc-server",
            ServerKind::OursPlain => "ipc-server-plain",
            ServerKind::RefStd => "ref-std",
            ServerKind::RefTokio => "ref-tokio",
            ServerKind::RefTokioFloor => "ref-tokio-floor",
            ServerKind::RefC => "ref-c",
            ServerKind::RefCNaive => "ref-c-naive",
            ServerKind::RefZlink => "ref-zlink",
            ServerKind::RefPython => "ref-python",
            ServerKind::OursTls => "ipc-server-tls",
        }
    }
}

/// The servers of the plain-protocol scenarios.
const PLAIN: &[ServerKind] = &[
    ServerKind::Ours,
    ServerKind::RefStd,
    ServerKind::RefTokio,
    ServerKind::RefC,
    ServerKind::RefCNaive,
];

/// The servers of the Varlink scenarios.
const VARLINK: &[ServerKind] = &[
    ServerKind::Ours,
    ServerKind::RefZlink,
    ServerKind::RefPython,
];

/// The servers of the Varlink round trip: also ours in the plain protocol, in the same rounds,
/// for what Varlink costs over it.
const VARLINK_AND_PLAIN: &[ServerKind] = &[
    ServerKind::Ours,
    ServerKind::OursPlain,
    ServerKind::RefZlink,
    ServerKind::RefPython,
];

/// The servers of the `tcp+tls` scenarios: ipc-server on its Unix socket and over TCP with
/// mutual TLS, in the same rounds.
const OVER_TLS: &[ServerKind] = &[ServerKind::Ours, ServerKind::OursTls];

/// The Python reference server's script.
const PYTHON_SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/peers/varlink_server.py"
);

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// Short runs, few idle connections: proves the suite works, measures little.
    pub quick: bool,
    /// Rounds per scenario; each figure is the median of its rounds.
    pub rounds: u32,
    /// CPU placement.
    pub placement: Placement,
    /// Where the server binaries are.
    pub bin_dir: PathBuf,
    /// Another `ipc-server` binary to measure instead of the one in `bin_dir` (another build).
    pub server_bin: Option<PathBuf>,
    /// Scratch directory for sockets.
    pub work_dir: PathBuf,
    /// Extra flags for `ipc-server`.
    pub server_args: Vec<String>,
    /// Only these scenarios (all when empty).
    pub only: Vec<String>,
    /// Lean load-generator sockets (see [`LoadConfig::lean`]).
    pub lean: bool,
    /// A Python with the `varlink` package, for the Python reference server of the Varlink
    /// scenarios.
    pub python: Option<PathBuf>,
}

/// One server's figures in one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario name.
    pub scenario: &'static str,
    /// Which server.
    pub server: ServerKind,
    /// Replies per second.
    pub msgs_per_sec: f64,
    /// Payload MB/s.
    pub mb_per_sec: f64,
    /// Latency percentiles in microseconds: p50, p99, p99.9.
    pub latency_us: [f64; 3],
    /// Server CPU time per reply, microseconds.
    pub cpu_us_per_reply: Option<f64>,
    /// Server RSS per open connection, KiB (idle scenario only).
    pub rss_kib_per_conn: Option<f64>,
    /// Replies checked.
    pub msgs: u64,
    /// Whether every reply was right.
    pub clean: bool,
}

pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    what: &'static str,
    pub(crate) protocol: Protocol,
    servers: &'static [ServerKind],
    /// A `more` call streaming many small replies, instead of request and reply.
    stream: bool,
    pub(crate) framing: Framing,
    pub(crate) conns: usize,
    pub(crate) pipeline: usize,
    pub(crate) size: usize,
    pub(crate) oneshot: bool,
}

pub(crate) const SCENARIOS: [Scenario; 14] = [
    Scenario {
        name: "lat1",
        what: "1 connection, 64 B, one request at a time",
        protocol: Protocol::Plain,
        servers: PLAIN,
        stream: false,
        framing: Framing::Line,
        conns: 1,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "tput64",
        what: "64 connections, 64 B, no pipelining",
        protocol: Protocol::Plain,
        servers: PLAIN,
        stream: false,
        framing: Framing::Line,
        conns: 64,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "pipe",
        what: "4 connections x 64 in flight, 64 B",
        protocol: Protocol::Plain,
        servers: PLAIN,
        stream: false,
        framing: Framing::Line,
        conns: 4,
        pipeline: 64,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "big",
        what: "4 connections, 64 KiB, length framing",
        protocol: Protocol::Plain,
        servers: PLAIN,
        stream: false,
        framing: Framing::Length,
        conns: 4,
        pipeline: 1,
        size: 64 * 1024,
        oneshot: false,
    },
    Scenario {
        name: "churn",
        what: "connect, one exchange, close; 8 at a time",
        protocol: Protocol::Plain,
        servers: PLAIN,
        stream: false,
        framing: Framing::Line,
        conns: 8,
        pipeline: 1,
        size: 64,
        oneshot: true,
    },
    Scenario {
        name: "v-lat1",
        what: "Varlink: 1 connection, Echo of 64 B, one call at a time (and plain, for reference)",
        protocol: Protocol::Varlink,
        servers: VARLINK_AND_PLAIN,
        stream: false,
        framing: Framing::Nul,
        conns: 1,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "v-tput64",
        what: "Varlink: 64 connections, Echo of 64 B, no pipelining",
        protocol: Protocol::Varlink,
        servers: VARLINK,
        stream: false,
        framing: Framing::Nul,
        conns: 64,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "v-pipe",
        what: "Varlink: 4 connections x 64 calls in flight",
        protocol: Protocol::Varlink,
        servers: VARLINK,
        stream: false,
        framing: Framing::Nul,
        conns: 4,
        pipeline: 64,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "v-churn",
        what: "Varlink: connect, one call, close; 8 at a time",
        protocol: Protocol::Varlink,
        servers: VARLINK,
        stream: false,
        framing: Framing::Nul,
        conns: 8,
        pipeline: 1,
        size: 64,
        oneshot: true,
    },
    Scenario {
        name: "v-stream",
        what: "Varlink: 1 connection, `more` calls of Count streaming 10,000 small replies each",
        protocol: Protocol::Varlink,
        servers: VARLINK,
        stream: true,
        framing: Framing::Nul,
        conns: 1,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "tls-lat1",
        what: "tcp+tls: lat1 over TCP with mutual TLS, and on the Unix socket",
        protocol: Protocol::Plain,
        servers: OVER_TLS,
        stream: false,
        framing: Framing::Line,
        conns: 1,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "tls-tput64",
        what: "tcp+tls: tput64 over TCP with mutual TLS, and on the Unix socket",
        protocol: Protocol::Plain,
        servers: OVER_TLS,
        stream: false,
        framing: Framing::Line,
        conns: 64,
        pipeline: 1,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "tls-pipe",
        what: "tcp+tls: pipe over TCP with mutual TLS, and on the Unix socket",
        protocol: Protocol::Plain,
        servers: OVER_TLS,
        stream: false,
        framing: Framing::Line,
        conns: 4,
        pipeline: 64,
        size: 64,
        oneshot: false,
    },
    Scenario {
        name: "tls-churn",
        what: "tcp+tls: churn over TCP with mutual TLS (a handshake per exchange), and on the \
               Unix socket",
        protocol: Protocol::Plain,
        servers: OVER_TLS,
        stream: false,
        framing: Framing::Line,
        conns: 8,
        pipeline: 1,
        size: 64,
        oneshot: true,
    },
];

/// Why the suite could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    /// A server binary is missing or would not start.
    #[error("{0}")]
    Server(String),
    /// The load generator failed to start.
    #[error(transparent)]
    Load(#[from] load::LoadError),
    /// Pinning failed.
    #[error("cannot set CPU affinity: {0}")]
    Affinity(nix::Error),
}

/// A server process on a socket, killed and cleaned up on drop.
pub(crate) struct Running {
    child: Child,
    pub(crate) socket: PathBuf,
    /// For [`ServerKind::OursTls`]: its `tcp:` address, and the load's TLS options.
    pub(crate) tcp: Option<(PathBuf, localipc_client::TcpOptions)>,
}

impl Running {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stops the server with SIGTERM and waits for it (up to a minute: under callgrind a
    /// server exits slowly), so that it finishes what it writes at exit.
    pub(crate) fn stop(mut self) -> Result<(), SuiteError> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while self
            .child
            .try_wait()
            .map_err(|e| SuiteError::Server(e.to_string()))?
            .is_none()
        {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(SuiteError::Server(
                    "a server did not stop within 60 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn pin_self(placement: Placement) -> Result<(), SuiteError> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut set = CpuSet::new();
    match placement {
        Placement::Same => set.set(0),
        Placement::Split => set.set(1.min(cpus - 1)),
        Placement::Free => (0..cpus).try_for_each(|c| set.set(c)),
    }
    .map_err(SuiteError::Affinity)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(SuiteError::Affinity)
}

/// Starts a server of `kind`; with `counting`, under callgrind, which writes its instruction
/// counts to that file when the server exits.
pub(crate) fn start_server(
    config: &SuiteConfig,
    kind: ServerKind,
    protocol: Protocol,
    framing: Framing,
    tag: &str,
    counting: Option<&std::path::Path>,
) -> Result<Running, SuiteError> {
    let socket = config.work_dir.join(format!("{}-{tag}.sock", kind.name()));
    let _ = std::fs::remove_file(&socket);
    let sibling = |name: &str| config.bin_dir.join(name);
    let program = match (kind, &config.server_bin) {
        (ServerKind::Ours | ServerKind::OursPlain | ServerKind::OursTls, Some(path)) => {
            path.clone()
        }
        (ServerKind::Ours | ServerKind::OursPlain | ServerKind::OursTls, None) => {
            sibling("ipc-server")
        }
        (ServerKind::RefStd, _) => sibling("ref-std-server"),
        (ServerKind::RefTokio, _) => sibling("ref-tokio-server"),
        (ServerKind::RefTokioFloor, _) => sibling("ref-tokio-floor"),
        (ServerKind::RefZlink, _) => sibling("ref-zlink-server"),
        // Built by this crate's build script, with the system C compiler.
        (ServerKind::RefC, _) => PathBuf::from(env!("REF_C_SERVER")),
        (ServerKind::RefCNaive, _) => PathBuf::from(env!("REF_C_NAIVE")),
        (ServerKind::RefPython, _) => config.python.clone().ok_or_else(|| {
            SuiteError::Server(
                "the Varlink scenarios need a Python with the varlink package: set \
                 IPC_TEST_PYTHON or --python (.ci/run makes target/pyenv)"
                    .into(),
            )
        })?,
    };
    let mut prefix: Vec<std::ffi::OsString> = Vec::new();
    if !matches!(config.placement, Placement::Free) {
        prefix.extend(["taskset", "-c", "0"].map(Into::into));
    }
    if let Some(out) = counting {
        prefix.extend(["valgrind", "--tool=callgrind", "-q"].map(Into::into));
        let mut file = std::ffi::OsString::from("--callgrind-out-file=");
        file.push(out);
        prefix.push(file);
    }
    let mut cmd = match prefix.split_first() {
        None => Command::new(program),
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    };
    let mut tcp = None;
    match kind {
        ServerKind::Ours | ServerKind::OursPlain | ServerKind::OursTls => {
            let protocol = match protocol {
                Protocol::Plain => "plain",
                Protocol::Varlink => "varlink",
            };
            cmd.arg("--socket")
                .arg(&socket)
                .args(["--protocol", protocol])
                .args(["--framing", framing.as_str(), "--max-connections", "20000"])
                // Every load comes from one user: its share is the whole cap.
                .args(["--max-connections-per-uid", "20000"])
                .args(["--idle-timeout", "0", "-q"])
                .args(&config.server_args);
            if kind == ServerKind::OursTls {
                let (address, options) = tls_setup(config, &mut cmd)?;
                tcp = Some((address, options));
            }
        }
        ServerKind::RefStd
        | ServerKind::RefTokio
        | ServerKind::RefTokioFloor
        | ServerKind::RefC
        | ServerKind::RefCNaive => {
            cmd.arg(&socket).arg(framing.as_str());
        }
        ServerKind::RefZlink => {
            cmd.arg(&socket);
        }
        ServerKind::RefPython => {
            cmd.arg(PYTHON_SERVER).arg(&socket);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| SuiteError::Server(format!("cannot start {}: {e}", kind.name())))?;
    let running = Running { child, socket, tcp };
    let start = Instant::now();
    while UnixStream::connect(&running.socket).is_err() {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(SuiteError::Server(format!("{} did not start", kind.name())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(running)
}

/// Gives `cmd` (an `ipc-server`) a TCP address with mutual TLS on a free port of 127.0.0.1,
/// with certificates made now; returns the address and the load's TLS options.
fn tls_setup(
    config: &SuiteConfig,
    cmd: &mut Command,
) -> Result<(PathBuf, localipc_client::TcpOptions), SuiteError> {
    let failed = |e: &dyn std::fmt::Display| SuiteError::Server(format!("tcp+tls: {e}"));
    let pki = crate::pki::Pki::make(&config.work_dir).map_err(|e| failed(&e))?;
    // A port free now (the server binds it a moment later).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| failed(&e))?
        .port();
    let address = PathBuf::from(format!("tcp:127.0.0.1:{port}"));
    cmd.arg("--also-socket")
        .arg(&address)
        .arg("--tls-cert")
        .arg(&pki.server.0)
        .arg("--tls-key")
        .arg(&pki.server.1)
        .arg("--tls-client-ca")
        .arg(&pki.ca);
    let options = pki.client_options().map_err(|e| failed(&e))?;
    Ok((address, options))
}

fn measure(config: &SuiteConfig, scenario: &Scenario, kind: ServerKind) -> Result<Row, SuiteError> {
    let (protocol, framing) = match kind {
        ServerKind::OursPlain => (Protocol::Plain, Framing::Line),
        _ => (scenario.protocol, scenario.framing),
    };
    let server = start_server(config, kind, protocol, framing, scenario.name, None)?;
    let duration = if config.quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    };
    if scenario.stream {
        stream::run(&server.socket, duration / 5);
        let cpu_before = procstat::cpu_time(server.pid());
        let report = stream::run(&server.socket, duration);
        let cpu_after = procstat::cpu_time(server.pid());
        return Ok(row(scenario.name, kind, &report, cpu_before, cpu_after));
    }
    let (socket, tcp) = match &server.tcp {
        Some((address, options)) => (address.clone(), Some(options.clone())),
        None => (server.socket.clone(), None),
    };
    let load = LoadConfig {
        tcp,
        protocol,
        socket,
        framing,
        conns: scenario.conns,
        pipeline: scenario.pipeline,
        size: scenario.size,
        stop: Stop::Duration(duration / 5),
        oneshot: scenario.oneshot,
        verify: true,
        lean: config.lean,
    };
    // Warm up (connections, allocator, caches), then measure.
    load::run(&load)?;
    let cpu_before = procstat::cpu_time(server.pid());
    let report = load::run(&LoadConfig {
        stop: Stop::Duration(duration),
        ..load
    })?;
    let cpu_after = procstat::cpu_time(server.pid());
    Ok(row(scenario.name, kind, &report, cpu_before, cpu_after))
}

fn row(
    scenario: &'static str,
    server: ServerKind,
    report: &LoadReport,
    cpu_before: Option<Duration>,
    cpu_after: Option<Duration>,
) -> Row {
    let cpu_us_per_reply = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if report.msgs > 0 => {
            Some((b - a).as_nanos() as f64 / report.msgs as f64 / 1e3)
        }
        _ => None,
    };
    Row {
        scenario,
        server,
        msgs_per_sec: report.msgs_per_sec(),
        mb_per_sec: report.mb_per_sec(),
        latency_us: [
            report.latency_us(0.5),
            report.latency_us(0.99),
            report.latency_us(0.999),
        ],
        cpu_us_per_reply,
        rss_kib_per_conn: None,
        msgs: report.msgs,
        clean: report.is_clean(),
    }
}

/// Opens `n` connections, makes one exchange on each (so the server has surely accepted them
/// and used its buffers), lets them go idle, and measures the server's RSS per connection.
fn measure_idle(config: &SuiteConfig, kind: ServerKind, n: usize) -> Result<Row, SuiteError> {
    use std::io::{BufRead, BufReader, Write};
    let server = start_server(config, kind, Protocol::Plain, Framing::Line, "idle", None)?;
    // One connection first, so one-time costs (first task, runtime warm-up) are not counted.
    let mut first = UnixStream::connect(&server.socket)
        .map_err(|e| SuiteError::Server(format!("connect: {e}")))?;
    first.write_all(b"warm\n").ok();
    BufReader::new(&first).read_line(&mut String::new()).ok();
    std::thread::sleep(Duration::from_millis(200));
    let before = procstat::rss_kib(server.pid()).unwrap_or(0);
    let mut conns = Vec::with_capacity(n);
    let mut clean = true;
    for _ in 0..n {
        match UnixStream::connect(&server.socket) {
            Ok(s) => conns.push(s),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut line = String::new();
        if s.write_all(b"hello idle\n").is_err()
            || BufReader::new(&*s).read_line(&mut line).is_err()
            || line != "hello idle\n"
        {
            clean = false;
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let after = procstat::rss_kib(server.pid()).unwrap_or(0);
    let per = after.saturating_sub(before) as f64 / conns.len().max(1) as f64;
    Ok(Row {
        scenario: "idle",
        server: kind,
        msgs_per_sec: 0.0,
        mb_per_sec: 0.0,
        latency_us: [0.0; 3],
        cpu_us_per_reply: None,
        rss_kib_per_conn: Some(per),
        msgs: conns.len() as u64,
        clean,
    })
}

/// Runs every scenario against every server and returns the rows, in order.
///
/// # Errors
///
/// [`SuiteError`] if a server does not start or pinning fails.
pub fn run(config: &SuiteConfig) -> Result<Vec<Row>, SuiteError> {
    pin_self(config.placement)?;
    let wanted = |name: &str| config.only.is_empty() || config.only.iter().any(|o| o == name);
    let mut rows = Vec::new();
    // Machine noise drifts over seconds, so the servers take turns, round after round (in a
    // rotating order), and each figure is the median of its rounds.
    for scenario in SCENARIOS.iter().filter(|s| wanted(s.name)) {
        eprintln!("{}: {}", scenario.name, scenario.what);
        let servers = scenario.servers;
        let mut per_kind: Vec<Vec<Row>> = vec![Vec::new(); servers.len()];
        for round in 0..config.rounds as usize {
            // Each round starts with the next server, so none always follows the same one.
            for turn in 0..servers.len() {
                let i = (round + turn) % servers.len();
                per_kind[i].push(measure(config, scenario, servers[i])?);
            }
        }
        rows.extend(per_kind.iter().map(|r| median_row(r)));
    }
    if wanted("idle") {
        let n = if config.quick { 500 } else { 10_000 };
        eprintln!("idle: {n} open idle connections, server RSS per connection");
        for &kind in PLAIN {
            rows.push(measure_idle(config, kind, n)?);
        }
    }
    Ok(rows)
}

/// Each figure's median over the rounds; counts are summed, and a row is clean only if every
/// round was.
fn median_row(rounds: &[Row]) -> Row {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let of = |f: &dyn Fn(&Row) -> f64| median(rounds.iter().map(f).collect());
    let first = &rounds[0];
    Row {
        scenario: first.scenario,
        server: first.server,
        msgs_per_sec: of(&|r| r.msgs_per_sec),
        mb_per_sec: of(&|r| r.mb_per_sec),
        latency_us: [
            of(&|r| r.latency_us[0]),
            of(&|r| r.latency_us[1]),
            of(&|r| r.latency_us[2]),
        ],
        cpu_us_per_reply: first
            .cpu_us_per_reply
            .map(|_| of(&|r| r.cpu_us_per_reply.unwrap_or(0.0))),
        rss_kib_per_conn: first.rss_kib_per_conn,
        msgs: rounds.iter().map(|r| r.msgs).sum(),
        clean: rounds.iter().all(|r| r.clean),
    }
}

fn find<'a>(rows: &'a [Row], scenario: &str, kind: ServerKind) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.server == kind)
}

/// A ratio the targets speak of: one figure of a scenario, ours over a reference server's (in
/// the same scenario, or in `reference_scenario` if set).
struct Ratio {
    label: &'static str,
    scenario: &'static str,
    reference: ServerKind,
    reference_scenario: Option<&'static str>,
    figure: fn(&Row) -> Option<f64>,
    target: &'static str,
}

const RATIOS: [Ratio; 24] = [
    Ratio {
        label: "lat1 p50 latency / ref-std",
        scenario: "lat1",
        reference: ServerKind::RefStd,
        reference_scenario: None,
        figure: |r| Some(r.latency_us[0]),
        target: "<= 1.1",
    },
    Ratio {
        label: "tput64 msgs/s / ref-tokio",
        scenario: "tput64",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.05",
    },
    Ratio {
        label: "tput64 server CPU per reply / ref-tokio",
        scenario: "tput64",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| r.cpu_us_per_reply,
        target: "<= 0.9",
    },
    Ratio {
        label: "pipe msgs/s / ref-tokio",
        scenario: "pipe",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 8",
    },
    Ratio {
        label: "big MB/s / ref-tokio",
        scenario: "big",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| Some(r.mb_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "churn msgs/s / ref-tokio",
        scenario: "churn",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "lat1 p50 latency / ref-c",
        scenario: "lat1",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| Some(r.latency_us[0]),
        target: "<= 1.0",
    },
    Ratio {
        label: "tput64 msgs/s / ref-c",
        scenario: "tput64",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "tput64 server CPU per reply / ref-c",
        scenario: "tput64",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| r.cpu_us_per_reply,
        target: "<= 1.1",
    },
    Ratio {
        label: "pipe msgs/s / ref-c",
        scenario: "pipe",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "big MB/s / ref-c",
        scenario: "big",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| Some(r.mb_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "churn msgs/s / ref-c",
        scenario: "churn",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "idle RSS per connection / ref-tokio",
        scenario: "idle",
        reference: ServerKind::RefTokio,
        reference_scenario: None,
        figure: |r| r.rss_kib_per_conn,
        target: "(absolute target: <= 4 KiB)",
    },
    Ratio {
        label: "idle RSS per connection / ref-c",
        scenario: "idle",
        reference: ServerKind::RefC,
        reference_scenario: None,
        figure: |r| r.rss_kib_per_conn,
        target: "<= 0.33",
    },
    Ratio {
        label: "v-lat1 p50 latency / ref-zlink",
        scenario: "v-lat1",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| Some(r.latency_us[0]),
        target: "<= 1.0",
    },
    Ratio {
        label: "v-tput64 calls/s / ref-zlink",
        scenario: "v-tput64",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "v-tput64 server CPU per call / ref-zlink",
        scenario: "v-tput64",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| r.cpu_us_per_reply,
        target: "(reported)",
    },
    Ratio {
        label: "v-pipe calls/s / ref-zlink",
        scenario: "v-pipe",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 3.0",
    },
    Ratio {
        label: "v-churn calls/s / ref-zlink",
        scenario: "v-churn",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 1.0",
    },
    Ratio {
        label: "v-stream replies/s / ref-zlink",
        scenario: "v-stream",
        reference: ServerKind::RefZlink,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 3.0",
    },
    Ratio {
        label: "v-tput64 calls/s / ref-python",
        scenario: "v-tput64",
        reference: ServerKind::RefPython,
        reference_scenario: None,
        figure: |r| Some(r.msgs_per_sec),
        target: ">= 10",
    },
    Ratio {
        label: "v-lat1 p50 latency / ipc-server plain (same rounds)",
        scenario: "v-lat1",
        reference: ServerKind::OursPlain,
        reference_scenario: None,
        figure: |r| Some(r.latency_us[0]),
        target: "<= 1.3",
    },
    Ratio {
        label: "v-lat1 server CPU per call / ipc-server plain (same rounds)",
        scenario: "v-lat1",
        reference: ServerKind::OursPlain,
        reference_scenario: None,
        figure: |r| r.cpu_us_per_reply,
        target: "(reported)",
    },
    Ratio {
        label: "v-tput64 server CPU per call / our plain tput64",
        scenario: "v-tput64",
        reference: ServerKind::Ours,
        reference_scenario: Some("tput64"),
        figure: |r| r.cpu_us_per_reply,
        target: "(reported)",
    },
];

/// The `tcp+tls` ratios: ipc-server over TCP with mutual TLS over the same server on its Unix
/// socket, in the same rounds (label, scenario, figure).
type TlsRatio = (&'static str, &'static str, fn(&Row) -> Option<f64>);
const TLS_RATIOS: [TlsRatio; 6] = [
    ("tls-lat1 p50 latency / unix", "tls-lat1", |r| {
        Some(r.latency_us[0])
    }),
    ("tls-tput64 msgs/s / unix", "tls-tput64", |r| {
        Some(r.msgs_per_sec)
    }),
    (
        "tls-tput64 server CPU per reply / unix",
        "tls-tput64",
        |r| r.cpu_us_per_reply,
    ),
    ("tls-pipe msgs/s / unix", "tls-pipe", |r| {
        Some(r.msgs_per_sec)
    }),
    ("tls-churn msgs/s / unix", "tls-churn", |r| {
        Some(r.msgs_per_sec)
    }),
    ("tls-churn server CPU per reply / unix", "tls-churn", |r| {
        r.cpu_us_per_reply
    }),
];

/// The ratios the targets speak of, ours/reference, from one run: (label, value, target), for
/// those whose figures were measured; then the `tcp+tls` ones, TLS over Unix.
pub fn ratios(rows: &[Row]) -> Vec<(&'static str, f64, &'static str)> {
    let targets = RATIOS.iter().filter_map(|ratio| {
        let figure = |scenario, kind| find(rows, scenario, kind).and_then(ratio.figure);
        let ours = figure(ratio.scenario, ServerKind::Ours)?;
        let theirs = figure(
            ratio.reference_scenario.unwrap_or(ratio.scenario),
            ratio.reference,
        )?;
        (theirs > 0.0).then_some((ratio.label, ours / theirs, ratio.target))
    });
    let tls = TLS_RATIOS.iter().filter_map(|&(label, scenario, figure)| {
        let tls = find(rows, scenario, ServerKind::OursTls).and_then(figure)?;
        let unix = find(rows, scenario, ServerKind::Ours).and_then(figure)?;
        (unix > 0.0).then_some((label, tls / unix, "(reported)"))
    });
    targets.chain(tls).collect()
}

/// The results as a Markdown table plus the ratios.
pub fn table(rows: &[Row], placement: Placement) -> String {
    let mut s = format!(
        "placement: {placement:?} (server {}, load generator {})\n\n",
        match placement {
            Placement::Free => "unpinned",
            _ => "CPU 0",
        },
        match placement {
            Placement::Same => "CPU 0",
            Placement::Split => "CPU 1",
            Placement::Free => "unpinned",
        }
    );
    s.push_str("| scenario | server | msgs/s | MB/s | p50 us | p99 us | p99.9 us | server CPU us/reply | RSS KiB/conn | checked |\n");
    s.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in rows {
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        if r.scenario == "idle" {
            s.push_str(&format!(
                "| idle | {} | - | - | - | - | - | - | {} | {} conns{} |\n",
                r.server.name(),
                opt(r.rss_kib_per_conn),
                r.msgs,
                if r.clean { "" } else { ", ERRORS" }
            ));
            continue;
        }
        s.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} | - | {} {} |\n",
            r.scenario,
            r.server.name(),
            r.msgs_per_sec,
            r.mb_per_sec,
            r.latency_us[0],
            r.latency_us[1],
            r.latency_us[2],
            opt(r.cpu_us_per_reply),
            r.msgs,
            if r.clean { "ok" } else { "ERRORS" }
        ));
    }
    s.push_str("\n| ratio (ours / reference, same run) | value | target |\n| --- | ---: | --- |\n");
    for (label, value, target) in ratios(rows) {
        s.push_str(&format!("| {label} | {value:.2} | {target} |\n"));
    }
    s
}

/// The results as JSON.
pub fn to_json(rows: &[Row], placement: Placement, quick: bool) -> Value {
    json!({
        "placement": format!("{placement:?}").to_lowercase(),
        "quick": quick,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "rows": rows.iter().map(|r| json!({
            "scenario": r.scenario,
            "server": r.server.name(),
            "msgs_per_sec": r.msgs_per_sec,
            "mb_per_sec": r.mb_per_sec,
            "latency_us": {"p50": r.latency_us[0], "p99": r.latency_us[1], "p99_9": r.latency_us[2]},
            "server_cpu_us_per_reply": r.cpu_us_per_reply,
            "rss_kib_per_conn": r.rss_kib_per_conn,
            "msgs": r.msgs,
            "clean": r.clean,
        })).collect::<Vec<_>>(),
        "ratios": ratios(rows).into_iter().map(|(label, value, target)| json!({
            "ratio": label, "value": value, "target": target,
        })).collect::<Vec<_>>(),
    })
}

/// Every ipc-server row checked out: no reply lost, reordered or corrupted. (A reference
/// server's errors are shown in the table; they are a finding about it, not a failure here.)
pub fn all_clean(rows: &[Row]) -> bool {
    rows.iter()
        .filter(|r| matches!(r.server, ServerKind::Ours | ServerKind::OursPlain))
        .all(|r| r.clean)
}

/// The directory of the running executable, where the sibling binaries are.
pub fn own_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
