//! The socket file on disk: reclaiming a stale one, binding with the right permissions from the
//! first moment, and removing it (only if it is still ours) when the server stops.
//!
//! The rule throughout: never delete what is not provably ours. A path is removed at start only
//! if it is a socket and a probe connect is refused; anything else is an error naming the path.

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use localipc_core::PathState;
use std::path::{Path, PathBuf};

use tracing::{debug, info, warn};

use crate::error::ServerError;

use localipc_core::MAX_PATH_LEN;

/// The socket file a server created, and the lock that makes the path this server's. Dropping
/// it removes the file, but only if the path still holds the very socket we bound (same device
/// and inode): a file someone put there since is left alone. The lock is released after that.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Held (`flock`) for the server's life; closing it releases the lock (unless a
    /// successor holds the same open file).
    _lock: PathLock,
    /// Handed over to a successor: left in place.
    handed_over: bool,
}

impl SocketFile {
    /// Takes over the socket file at `path` from the server that bound it, which handed this
    /// process `lock`, its lock file, still locked (a descriptor of the same open file): the
    /// file is then this server's, and removed at its end. The file at `path` now is the one
    /// taken over (the lock kept anyone else from replacing it).
    pub(crate) fn adopt(path: PathBuf, lock: fs::File) -> Result<Self, ServerError> {
        let meta = fs::symlink_metadata(&path)
            .map_err(|e| ServerError::io("inspect the inherited socket file", &path, e))?;
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket {
                path,
                kind: "not the socket that was handed over",
            });
        }
        Ok(Self {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            _lock: PathLock { _locked: lock },
            handed_over: false,
        })
    }

    /// The lock file's descriptor, to hand to a successor with the listening socket.
    #[cfg(feature = "systemd")]
    pub(crate) fn lock(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self._lock._locked)
    }

    /// Lets go of the socket file without removing it, and closes this process's descriptor
    /// of the lock file without unlocking it: after a handover, the successor holds the same
    /// lock and owns the file.
    pub(crate) fn release(mut self) {
        self.handed_over = true;
        debug!(path = %self.path.display(), "socket file handed over; left in place");
    }

    fn is_still_ours(&self) -> bool {
        fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.dev() == self.dev && m.ino() == self.ino)
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Runs before the fields are dropped, so the file goes while the lock is still held.
        if self.handed_over {
            return;
        }
        if !self.is_still_ours() {
            debug!(path = %self.path.display(), "socket file already gone or replaced; leaving it");
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => debug!(path = %self.path.display(), "removed socket file"),
            Err(e) => warn!(path = %self.path.display(), error = %e, "cannot remove socket file"),
        }
    }
}

/// An exclusive `flock` on the lock file beside a socket path (`PATH.lock`).
///
/// Every server takes it before it looks at the path and keeps it for its whole life, so the
/// probe, the removal of a stale socket, the bind and the link into place are one step that no
/// other server can interleave with: two servers started together on a stale path cannot
/// remove each other's fresh socket. The lock file itself is never deleted (another process
/// may be about to lock it); it is empty and harmless, and the next server reuses it.
///
/// The lock belongs to the open file: closing this process's descriptor releases it only if
/// no other process holds a descriptor of the same open file, which is how a successor that
/// inherited it keeps the path locked across a handover (so it is never unlocked explicitly).
#[derive(Debug)]
struct PathLock {
    /// Locked; closed on drop.
    _locked: fs::File,
}

/// Whether `lock` is the open lock file of the socket file at `socket` (the two spelled as the
/// file system resolves them), as a successor tells which lock passed in goes with which socket.
#[cfg(feature = "systemd")]
pub(crate) fn is_lock_of(lock: &fs::File, socket: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(socket) = fs::canonicalize(socket) else {
        return false;
    };
    fs::read_link(format!("/proc/self/fd/{}", lock.as_raw_fd()))
        .is_ok_and(|target| target == PathLock::path_for(&socket))
}

impl PathLock {
    /// The lock file's path for `socket`.
    fn path_for(socket: &Path) -> PathBuf {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Creates (with the socket's mode and group) or opens the lock file and locks it without
    /// waiting.
    fn acquire(socket: &Path, opts: BindOptions) -> Result<Self, ServerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path_for(socket);
        let open = |create: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(create)
                .mode(opts.mode | 0o600)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(&path)
        };
        let file = match open(true) {
            Ok(file) => {
                // The umask may have narrowed the mode; set the socket's own, and its group.
                file.set_permissions(Permissions::from_mode(opts.mode | 0o600))
                    .map_err(|e| ServerError::io("set the mode of", &path, e))?;
                if let Some(gid) = opts.group {
                    std::os::unix::fs::fchown(&file, None, Some(gid))
                        .map_err(|e| ServerError::io("set the group of", &path, e))?;
                }
                file
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                open(false).map_err(|e| lock_open_error(socket, &path, e))?
            }
            Err(e) => return Err(lock_open_error(socket, &path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| ServerError::io("inspect", &path, e))?;
        if !meta.is_file() {
            return Err(ServerError::NotASocket {
                path: path.clone(),
                kind: "not a regular file, where the lock file belongs",
            });
        }
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _locked: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(ServerError::InUse {
                path: socket.to_owned(),
            }),
            Err(e) => Err(ServerError::io("lock", &path, e.into())),
        }
    }
}

fn lock_open_error(socket: &Path, lock: &Path, e: io::Error) -> ServerError {
    if e.kind() == io::ErrorKind::PermissionDenied {
        return not_writable(socket, e);
    }
    if e.raw_os_error() == Some(nix::libc::ELOOP) {
        return ServerError::NotASocket {
            path: lock.to_owned(),
            kind: "a symbolic link, where the lock file belongs",
        };
    }
    ServerError::io("open the lock file", lock, e)
}

/// The error for a socket whose directory this user cannot write in.
fn not_writable(socket: &Path, source: io::Error) -> ServerError {
    ServerError::DirectoryNotWritable {
        path: socket.to_owned(),
        dir: parent_of(socket).to_owned(),
        source,
    }
}

/// The directory that holds `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// How the socket file is created.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Group that owns the socket file, if not the server's own.
    pub group: Option<u32>,
    /// Whether the parent directory is the private default directory, which gets the strict
    /// checks of [`ensure_private_dir`].
    pub private_dir: bool,
}

/// Binds a listening socket at `path`.
///
/// Steps: check the path length; create the parent directory (mode `0700`) if missing, and check
/// it if it is the private default directory; take the path's lock (see `PATH.lock` in the
/// README); reclaim a stale socket (see [`reclaim`]); bind with the requested mode and group set
/// before the path is reachable; return the listener and the guard that removes the file (and
/// then releases the lock) on drop.
///
/// # Errors
///
/// See [`ServerError`]: a live server at the path (or another server holding its lock), a
/// non-socket there, an unsafe or unwritable directory, a path too long, or a failing system
/// call (each names the path).
pub fn bind(path: &Path, opts: BindOptions) -> Result<(UnixListener, SocketFile), ServerError> {
    let len = path.as_os_str().len();
    if len > MAX_PATH_LEN {
        return Err(ServerError::PathTooLong {
            path: path.to_owned(),
            len,
            max: MAX_PATH_LEN,
        });
    }
    let parent = parent_of(path);
    if opts.private_dir {
        ensure_private_dir(parent)?;
    } else if !parent.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| ServerError::io("create directory", parent, e))?;
        info!(dir = %parent.display(), "created socket directory");
    }
    let lock = PathLock::acquire(path, opts)?;
    reclaim(path)?;
    let (listener, dev, ino) = bind_private(path, opts)?;
    Ok((
        listener,
        SocketFile {
            path: path.to_owned(),
            dev,
            ino,
            _lock: lock,
            handed_over: false,
        },
    ))
}

/// Makes sure nothing but a stale socket is at `path`, removing a stale one.
///
/// # Errors
///
/// [`ServerError::InUse`] when a server answers there, [`ServerError::NotASocket`] when the path
/// is anything but a socket, [`ServerError::Io`] when it cannot be inspected or removed.
pub fn reclaim(path: &Path) -> Result<(), ServerError> {
    match localipc_core::probe(path) {
        Ok(PathState::Missing) => Ok(()),
        Ok(PathState::Live) => Err(ServerError::InUse {
            path: path.to_owned(),
        }),
        Ok(PathState::NotASocket(kind)) => Err(ServerError::NotASocket {
            path: path.to_owned(),
            kind: kind.describe(),
        }),
        Ok(PathState::Stale) => {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    return Err(not_writable(path, e));
                }
                Err(e) => return Err(ServerError::io("remove stale socket", path, e)),
            }
            info!(path = %path.display(), "removed stale socket left by a previous run");
            Ok(())
        }
        Err(e) => Err(ServerError::io("inspect", path, e)),
    }
}

/// Creates the private socket directory (mode `0700`) if missing, then checks that it is a real
/// directory (not a symbolic link), owned by the current user, and not writable by group or
/// others.
///
/// # Errors
///
/// [`ServerError::InsecureDirectory`] naming the failed check and its fix, or
/// [`ServerError::Io`].
pub fn ensure_private_dir(dir: &Path) -> Result<(), ServerError> {
    match DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => {}
        // `recursive` reports an existing path that is not a directory as AlreadyExists.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(ServerError::io("create directory", dir, e)),
    }
    let meta = fs::symlink_metadata(dir).map_err(|e| ServerError::io("inspect", dir, e))?;
    let insecure = |problem: String, fix: &str| ServerError::InsecureDirectory {
        dir: dir.to_owned(),
        problem,
        fix: fix.to_owned(),
    };
    if meta.file_type().is_symlink() {
        return Err(insecure(
            "it is a symbolic link".into(),
            "remove the link so the server can create a real directory",
        ));
    }
    if !meta.is_dir() {
        return Err(insecure(
            "it is not a directory".into(),
            "remove it so the server can create the directory",
        ));
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(insecure(
            format!("it is owned by uid {}, not by you (uid {uid})", meta.uid()),
            "remove it, or choose another socket path",
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(insecure(
            format!("it is writable by group or others (mode {mode:04o})"),
            &format!("run: chmod 700 {}", dir.display()),
        ));
    }
    Ok(())
}

/// Binds so that the socket is never connectable with wider permissions than asked; returns
/// the listener and the socket file's device and inode.
///
/// `bind(2)` creates the file at once, with the process umask (which is process-wide: changing
/// it would race with other threads), but a socket takes no connection before `listen(2)`: a
/// `connect(2)` meanwhile is refused. So the socket is bound at its real path, its mode and
/// group are set, and only then does it listen. Binding at the real path is what makes the
/// kernel record it as the socket's address, which `ss -xlp` and a client's `getpeername(2)`
/// show. `bind(2)` fails if the name exists, so a file that appeared at the path meanwhile is
/// never replaced.
///
/// The mode and group are set through a descriptor of the file just created, after checking
/// that it is a socket owned by this user, so that a file swapped in at the path meanwhile is
/// never changed.
fn bind_private(path: &Path, opts: BindOptions) -> Result<(UnixListener, u64, u64), ServerError> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| ServerError::io("create the socket", path, e.into()))?;
    let address = recorded_address(path);
    let unix =
        SocketAddrUnix::new(&address).map_err(|e| ServerError::io("bind", path, e.into()))?;
    bind_in_place(&socket, &unix, path)?;
    let (dev, ino) = set_mode_and_group(path, opts)?;
    // -1: the kernel's largest backlog (`net.core.somaxconn`), as `UnixListener::bind` asks.
    rustix::net::listen(&socket, -1).map_err(|e| ServerError::io("listen on", path, e.into()))?;
    Ok((UnixListener::from(socket), dev, ino))
}

/// The path the socket is bound with, which the kernel records as its address: absolute when
/// it fits the kernel's limit, so that tools show where the socket is whatever directory the
/// server started in.
fn recorded_address(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::env::current_dir() {
        Ok(dir) if dir.join(path).as_os_str().len() <= MAX_PATH_LEN => dir.join(path),
        _ => path.to_owned(),
    }
}

/// Binds `socket` at `path`. We hold the path's lock, so a file found there now was put by
/// something that does not take it: a stale socket is reclaimed and the bind tried again,
/// anything else is reported as at the start.
fn bind_in_place(
    socket: &std::os::fd::OwnedFd,
    address: &rustix::net::SocketAddrUnix,
    path: &Path,
) -> Result<(), ServerError> {
    const TRIES: usize = 3;
    for _ in 0..TRIES {
        match rustix::net::bind(socket, address) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::ADDRINUSE) => reclaim(path)?,
            Err(e) if io::Error::from(e).kind() == io::ErrorKind::PermissionDenied => {
                return Err(not_writable(path, e.into()));
            }
            Err(e) => return Err(ServerError::io("bind", path, e.into())),
        }
    }
    Err(ServerError::InUse {
        path: path.to_owned(),
    })
}

/// Sets the mode and group of the socket file just bound at `path`, through an `O_PATH`
/// descriptor of it, once that descriptor shows a socket owned by this user (what `bind(2)`
/// made; nobody else can make one owned by us). Returns its device and inode.
fn set_mode_and_group(path: &Path, opts: BindOptions) -> Result<(u64, u64), ServerError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    let file = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ServerError::io("inspect", path, e.into()))?;
    let stat = rustix::fs::fstat(&file).map_err(|e| ServerError::io("inspect", path, e.into()))?;
    let is_socket =
        rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Socket;
    if !is_socket || stat.st_uid != nix::unistd::geteuid().as_raw() {
        return Err(ServerError::NotASocket {
            path: path.to_owned(),
            kind: "replaced by another file while the server was binding",
        });
    }
    #[allow(clippy::useless_conversion)]
    let (dev, ino) = (u64::from(stat.st_dev), u64::from(stat.st_ino));
    let set = || {
        // An `O_PATH` descriptor takes no fchmod(2); its /proc link names the very same file.
        let by_fd = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let target = if by_fd.exists() {
            by_fd.as_path()
        } else {
            path
        };
        fs::set_permissions(target, Permissions::from_mode(opts.mode))
            .map_err(|e| ServerError::io("set the mode of", path, e))?;
        if let Some(gid) = opts.group {
            rustix::fs::chownat(
                &file,
                "",
                None,
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::EMPTY_PATH,
            )
            .map_err(|e| ServerError::io("set the group of", path, e.into()))?;
        }
        Ok(())
    };
    if let Err(e) = set() {
        // The socket never listened: it is removed (if the path still holds it), so no stale
        // file is left for a start that failed.
        let ours = fs::symlink_metadata(path).is_ok_and(|m| m.dev() == dev && m.ino() == ino);
        if ours {
            let _ = fs::remove_file(path);
        }
        return Err(e);
    }
    Ok((dev, ino))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    const OPTS: BindOptions = BindOptions {
        mode: 0o600,
        group: None,
        private_dir: false,
    };

    #[test]
    fn binds_with_the_requested_mode_and_removes_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let opts = BindOptions {
            mode: 0o640,
            ..OPTS
        };
        let (listener, file) = bind(&path, opts).unwrap();
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o640);
        UnixStream::connect(&path).unwrap();
        // The staging directory is gone; the socket and its lock file remain.
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["a.sock", "a.sock.lock"]);
        let lock = fs::symlink_metadata(dir.path().join("a.sock.lock")).unwrap();
        assert_eq!(lock.mode() & 0o777, 0o640 | 0o600);
        drop(file);
        assert!(!path.exists());
        assert!(
            dir.path().join("a.sock.lock").exists(),
            "the lock file is kept"
        );
        drop(listener);
    }

    #[test]
    fn reclaims_stale_socket_but_not_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let live = UnixListener::bind(&path).unwrap();
        assert!(matches!(reclaim(&path), Err(ServerError::InUse { .. })));
        assert!(path.exists());
        drop(live);
        reclaim(&path).unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn refuses_non_sockets_and_keeps_them() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            bind(&file, OPTS),
            Err(ServerError::NotASocket {
                kind: "a regular file",
                ..
            })
        ));
        assert_eq!(fs::read(&file).unwrap(), b"keep me");
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(
            reclaim(&link),
            Err(ServerError::NotASocket {
                kind: "a symbolic link",
                ..
            })
        ));
    }

    #[test]
    fn guard_leaves_a_replacement_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sock");
        let (_l, file) = bind(&path, OPTS).unwrap();
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"not yours").unwrap();
        drop(file);
        assert_eq!(fs::read(&path).unwrap(), b"not yours");
    }

    #[test]
    fn private_dir_checks() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("ipc");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = ensure_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn private_dir_must_be_ours() {
        let me = nix::unistd::geteuid().as_raw();
        if me == 0 {
            // As root we can hand a directory to someone else and watch it be refused.
            let base = tempfile::tempdir().unwrap();
            let dir = base.path().join("ipc");
            fs::create_dir(&dir).unwrap();
            std::os::unix::fs::chown(&dir, Some(12345), None).unwrap();
            let err = ensure_private_dir(&dir).unwrap_err().to_string();
            assert!(
                err.contains("owned by uid 12345, not by you (uid 0)"),
                "{err}"
            );
        } else {
            // Otherwise a directory root owns will do.
            let err = ensure_private_dir(Path::new("/")).unwrap_err().to_string();
            assert!(err.contains("owned by uid 0"), "{err}");
        }
    }

    #[test]
    fn a_second_bind_while_the_lock_is_held_is_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let (_listener, file) = bind(&path, OPTS).unwrap();
        // Even with the socket file gone, the lock says a server owns the path.
        fs::remove_file(&path).unwrap();
        assert!(matches!(bind(&path, OPTS), Err(ServerError::InUse { .. })));
        assert!(!path.exists(), "the second bind created nothing");
        drop(file);
        let (_l, _f) = bind(&path, OPTS).unwrap();
    }

    #[test]
    fn a_stale_socket_found_at_bind_time_is_reclaimed_not_reported() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
        let fresh = || {
            rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::STREAM,
                SocketFlags::CLOEXEC,
                None,
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sock");
        drop(UnixListener::bind(&path).unwrap()); // stale
        let mine = fresh();
        bind_in_place(&mine, &SocketAddrUnix::new(&path).unwrap(), &path).unwrap();
        let mine = UnixListener::from(mine);
        assert_eq!(
            mine.local_addr().unwrap().as_pathname(),
            Some(path.as_path())
        );
        // A live one is reported, and left alone.
        let other = dir.path().join("u.sock");
        let _live = UnixListener::bind(&other).unwrap();
        assert!(matches!(
            bind_in_place(&fresh(), &SocketAddrUnix::new(&other).unwrap(), &other),
            Err(ServerError::InUse { .. })
        ));
        UnixStream::connect(&other).unwrap();
    }

    #[test]
    fn every_path_the_kernel_accepts_can_be_bound() {
        let base = tempfile::tempdir().unwrap();
        let prefix = base.path().join("p");
        fs::create_dir(&prefix).unwrap();
        let room = MAX_PATH_LEN - prefix.as_os_str().len() - 1;
        let path = prefix.join("x".repeat(room));
        assert_eq!(path.as_os_str().len(), MAX_PATH_LEN);
        let (_l, _f) = bind(&path, OPTS).unwrap();
        UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn overlong_paths_are_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "x".repeat(120)));
        assert!(matches!(
            bind(&long, OPTS),
            Err(ServerError::PathTooLong { .. })
        ));
    }
}
