//! `ipc-server`: serve a Unix domain socket with a built-in handler. Thin over the library.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use localipc_cli::{self as cli, LogArgs, SocketArgs, exit, parse_mode};
use localipc_core::{Ack, DEFAULT_ACK_TEXT, Echo, FrameCodec, FrameError, Framing, Handler};
use localipc_server::activation;
use localipc_server::config::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FDS_PER_MESSAGE,
    DEFAULT_UNFINISHED_BUDGET,
};
use localipc_server::handover::Successor;
use localipc_server::signal::{self, ShutdownSignals};
use localipc_server::{AccessPolicy, Server, ServerConfig, ServerError};
use tracing::{info, warn};

/// Serve a Unix domain socket: every message gets a reply from the chosen handler.
///
/// Stops gracefully on SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and the other signals that
/// would kill it (a second one forces an immediate exit), and removes its socket file on the way
/// out. SIGUSR2 restarts it seamlessly: the program on disk is started again with the same
/// arguments and takes over the listening socket, and once it is ready this one drains and
/// exits. Under systemd it serves an activated socket (LISTEN_FDS), reports readiness
/// (NOTIFY_SOCKET) and keeps its socket in the file descriptor store (FDSTORE).
///
/// Exit codes: 0 stopped cleanly; 64 bad flag or setting; 70 internal error (a bug: please
/// report it); 73 another server holds the path; 74 other I/O error; 77 unsafe socket directory
/// or permission denied; 78 the path exists and is not a socket.
#[derive(Debug, Parser)]
#[command(
    name = "ipc-server",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The message protocol: `plain` (every message gets one reply, from --mode) or `varlink`
    /// (typed calls in JSON, NUL-framed: the interfaces io.ipc.Messages and io.ipc.Server).
    #[arg(long, value_enum, default_value_t = Protocol::Plain, env = "IPC_PROTOCOL")]
    protocol: Protocol,
    /// What to answer in the plain protocol: `echo` replies with the message, `ack` with a
    /// fixed text.
    #[arg(long, value_enum, default_value_t = Mode::Echo, env = "IPC_MODE")]
    mode: Mode,

    #[command(flatten)]
    socket: SocketArgs,

    /// The reply of `--mode ack` (and of the Varlink method io.ipc.Messages.Ack).
    #[arg(long, default_value = DEFAULT_ACK_TEXT, value_name = "TEXT", env = "IPC_ACK_TEXT")]
    ack_text: String,

    /// Most connections open at once; further clients wait in the kernel's backlog.
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_CONNECTIONS,
        value_name = "N",
        env = "IPC_MAX_CONNECTIONS"
    )]
    max_connections: usize,

    /// Most connections open at once from one user (peer uid; on TCP, one client certificate,
    /// or one IP address for clients without one); a further one is closed at once, so no
    /// user can take every slot. Default: 128, or three quarters of --max-connections if that
    /// is less.
    #[arg(long, value_name = "N", env = "IPC_MAX_CONNECTIONS_PER_UID")]
    max_connections_per_uid: Option<usize>,

    /// Most bytes held, across all connections, for messages not yet complete (past each
    /// connection's first 16 KiB); a connection whose message would take the total past it is
    /// closed, so slow large senders cannot exhaust the server's memory.
    #[arg(
        long,
        default_value_t = DEFAULT_UNFINISHED_BUDGET,
        value_name = "BYTES",
        env = "IPC_UNFINISHED_BUDGET"
    )]
    unfinished_budget: usize,

    /// Close a connection that sends no complete message, or takes no reply, for this many
    /// seconds (0 = never).
    #[arg(
        long,
        default_value = "60",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_IDLE_TIMEOUT"
    )]
    idle_timeout: Duration,

    /// Close a connection whose handler call takes longer than this many seconds, after writing
    /// the replies before it (0 = no limit).
    #[arg(
        long,
        default_value = "30",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_REQUEST_TIMEOUT"
    )]
    request_timeout: Duration,

    /// Requests of one connection handled at once (1 = one after another); replies still go
    /// back in request order.
    #[arg(
        long,
        default_value_t = DEFAULT_CONCURRENCY,
        value_name = "N",
        env = "IPC_CONCURRENCY"
    )]
    concurrency: usize,

    /// Accept file descriptors sent with requests (SCM_RIGHTS); without it the kernel refuses
    /// them. The built-in handlers take none, so those sent to them are closed after the call.
    #[arg(long, env = "IPC_ACCEPT_FDS")]
    accept_fds: bool,

    /// Send file descriptors with replies (SCM_RIGHTS), as handlers attach them; the echo
    /// handlers give back the descriptors of a request with its reply.
    #[arg(long, env = "IPC_SEND_FDS")]
    send_fds: bool,

    /// Most descriptors with one message (1 to 253), received or sent; receiving more ends
    /// the connection.
    #[arg(
        long,
        default_value_t = DEFAULT_MAX_FDS_PER_MESSAGE,
        value_name = "N",
        env = "IPC_MAX_FDS_PER_MESSAGE"
    )]
    max_fds_per_message: usize,

    /// Seconds connections get to finish after a stop signal before they are dropped.
    #[arg(
        long,
        default_value = "10",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_SHUTDOWN_TIMEOUT"
    )]
    shutdown_timeout: Duration,

    /// Seconds a successor started by SIGUSR2 (a seamless restart: the listening socket is
    /// handed over) has to be ready; one that is not is killed, and this server serves on.
    #[arg(
        long,
        default_value = "30",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_HANDOVER_TIMEOUT"
    )]
    handover_timeout: Duration,

    /// Permission bits of the socket file, in octal (not applied to a systemd socket).
    #[arg(
        long,
        default_value = "0600",
        value_parser = parse_mode,
        value_name = "OCTAL",
        env = "IPC_SOCKET_MODE"
    )]
    socket_mode: u32,

    /// Group of the socket file, by name or number (give it access with --socket-mode 0660).
    #[arg(long, value_name = "NAME|GID", env = "IPC_SOCKET_GROUP")]
    socket_group: Option<String>,

    /// Admit only peers with this user id (repeatable, or comma-separated in the variable;
    /// checked with SO_PEERCRED).
    #[arg(
        long = "allow-uid",
        value_name = "UID",
        env = "IPC_ALLOW_UID",
        value_delimiter = ','
    )]
    allow_uids: Vec<u32>,

    /// Admit only peers in this group, as their primary or a supplementary group (repeatable;
    /// a peer matching either list is admitted).
    #[arg(
        long = "allow-gid",
        value_name = "GID",
        env = "IPC_ALLOW_GID",
        value_delimiter = ','
    )]
    allow_gids: Vec<u32>,

    /// Admit only TCP clients whose verified certificate carries this name: cn:NAME, dns:NAME,
    /// ip:ADDRESS, uri:URI, email:ADDRESS, subject:DN or sha256:FINGERPRINT (repeatable; a peer
    /// on any allow-list is admitted).
    #[arg(
        long = "allow-cert",
        value_name = "NAME",
        env = "IPC_ALLOW_CERT",
        value_delimiter = ','
    )]
    allow_certs: Vec<localipc_core::CertificateName>,

    /// The server's TLS certificate chain (PEM), for tcp: addresses.
    #[arg(long, value_name = "FILE", env = "IPC_TLS_CERT", requires_all = ["tls_key", "tls_client_ca"])]
    tls_cert: Option<std::path::PathBuf>,

    /// The server's TLS private key (PEM).
    #[arg(long, value_name = "FILE", env = "IPC_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,

    /// The CA certificates (PEM) that TCP clients' certificates must chain to.
    #[arg(
        long,
        value_name = "FILE",
        env = "IPC_TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<std::path::PathBuf>,

    /// Let TCP clients connect without a certificate (they are then anonymous, and refused by
    /// any allow-list); by default one is required.
    #[arg(long, env = "IPC_TLS_OPTIONAL_CLIENT_CERT")]
    tls_optional_client_cert: bool,

    /// Seconds a TCP client has to complete the TLS handshake; one that has not is closed,
    /// and its connection slot freed.
    #[arg(
        long,
        default_value = "10",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_TLS_HANDSHAKE_TIMEOUT"
    )]
    tls_handshake_timeout: Duration,

    /// Serve tcp: addresses without TLS: only loopback ones (any other is refused), and peers
    /// have no identity. For tests and local tools only.
    #[arg(long, env = "IPC_PLAIN_TCP")]
    plain_tcp: bool,

    /// Listen on this address too, with settings of its own after `;` (repeatable, or several
    /// separated by `,`, also in the variable): `max-connections=N`,
    /// `max-connections-per-uid=N`, `allow-uid=UID`, `allow-gid=GID` and `allow-cert=NAME`
    /// (repeatable; they replace the server's allow-lists), `socket-mode=OCTAL`,
    /// `socket-group=NAME|GID`, `plain-tcp=true|false`. What it leaves out is the server's.
    /// Examples: `/run/app/admin.sock;allow-uid=0`, `tcp:0.0.0.0:7000;allow-cert=cn:ci`.
    #[arg(
        long = "also-socket",
        value_name = "ADDRESS[;KEY=VALUE]...",
        env = "IPC_ALSO_SOCKET",
        value_delimiter = ',',
        value_parser = localipc_cli::parse_endpoint
    )]
    also_socket: Vec<localipc_server::Endpoint>,

    /// With --protocol varlink: events kept for an io.ipc.Server.Monitor subscriber that has
    /// not read them yet; one that falls further behind loses the oldest (and is told how many).
    #[arg(
        long,
        default_value_t = localipc_varlink::DEFAULT_MONITOR_BACKLOG,
        value_name = "EVENTS",
        env = "IPC_MONITOR_BACKLOG"
    )]
    monitor_backlog: usize,
    /// Runtime worker threads (1 runs everything on one thread) [default: the CPUs this process
    /// may run on, so `taskset -c 0` gives one].
    #[arg(long, value_name = "N", env = "IPC_WORKERS")]
    workers: Option<usize>,

    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    /// Opaque messages in the chosen --framing, one reply each.
    Plain,
    /// Varlink: JSON calls and replies, each ended by a NUL byte.
    Varlink,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Reply with the message itself.
    Echo,
    /// Reply with a fixed text.
    Ack,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a shell completion script (for example: ipc-server completions bash).
    Completions {
        /// The shell.
        shell: cli::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

/// jemalloc: every connection allocates its task and its I/O registration aligned to a cache
/// line, which glibc's malloc (2.36) serves only by its slow path, never from its per-thread
/// cache; jemalloc serves them from its size classes. About 1,600 fewer instructions per
/// connection, and more connections per second (see the README's Performance section).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli: Cli = match cli::parse_args() {
        Ok((cli, _)) => cli,
        Err(code) => return code,
    };
    let printed = match cli.command {
        Some(Command::Completions { shell }) => {
            Some(cli::write_completions::<Cli>(shell, &mut std::io::stdout()))
        }
        Some(Command::Man) => Some(cli::write_man::<Cli>(&mut std::io::stdout())),
        None => None,
    };
    if let Some(result) = printed {
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ipc-server: {e}");
                ExitCode::from(exit::IO)
            }
        };
    }
    // Before any thread starts, so that every thread inherits the mask.
    if let Err(e) = signal::block_realtime_signals() {
        eprintln!("ipc-server: cannot block real-time signals: {e}");
        return ExitCode::from(exit::IO);
    }
    cli.log.init("info");
    // A panicking handler ends only its connection (the session logs it); route the panic
    // message itself through the log too, so JSON logs stay one object per line.
    std::panic::set_hook(Box::new(|info| tracing::error!(panic = %info, "panic")));
    cli::raise_fd_limit();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("ipc-server: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn run(cli: Cli) -> Result<(), Failure> {
    let config = config(&cli)?;
    // Take an activated or handed-over socket before any thread starts.
    let inherited = activation::inherited().map_err(failure)?;
    let handover_timeout = cli.handover_timeout;
    let workers = cli
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match workers {
        0 => return Err((exit::USAGE, "--workers must be at least 1".into())),
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| (exit::IO, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async {
        match (cli.protocol, cli.mode) {
            (Protocol::Varlink, _) => {
                // Stats reports the server's own counters too.
                let counters = std::sync::Arc::clone(&config.counters);
                let service = varlink(&cli.ack_text, cli.monitor_backlog, counters)?;
                serve(config, inherited, handover_timeout, service).await
            }
            (Protocol::Plain, Mode::Echo) => serve(config, inherited, handover_timeout, Echo).await,
            (Protocol::Plain, Mode::Ack) => {
                let ack = Ack::new(cli.ack_text);
                serve(config, inherited, handover_timeout, ack).await
            }
        }
    })
}

/// The built-in Varlink service: io.ipc.Messages, io.ipc.Server and org.varlink.service.
fn varlink(
    ack_text: &str,
    monitor_backlog: usize,
    counters: std::sync::Arc<localipc_server::ServerCounters>,
) -> Result<localipc_varlink::Service, Failure> {
    localipc_varlink::Service::builder()
        .server_counters(counters)
        .vendor("localipc")
        .product("ipc-server")
        .version(env!("CARGO_PKG_VERSION"))
        // Where the program is published (`cargo install localipc-cli`).
        .url(concat!("https://crates.io/crates/", env!("CARGO_PKG_NAME")))
        .interface(localipc_varlink::messages_interface(ack_text))
        .server_interface()
        .monitor_backlog(monitor_backlog)
        .build()
        .map_err(|e| {
            (
                exit::SOFTWARE,
                format!("cannot build the Varlink service: {e}"),
            )
        })
}

/// Settings from the flags, checked before anything touches the file system.
fn config(cli: &Cli) -> Result<ServerConfig, Failure> {
    let framing = match (cli.protocol, cli.socket.framing) {
        (Protocol::Plain, framing) => framing,
        // Line is the flag's default: Varlink takes NUL framing unless told otherwise.
        (Protocol::Varlink, Framing::Line | Framing::Nul) => Framing::Nul,
        (Protocol::Varlink, other) => {
            return Err((
                exit::USAGE,
                format!("--protocol varlink speaks NUL framing, not --framing {other}"),
            ));
        }
    };
    if cli.protocol == Protocol::Varlink && cli.socket.max_frame < localipc_varlink::MIN_MAX_MESSAGE
    {
        return Err((
            exit::USAGE,
            format!(
                "--protocol varlink needs --max-frame of at least {} bytes (its error replies \
                 and Monitor events repeat names of up to 512 bytes)",
                localipc_varlink::MIN_MAX_MESSAGE
            ),
        ));
    }
    if cli.protocol == Protocol::Plain && matches!(cli.mode, Mode::Ack) {
        // The reply must be sendable, or every connection would close without one.
        let codec = FrameCodec::new(cli.socket.framing, cli.socket.max_frame);
        match codec.encode_head(cli.ack_text.as_bytes(), &mut bytes::BytesMut::new()) {
            Ok(()) => {}
            Err(FrameError::NewlineInMessage) => {
                return Err((
                    exit::USAGE,
                    "--ack-text cannot contain a newline with --framing line".into(),
                ));
            }
            Err(_) => {
                return Err((
                    exit::USAGE,
                    format!(
                        "--ack-text is {} bytes, more than --max-frame ({})",
                        cli.ack_text.len(),
                        codec.max_frame()
                    ),
                ));
            }
        }
    }
    let address = cli.socket.address()?;
    let listen = match address {
        localipc_core::Address::Tcp { .. } => std::path::PathBuf::from(address.to_string()),
        _ => cli.socket.local_path("ipc-server listens on")?,
    };
    let mut config = ServerConfig::new(listen);
    config.framing = framing;
    config.max_frame = cli.socket.max_frame;
    config.max_connections = cli.max_connections;
    config.max_connections_per_uid = cli.max_connections_per_uid;
    config.unfinished_budget = cli.unfinished_budget;
    config.idle_timeout = (!cli.idle_timeout.is_zero()).then_some(cli.idle_timeout);
    config.request_timeout = (!cli.request_timeout.is_zero()).then_some(cli.request_timeout);
    config.concurrency = cli.concurrency;
    config.accept_fds = cli.accept_fds;
    config.max_fds_per_message = cli.max_fds_per_message;
    config.send_fds = cli.send_fds;
    config.shutdown_timeout = cli.shutdown_timeout;
    config.socket_mode = cli.socket_mode;
    config.socket_group = cli
        .socket_group
        .as_deref()
        .map(localipc_cli::resolve_group)
        .transpose()
        .map_err(|e| (exit::USAGE, e))?;
    config.access = AccessPolicy::new(cli.allow_uids.clone(), cli.allow_gids.clone())
        .certificates(cli.allow_certs.clone());
    if let (Some(cert), Some(key), Some(ca)) = (&cli.tls_cert, &cli.tls_key, &cli.tls_client_ca) {
        let auth = if cli.tls_optional_client_cert {
            localipc_server::ClientAuth::Optional
        } else {
            localipc_server::ClientAuth::Required
        };
        config.tls = Some(localipc_server::TlsSettings::new(cert, key, ca).client_auth(auth));
    }
    config.plain_tcp = cli.plain_tcp;
    config.handshake_timeout = cli.tls_handshake_timeout;
    config.also_listen = cli.also_socket.clone();
    Ok(config)
}

async fn serve<H: Handler>(
    config: ServerConfig,
    inherited: Option<activation::Inherited>,
    handover_timeout: Duration,
    handler: H,
) -> Result<(), Failure> {
    // Install the signal handlers before the socket exists, so no early signal is missed
    // (SIGUSR2 would otherwise end the process).
    let mut signals = ShutdownSignals::except(&[nix::sys::signal::Signal::SIGUSR2])
        .map_err(|e| (exit::IO, format!("cannot install signal handlers: {e}")))?;
    let mut restarts =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .map_err(|e| (exit::IO, format!("cannot install signal handlers: {e}")))?;
    let builder = Server::builder(handler).config(config);
    let builder = match inherited {
        // A socket systemd owns is served, never created or removed here; one handed over by
        // a predecessor comes with its path, which is then this server's.
        Some(inherited) => builder.inherited(inherited),
        None => builder,
    };
    let server = builder.bind().map_err(failure)?;
    let handle = server.handle();
    let restart = server.handle();
    tokio::spawn(async move {
        // SIGUSR2: a seamless restart. This program, as it is on disk now, takes the socket
        // over; once it is ready this server stops accepting and drains.
        while restarts.recv().await.is_some() {
            info!(
                signal = "SIGUSR2",
                "starting a successor to hand the socket over to"
            );
            let successor = match Successor::this_program() {
                Ok(successor) => successor.ready_timeout(handover_timeout),
                Err(e) => {
                    warn!(error = %e, "cannot find this program to restart it");
                    continue;
                }
            };
            // The server logs how it went.
            let _ = restart.hand_over(successor).await;
        }
    });
    tokio::spawn(async move {
        let first = signals.recv().await;
        info!(
            signal = first,
            "shutting down gracefully (send it again to force)"
        );
        activation::notify_stopping();
        handle.shutdown();
        let second = signals.recv().await;
        warn!(signal = second, "second signal: dropping connections now");
        handle.force();
    });
    // The socket is bound and listening: connections queue from here on.
    activation::notify_ready();
    server.serve(std::future::pending()).await.map_err(failure)
}

fn failure(e: ServerError) -> Failure {
    let code = match &e {
        ServerError::InUse { .. } => {
            return (
                exit::IN_USE,
                format!("{e}; stop it, or choose another --socket"),
            );
        }
        ServerError::NotASocket { .. } => exit::NOT_A_SOCKET,
        ServerError::InsecureDirectory { .. } | ServerError::DirectoryNotWritable { .. } => {
            exit::NO_PERMISSION
        }
        ServerError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            exit::NO_PERMISSION
        }
        ServerError::PathTooLong { .. }
        | ServerError::InvalidConfig(_)
        | ServerError::Address(_)
        | ServerError::NotLocal { .. } => exit::USAGE,
        ServerError::Tls { .. } => exit::TLS,
        _ => exit::IO,
    };
    (code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use localipc_server::config::{
        DEFAULT_IDLE_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT,
    };

    #[test]
    fn flag_defaults_match_the_library_defaults() {
        let cli = Cli::try_parse_from(["ipc-server"]).unwrap();
        assert_eq!(cli.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        assert_eq!(cli.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert_eq!(cli.request_timeout, DEFAULT_REQUEST_TIMEOUT);
        assert_eq!(
            cli.socket_mode,
            localipc_server::config::DEFAULT_SOCKET_MODE
        );
        assert_eq!(cli.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(cli.concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
