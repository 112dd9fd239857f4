//! `ipc-client`: send messages to an `ipc-server` and print the replies, or check whether one is
//! there. Thin over the library.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, Subcommand};
use localipc_cli::varlink::{self, CallKind};
use localipc_cli::{self as cli, LogArgs, SocketArgs, exit};
use localipc_client::{Client, ClientError, ClientOptions, PipelineError};
use localipc_core::{Framing, PathState};

/// Send messages to an ipc-server over its Unix domain socket, on this host or, through ssh,
/// on another (--socket ssh-unix:HOST:PATH or ssh-exec:HOST:COMMAND; IPC_SSH names the program
/// to run in place of ssh).
///
/// Exit codes (sysexits): 0 success (ping: a server answers); 64 bad usage (including a socket
/// path over 107 bytes, an address that cannot be used, or a flag the subcommand does not use);
/// 65 the message does not fit the framing; 66 nothing at the socket path (or a --push-fd
/// path); 69 unavailable: a stale socket, connection refused, or ssh that cannot start or
/// ended before the reply; 70 internal error (a bug: please report it); 74 other I/O error;
/// 75 timeout (ping: a server holds the socket but does not answer); 76 protocol: the server
/// closed without replying, sent a bad reply, or refuses descriptors; 77 permission denied; 78
/// the path is not a socket; 79 a Varlink call got an error reply.
#[derive(Debug, Parser)]
#[command(name = "ipc-client", version, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    socket: SocketArgs,

    #[command(flatten)]
    tls: cli::TlsArgs,

    /// Seconds to wait for the connection and the replies (0 = for ever).
    #[arg(
        long,
        global = true,
        default_value = "5",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_TIMEOUT"
    )]
    timeout: Duration,

    /// With --framing raw: a reply ends when the server closes, or sends nothing more for this
    /// many seconds once some of it has arrived.
    #[arg(
        long,
        global = true,
        default_value = "0.1",
        value_parser = cli::parse_secs,
        value_name = "SECS",
        env = "IPC_RAW_QUIET"
    )]
    raw_quiet: Duration,

    #[command(flatten)]
    log: LogArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send messages over one connection and print each reply on its own line.
    ///
    /// `-` reads one message from stdin (with line framing, one trailing newline is dropped).
    /// If the connection fails part way, the replies received are printed, then the error.
    Send {
        /// The messages, sent in order; `-` is stdin.
        #[arg(required = true, value_name = "MESSAGE")]
        messages: Vec<String>,

        /// Write the reply bytes exactly as received, with no newline added.
        #[arg(long)]
        raw: bool,

        /// Pass a file descriptor with the first message (SCM_RIGHTS), for a server run with
        /// --accept-fds: a number is one ipc-client inherited, anything else a path it opens.
        /// Repeat for more. Descriptors that come with the first reply are listed on stderr.
        #[arg(long, value_name = "FD|PATH")]
        push_fd: Vec<String>,
    },
    /// Tell whether a server answers at the socket path: prints `live: PATH`, `not answering:
    /// PATH`, `stale socket: PATH`, `not a socket: PATH`, `nothing there: PATH` or `permission
    /// denied: PATH`; the exit code says the same (0, 75, 69, 78, 66, 77).
    ///
    /// It sends no message: it connects, ends its side of the connection, and calls the server
    /// live when the server takes the connection and closes it (or writes) within --timeout. A
    /// server that holds the socket but does not run (stopped, or stuck) is `not answering`.
    #[command(visible_alias = "status")]
    Ping,
    /// Make a Varlink call (to a server run with --protocol varlink, or any Varlink service)
    /// and print each reply's parameters as one JSON object per line.
    ///
    /// An error reply prints its name and parameters on stderr and exits with 79. With --more,
    /// --timeout bounds connecting only: the replies may stream for ever (io.ipc.Server.Monitor).
    Call {
        /// The qualified method, such as io.ipc.Messages.Echo.
        method: String,
        /// The parameters, a JSON object (none if omitted).
        #[arg(value_name = "JSON")]
        parameters: Option<String>,
        /// Ask for every reply (`more`): print them as they come, until the last.
        #[arg(long, conflicts_with = "oneway")]
        more: bool,
        /// Send the call without waiting for a reply (`oneway`).
        #[arg(long)]
        oneway: bool,
        /// Pass a file descriptor with the call (SCM_RIGHTS), for a service that takes them;
        /// parameters name them by index, from 0. A number is one ipc-client inherited,
        /// anything else a path it opens. Repeat for more. Descriptors that come with the
        /// reply are listed on stderr.
        #[arg(long, value_name = "FD|PATH", conflicts_with_all = ["more", "oneway"])]
        push_fd: Vec<String>,
    },
    /// Ask a Varlink service who it is (GetInfo, printed as JSON), or with an interface name,
    /// print that interface's description (Varlink IDL).
    Introspect {
        /// The interface to describe.
        interface: Option<String>,
    },
    /// Connect stdin and stdout to the server, until it closes: for a remote command such as
    /// `ssh host ipc-client bridge`, which then carries either protocol (as `varlink bridge`
    /// does). The end of stdin ends only the sending side; the replies still come.
    Bridge {
        /// The local server's address, in place of --socket: a path, `@name`, `unix:PATH` or
        /// `unix:@NAME`.
        #[arg(value_name = "ADDRESS")]
        address: Option<std::path::PathBuf>,
    },
    /// Print a shell completion script (for example: ipc-client completions zsh).
    Completions {
        /// The shell.
        shell: cli::Shell,
    },
    /// Print the man page (roff) on stdout.
    Man,
}

type Failure = (u8, String);

/// Most descriptors taken with one reply.
const MAX_FDS: usize = localipc_client::MAX_FDS_PER_MESSAGE;

/// The descriptors `--push-fd` names, opened.
fn open_fds(specs: &[String]) -> Result<Vec<OwnedFd>, Failure> {
    specs.iter().map(|spec| cli::open_push_fd(spec)).collect()
}

fn main() -> ExitCode {
    let (cli, matches) = match cli::parse_args::<Cli>() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    cli.log.init("warn");
    match refuse_unused_flags(&matches).and_then(|()| run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err((code, message)) => {
            eprintln!("ipc-client: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let path = cli.socket.checked()?;
    let framing = cli.socket.framing;
    let options = ClientOptions::default()
        .framing(framing)
        .max_frame(cli.socket.max_frame)
        .timeout((!cli.timeout.is_zero()).then_some(cli.timeout))
        .raw_quiet(cli.raw_quiet);
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Send {
            messages,
            raw,
            push_fd,
        } => {
            let messages = read_messages(messages, framing)?;
            let fds = open_fds(&push_fd)?;
            let exchanged = runtime()?.block_on(exchange(&path, &cli.tls, messages, fds, options));
            let (replies, error) = match exchanged {
                Ok(replies) => (replies, None),
                Err(PipelineError { replies, error }) => (replies, Some(error)),
            };
            // The replies that did come are printed, also when a later one failed.
            for reply in replies {
                out.write_all(&reply).map_err(cli::stdout_failure)?;
                if !raw {
                    out.write_all(b"\n").map_err(cli::stdout_failure)?;
                }
            }
            out.flush().map_err(cli::stdout_failure)?;
            match error {
                None => Ok(exit::OK),
                Some(e) => Err(cli::client_failure(e)),
            }
        }
        Command::Call {
            method,
            parameters,
            more,
            oneway,
            push_fd,
        } => {
            let parameters = varlink::parse_parameters(parameters.as_deref())?;
            let kind = match (more, oneway) {
                (true, _) => CallKind::More,
                (_, true) => CallKind::Oneway,
                _ => CallKind::Plain {
                    fds: open_fds(&push_fd)?,
                },
            };
            let timeout = (!cli.timeout.is_zero()).then_some(cli.timeout);
            runtime()?.block_on(varlink::call(
                &path,
                &cli.tls,
                timeout,
                cli.socket.max_frame,
                &method,
                &parameters,
                kind,
                &mut out,
            ))?;
            Ok(exit::OK)
        }
        Command::Introspect { interface } => {
            let timeout = (!cli.timeout.is_zero()).then_some(cli.timeout);
            runtime()?.block_on(varlink::introspect(
                &path,
                &cli.tls,
                timeout,
                cli.socket.max_frame,
                interface.as_deref(),
                &mut out,
            ))?;
            Ok(exit::OK)
        }
        Command::Bridge { address } => {
            let mut socket = cli.socket.clone();
            if address.is_some() {
                socket.socket = address;
            }
            let path = socket.local_path("bridge connects to")?;
            let timeout = (!cli.timeout.is_zero()).then_some(cli.timeout);
            cli::bridge::bridge(&path, timeout, std::io::stdin(), std::io::stdout().lock())?;
            Ok(exit::OK)
        }
        Command::Ping => {
            let path = cli.socket.local_path("ping probes")?;
            let (line, code) = match localipc_core::probe(&path) {
                Ok(PathState::Live) => match answers(&path, cli.timeout) {
                    Ok(true) => ("live", exit::OK),
                    Ok(false) => ("not answering", exit::TIMEOUT),
                    Err(e) => {
                        return Err((exit::IO, format!("cannot ping {}: {e}", path.display())));
                    }
                },
                Ok(PathState::Stale) => ("stale socket", exit::UNAVAILABLE),
                Ok(PathState::NotASocket(_)) => ("not a socket", exit::NOT_A_SOCKET),
                Ok(PathState::Missing) => ("nothing there", exit::NO_SOCKET),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    ("permission denied", exit::NO_PERMISSION)
                }
                Err(e) => return Err((exit::IO, format!("cannot probe {}: {e}", path.display()))),
            };
            writeln!(out, "{line}: {}", path.display()).map_err(cli::stdout_failure)?;
            Ok(code)
        }
        Command::Completions { shell } => {
            cli::write_completions::<Cli>(shell, &mut out).map_err(cli::stdout_failure)?;
            Ok(exit::OK)
        }
        Command::Man => {
            cli::write_man::<Cli>(&mut out).map_err(cli::stdout_failure)?;
            Ok(exit::OK)
        }
    }
}

/// The flags a subcommand has no use for are refused rather than silently ignored: Varlink
/// calls always use NUL framing, and ping sends no message.
fn refuse_unused_flags(matches: &clap::ArgMatches) -> Result<(), Failure> {
    cli::refuse_unused_flags(matches, "call", &["framing", "raw_quiet"])?;
    cli::refuse_unused_flags(matches, "introspect", &["framing", "raw_quiet"])?;
    cli::refuse_unused_flags(matches, "ping", &["framing", "raw_quiet", "max_frame"])?;
    cli::refuse_unused_flags(matches, "bridge", &["framing", "raw_quiet", "max_frame"])
}

/// Whether the server at `path` takes a connection and answers its end (by closing, or by
/// writing) within `timeout`: true when it does, false when it is silent that long.
fn answers(path: &std::path::Path, timeout: Duration) -> std::io::Result<bool> {
    use std::os::unix::net::UnixStream;
    let mut conn = match localipc_core::abstract_name(path) {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            UnixStream::connect_addr(&std::os::unix::net::SocketAddr::from_abstract_name(name)?)?
        }
        None => UnixStream::connect(path)?,
    };
    conn.shutdown(std::net::Shutdown::Write)?;
    conn.set_read_timeout((!timeout.is_zero()).then_some(timeout))?;
    match conn.read(&mut [0; 512]) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(true),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit::IO, format!("cannot start the runtime: {e}")))
}

/// The messages to send, with `-` replaced by stdin.
fn read_messages(args: Vec<String>, framing: Framing) -> Result<Vec<Bytes>, Failure> {
    let mut stdin_used = false;
    args.into_iter()
        .map(|arg| {
            if arg != "-" {
                return Ok(Bytes::from(arg));
            }
            if std::mem::replace(&mut stdin_used, true) {
                return Err((exit::USAGE, "`-` (stdin) can be given only once".to_owned()));
            }
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| (exit::IO, format!("cannot read stdin: {e}")))?;
            if framing == Framing::Line && buf.last() == Some(&b'\n') {
                buf.pop();
            }
            Ok(Bytes::from(buf))
        })
        .collect()
}

/// One connection, with every message pipelined on it; the time limit covers connecting and
/// all the replies.
async fn exchange(
    path: &std::path::Path,
    tls: &cli::TlsArgs,
    messages: Vec<Bytes>,
    fds: Vec<OwnedFd>,
    options: ClientOptions,
) -> Result<Vec<Bytes>, PipelineError> {
    // Descriptors that come with the first reply are taken, to be listed.
    let limit = options.timeout;
    let run = async {
        let connection = tls.connect(path, None).await?;
        let mut client = Client::from_connection(connection, options.accept_fds(MAX_FDS));
        let mut replies = Vec::new();
        let mut messages = messages.into_iter();
        if !fds.is_empty()
            && let Some(first) = messages.next()
        {
            // The descriptors go with the first message.
            let (reply, received) = client.request_with_fds(first, fds).await?;
            cli::report_fds(received);
            replies.push(reply);
        }
        // The others, pipelined.
        match client.pipeline(messages).await {
            Ok(more) => replies.extend(more),
            Err(mut e) => {
                replies.append(&mut e.replies);
                e.replies = replies;
                return Err(e);
            }
        }
        Ok(replies)
    };
    match limit {
        Some(limit) => tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| Err(ClientError::Timeout(limit).into())),
        None => run.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn timeout_default_matches_the_library_default() {
        let cli = Cli::try_parse_from(["ipc-client", "send", "x"]).unwrap();
        assert_eq!(cli.timeout, localipc_client::DEFAULT_TIMEOUT);
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
