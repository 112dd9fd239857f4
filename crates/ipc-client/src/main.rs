//! `ipc-client`: send a message to an `ipc-server` and print the reply. Thin over the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipc_client::{ClientError, ClientOptions};
use ipc_core::cli::{self, exit};
use ipc_core::{DEFAULT_MAX_FRAME, FrameError, Framing};

/// Send messages to an ipc-server over its Unix domain socket.
///
/// Exit codes: 0 success; 64 bad usage; 65 the message does not fit the framing; 66 nothing at
/// the socket path; 69 stale socket (connection refused); 74 other I/O error; 75 timeout; 76 the
/// server closed without replying or sent a bad reply; 77 permission denied; 78 the path is not
/// a socket.
#[derive(Debug, Parser)]
#[command(version, max_term_width = 100)]
struct Cli {
    /// Socket path [default: $XDG_RUNTIME_DIR/ipc/ipc.sock, else /tmp/ipc-<uid>/ipc.sock].
    #[arg(long, global = true, env = "IPC_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    /// How messages are delimited; must match the server.
    #[arg(long, global = true, value_enum, default_value_t = Framing::Line)]
    framing: Framing,

    /// Seconds to wait for the connection and the reply (0 = for ever).
    #[arg(long, global = true, default_value = "5", value_parser = cli::parse_secs, value_name = "SECS")]
    timeout: Duration,

    /// Largest message sent or reply accepted, in bytes.
    #[arg(long, global = true, default_value_t = DEFAULT_MAX_FRAME, value_name = "BYTES")]
    max_frame: usize,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send one message and print the reply, followed by a newline.
    Send {
        /// The message (sent as given, without a trailing newline of its own).
        message: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    cli::init_tracing_quiet();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("ipc-client: {message}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), (u8, String)> {
    let timeout = cli.timeout;
    let options = ClientOptions::default()
        .framing(cli.framing)
        .max_frame(cli.max_frame)
        .timeout((!timeout.is_zero()).then_some(timeout));
    let path = cli.socket.unwrap_or_else(ipc_core::default_socket_path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| (exit::IO, format!("cannot start the runtime: {e}")))?;
    match cli.command {
        Command::Send { message } => {
            let reply = runtime
                .block_on(ipc_client::send_with(&path, message, options))
                .map_err(failure)?;
            let mut out = std::io::stdout().lock();
            out.write_all(&reply)
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .map_err(|e| (exit::IO, format!("cannot write the reply: {e}")))
        }
    }
}

fn failure(e: ClientError) -> (u8, String) {
    let code = match &e {
        ClientError::NoSocket { .. } => exit::NO_SOCKET,
        ClientError::Refused { .. } => exit::UNAVAILABLE,
        ClientError::NotASocket { .. } => exit::NOT_A_SOCKET,
        ClientError::PermissionDenied { .. } => exit::NO_PERMISSION,
        ClientError::Closed | ClientError::Protocol(_) => exit::PROTOCOL,
        ClientError::Timeout(_) => exit::TIMEOUT,
        ClientError::Message(FrameError::Io(_)) => exit::IO,
        ClientError::Message(_) => exit::DATA,
        _ => exit::IO,
    };
    (code, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_default_matches_the_library_default() {
        let cli = Cli::try_parse_from(["ipc-client", "send", "x"]).unwrap();
        assert_eq!(cli.timeout, ipc_client::DEFAULT_TIMEOUT);
    }
}
