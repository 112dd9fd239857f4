//! What the `ipc-server` and `ipc-client` binaries share: log set-up, duration flags and the
//! exit codes (sysexits-style, so scripts can tell failures apart). Enabled by the `cli` feature.

use std::time::Duration;

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

/// Sets up `tracing` output on stderr, filtered by `RUST_LOG` (default: `info`).
pub fn init_tracing() {
    init_tracing_with("info");
}

/// Sets up `tracing` output on stderr, filtered by `RUST_LOG` (default: warnings only), for
/// commands whose stdout and stderr are read by scripts.
pub fn init_tracing_quiet() {
    init_tracing_with("warn");
}

fn init_tracing_with(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_with_fractions_and_reject_junk() {
        assert_eq!(parse_secs("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_secs("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
    }
}
