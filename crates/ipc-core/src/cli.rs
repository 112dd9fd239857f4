//! What the `ipc-server` and `ipc-client` binaries share: log set-up, duration flags and the
//! exit codes (sysexits-style, so scripts can tell failures apart). Enabled by the `cli` feature.

use std::time::Duration;

pub use clap_complete::Shell;

/// Exit codes of the binaries. Both use the same numbers for the same kind of failure.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// A bad flag or setting (`EX_USAGE`).
    pub const USAGE: u8 = 64;
    /// A message the framing cannot carry, such as an over-size one (`EX_DATAERR`).
    pub const DATA: u8 = 65;
    /// Nothing exists at the socket path (`EX_NOINPUT`).
    pub const NO_SOCKET: u8 = 66;
    /// A socket file with no server behind it: connection refused (`EX_UNAVAILABLE`).
    pub const UNAVAILABLE: u8 = 69;
    /// The socket path is held by a live server (`EX_CANTCREAT`).
    pub const IN_USE: u8 = 73;
    /// Any other I/O failure (`EX_IOERR`).
    pub const IO: u8 = 74;
    /// The operation timed out (`EX_TEMPFAIL`).
    pub const TIMEOUT: u8 = 75;
    /// The peer broke the protocol or closed without replying (`EX_PROTOCOL`).
    pub const PROTOCOL: u8 = 76;
    /// Permission denied, or an unsafe socket directory (`EX_NOPERM`).
    pub const NO_PERMISSION: u8 = 77;
    /// The socket path exists but is not a socket (`EX_CONFIG`).
    pub const NOT_A_SOCKET: u8 = 78;
}

/// Parses the command line of a binary. On `--help` or `--version` it prints and returns
/// `Err(0)`; on a usage error it prints the error and returns `Err(64)`. Either way the caller
/// exits with that code.
pub fn parse_args<C: clap::Parser>() -> Result<C, std::process::ExitCode> {
    C::try_parse().map_err(|e| {
        let _ = e.print();
        std::process::ExitCode::from(if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        })
    })
}

/// Where the socket is and how it frames messages: the flags server and client share, with the
/// same names and variables.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Socket path (default: `$XDG_RUNTIME_DIR/ipc/ipc.sock`, else `/tmp/ipc-<uid>/ipc.sock`).
    #[arg(long, global = true, env = "IPC_SOCKET", value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,

    /// How messages are delimited: `line` (up to `\n`) or `length` (4-byte big-endian length);
    /// server and client must agree.
    #[arg(long, global = true, value_enum, default_value_t = crate::Framing::Line, env = "IPC_FRAMING")]
    pub framing: crate::Framing,

    /// Largest message sent or received, in bytes; a bigger one is refused and, on the
    /// server, closes its connection.
    #[arg(
        long,
        global = true,
        default_value_t = crate::DEFAULT_MAX_FRAME,
        value_name = "BYTES",
        env = "IPC_MAX_FRAME"
    )]
    pub max_frame: usize,
}

impl SocketArgs {
    /// The socket path: `--socket` (or `$IPC_SOCKET`), else [`crate::default_socket_path`].
    pub fn path(&self) -> std::path::PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(crate::default_socket_path)
    }
}

/// Parses a duration given in seconds, with an optional fraction (`5`, `0.25`).
///
/// # Errors
///
/// A value that is not a finite, non-negative number.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} is not a valid number of seconds"))
}

/// Raises the soft limit on open files to the hard limit, so a server's connection cap, not a
/// low default descriptor limit, decides how many clients it can hold. Failure is harmless.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The logging flags both binaries take.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "IPC_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,

    /// More log output (-v debug, -vv trace); RUST_LOG directives still apply on top.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less log output (-q warnings and errors only, -qq errors only, -qqq nothing).
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

/// Log levels from quietest to loudest; `LEVELS[i]` is the filter for verbosity `i`.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

impl LogArgs {
    /// The default filter level after `-v`/`-q`, starting from `base` (an entry of `LEVELS`).
    pub fn level(&self, base: &str) -> &'static str {
        let start = LEVELS.iter().position(|l| *l == base).unwrap_or(3) as i32;
        let i = (start + i32::from(self.verbose) - i32::from(self.quiet)).clamp(0, 5);
        LEVELS[i as usize]
    }

    /// Sets up `tracing` on stderr: the level from `base` adjusted by `-v`/`-q`, then any
    /// `RUST_LOG` directives on top, in the chosen format. Colours only on a terminal.
    pub fn init(&self, base: &str) {
        let directives = std::env::var("RUST_LOG").unwrap_or_default();
        let filter = tracing_subscriber::EnvFilter::builder()
            .with_default_directive(
                self.level(base)
                    .parse()
                    .unwrap_or_else(|_| tracing_subscriber::filter::LevelFilter::INFO.into()),
            )
            .parse_lossy(directives);
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.log_format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init(),
        }
    }
}

/// Writes a completion script for `shell` of the binary whose command-line is `C`.
///
/// # Errors
///
/// Writing to `out` failed.
pub fn write_completions<C: clap::CommandFactory>(
    shell: clap_complete::Shell,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut cmd = C::command();
    let name = cmd.get_name().to_owned();
    // Generate into memory first: `generate` panics if its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    out.write_all(&script)?;
    out.flush()
}

/// Writes the man page (roff) of the binary whose command-line is `C`.
///
/// # Errors
///
/// Writing to `out` failed.
pub fn write_man<C: clap::CommandFactory>(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    clap_mangen::Man::new(C::command()).render(out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_the_level_and_stays_in_range() {
        let args = |verbose, quiet| LogArgs {
            log_format: LogFormat::Text,
            verbose,
            quiet,
        };
        assert_eq!(args(0, 0).level("info"), "info");
        assert_eq!(args(1, 0).level("info"), "debug");
        assert_eq!(args(9, 0).level("info"), "trace");
        assert_eq!(args(0, 1).level("info"), "warn");
        assert_eq!(args(0, 9).level("warn"), "off");
    }

    #[test]
    fn seconds_parse_with_fractions_and_reject_junk() {
        assert_eq!(parse_secs("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_secs("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }
}
