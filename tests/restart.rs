//! Restarts under load, against the real `ipc-server`: 20 seamless restarts (SIGUSR2) in a row
//! while clients loop, a successor that fails at start or never gets ready, a socket-activated
//! restart (the test plays systemd with a `.socket` unit), and a restart through systemd's file
//! descriptor store (the test plays systemd without one). Every reply is checked, and no
//! connection may be refused.
//!
//! The load: 16 clients that each connect, send one request and read its reply, again and
//! again; and 4 long-lived connections that pipeline batches of 8 requests in one write and
//! read the 8 replies before the next batch. A batch the old server never read (it closed the
//! connection first: an end of stream or a reset before any reply of the batch) is sent again
//! on a new connection, and counted; a batch that gets some of its replies and not the others
//! is a failure, as is any refused connection, wrong reply or error.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use command_fds::{CommandFdExt, FdMapping};
use support::*;

/// What one load thread saw.
#[derive(Debug, Default)]
struct Tally {
    /// Requests answered with their own reply.
    answered: u64,
    /// Batches sent again because the old server closed before reading them.
    resent: u64,
    /// What went wrong, one line each.
    failures: Vec<String>,
}

/// Clients looping against `path` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Tally>>,
}

impl Load {
    fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for t in 0..16 {
            let (path, stop) = (path.to_owned(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || one_shots(&path, t, &stop)));
        }
        for t in 0..4 {
            let (path, stop) = (path.to_owned(), Arc::clone(&stop));
            threads.push(std::thread::spawn(move || pipelining(&path, t, &stop)));
        }
        Self { stop, threads }
    }

    /// Stops the clients and adds up what they saw.
    fn finish(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for thread in self.threads {
            let tally = thread.join().unwrap();
            total.answered += tally.answered;
            total.resent += tally.resent;
            total.failures.extend(tally.failures);
        }
        total
    }
}

fn connect_to(path: &Path) -> std::io::Result<UnixStream> {
    let s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(PATIENCE))?;
    s.set_write_timeout(Some(PATIENCE))?;
    Ok(s)
}

/// A new connection and one request, again and again.
fn one_shots(path: &Path, t: usize, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let request = format!("o{t}-{i}\n");
        let result = connect_to(path).and_then(|mut s| {
            s.write_all(request.as_bytes())?;
            let mut reply = String::new();
            BufReader::new(s).read_line(&mut reply)?;
            Ok(reply)
        });
        match result {
            Ok(reply) if reply == request => tally.answered += 1,
            Ok(reply) => tally
                .failures
                .push(format!("one-shot {request:?} got {reply:?}")),
            Err(e) => tally.failures.push(format!("one-shot {request:?}: {e}")),
        }
    }
    tally
}

/// Batches of 8 pipelined requests on a long-lived connection.
fn pipelining(path: &Path, t: usize, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<(UnixStream, BufReader<UnixStream>)> = None;
    let mut batch = 0u64;
    while !stop.load(Ordering::SeqCst) {
        batch += 1;
        let requests: Vec<String> = (0..8).map(|k| format!("l{t}-{batch}-{k}\n")).collect();
        loop {
            let (w, r) = match conn.take() {
                Some(c) => c,
                None => match connect_to(path) {
                    Ok(s) => (s.try_clone().unwrap(), BufReader::new(s)),
                    Err(e) => {
                        tally.failures.push(format!("long-lived connect: {e}"));
                        return tally;
                    }
                },
            };
            let mut w = w;
            let mut r = r;
            let sent = w.write_all(requests.concat().as_bytes());
            let mut got = 0;
            let mut broken = sent.err().map(|e| e.to_string());
            while broken.is_none() && got < requests.len() {
                let mut reply = String::new();
                match r.read_line(&mut reply) {
                    Ok(0) => broken = Some("end of stream".into()),
                    Ok(_) if reply == requests[got] => got += 1,
                    Ok(_) => {
                        tally
                            .failures
                            .push(format!("long-lived {:?} got {reply:?}", requests[got]));
                        return tally;
                    }
                    Err(e) => broken = Some(e.to_string()),
                }
            }
            match (broken, got) {
                (None, _) => {
                    tally.answered += requests.len() as u64;
                    conn = Some((w, r));
                    break;
                }
                // The server closed before it read the batch: none of it was answered.
                (Some(_), 0) => tally.resent += 1,
                (Some(why), got) => {
                    tally.failures.push(format!(
                        "long-lived batch {batch}: {got} of 8 replies, then {why}"
                    ));
                    return tally;
                }
            }
        }
    }
    tally
}

/// The pid of the server that serves `path` now, from its log: the last successor that took
/// over, or `first`.
fn current_pid(log: &Path, first: u32) -> u32 {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .rev()
        .filter(|l| l.contains("the successor is ready"))
        .filter_map(|l| l.split("successor=").nth(1))
        .filter_map(|pid| pid.trim().parse().ok())
        .next()
        .unwrap_or(first)
}

/// Restarts the server `pid` (which logs to `log`) `rounds` times in a row with SIGUSR2, each
/// time waiting for the successor to be ready and the old server to be gone; returns the pid
/// of the last one.
fn restart(mut pid: u32, log: &Path, rounds: usize) -> u32 {
    for round in 1..=rounds {
        kill(pid, Signal::SIGUSR2);
        wait_until("the successor is ready", || {
            count(log, "the successor is ready") == round
        });
        let next = current_pid(log, pid);
        assert_ne!(next, pid);
        // The old server drains and exits; the next one serves.
        wait_until("the old server is gone", || !alive(pid));
        pid = next;
        std::thread::sleep(Duration::from_millis(100));
    }
    pid
}

fn count(log: &Path, what: &str) -> usize {
    std::fs::read_to_string(log).unwrap().matches(what).count()
}

fn kill(pid: u32, sig: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).unwrap();
}

fn alive(pid: u32) -> bool {
    // A zombie is gone too: its state in /proc is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

/// Starts `program --socket PATH ARGS...` with its log (stderr) in `log`.
fn start(program: &Path, path: &Path, args: &[&str], log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    let mut cmd = Command::new(program);
    clean_env(&mut cmd);
    let child = cmd
        .arg("--socket")
        .arg(path)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    wait_until("the server accepts", || UnixStream::connect(path).is_ok());
    child
}

fn assert_clean(tally: &Tally, what: &str) {
    assert!(
        tally.failures.is_empty(),
        "{what}: {} failures, first: {:?}",
        tally.failures.len(),
        &tally.failures[..tally.failures.len().min(5)]
    );
    assert!(
        tally.answered > 1000,
        "{what}: only {} answered",
        tally.answered
    );
}

#[test]
fn twenty_seamless_restarts_under_load_refuse_nothing_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    let mut first = start(server_bin(), &path, &[], &log);
    let load = Load::start(&path);
    std::thread::sleep(Duration::from_millis(200));
    let pid = restart(first.id(), &log, 20);
    let tally = load.finish();
    assert!(wait_within(&mut first).success());
    assert_clean(&tally, "20 restarts");
    eprintln!(
        "20 restarts: {} requests answered, {} batches sent again, 0 failures",
        tally.answered, tally.resent
    );
    // The last server owns the socket file and removes it at its end.
    assert!(path.exists());
    kill(pid, Signal::SIGTERM);
    wait_until("the last server removed its socket", || !path.exists());
    assert_eq!(count(&log, "handover failed"), 0);
}

#[test]
fn a_successor_that_fails_leaves_the_server_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    // A copy of the binary, replaced on disk by a broken "upgrade" before each restart.
    let program = dir.path().join("ipc-server");
    std::fs::copy(server_bin(), &program).unwrap();
    let mut server = start(&program, &path, &["--handover-timeout", "1"], &log);
    let load = Load::start(&path);
    let replace = |script: &str| {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::remove_file(&program);
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // One that exits at once, and one that never says it is ready (killed after 1 s).
    replace("#!/bin/sh\nexit 3\n");
    kill(server.id(), Signal::SIGUSR2);
    wait_until("the handover failed", || {
        count(&log, "handover failed") == 1
    });
    replace("#!/bin/sh\necho $$ > \"$(dirname \"$0\")/hung.pid\"\nexec sleep 60\n");
    kill(server.id(), Signal::SIGUSR2);
    wait_until("the handover failed again", || {
        count(&log, "handover failed") == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    let tally = load.finish();
    assert_clean(&tally, "failed restarts");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("exited before it was ready"), "{text}");
    assert!(text.contains("not ready within 1s"), "{text}");
    // The one that hung was killed.
    let hung: u32 = std::fs::read_to_string(dir.path().join("hung.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("the hung successor is gone", || !alive(hung));
    // The first server still serves, and still owns its socket.
    assert!(server.try_wait().unwrap().is_none());
    assert_eq!(client(&path, &["send", "still"]).stdout, b"still\n");
    signal(&server, Signal::SIGTERM);
    assert!(wait_within(&mut server).success());
    assert!(!path.exists());
}

/// Starts the server as a service manager would, with `fds` (name, descriptor) from
/// descriptor 3 on and `env` set.
fn start_with_fds(
    fds: Vec<(&str, std::os::fd::OwnedFd)>,
    args: &[&std::ffi::OsStr],
    env: &[(&str, &str)],
    log: &Path,
) -> Child {
    let names: Vec<&str> = fds.iter().map(|(name, _)| *name).collect();
    let mappings = fds
        .into_iter()
        .enumerate()
        .map(|(i, (_, fd))| FdMapping {
            parent_fd: fd,
            child_fd: 3 + i as i32,
        })
        .collect();
    let mut cmd = Command::new("/bin/sh");
    clean_env(&mut cmd);
    cmd.arg("-c")
        .arg(r#"LISTEN_PID=$$ exec "$0" "$@""#)
        .arg(server_bin())
        .args(args)
        .env("LISTEN_FDS", names.len().to_string())
        .env("LISTEN_FDNAMES", names.join(":"))
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap(),
        );
    cmd.fd_mappings(mappings).unwrap();
    cmd.spawn().unwrap()
}

#[test]
fn a_socket_activated_restart_loses_nothing() {
    // The test is systemd with a .socket unit: it holds the listening socket, and starts the
    // service again once the old one has stopped.
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    let listener = UnixListener::bind(&path).unwrap();
    let fd = || std::os::fd::OwnedFd::from(listener.try_clone().unwrap());
    let ignored = ["--socket", "/nonexistent/ignored.sock"].map(std::ffi::OsStr::new);
    let mut old = start_with_fds(vec![("s.socket", fd())], &ignored, &[], &log);
    let load = Load::start(&path);
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        signal(&old, Signal::SIGTERM);
        assert!(wait_within(&mut old).success());
        // Meanwhile connections queue in the socket's backlog, for the next one.
        old = start_with_fds(vec![("s.socket", fd())], &ignored, &[], &log);
        std::thread::sleep(Duration::from_millis(200));
    }
    let tally = load.finish();
    assert_clean(&tally, "socket-activated restarts");
    eprintln!(
        "5 socket-activated restarts: {} requests answered, {} batches sent again",
        tally.answered, tally.resent
    );
    signal(&old, Signal::SIGTERM);
    assert!(wait_within(&mut old).success());
    // The socket file is the service manager's: never removed.
    assert!(path.exists());
}

/// Starts `ipc-server ARGS...` as a service of a fake service manager with a descriptor store
/// of four (`NOTIFY_SOCKET` beside `log`, `FDSTORE=4`), logging to `log`; returns it and the
/// manager's socket, for [`stored_fds`].
fn start_storing(
    args: &[&std::ffi::OsStr],
    log: &Path,
) -> (Child, std::os::unix::net::UnixDatagram) {
    let notify_path = log.with_file_name("notify");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(PATIENCE)).unwrap();
    let server = server_cmd()
        .args(args)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("FDSTORE", "4")
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (server, notify)
}

/// Receives what the server stores (`FDSTORE=1`) on the fake service manager's socket: the
/// descriptors by name.
fn stored_fds(
    notify: &std::os::unix::net::UnixDatagram,
    count: usize,
) -> Vec<(String, std::os::fd::OwnedFd)> {
    let mut stored = Vec::new();
    let started = std::time::Instant::now();
    while stored.len() < count {
        assert!(started.elapsed() < PATIENCE, "nothing stored: {stored:?}");
        let mut buf = [0u8; 512];
        let (n, fds) = match localipc_core::fds::recv_with_fds(notify, &mut buf, 4) {
            Ok(got) => got,
            Err(localipc_core::fds::RecvFdsError::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if let Some(name) = text.lines().find_map(|l| l.strip_prefix("FDNAME=")) {
            for fd in fds {
                stored.push((name.to_owned(), fd));
            }
        }
    }
    stored
}

#[test]
fn a_restart_through_systemds_descriptor_store_loses_nothing() {
    // The test is systemd without a .socket unit: the service binds its own socket and keeps
    // it (and its lock) in the store; the restarted service gets them back.
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    let (mut old, notify) = start_storing(&["--socket".as_ref(), path.as_os_str()], &log);
    let stored = stored_fds(&notify, 2);
    let names: Vec<_> = stored.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["localipc-listener", "localipc-lock"]);
    wait_until("the server accepts", || UnixStream::connect(&path).is_ok());
    let load = Load::start(&path);
    std::thread::sleep(Duration::from_millis(300));
    // systemctl restart: stop, then start with the stored descriptors.
    signal(&old, Signal::SIGTERM);
    assert!(wait_within(&mut old).success());
    assert!(path.exists(), "the stored socket's file was removed");
    let dup = |i: usize| stored[i].1.try_clone().unwrap();
    let mut new = start_with_fds(
        vec![("localipc-listener", dup(0)), ("localipc-lock", dup(1))],
        &["--socket", "/nonexistent/ignored.sock"].map(std::ffi::OsStr::new),
        &[],
        &log,
    );
    std::thread::sleep(Duration::from_millis(500));
    let tally = load.finish();
    assert_clean(&tally, "descriptor store restart");
    // The restarted server took the path over with its lock: a third one cannot bind it...
    let out = server_cmd().arg("--socket").arg(&path).output_within();
    assert_eq!(out.status.code(), Some(73), "{out:?}");
    drop(stored);
    // ...and, not storing it again (no store here), removes the socket file at its end.
    signal(&new, Signal::SIGTERM);
    assert!(wait_within(&mut new).success());
    assert!(!path.exists());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("kept in systemd's file descriptor store"),
        "{text}"
    );
}

#[test]
fn seamless_restarts_of_a_server_with_two_addresses_lose_nothing_on_either() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    let other = dir.path().join("other.sock");
    let also = format!("{};max-connections=64", other.display());
    let mut first = start(server_bin(), &path, &["--also-socket", &also], &log);
    wait_until("the other address accepts", || {
        UnixStream::connect(&other).is_ok()
    });
    let (load, other_load) = (Load::start(&path), Load::start(&other));
    std::thread::sleep(Duration::from_millis(200));
    let pid = restart(first.id(), &log, 5);
    let (tally, other_tally) = (load.finish(), other_load.finish());
    assert!(wait_within(&mut first).success());
    assert_clean(&tally, "5 restarts, main address");
    assert_clean(&other_tally, "5 restarts, other address");
    eprintln!(
        "5 restarts with two addresses: {} and {} requests answered, 0 failures",
        tally.answered, other_tally.answered
    );
    // The other address kept its own cap through every successor.
    assert_eq!(
        count(&log, "max_connections=64"),
        6,
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The last server owns both socket files and removes them at its end.
    assert!(path.exists() && other.exists());
    kill(pid, Signal::SIGTERM);
    wait_until("the last server removed its sockets", || {
        !path.exists() && !other.exists()
    });
    assert_eq!(count(&log, "handover failed"), 0);
}

#[test]
fn a_descriptor_store_restart_of_a_server_with_two_addresses_pairs_each_lock_with_its_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (path, log) = (dir.path().join("s.sock"), dir.path().join("log"));
    let other = dir.path().join("other.sock");
    let also = format!("{};allow-uid=0", other.display());
    let args = [
        "--socket".as_ref(),
        path.as_os_str(),
        "--also-socket".as_ref(),
        also.as_ref(),
    ];
    let (mut old, notify) = start_storing(&args, &log);
    let stored = stored_fds(&notify, 4);
    let names: Vec<_> = stored.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "localipc-listener",
            "localipc-lock",
            "localipc-listener",
            "localipc-lock"
        ]
    );
    wait_until("both addresses accept", || {
        UnixStream::connect(&path).is_ok() && UnixStream::connect(&other).is_ok()
    });
    let (load, other_load) = (Load::start(&path), Load::start(&other));
    std::thread::sleep(Duration::from_millis(300));
    signal(&old, Signal::SIGTERM);
    assert!(wait_within(&mut old).success());
    assert!(
        path.exists() && other.exists(),
        "a stored socket's file was removed"
    );
    // The store gives them back in another order: the locks first, the sockets swapped (so
    // pairing by position would be wrong). Each lock must still go with the socket of its path.
    let dup = |i: usize| stored[i].1.try_clone().unwrap();
    let mut new = start_with_fds(
        vec![
            ("localipc-lock", dup(1)),
            ("localipc-lock", dup(3)),
            ("localipc-listener", dup(2)),
            ("localipc-listener", dup(0)),
        ],
        &args,
        &[],
        &log,
    );
    std::thread::sleep(Duration::from_millis(500));
    let (tally, other_tally) = (load.finish(), other_load.finish());
    assert_clean(&tally, "descriptor store restart, main address");
    assert_clean(&other_tally, "descriptor store restart, other address");
    // The restarted server owns both paths: another cannot bind either...
    for taken in [&path, &other] {
        let out = server_cmd().arg("--socket").arg(taken).output_within();
        assert_eq!(out.status.code(), Some(73), "{out:?}");
    }
    drop(stored);
    // ...and removes both files at its end.
    signal(&new, Signal::SIGTERM);
    assert!(wait_within(&mut new).success());
    assert!(!path.exists() && !other.exists());
}

#[test]
fn socket_activation_with_two_sockets_serves_each_at_its_address() {
    // systemd with two ListenStream= lines: each socket serves the address it is bound to,
    // with that address's settings; a socket at no address of the server's is an error.
    let dir = tempfile::tempdir().unwrap();
    let (path, other, log) = (
        dir.path().join("s.sock"),
        dir.path().join("other.sock"),
        dir.path().join("log"),
    );
    let (l1, l2) = (
        UnixListener::bind(&path).unwrap(),
        UnixListener::bind(&other).unwrap(),
    );
    let fds = || {
        // The other address's socket first: which one is main is told by address.
        vec![
            (
                "other.socket",
                std::os::fd::OwnedFd::from(l2.try_clone().unwrap()),
            ),
            (
                "s.socket",
                std::os::fd::OwnedFd::from(l1.try_clone().unwrap()),
            ),
        ]
    };
    let also = format!("{};allow-uid=65534", other.display());
    let args = [
        "--socket".as_ref(),
        path.as_os_str(),
        "--also-socket".as_ref(),
        also.as_ref(),
    ];
    let mut server = start_with_fds(fds(), &args, &[], &log);
    wait_until("the server answers", || {
        client(&path, &["send", "main"]).stdout == b"main\n"
    });
    // The other address refuses root, as its settings say.
    assert_eq!(code(client(&other, &["send", "x"]).status), 76);
    signal(&server, Signal::SIGTERM);
    assert!(wait_within(&mut server).success());
    // The sockets are systemd's: their files stay.
    assert!(path.exists() && other.exists());
    // Without --also-socket, the second socket is at no address of the server's.
    let mut refused = start_with_fds(fds(), &["--socket".as_ref(), path.as_os_str()], &[], &log);
    let status = wait_within(&mut refused);
    assert_eq!(
        status.code(),
        Some(64),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("is not one of this server's addresses")
    );
}
