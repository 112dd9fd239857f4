//! Trust at the edges, against the real binaries: no reply lost before a close, clear words when
//! a connection is refused or mis-framed, one server per path however many start at once, slow
//! readers served, no memory committed from a peer's claim, every stop signal cleaning up,
//! settings that cannot work refused, and abstract socket names at both ends.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// Reads until the server closes; a reset after the data counts as a close.
fn read_until_closed(s: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("reading until the close: {e}"),
        }
    }
}

#[test]
fn replies_before_a_bad_frame_arrive_and_are_counted() {
    // Line framing: two good lines and one over the limit, in one write.
    let server = TestServer::start(&["--max-frame", "16"]);
    let mut s = server.connect();
    let mut input = b"ok\nok\n".to_vec();
    input.extend_from_slice(&[b'x'; 64]);
    input.push(b'\n');
    s.write_all(&input).unwrap();
    assert_eq!(read_until_closed(&mut s), b"ok\nok\n");
    wait_until("the close is logged with what was written", || {
        server.log().contains("answered=2")
    });

    // Length framing: two good frames and a prefix above the limit.
    let server = TestServer::start(&["--max-frame", "16", "--framing", "length"]);
    let mut s = server.connect();
    let mut input = Vec::new();
    for _ in 0..2 {
        input.extend_from_slice(&2u32.to_be_bytes());
        input.extend_from_slice(b"ok");
    }
    input.extend_from_slice(&1_000_000u32.to_be_bytes());
    s.write_all(&input).unwrap();
    assert_eq!(read_until_closed(&mut s), b"\0\0\0\x02ok\0\0\0\x02ok");
    wait_until("the close is logged with what was written", || {
        server.log().contains("answered=2")
    });
}

#[test]
fn the_client_prints_the_replies_it_got_before_the_error() {
    let server = TestServer::start(&["--max-frame", "8"]);
    let out = server.client(&["send", "ok", "0123456789abcdef", "ok2"]);
    assert_eq!(code(out.status), 76, "{out:?}");
    assert_eq!(out.stdout, b"ok\n");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("closed the connection before replying"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_refused_peer_is_told_what_may_have_happened() {
    let me = nix::unistd::getuid().as_raw();
    let server = TestServer::start(&["--allow-uid", &(me + 1).to_string()]);
    let out = server.client(&["send", "hello"]);
    assert_eq!(code(out.status), 76, "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may not admit this user"), "{err}");
    assert!(err.contains("may be stopping or restarting"), "{err}");
    assert!(err.contains("its log says why"), "{err}");
    wait_until("the refusal is logged", || {
        server.log().contains("peer not on the allow-list")
    });
}

#[test]
fn a_framing_mismatch_names_the_likely_cause() {
    for (server_framing, client_framing) in [("length", "line"), ("line", "length")] {
        let server = TestServer::start(&["--framing", server_framing]);
        let out = server.client(&[
            "--framing",
            client_framing,
            "--timeout",
            "0.5",
            "send",
            "hi",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(code(out.status), 75 | 76),
            "{server_framing}/{client_framing}: {out:?}"
        );
        assert!(
            err.contains("check that --framing matches the server's"),
            "{err}"
        );
    }
}

#[test]
fn the_client_refuses_a_path_the_kernel_cannot_take() {
    let long = format!("/tmp/{}", "p".repeat(103));
    let out = client(std::path::Path::new(&long), &["send", "x"]);
    assert_eq!(code(out.status), 64, "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("108 bytes long; the limit is 107"), "{err}");
}

#[test]
fn twenty_servers_started_at_once_on_a_stale_path_leave_exactly_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // stale
    let keep = dir.path().join("bystander.txt");
    std::fs::write(&keep, b"not ours").unwrap();
    let logs: Vec<_> = (0..20)
        .map(|i| dir.path().join(format!("server{i}.log")))
        .collect();
    let mut children: Vec<_> = logs
        .iter()
        .map(|log| {
            Reaped(
                server_cmd()
                    .arg("--socket")
                    .arg(&path)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(log).unwrap())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // 19 exit with 73; one keeps serving.
    let start = Instant::now();
    let mut exited = Vec::new();
    while exited.len() < 19 {
        assert!(start.elapsed() < PATIENCE, "only {} exited", exited.len());
        for (i, child) in children.iter_mut().enumerate() {
            if !exited.iter().any(|(j, _)| *j == i)
                && let Some(status) = child.try_wait().unwrap()
            {
                exited.push((i, code(status)));
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    let running: Vec<_> = children
        .iter_mut()
        .enumerate()
        .filter_map(|(i, c)| c.try_wait().unwrap().is_none().then_some(i))
        .collect();
    assert_eq!(running.len(), 1, "exits: {exited:?}");
    for (i, status) in &exited {
        let log = std::fs::read_to_string(&logs[*i]).unwrap();
        assert_eq!(*status, 73, "server {i}: {log}");
        assert!(log.contains("in use by another server"), "{log}");
    }
    // The survivor's socket is the one at the path, and it answers.
    let out = client(&path, &["send", "who serves"]);
    assert_eq!(out.stdout, b"who serves\n", "{out:?}");
    assert_eq!(std::fs::read(&keep).unwrap(), b"not ours");
    let survivor = &mut children[running[0]];
    signal(survivor, Signal::SIGTERM);
    wait_within(survivor);
    assert!(!path.exists());
}

#[test]
fn a_slow_but_steady_reader_gets_its_whole_reply() {
    let server = TestServer::start(&[
        "--framing",
        "length",
        "--max-frame",
        "4194304",
        "--idle-timeout",
        "1",
    ]);
    let mut s = server.connect();
    let payload: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let payload = payload.clone();
        std::thread::spawn(move || write_frame(&mut s, &payload).unwrap())
    };
    // About 1.3 MB/s: the whole reply takes three seconds, three idle timeouts, but bytes move
    // all the time.
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let want = payload.len() + 4;
    while got.len() < want {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} of {want} bytes", got.len());
        got.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.join().unwrap();
    assert_eq!(&got[..4], &(payload.len() as u32).to_be_bytes());
    assert!(got[4..] == payload[..]);
    assert!(!server.log().contains("took none of its replies"));
}

#[test]
fn a_length_prefix_alone_commits_no_memory() {
    // Under a 512 MiB address-space limit, a prefix that announces 4 GiB, and 600 connections
    // that each announce 1 MiB, must not abort the server.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("as.sock");
    let log = dir.path().join("log");
    let mut child = server_under_prlimit(
        512 << 20,
        &path,
        &[
            "--framing",
            "length",
            "--max-frame",
            "4294967295",
            "--workers",
            "1",
            // The crowd is one user: its share is the whole cap.
            "--max-connections-per-uid",
            "1024",
        ],
        &log,
    );
    let mut huge = connect(&path);
    huge.write_all(&[0xff; 4]).unwrap();
    let crowd: Vec<_> = (0..600)
        .map(|_| {
            let mut s = connect(&path);
            s.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
            s
        })
        .collect();
    // Still alive, and still serving.
    let mut s = connect(&path);
    write_frame(&mut s, b"alive").unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), b"alive");
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    drop(crowd);
    drop(huge);
    signal(&child, Signal::SIGTERM);
    assert!(wait_within(&mut child).success());
    assert!(!path.exists());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("memory allocation"), "{log}");
}

#[test]
fn every_stop_signal_removes_the_socket() {
    for sig in [
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGALRM,
        Signal::SIGPWR,
    ] {
        let mut server = TestServer::start(&[]);
        server.signal(sig);
        let status = server.wait();
        assert_eq!(code(status), 0, "{sig}: {}", server.log());
        assert!(!server.path().exists(), "{sig} left the socket behind");
        assert!(server.log().contains(sig.as_str()), "{}", server.log());
    }
}

#[test]
fn real_time_signals_do_not_kill_the_server() {
    let server = TestServer::start(&[]);
    let rt = nix::libc::SIGRTMIN() + 3;
    // kill(1): nix has no name for a real-time signal.
    let sent = std::process::Command::new("kill")
        .arg(format!("-{rt}"))
        .arg(server.pid().to_string())
        .status()
        .unwrap();
    assert!(sent.success());
    std::thread::sleep(Duration::from_millis(200));
    let out = server.client(&["send", "still here"]);
    assert_eq!(out.stdout, b"still here\n", "{out:?}");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = server_cmd()
        .arg("--socket")
        .arg(dir.path().join("a.sock"))
        .args([
            "--mode",
            "ack",
            "--max-frame",
            "8",
            "--ack-text",
            "far too long",
        ])
        .output_within();
    assert_eq!(code(out.status), 64, "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--ack-text is 12 bytes, more than --max-frame (8)"),
        "{err}"
    );
    assert!(!dir.path().join("a.sock").exists());

    // A tiny positive idle timeout is a timeout, not "never".
    let server = TestServer::start(&["--idle-timeout", "1e-10"]);
    let mut s = server.connect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(read_until_closed(&mut s), b"");
}

#[test]
fn a_socket_path_of_107_bytes_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().as_os_str().len();
    let name = "s".repeat(107 - base - 1);
    let path = dir.path().join(name);
    assert_eq!(path.as_os_str().len(), 107);
    let server = TestServer::start_at(dir, path, &[]);
    let out = server.client(&["send", "long path"]);
    assert_eq!(out.stdout, b"long path\n", "{out:?}");
}

#[test]
fn abstract_names_work_at_both_ends() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("@ipc-e2e-{}", std::process::id());
    let log = dir.path().join("log");
    let mut child = Reaped(
        server_cmd()
            .args(["--socket", &name])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let at = std::path::Path::new(&name);
    wait_until("the server answers at its abstract name", || {
        client(at, &["send", "ping"]).stdout == b"ping\n"
    });
    let out = client(at, &["ping"]);
    assert_eq!(code(out.status), 0, "{out:?}");
    let listening = std::fs::read_to_string(&log).unwrap();
    assert!(
        listening.contains(&format!("address={name}")),
        "{listening}"
    );
    assert!(!listening.contains("ipc.sock"), "{listening}");
    signal(&child, Signal::SIGTERM);
    assert!(wait_within(&mut child).success());
    let out = client(at, &["ping"]);
    assert_eq!(code(out.status), 66, "{out:?}");
}

#[test]
fn an_unwritable_directory_is_named_in_the_error() {
    // As an unprivileged user (nobody), in a directory only root may write.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = dir.path().join("nope.sock");
    if nix::unistd::getuid().is_root() {
        let out = as_nobody("--clear-groups", server_bin())
            .arg("--socket")
            .arg(&path)
            .output_within();
        assert_eq!(code(out.status), 77, "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot create the socket {}", path.display())),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "no permission to write in {}",
                dir.path().display()
            )),
            "{err}"
        );
        assert!(!err.contains(".ipc"), "{err}");
    } else {
        let out = server_cmd()
            .arg("--socket")
            .arg("/proc/nope.sock")
            .output_within();
        assert_eq!(code(out.status), 77, "{out:?}");
    }
}

/// Whether this kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
    (number(parts.next()), number(parts.next())) >= (major, minor)
}

#[test]
fn descriptors_sent_to_the_server_are_refused_and_none_reaches_it() {
    // Python's standard send_fds, as an independent peer: a message carrying a pipe's read end,
    // then a plain one, on one connection kept open.
    let server = TestServer::start(&[]);
    // The harness's start-up probe is a connection too: counted once it is gone.
    wait_until("the start-up probe's connection is closed", || {
        server.log().contains("answered=0")
    });
    let before = server.open_fds();
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
r, w = os.pipe()
try:
    socket.send_fds(s, [b"with-fd\n"], [r])
    print("sent")
except PermissionError:
    print("refused")
s.sendall(b"plain\n")
got = b""
while not got.endswith(b"plain\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print(got.decode().replace("\n", "|"))
sys.stdout.flush()
sys.stdin.read()  # keep the connection open until the test has counted the server's descriptors
"#;
    let mut child = Reaped(
        std::process::Command::new("python3")
            .args(["-c", script])
            .arg(server.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    let mut second = String::new();
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    std::io::BufRead::read_line(&mut out, &mut second).unwrap();
    if kernel_at_least(6, 16) {
        // SO_PASSRIGHTS off: the kernel refuses the sendmsg; nothing of it was sent.
        assert_eq!(first, "refused\n");
        assert_eq!(second, "plain|\n");
    } else {
        // Older kernels pass the message; its descriptor is dropped unread.
        assert_eq!(first, "sent\n");
        assert_eq!(second, "with-fd|plain|\n");
    }
    // While the connection is open, the server holds one more descriptor (it), not two.
    assert_eq!(
        server.open_fds(),
        before + 1,
        "the server holds a descriptor it was sent"
    );
    drop(child.stdin.take());
    assert!(wait_within(&mut child).success());
}
