//! The server under clients that behave as real ones do, in both protocols: they keep their
//! connection open while they wait for replies (no half-close to flush them out), pipeline
//! more than one read's worth, walk away from a subscription, read a large stream slowly, and
//! meet a graceful stop or a socket-activated restart mid-way. The peers are socat, Python's
//! `socket`, PHP's sockets and the reference Python `varlink` package.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::*;

/// Runs a peer program and returns its stdout, failing the test with its stderr.
fn run_peer(cmd: &mut Command) -> String {
    let out = cmd.output_within();
    assert!(
        out.status.success(),
        "{:?} failed: {}{}",
        cmd.get_program(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A request of `protocol` (an echo), and its reply as it comes back.
fn echo(protocol: &str, text: &str) -> (Vec<u8>, Vec<u8>) {
    match protocol {
        "plain" => (
            format!("{text}\n").into_bytes(),
            format!("{text}\n").into_bytes(),
        ),
        _ => (
            format!(r#"{{"method":"io.ipc.Messages.Echo","parameters":{{"message":"{text}"}}}}"#)
                .into_bytes()
                .into_iter()
                .chain([0])
                .collect(),
            format!(r#"{{"parameters":{{"message":"{text}"}}}}"#)
                .into_bytes()
                .into_iter()
                .chain([0])
                .collect(),
        ),
    }
}

#[test]
fn pipelined_requests_are_answered_while_the_client_keeps_its_connection_open() {
    for protocol in PROTOCOLS {
        for concurrency in ["1", "2", "8"] {
            let server = TestServer::start(&["--protocol", protocol, "--concurrency", concurrency]);
            let python_protocol = if protocol == "plain" {
                "line"
            } else {
                "varlink"
            };
            let out = run_peer(
                Command::new("python3")
                    .arg(peer("pipeline.py"))
                    .arg(server.path())
                    .args([python_protocol, "2000"]),
            );
            assert_eq!(out, "ok 2000\n", "{protocol}, concurrency {concurrency}");
            if protocol == "plain" {
                let out = run_peer(
                    Command::new("php")
                        .arg(peer("pipeline.php"))
                        .arg(server.path())
                        .arg("2000"),
                );
                assert_eq!(out, "ok 2000\n", "PHP, concurrency {concurrency}");
            }
        }
    }
}

#[test]
fn socat_gets_every_reply_while_its_input_stays_open() {
    for protocol in PROTOCOLS {
        let server = TestServer::start(&["--protocol", protocol, "--concurrency", "2"]);
        let requests: Vec<u8> = ["a", "b", "c"]
            .iter()
            .flat_map(|t| echo(protocol, t).0)
            .collect();
        let expected: Vec<u8> = ["a", "b", "c"]
            .iter()
            .flat_map(|t| echo(protocol, t).1)
            .collect();
        // socat's input stays open (the shell sleeps): its side is never half-closed.
        let mut socat = Reaped(
            Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "(cat; sleep 60) | socat - UNIX-CONNECT:{}",
                    server.path().display()
                ))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("socat"),
        );
        let mut stdin = socat.stdin.take().unwrap();
        stdin.write_all(&requests).unwrap();
        drop(stdin);
        let mut stdout = socat.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let want = expected.len();
        std::thread::spawn(move || {
            let mut got = vec![0; want];
            let read = stdout.read_exact(&mut got).map(|()| got);
            let _ = tx.send(read);
        });
        let got = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{protocol}: the replies did not come while socat waited"))
            .unwrap();
        assert_eq!(got, expected, "{protocol}");
    }
}

#[test]
fn subscribers_that_walk_away_free_their_connection_slots_at_once() {
    let server = TestServer::start(&[
        "--protocol",
        "varlink",
        "--max-connections",
        "4",
        "--max-connections-per-uid",
        "4",
    ]);
    for round in 0..2 {
        let mut subscribers = Vec::new();
        for _ in 0..4 {
            let mut s = server.connect();
            s.write_all(b"{\"method\":\"io.ipc.Server.Monitor\",\"more\":true}\0")
                .unwrap();
            // The subscription is live once its first event (its own call) arrives.
            let event: Value = serde_json::from_slice(&read_nul(&mut s).unwrap()).unwrap();
            assert_eq!(event["continues"], json!(true), "{event}");
            subscribers.push(s);
        }
        // They walk away; their streams are quiet, so only watching the socket notices.
        drop(subscribers);
        let started = Instant::now();
        let out = run_peer(
            Command::new(varlink_python())
                .arg("-c")
                .arg(
                    "import sys, varlink\n\
                     with varlink.Client(address='unix:' + sys.argv[1]) as c:\n\
                     \x20   with c.open('io.ipc.Messages') as m:\n\
                     \x20       print(m.Echo('served')['message'])\n",
                )
                .arg(server.path()),
        );
        assert_eq!(out, "served\n", "round {round}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: a new client waited {:?} for a slot",
            started.elapsed()
        );
    }
}

#[test]
fn a_graceful_stop_answers_requests_that_arrived_but_were_not_read() {
    for protocol in PROTOCOLS {
        for concurrency in ["1", "4"] {
            for round in 0..3 {
                let mut server =
                    TestServer::start(&["--protocol", protocol, "--concurrency", concurrency]);
                let mut s = server.connect();
                let (mut requests, mut expected) = (Vec::new(), Vec::new());
                for i in 0..10 {
                    let (request, reply) = echo(protocol, &format!("r{i}"));
                    requests.extend(request);
                    expected.extend(reply);
                }
                // Ten requests in one write, and the stop right behind them.
                s.write_all(&requests).unwrap();
                server.signal(Signal::SIGTERM);
                // The connection stays open: every reply, then the server's close.
                let got = read_to_close(&mut s).unwrap();
                assert!(
                    got == expected,
                    "{protocol}, concurrency {concurrency}, round {round}: got {:?}",
                    String::from_utf8_lossy(&got)
                );
                assert!(server.wait().success());
            }
        }
    }
}

#[test]
fn a_graceful_stop_answers_connections_still_waiting_to_be_accepted() {
    for protocol in PROTOCOLS {
        let mut server = TestServer::start(&["--protocol", protocol, "--max-connections", "2"]);
        // Two silent clients hold both slots, so the next ones wait in the backlog.
        let holders = [server.connect(), server.connect()];
        let mut waiting = Vec::new();
        for i in 0..5 {
            let mut s = server.connect();
            let (request, reply) = echo(protocol, &format!("w{i}"));
            s.write_all(&request).unwrap();
            waiting.push((s, reply));
        }
        std::thread::sleep(Duration::from_millis(100));
        server.signal(Signal::SIGTERM);
        for (i, (mut s, reply)) in waiting.into_iter().enumerate() {
            let got = read_to_close(&mut s)
                .unwrap_or_else(|e| panic!("{protocol}: waiting client {i} was reset: {e}"));
            assert_eq!(got, reply, "{protocol}: waiting client {i}");
        }
        drop(holders);
        assert!(server.wait().success());
        assert!(
            server
                .log()
                .contains("answering connections that were waiting to be accepted"),
            "{}",
            server.log()
        );
    }
}

#[test]
fn socket_activated_restarts_under_load_lose_no_request() {
    for protocol in PROTOCOLS {
        let dir = tempfile::tempdir().unwrap();
        let out = run_peer(
            Command::new("python3")
                .arg(peer("restart.py"))
                .arg(dir.path().join("activated.sock"))
                .arg(server_bin())
                .arg(protocol)
                .arg(dir.path().join("server.log"))
                .env("RUST_LOG", "info"),
        );
        let counts: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(counts["failed"], json!(0), "{protocol}: {counts}");
        assert!(counts["ok"].as_u64().unwrap() > 100, "{protocol}: {counts}");
        // Three servers in turn, each on the socket the harness kept.
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
        let listening = format!(
            "listening address={}",
            dir.path().join("activated.sock").display()
        );
        assert_eq!(log.matches(&listening).count(), 3, "{log}");
    }
}

#[test]
fn a_slow_steady_reader_of_a_large_stream_is_not_closed_as_stalled() {
    let server = TestServer::start(&["--protocol", "varlink", "--idle-timeout", "1"]);
    let mut s = UnixStream::connect(server.path()).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(
        b"{\"method\":\"io.ipc.Messages.Count\",\"parameters\":{\"count\":6000,\"message\":\"slow\"},\"more\":true}\0",
    )
    .unwrap();
    // About 80 KB/s: 4 KiB every 50 ms, for some 3 s, three idle timeouts.
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.iter().filter(|&&b| b == 0).count() < 6000 {
        let n = s.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "closed after {} replies",
            got.iter().filter(|&&b| b == 0).count()
        );
        got.extend_from_slice(&chunk[..n]);
        std::thread::sleep(Duration::from_millis(50));
    }
    let replies: Vec<Value> = got
        .split(|&b| b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::from_slice(m).unwrap())
        .collect();
    assert_eq!(replies.len(), 6000);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["parameters"]["index"], json!(i));
    }
    assert_eq!(
        replies[5999].get("continues"),
        None,
        "the last reply continues"
    );
    assert!(!server.log().contains("took none of its replies"));
}
