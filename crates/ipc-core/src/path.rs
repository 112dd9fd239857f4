//! The default socket path, shared by the server and the client so that both find each other
//! with no flags, and [`probe`], which tells what is at a socket path.

use std::path::PathBuf;

/// The environment variable that names the socket path.
pub const SOCKET_ENV: &str = "IPC_SOCKET";

/// The file name of the socket inside [`default_socket_dir`].
pub const DEFAULT_SOCKET_NAME: &str = "ipc.sock";

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes with the final NUL); also
/// the longest abstract name, with its `@`.
pub const MAX_PATH_LEN: usize = 107;

/// The socket path to use when none is given: `$IPC_SOCKET` if set and not empty, else
/// `ipc.sock` inside [`default_socket_dir`].
pub fn default_socket_path() -> PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_socket_dir().join(DEFAULT_SOCKET_NAME),
    }
}

/// The name in Linux's abstract socket namespace that `path` stands for, if it is written
/// `@name` (the convention of systemd's `ListenStream=` and of `ss`). An abstract socket has no
/// file, so no file permissions protect it: any process on the machine (in the same network
/// namespace) can connect, and only peer-credential checks keep others out. A file whose name
/// starts with `@` can still be given as `./@name`.
pub fn abstract_name(path: &std::path::Path) -> Option<&[u8]> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().strip_prefix(b"@")
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

/// What is at a socket path, as far as a client or a starting server is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// Nothing exists at the path.
    Missing,
    /// A socket with a server accepting on it (or with its backlog full, which also means a
    /// server is there).
    Live,
    /// A socket file with nobody listening: connection refused. Left by a killed server.
    Stale,
    /// Something other than a socket.
    NotASocket(FileKind),
}

/// Kinds of file that are not sockets, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A device, FIFO or other special file.
    Special,
}

impl FileKind {
    /// The kind in words, with its article: "a regular file".
    pub fn describe(self) -> &'static str {
        match self {
            FileKind::File => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Symlink => "a symbolic link",
            FileKind::Special => "a special file",
        }
    }
}

/// Looks at `path` without changing anything: never follows a symbolic link, and probes a
/// socket with a non-blocking connect so a busy server cannot make it hang. An `@name` (see
/// [`abstract_name`]) is probed in the abstract namespace: it is [`PathState::Live`] or, with
/// nobody listening, [`PathState::Missing`].
///
/// # Errors
///
/// The path cannot be inspected, or the probe fails for another reason than "refused"
/// (permission denied, for example).
pub fn probe(path: &std::path::Path) -> std::io::Result<PathState> {
    use nix::errno::Errno;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileTypeExt;

    let connect_to = |addr: &UnixAddr| -> std::io::Result<PathState> {
        let sock = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        match connect(sock.as_raw_fd(), addr) {
            Ok(()) | Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => Ok(PathState::Live),
            Err(Errno::ECONNREFUSED) => Ok(PathState::Stale),
            Err(Errno::ENOENT) => Ok(PathState::Missing),
            Err(e) => Err(e.into()),
        }
    };
    if let Some(name) = abstract_name(path) {
        // No file: a name nobody listens on is refused, which here means nothing is there.
        return match connect_to(&UnixAddr::new_abstract(name)?)? {
            PathState::Stale => Ok(PathState::Missing),
            state => Ok(state),
        };
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(PathState::Missing),
        Err(e) => return Err(e),
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_symlink() {
            FileKind::Symlink
        } else if ft.is_dir() {
            FileKind::Directory
        } else if ft.is_file() {
            FileKind::File
        } else {
            FileKind::Special
        };
        return Ok(PathState::NotASocket(kind));
    }
    connect_to(&UnixAddr::new(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_tells_every_state_apart() {
        let dir = std::env::temp_dir().join(format!("ipc-core-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("s");
        assert_eq!(probe(&sock).unwrap(), PathState::Missing);
        let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        assert_eq!(probe(&sock).unwrap(), PathState::Live);
        drop(listener);
        assert_eq!(probe(&sock).unwrap(), PathState::Stale);
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(probe(&file).unwrap(), PathState::NotASocket(FileKind::File));
        assert_eq!(
            probe(&dir).unwrap(),
            PathState::NotASocket(FileKind::Directory)
        );
        let link = dir.join("l");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        assert_eq!(
            probe(&link).unwrap(),
            PathState::NotASocket(FileKind::Symlink)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn at_names_are_abstract() {
        use std::path::Path;
        assert_eq!(abstract_name(Path::new("@ctl")), Some(&b"ctl"[..]));
        assert_eq!(abstract_name(Path::new("./@ctl")), None);
        assert_eq!(abstract_name(Path::new("/run/ipc.sock")), None);
    }
}
