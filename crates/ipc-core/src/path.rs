//! The default socket path, shared by the server and the client so that both find each other
//! with no flags.

use std::path::PathBuf;

/// The environment variable that names the socket path.
pub const SOCKET_ENV: &str = "IPC_SOCKET";

/// The file name of the socket inside [`default_socket_dir`].
pub const DEFAULT_SOCKET_NAME: &str = "ipc.sock";

/// The socket path to use when none is given: `$IPC_SOCKET` if set and not empty, else
/// `ipc.sock` inside [`default_socket_dir`].
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_socket_dir().join(DEFAULT_SOCKET_NAME),
    }
}

/// The private directory that holds the default socket: `$XDG_RUNTIME_DIR/ipc` when
/// `XDG_RUNTIME_DIR` is set to an absolute path, else `/tmp/ipc-<uid>`.
///
/// The server creates it with mode `0700` and refuses to use it unless it is a real directory
/// owned by the current user and not writable by group or others.
pub fn default_socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir.join("ipc"),
        _ => PathBuf::from(format!("/tmp/ipc-{}", nix::unistd::getuid())),
    }
}
