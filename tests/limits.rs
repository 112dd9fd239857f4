//! Limits and hostile input: over-size frames, the connection cap, idle clients, clients that
//! never read, the peer allow-lists, and running out of file descriptors.

use std::io::{ErrorKind, Read, Write};
use std::time::Duration;

mod support;
use support::*;

fn closed_by_server(s: &mut std::os::unix::net::UnixStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
}

#[test]
fn oversize_frame_closes_only_that_connection() {
    let server = TestServer::start(&["--max-frame", "16"]);
    let mut good = server.connect();
    let mut bad = server.connect();
    bad.write_all(&[b'x'; 64]).unwrap();
    assert!(closed_by_server(&mut bad));
    good.write_all(b"still fine\n").unwrap();
    assert_eq!(read_line(&mut good).unwrap(), b"still fine");
    wait_until("the warning is logged", || {
        server.log().contains("larger than the maximum of 16 bytes")
    });

    let server = TestServer::start(&["--max-frame", "16", "--framing", "length"]);
    let mut bad = server.connect();
    bad.write_all(&1_000_000u32.to_be_bytes()).unwrap();
    assert!(closed_by_server(&mut bad));
    let mut good = server.connect();
    write_frame(&mut good, b"ok").unwrap();
    assert_eq!(read_frame(&mut good).unwrap(), b"ok");
}

#[test]
fn connection_cap_queues_the_rest_until_one_closes() {
    let server = TestServer::start(&["--max-connections", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    for s in [&mut a, &mut b] {
        s.write_all(b"in\n").unwrap();
        assert_eq!(read_line(s).unwrap(), b"in");
    }
    // The third connects (the kernel backlog holds it) but is not served yet.
    let mut c = server.connect();
    c.write_all(b"queued\n").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let err = read_line(&mut c).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );
    drop(a);
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(read_line(&mut c).unwrap(), b"queued");
    // Reaching the cap and leaving it are logged once each (not once per waiting client).
    wait_until("the cap is logged", || {
        server.log().contains("a connection slot is free again")
    });
    let log = server.log();
    let until_free = &log[..log.find("a connection slot is free again").unwrap()];
    assert_eq!(
        until_free.matches("every connection slot is taken").count(),
        1,
        "{log}"
    );
}

#[test]
fn idle_and_stalled_clients_are_closed() {
    let server = TestServer::start(&["--idle-timeout", "0.3"]);
    let mut silent = server.connect();
    let mut partial = server.connect();
    partial.write_all(b"no newline yet").unwrap();
    let mut active = server.connect();
    // A connection that keeps sending complete messages is not idle.
    let ticker = std::thread::spawn(move || {
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(100));
            active.write_all(b"tick\n").unwrap();
            assert_eq!(read_line(&mut active).unwrap(), b"tick");
        }
    });
    assert!(closed_by_server(&mut silent));
    assert!(closed_by_server(&mut partial));
    ticker.join().unwrap();
    assert!(
        server.log().contains("idle for longer than"),
        "{}",
        server.log()
    );
}

#[test]
fn a_client_that_never_reads_does_not_grow_the_server() {
    let server = TestServer::start(&["--idle-timeout", "0"]);
    let before = rss_kib(server.pid());
    let mut s = server.connect();
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let line = [vec![b'y'; 1023], b"\n".to_vec()].concat();
    let mut sent = 0usize;
    let budget = 256 * 1024 * 1024;
    while sent < budget {
        match s.write(&line) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        sent < budget,
        "the server kept reading while its replies piled up"
    );
    let grown = rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 16 * 1024, "server RSS grew by {grown} KiB");
    // Other clients are still served.
    let mut other = server.connect();
    other.write_all(b"hi\n").unwrap();
    assert_eq!(read_line(&mut other).unwrap(), b"hi");
}

#[test]
fn peers_outside_the_allow_list_are_refused() {
    // The tests may run as root (CI does): a list without our uid refuses us...
    let me = nix::unistd::geteuid().as_raw();
    let other = if me == 12345 { 12346 } else { 12345 };
    let server = TestServer::start(&["--allow-uid", &other.to_string()]);
    let mut s = server.connect();
    let _ = s.write_all(b"let me in\n");
    assert!(closed_by_server(&mut s));
    wait_until("the refusal is logged", || {
        server.log().contains("not on the allow-list")
    });
    assert!(
        server.log().contains(&format!("uid={me}")),
        "{}",
        server.log()
    );
    assert!(server.log().contains("pid="), "{}", server.log());

    // ...and a list with our uid, or our gid, admits us.
    let gid = nix::unistd::getegid().as_raw().to_string();
    for args in [
        vec!["--allow-uid", "1", "--allow-uid", &me.to_string()][..].to_vec(),
        vec!["--allow-uid", &other.to_string(), "--allow-gid", &gid],
    ] {
        let server = TestServer::start(&args);
        let mut s = server.connect();
        s.write_all(b"welcome\n").unwrap();
        assert_eq!(read_line(&mut s).unwrap(), b"welcome", "{args:?}");
    }
}

#[test]
fn running_out_of_file_descriptors_is_survived() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("emfile.sock");
    let log = dir.path().join("log");
    // A server with room for only a handful of descriptors.
    let mut sh = std::process::Command::new("sh");
    let mut child = clean_env(&mut sh)
        .arg("-c")
        .arg(format!(
            "ulimit -n 24 && RUST_LOG=debug exec {} --socket {} --workers 1 2>{}",
            server_bin().display(),
            path.display(),
            log.display()
        ))
        .spawn()
        .unwrap();
    wait_until("the server listens", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    let crowd: Vec<_> = (0..40).map(|_| connect(&path)).collect();
    wait_until("EMFILE is logged", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("accept failed")
    });
    // Let it fail for a while: each 100 ms pause retries, and is not logged again.
    std::thread::sleep(std::time::Duration::from_millis(500));
    drop(crowd);
    // Once descriptors are free again it serves as before.
    wait_until("the server serves again", || {
        let out = client(&path, &["--timeout", "1", "send", "back"]);
        out.status.success() && out.stdout == b"back\n"
    });
    // One warning when it began, one summary when it ended, for each time it ran out.
    let text = std::fs::read_to_string(&log).unwrap();
    let began = text.matches("accept failed").count();
    let ended = text.matches("accepting again").count();
    assert!(began >= 1 && began == ended, "{text}");
    assert!(text.contains("failed_accepts="), "{text}");
    let most = text
        .lines()
        .filter_map(|l| l.split("failed_accepts=").nth(1))
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(most >= 3, "retried every 100 ms for 500 ms: {text}");
    assert!(child.try_wait().unwrap().is_none(), "the server exited");
    child.kill().unwrap();
    wait_within(&mut child);
}

#[test]
fn one_user_cannot_take_every_connection_slot() {
    // Two real users: the test runs as root and starts the other one with setpriv.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: running as two users needs root (CI runs it as root)");
        return;
    }
    let server = TestServer::start(&["--max-connections", "8", "--socket-mode", "0666"]);
    // The user nobody may reach the socket.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(server.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // nobody opens 10 silent connections, with socat: each socat ends when the server closes
    // its connection.
    let mut hogs: Vec<Reaped> = (0..10)
        .map(|_| {
            Reaped(
                as_nobody("--clear-groups", "socat")
                    .arg("-")
                    .arg(format!("UNIX-CONNECT:{}", server.path().display()))
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    wait_until("four of nobody's connections are closed", || {
        hogs.iter_mut()
            .map(|h| h.try_wait().unwrap().is_some())
            .filter(|&ended| ended)
            .count()
            >= 4
    });
    std::thread::sleep(Duration::from_millis(500));
    let held = hogs
        .iter_mut()
        .map(|h| h.try_wait().unwrap().is_none())
        .filter(|&running| running)
        .count();
    // Its share: three quarters of the 8 slots.
    assert_eq!(held, 6, "nobody kept {held} connections");
    // Root is served, within a second, again and again.
    for round in 0..5 {
        let started = std::time::Instant::now();
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.write_all(b"root\n").unwrap();
        assert_eq!(read_line(&mut s).unwrap(), b"root", "round {round}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    wait_until("the refusal is logged with the uid", || {
        server.log().contains("peer=uid 65534")
            && server
                .log()
                .contains("this peer has its share of connections open")
    });
    // When nobody lets go, that is logged too, with how many were refused.
    drop(hogs);
    wait_until("leaving the share is logged", || {
        server
            .log()
            .contains("this peer is below its share of connections again")
    });
    assert!(server.log().contains("refused=4"), "{}", server.log());
}

#[test]
fn a_member_of_an_allowed_group_through_a_supplementary_group_is_admitted() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: running as another user needs root (CI runs it as root)");
        return;
    }
    let server = TestServer::start(&["--allow-gid", "4242", "--socket-mode", "0666"]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(server.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // nobody, whose primary group is nogroup: only its supplementary groups differ.
    let as_nobody = |groups: &str| {
        as_nobody(groups, "socat")
            .args(["-t", "5", "-"])
            .arg(format!("UNIX-CONNECT:{}", server.path().display()))
            .output_fed_within(b"member\n")
    };
    let member = as_nobody("--groups=4242");
    assert_eq!(member.stdout, b"member\n", "{member:?}");
    // Also when the group is the last of more than fit the first look (32).
    let many: Vec<String> = (4200..=4242).map(|g| g.to_string()).collect();
    let member = as_nobody(&format!("--groups={}", many.join(",")));
    assert_eq!(member.stdout, b"member\n", "{member:?}");
    let outsider = as_nobody("--clear-groups");
    assert_eq!(outsider.stdout, b"", "{outsider:?}");
    wait_until("the refusal is logged", || {
        server.log().contains("peer not on the allow-list")
    });
}

#[test]
fn unfinished_messages_cannot_exhaust_the_servers_memory() {
    // Under a 256 MiB address-space limit, 500 connections each send 128 KB of a Varlink call
    // that never ends: the server must not abort, and must answer other clients throughout.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("budget.sock");
    let log = dir.path().join("log");
    let mut server = server_under_prlimit(
        256 << 20,
        &path,
        &["--protocol", "varlink", "--max-connections-per-uid", "1024"],
        &log,
    );
    // A failing run shows what the server logged.
    struct ShowLog(std::path::PathBuf);
    impl Drop for ShowLog {
        fn drop(&mut self) {
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&self.0).unwrap_or_default();
                eprintln!(
                    "--- server log (last 2,000 bytes) ---\n{}",
                    &text[text.len().saturating_sub(2000)..]
                );
            }
        }
    }
    let _show = ShowLog(log.clone());
    let echo = || {
        let mut s = connect(&path);
        s.write_all(b"{\"method\":\"io.ipc.Messages.Echo\",\"parameters\":{\"message\":\"ok\"}}\0")
            .unwrap();
        assert_eq!(
            read_nul(&mut s).unwrap(),
            br#"{"parameters":{"message":"ok"}}"#,
            "another client was not answered"
        );
    };
    let mut head = b"{\"method\":\"io.ipc.Messages.Echo\",\"parameters\":{\"message\":\"".to_vec();
    head.resize(128 * 1024, b'a');
    let mut crowd = Vec::new();
    for i in 0..500 {
        let mut s = connect(&path);
        // A connection the server already closed may refuse the bytes.
        let _ = s.write_all(&head);
        crowd.push(s);
        if i % 50 == 49 {
            echo();
        }
    }
    assert!(server.try_wait().unwrap().is_none(), "the server died");
    echo();
    // Some connections were closed for the budget, and said so in the log.
    let closed = crowd
        .iter_mut()
        .map(|s| {
            s.set_nonblocking(true).unwrap();
            match s.read(&mut [0u8; 1]) {
                Ok(0) => true,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
                Ok(_) => false,
            }
        })
        .filter(|&closed| closed)
        .count();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        closed > 0,
        "no connection was closed for the budget; log:\n{text}"
    );
    assert!(
        text.contains("budget of 33554432 bytes for unfinished messages is spent"),
        "{text}"
    );
    drop(crowd);
    signal(&server, Signal::SIGTERM);
    assert!(wait_within(&mut server).success(), "{text}");
}

#[test]
fn each_address_admits_its_own_users() {
    // Two real users: the test runs as root and starts the other one with setpriv.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: running as two users needs root (CI runs it as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (main, shared) = (dir.path().join("main.sock"), dir.path().join("shared.sock"));
    // The main socket is root's alone (0600); the shared one admits nobody, and only nobody.
    let also = format!("{};allow-uid=65534;socket-mode=0666", shared.display());
    let server = TestServer::start_at(dir, main.clone(), &["--also-socket", &also]);
    let as_nobody_send = |path: &std::path::Path| {
        as_nobody("--clear-groups", client_bin())
            .arg("--socket")
            .arg(path)
            .args(["send", "from nobody"])
            .output_within()
    };
    assert_eq!(client(&main, &["send", "from root"]).stdout, b"from root\n");
    let refused = client(&shared, &["send", "from root"]);
    assert_eq!(code(refused.status), 76, "{refused:?}");
    assert_eq!(as_nobody_send(&shared).stdout, b"from nobody\n");
    // nobody cannot open the main socket at all.
    assert_eq!(code(as_nobody_send(&main).status), 77);
    let log = server.log();
    assert!(log.contains("listening also"), "{log}");
    assert!(log.contains("peer not on the allow-list"), "{log}");
}
