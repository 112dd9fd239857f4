//! What the `ipc-server` and `ipc-client` binaries share: the socket flags, log set-up, duration
//! flags, completions and man pages, and the exit codes (sysexits-style, so scripts can tell
//! failures apart).
//!
//! This crate exists so that the libraries (`ipc-core`, `ipc-server`, `ipc-client`) carry no
//! command-line code: an application that embeds them compiles neither clap nor a log
//! subscriber.
#![deny(missing_docs)]

// The README's Rust examples are compiled and run as doc tests of this crate, so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

use std::time::Duration;

pub use clap_complete::Shell;

pub mod bridge;
pub mod varlink;

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
    /// An internal error (`EX_SOFTWARE`).
    pub const SOFTWARE: u8 = 70;
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
    /// A Varlink call was answered with an error reply (its name is on stderr).
    pub const ERROR_REPLY: u8 = 79;
    /// TLS: a certificate or key file that cannot be used, or a handshake that failed (a
    /// certificate not trusted, or refused by the other side).
    pub const TLS: u8 = 80;
}

/// Parses the command line of a binary. On `--help` or `--version` it prints and returns
/// `Err(0)`; on a usage error it prints the error and returns `Err(64)`. Either way the caller
/// exits with that code. The matches tell where each value came from (see
/// [`refuse_unused_flags`]).
pub fn parse_args<C: clap::Parser>() -> Result<(C, clap::ArgMatches), std::process::ExitCode> {
    let usage = |e: clap::Error| {
        let _ = e.print();
        std::process::ExitCode::from(if e.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        })
    };
    let matches = C::command().try_get_matches().map_err(usage)?;
    let parsed = C::from_arg_matches(&matches).map_err(usage)?;
    Ok((parsed, matches))
}

/// Refuses, as a usage error, the flags of `unused` (clap ids: the field names) given on the
/// command line to the subcommand `sub`, which does not use them. Values from the environment
/// are let through: a variable such as `IPC_FRAMING` is often set for every command at once.
///
/// # Errors
///
/// A usage failure naming the first such flag.
pub fn refuse_unused_flags(
    matches: &clap::ArgMatches,
    sub: &str,
    unused: &[&str],
) -> Result<(), (u8, String)> {
    let Some(sub_matches) = matches.subcommand_matches(sub) else {
        return Ok(());
    };
    for id in unused {
        let given = |m: &clap::ArgMatches| {
            matches!(
                m.value_source(id),
                Some(clap::parser::ValueSource::CommandLine)
            )
        };
        if given(matches) || given(sub_matches) {
            let flag = id.replace('_', "-");
            return Err((
                exit::USAGE,
                format!("`{sub}` does not use --{flag}; leave it out"),
            ));
        }
    }
    Ok(())
}

/// Where the socket is and how it frames messages: the flags server and client share, with the
/// same names and variables.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Socket path, or `@name` for a name in the abstract namespace, which no file permissions
    /// protect: use the allow-lists (default: `$XDG_RUNTIME_DIR/ipc/ipc.sock`, else
    /// `/tmp/ipc-<uid>/ipc.sock`). Varlink's address forms work too: `unix:PATH`,
    /// `unix:@NAME`, and for ipc-client a server on another host through ssh,
    /// `ssh-unix:[USER@]HOST:PATH` and `ssh-exec:[USER@]HOST:COMMAND`.
    #[arg(long, global = true, env = "IPC_SOCKET", value_name = "ADDRESS")]
    pub socket: Option<std::path::PathBuf>,

    /// How messages are delimited: `line` (up to `\n`), `length` (4-byte big-endian length),
    /// `nul` (up to a NUL byte, as Varlink) or `raw` (no framing: a message is what one read
    /// returns); server and client must agree.
    #[arg(
        long,
        global = true,
        default_value_t = localipc_core::Framing::Line,
        value_parser = framing_parser(),
        env = "IPC_FRAMING"
    )]
    pub framing: localipc_core::Framing,

    /// Largest message sent or received, in bytes; a bigger one is refused and, on the
    /// server, closes its connection.
    #[arg(
        long,
        global = true,
        default_value_t = localipc_core::DEFAULT_MAX_FRAME,
        value_name = "BYTES",
        env = "IPC_MAX_FRAME"
    )]
    pub max_frame: usize,
}

impl SocketArgs {
    /// Where the server is: `--socket` (or `$IPC_SOCKET`) read as an address, else
    /// [`localipc_core::default_socket_path`].
    ///
    /// # Errors
    ///
    /// The usage exit code and line for an address that cannot be read.
    pub fn address(&self) -> Result<localipc_core::Address, (u8, String)> {
        match &self.socket {
            Some(given) => localipc_core::Address::parse(given)
                .map_err(|e| (exit::USAGE, format!("--socket: {e}"))),
            None => Ok(localipc_core::Address::from(
                localipc_core::default_socket_path().as_path(),
            )),
        }
    }

    /// `--socket` (or `$IPC_SOCKET`) as given, else [`localipc_core::default_socket_path`],
    /// checked to be an address the clients read (they read it again as they connect).
    ///
    /// # Errors
    ///
    /// As [`address`](Self::address).
    pub fn checked(&self) -> Result<std::path::PathBuf, (u8, String)> {
        self.address()?;
        Ok(self
            .socket
            .clone()
            .unwrap_or_else(localipc_core::default_socket_path))
    }

    /// The socket of this host that `--socket` names (a path, or `@name`), for what only a
    /// local socket can do: `doing` says what, for the error about a remote address.
    ///
    /// # Errors
    ///
    /// The usage exit code and line for an address that cannot be read or is remote.
    pub fn local_path(&self, doing: &str) -> Result<std::path::PathBuf, (u8, String)> {
        let address = self.address()?;
        address.local_path().ok_or_else(|| {
            (
                exit::USAGE,
                format!("{doing} a socket of this host, not {address}"),
            )
        })
    }
}

use localipc_client::ClientError;

/// How `ipc-client` reaches a `tcp:` address: TLS with these files, or plain TCP to
/// loopback. The variables are the ones [`localipc_client::TcpOptions::from_env`] reads.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// For tcp: addresses, the CA certificates (PEM) the server's certificate must chain to.
    #[arg(long, global = true, value_name = "FILE", env = "IPC_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// The client's certificate chain (PEM), for a server that requires one (the default).
    #[arg(long, global = true, value_name = "FILE", env = "IPC_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The client's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", env = "IPC_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The name the server's certificate must carry, if not the address's host.
    #[arg(long, global = true, value_name = "NAME", env = "IPC_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Plain TCP without TLS, to a loopback address only.
    #[arg(long, global = true, env = "IPC_PLAIN_TCP")]
    pub plain_tcp: bool,
}

impl TlsArgs {
    /// The options these flags give.
    ///
    /// # Errors
    ///
    /// [`ClientError::Tls`] for a missing CA, a certificate without its key, or a file that
    /// cannot be used.
    pub fn options(&self) -> Result<localipc_client::TcpOptions, ClientError> {
        use localipc_client::TcpOptions;
        if self.plain_tcp {
            return Ok(TcpOptions::plain());
        }
        let Some(ca) = &self.tls_ca else {
            return Err(ClientError::Tls(
                "a tcp: address needs --tls-ca (the CA file the server's certificate chains \
                 to), or --plain-tcp for a loopback address"
                    .into(),
            ));
        };
        let identity = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
            (None, None) => None,
            _ => {
                return Err(ClientError::Tls(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        let options = TcpOptions::tls(ca, identity)?;
        Ok(match &self.tls_server_name {
            Some(name) => options.server_name(name),
            None => options,
        })
    }

    /// Connects to `address`: a `tcp:` one with these options, any other as
    /// [`localipc_client::connect()`] does.
    ///
    /// # Errors
    ///
    /// As [`options`](Self::options) and [`localipc_client::connect()`].
    pub async fn connect(
        &self,
        address: &std::path::Path,
        timeout: Option<std::time::Duration>,
    ) -> Result<localipc_client::Connection, ClientError> {
        let parsed = localipc_core::Address::parse(address).map_err(ClientError::Address)?;
        if parsed.tcp_target().is_some() {
            return localipc_client::connect_tcp(&parsed, &self.options()?, timeout).await;
        }
        localipc_client::connect(address, timeout).await
    }
}

/// A clap parser for [`localipc_core::Framing`] that lists the possible values in `--help`.
pub fn framing_parser() -> impl clap::builder::TypedValueParser<Value = localipc_core::Framing> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(localipc_core::Framing::ALL.map(|f| f.as_str()))
        .try_map(|s| s.parse::<localipc_core::Framing>())
}

/// Parses permission bits written in octal, such as `600` or `0660`.
///
/// # Errors
///
/// A value that is not octal or has bits beyond `0o777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.trim_start_matches("0o");
    let mode = u32::from_str_radix(digits, 8).map_err(|_| format!("{s:?} is not an octal mode"))?;
    if mode > 0o777 {
        return Err(format!(
            "{s:?} has bits beyond 0777 (setuid, setgid and sticky do not apply to sockets)"
        ));
    }
    Ok(mode)
}

/// Parses a duration given in seconds, with an optional fraction (`5`, `0.25`). Only `0` (or
/// `0.0`) is zero: a positive value smaller than a nanosecond becomes one nanosecond, so it
/// never turns into "no limit" where zero means that.
///
/// # Errors
///
/// A value that is not a finite, non-negative number.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    let d = Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a valid number of seconds"))?;
    Ok(if d.is_zero() && secs > 0.0 {
        Duration::from_nanos(1)
    } else {
        d
    })
}

/// Raises the soft limit on open files to the hard limit, so a server's connection cap, not a
/// low default descriptor limit, decides how many clients it can hold. Failure is harmless.
pub fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
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

/// Writes the man page (roff) of the binary whose command-line is `C`, with an ENVIRONMENT
/// section listing the variable behind each flag.
///
/// # Errors
///
/// Writing to `out` failed.
pub fn write_man<C: clap::CommandFactory>(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let cmd = C::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    out.write_all(&page)?;
    out.write_all(environment_section(&cmd).as_bytes())?;
    out.flush()
}

/// The roff ENVIRONMENT section: every variable a flag of `cmd` (or of its subcommands) reads.
fn environment_section(cmd: &clap::Command) -> String {
    let mut seen = std::collections::BTreeMap::new();
    let mut stack = vec![cmd];
    while let Some(c) = stack.pop() {
        for arg in c.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                seen.entry(env.to_string_lossy().into_owned())
                    .or_insert_with(|| long.to_owned());
            }
        }
        stack.extend(c.get_subcommands());
    }
    let mut roff = String::from(".SH ENVIRONMENT\n");
    roff.push_str(
        "Each variable sets the flag named beside it; a flag given on the command line wins.\n",
    );
    for (env, long) in seen {
        roff.push_str(&format!(".TP\n\\fB{env}\\fR\nas \\fB\\-\\-{long}\\fR\n"));
    }
    roff.push_str(
        ".TP\n\\fBRUST_LOG\\fR\nlog filter directives, applied on top of \\-v and \\-q\n",
    );
    roff
}

/// The exit code and message for output that could not be written.
pub fn stdout_failure(e: std::io::Error) -> (u8, String) {
    (exit::IO, format!("cannot write to stdout: {e}"))
}

/// The exit code and message for a client error, with the flag to check where the library
/// cannot say it.
pub fn client_failure(e: localipc_client::ClientError) -> (u8, String) {
    use localipc_client::ClientError;
    use localipc_core::FrameError;
    // What the library cannot say: the flag to check.
    const FRAMING_HINT: &str = "check that --framing matches the server's";
    let (code, hint) = match &e {
        ClientError::NoSocket { .. } => (exit::NO_SOCKET, None),
        ClientError::Refused { .. } => (exit::UNAVAILABLE, None),
        ClientError::NotASocket { .. } => (exit::NOT_A_SOCKET, None),
        ClientError::PermissionDenied { .. } => (exit::NO_PERMISSION, None),
        ClientError::PathTooLong { .. } => (exit::USAGE, None),
        ClientError::Closed => (exit::PROTOCOL, Some(FRAMING_HINT)),
        ClientError::Protocol(_) | ClientError::Unusable { .. } => (exit::PROTOCOL, None),
        ClientError::Timeout(_) => (exit::TIMEOUT, Some(FRAMING_HINT)),
        ClientError::Message(FrameError::Io(_)) => (exit::IO, None),
        ClientError::Message(_) => (exit::DATA, None),
        ClientError::Runtime(_) => (exit::SOFTWARE, None),
        ClientError::TooManyFds { .. } => (exit::USAGE, None),
        ClientError::Fds(_) | ClientError::FdsRefused => (exit::PROTOCOL, None),
        ClientError::Address(_) | ClientError::FdsNotCarried | ClientError::SshTooOld { .. } => {
            (exit::USAGE, None)
        }
        ClientError::Ssh { .. } | ClientError::SshEnded { .. } => (exit::UNAVAILABLE, None),
        ClientError::TcpRefused { .. } => (exit::UNAVAILABLE, None),
        ClientError::Tls(_) => (exit::TLS, None),
        _ => (exit::IO, None),
    };
    match hint {
        Some(hint) => (code, format!("{e}; {hint}")),
        None => (code, e.to_string()),
    }
}

/// Opens what `--push-fd` names: a number is a descriptor `ipc-client` inherited (opened again
/// through `/proc/self/fd`, with the same file and access), anything else a path, opened for
/// reading and writing where allowed, else for reading only.
///
/// # Errors
///
/// The exit code and line to print when it cannot be opened.
pub fn open_push_fd(spec: &str) -> Result<std::os::fd::OwnedFd, (u8, String)> {
    let path = match spec.parse::<u32>() {
        Ok(n) => std::path::PathBuf::from(format!("/proc/self/fd/{n}")),
        Err(_) => std::path::PathBuf::from(spec),
    };
    let open = |write: bool| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
    };
    match open(true).or_else(|_| open(false)) {
        Ok(file) => Ok(file.into()),
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => exit::NO_SOCKET,
                std::io::ErrorKind::PermissionDenied => exit::NO_PERMISSION,
                _ => exit::IO,
            };
            Err((code, format!("--push-fd {spec}: {e}")))
        }
    }
}

/// Writes one line per descriptor received with a reply to stderr: its index and what it is
/// (`descriptor 0: /tmp/file`, as `/proc/self/fd` names it); the descriptors are closed then.
pub fn report_fds(fds: Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsRawFd;
    for (index, fd) in fds.into_iter().enumerate() {
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_or_else(|e| format!("({e})"), |p| p.display().to_string());
        eprintln!("descriptor {index}: {target}");
    }
}

/// Reads an `--also-socket` value: an address, then `;KEY=VALUE` settings of its own
/// (`max-connections`, `max-connections-per-uid`, `allow-uid`, `allow-gid` and `allow-cert`,
/// each of those three repeatable, `socket-mode` in octal, `socket-group` by name or number,
/// and `plain-tcp=true|false`), as in `/run/app/admin.sock;allow-uid=0;socket-mode=0600` or
/// `tcp:0.0.0.0:7000;allow-cert=cn:ci`. What it leaves out is the server's.
///
/// # Errors
///
/// The line to print for an unknown key or a bad value.
pub fn parse_endpoint(spec: &str) -> Result<localipc_server::Endpoint, String> {
    let mut parts = spec.split(';');
    let address = parts.next().unwrap_or_default();
    localipc_core::Address::parse(address).map_err(|e| format!("{spec:?}: {e}"))?;
    let mut endpoint = localipc_server::Endpoint::new(address);
    let (mut uids, mut gids, mut certs) = (Vec::new(), Vec::new(), Vec::new());
    for part in parts {
        let bad = |why: &str| format!("{spec:?}: {part:?}: {why}");
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad("write it KEY=VALUE"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|_| bad("not a number"));
        let id = |v: &str| v.parse::<u32>().map_err(|_| bad("not a number"));
        match key {
            "max-connections" => endpoint = endpoint.max_connections(number(value)?),
            "max-connections-per-uid" => {
                endpoint = endpoint.max_connections_per_uid(number(value)?);
            }
            "allow-uid" => uids.push(id(value)?),
            "allow-gid" => gids.push(id(value)?),
            "allow-cert" => certs.push(value.parse().map_err(|e| bad(&format!("{e}")))?),
            "plain-tcp" => {
                let plain = value
                    .parse::<bool>()
                    .map_err(|_| bad("write plain-tcp=true or plain-tcp=false"))?;
                endpoint = endpoint.plain_tcp(plain);
            }
            "socket-mode" => {
                endpoint = endpoint.socket_mode(parse_mode(value).map_err(|e| bad(&e))?)
            }
            "socket-group" => {
                endpoint = endpoint.socket_group(resolve_group(value).map_err(|e| bad(&e))?)
            }
            _ => {
                return Err(bad("unknown setting; the settings are max-connections, \
                     max-connections-per-uid, allow-uid, allow-gid, allow-cert, socket-mode, \
                     socket-group, plain-tcp"));
            }
        }
    }
    if !uids.is_empty() || !gids.is_empty() || !certs.is_empty() {
        endpoint =
            endpoint.access(localipc_server::AccessPolicy::new(uids, gids).certificates(certs));
    }
    Ok(endpoint)
}

/// Looks up the group `--socket-group` names, by number or by name.
///
/// # Errors
///
/// The line to print when no group has that name.
pub fn resolve_group(group: &str) -> Result<u32, String> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(format!("unknown group {group:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_read_their_settings() {
        let e = parse_endpoint(
            "/run/a.sock;max-connections=8;allow-uid=0;allow-uid=7;socket-mode=0660",
        )
        .unwrap();
        assert_eq!(e.address, std::path::Path::new("/run/a.sock"));
        assert_eq!(e.max_connections, Some(8));
        assert_eq!(
            e.access,
            Some(localipc_server::AccessPolicy::new(vec![0, 7], vec![]))
        );
        assert_eq!(e.socket_mode, Some(0o660));
        assert_eq!(e.max_connections_per_uid, None);
        let e = parse_endpoint("tcp:0.0.0.0:7000;allow-cert=cn:ci;plain-tcp=false").unwrap();
        assert_eq!(e.plain_tcp, Some(false));
        assert_eq!(
            e.access,
            Some(
                localipc_server::AccessPolicy::default()
                    .certificates(vec!["cn:ci".parse().unwrap()])
            )
        );
        let e = parse_endpoint("unix:@admin;socket-group=root").unwrap();
        assert_eq!(e.socket_group, Some(0));
        assert_eq!(e.access, None);
        for bad in [
            "/a;max-connections",
            "/a;max-connections=x",
            "/a;colour=blue",
            "/a;socket-mode=999",
            "tcp:1.2.3.4",
            "tcp:0.0.0.0:1;plain-tcp=maybe",
            "tcp:0.0.0.0:1;allow-cert=alice",
            "vsock:3:1",
            "",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_resolve_by_number_and_name() {
        assert_eq!(resolve_group("1234").unwrap(), 1234);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert_eq!(
            resolve_group("no-such-group-xyz").unwrap_err(),
            "unknown group \"no-such-group-xyz\""
        );
    }

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
    fn modes_parse_as_octal() {
        assert_eq!(parse_mode("600"), Ok(0o600));
        assert_eq!(parse_mode("0660"), Ok(0o660));
        assert_eq!(parse_mode("0o777"), Ok(0o777));
        assert!(parse_mode("800").is_err());
        assert!(parse_mode("4755").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn seconds_parse_with_fractions_and_reject_junk() {
        assert_eq!(parse_secs("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_secs("0.25").unwrap(), Duration::from_millis(250));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
        assert!(parse_secs("inf").is_err());
        assert_eq!(parse_secs("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_secs("1e-10").unwrap(), Duration::from_nanos(1));
    }
}
