//! The socket file's life: stale-socket reclaim, never stealing a live socket, never deleting
//! what is not a socket, permissions and group, the private default directory.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

mod support;
use support::*;

fn echo_works(server_path: &std::path::Path) {
    let out = client(server_path, &["send", "ping"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ping\n");
}

#[test]
fn stale_socket_after_sigkill_is_reclaimed() {
    let mut server = TestServer::start(&[]);
    server.signal(Signal::SIGKILL);
    server.wait();
    let meta = fs::symlink_metadata(server.path()).expect("SIGKILL leaves the socket behind");
    assert!(meta.file_type().is_socket());
    let mut second = server.spawn(&[]);
    wait_until("the new server serves", || {
        client(server.path(), &["send", "x"]).status.success()
    });
    echo_works(server.path());
    second.kill().unwrap();
    wait_within(&mut second);
    assert!(server.log().contains("removed stale socket"));
}

#[test]
fn a_live_socket_is_never_stolen() {
    let server = TestServer::start(&[]);
    let out = server_cmd()
        .arg("--socket")
        .arg(server.path())
        .output_within();
    assert_eq!(code(out.status), 73);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&server.path().display().to_string()), "{err}");
    assert!(err.contains("in use"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    echo_works(server.path());
}

#[test]
fn non_sockets_at_the_path_are_refused_and_left_intact() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"precious").unwrap();
    let subdir = dir.path().join("dir");
    fs::create_dir(&subdir).unwrap();
    fs::write(subdir.join("inside"), b"x").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for (path, kind) in [
        (&file, "regular file"),
        (&subdir, "directory"),
        (&link, "symbolic link"),
    ] {
        let out = server_cmd().arg("--socket").arg(path).output_within();
        assert_eq!(code(out.status), 78, "{kind}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(kind) && err.contains("not a socket"), "{err}");
    }
    assert_eq!(fs::read(&file).unwrap(), b"precious");
    assert_eq!(fs::read(subdir.join("inside")).unwrap(), b"x");
    assert_eq!(fs::read_link(&link).unwrap(), file);
}

#[test]
fn missing_parent_directories_are_created_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/ipc.sock");
    let server = TestServer::start_at(dir, path.clone(), &[]);
    let parent = fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(parent.mode() & 0o777, 0o700);
    echo_works(server.path());
}

#[test]
fn socket_mode_defaults_to_0600_and_is_settable() {
    let server = TestServer::start(&[]);
    let mode = fs::symlink_metadata(server.path()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let server = TestServer::start(&["--socket-mode", "0660", "--socket-group", "12345"]);
    let meta = fs::symlink_metadata(server.path()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 12345);
    // The lock file has the socket's mode and group.
    let lock = fs::symlink_metadata(server.path().with_extension("sock.lock")).unwrap();
    assert_eq!(lock.mode() & 0o777, 0o660);
    assert_eq!(lock.gid(), 12345);
    // No staging leftovers beside the socket.
    let names: Vec<_> = fs::read_dir(server.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "ipc.sock" || n == "ipc.sock.lock" || n == "server.log"),
        "{names:?}"
    );
}

#[test]
fn unknown_group_and_bad_mode_fail_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    for args in [
        &["--socket-group", "no-such-group-here"][..],
        &["--socket-mode", "999"][..],
        &["--max-frame", "0"][..],
    ] {
        let out = server_cmd()
            .arg("--socket")
            .arg(&path)
            .args(args)
            .output_within();
        assert_eq!(code(out.status), 64, "{args:?}");
        assert!(!path.exists(), "{args:?} created the socket");
    }
}

#[test]
fn default_path_is_a_private_dir_under_xdg_runtime_dir() {
    let runtime = tempfile::tempdir().unwrap();
    let mut server = server_cmd()
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env_remove("IPC_SOCKET")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = runtime.path().join("ipc/ipc.sock");
    wait_until("the default socket exists", || sock.exists());
    let dir_mode = fs::metadata(runtime.path().join("ipc")).unwrap().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // The client finds it with no flags either.
    let out = client_cmd()
        .env("XDG_RUNTIME_DIR", runtime.path())
        .env_remove("IPC_SOCKET")
        .args(["send", "found"])
        .output_within();
    assert_eq!(out.stdout, b"found\n");
    signal(&server, Signal::SIGTERM);
    assert!(wait_within(&mut server).success());
    assert!(!sock.exists());
}

#[test]
fn ipc_socket_env_is_shared_by_server_and_client() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("env.sock");
    let mut server = server_cmd()
        .env("IPC_SOCKET", &sock)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the socket exists", || sock.exists());
    let out = client_cmd()
        .env("IPC_SOCKET", &sock)
        .args(["send", "via env"])
        .output_within();
    assert_eq!(out.stdout, b"via env\n");
    server.kill().unwrap();
    wait_within(&mut server);
}

#[test]
fn unsafe_default_directory_is_refused_with_the_fix() {
    let runtime = tempfile::tempdir().unwrap();
    let dir = runtime.path().join("ipc");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let run = || {
        server_cmd()
            .env("XDG_RUNTIME_DIR", runtime.path())
            .env_remove("IPC_SOCKET")
            .output_within()
    };
    let out = run();
    assert_eq!(code(out.status), 77);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("writable by group or others") && err.contains("chmod 700"),
        "{err}"
    );
    // A symbolic link in its place is refused too, and left alone.
    fs::remove_dir(&dir).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &dir).unwrap();
    let out = run();
    assert_eq!(code(out.status), 77);
    assert!(String::from_utf8_lossy(&out.stderr).contains("symbolic link"));
    assert!(fs::symlink_metadata(&dir).unwrap().file_type().is_symlink());
}

#[test]
fn the_socket_s_address_is_its_path() {
    // What a client's getpeername(2) and `ss -xlp` show is the path the kernel recorded at
    // bind: the socket's real path, so operators can find the socket's owner by it.
    let server = TestServer::start(&["--socket-mode", "0660"]);
    let conn = server.connect();
    let addr = conn.peer_addr().unwrap();
    assert_eq!(addr.as_pathname(), Some(server.path()), "{addr:?}");

    // A relative --socket is recorded as the absolute path it names.
    let dir = tempfile::tempdir().unwrap();
    let mut child = Reaped(
        server_cmd()
            .current_dir(dir.path())
            .args(["--socket", "rel.sock"])
            .spawn()
            .unwrap(),
    );
    let path = dir.path().join("rel.sock");
    wait_until("the server listens at rel.sock", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    let addr = connect(&path).peer_addr().unwrap();
    assert_eq!(addr.as_pathname(), Some(path.as_path()), "{addr:?}");
    signal(&child.0, nix::sys::signal::Signal::SIGTERM);
    assert!(wait_within(&mut child.0).success());
    assert!(!path.exists(), "the server removed its socket");
}
