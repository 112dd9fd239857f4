//! Descriptors sent with requests and replies (`SCM_RIGHTS`), against the real `ipc-server`,
//! from Python's standard `socket.send_fds` and `recv_fds` (`tests/peers/fds.py`): accepted
//! only when asked for, closed when no handler takes them, given back by the echo with
//! `--send-fds` (and only then), refused past the cap or in the middle of a message, and none
//! left behind by connections that die holding some; `ipc-client --push-fd`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use support::*;

/// A server for `protocol` that accepts descriptors, with `extra` arguments, once its
/// start-up probe's connection is gone (so descriptor counts start from a quiet server).
fn server(protocol: &str, extra: &[&str]) -> TestServer {
    let mut args = vec!["--protocol", protocol, "--accept-fds"];
    args.extend_from_slice(extra);
    let server = TestServer::start(&args);
    wait_until("the start-up probe's connection is closed", || {
        server.log().contains("answered=0")
    });
    server
}

/// Runs `fds.py` in `mode` and returns its output lines.
fn run(server: &TestServer, protocol: &str, mode: &str, count: usize) -> Vec<String> {
    let out = Command::new("python3")
        .arg(peer("fds.py"))
        .arg(server.path())
        .args([protocol, mode, &count.to_string()])
        .output_within();
    assert!(
        out.status.success(),
        "fds.py {mode} failed: {}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn ten_thousand_calls_that_each_pass_a_descriptor_leave_none_open() {
    for protocol in PROTOCOLS {
        let server = server(protocol, &[]);
        keeps_none(&server, protocol, "calls", "answered 10000\n");
    }
}

#[test]
fn the_echo_gives_back_each_descriptor_and_keeps_none() {
    for protocol in PROTOCOLS {
        let server = server(protocol, &["--send-fds"]);
        keeps_none(&server, protocol, "echo", "echoed 10000\n");
    }
}

#[test]
fn without_send_fds_a_reply_carries_none() {
    for protocol in PROTOCOLS {
        let server = server(protocol, &[]);
        let out = run(&server, protocol, "echo", 1);
        assert!(
            out[0].starts_with("reply 0 came with 0 descriptors"),
            "{protocol}: {out:?}"
        );
    }
}

/// Runs `fds.py MODE 10000` and checks its first line is `expected`; the server then holds
/// one descriptor more than before (the open connection), and none more once it closes.
fn keeps_none(server: &TestServer, protocol: &str, mode: &str, expected: &str) {
    let before = server.open_fds();
    // The connection stays open while the server's descriptors are counted.
    let mut child = Reaped(
        Command::new("python3")
            .arg(peer("fds.py"))
            .arg(server.path())
            .args([protocol, mode, "10000"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, expected, "{protocol}: {}", server.log());
    // Taken by no handler, or sent back: each was closed when its call or reply was done. The
    // server closes its copy of the last one just after the send that the peer has read, so
    // the count may take a moment to come down to the connection's own descriptor; a leak
    // would keep it above, and the wait would fail.
    wait_until("only the connection's descriptor is open", || {
        server.open_fds() == before + 1
    });
    drop(child.stdin.take());
    assert!(wait_within(&mut child).success());
    wait_until("the connection's descriptor is closed", || {
        server.open_fds() == before
    });
}

#[test]
fn more_descriptors_than_the_cap_end_the_connection_after_the_replies_before() {
    for protocol in PROTOCOLS {
        let server = server(protocol, &["--max-fds-per-message", "2"]);
        let before = server.open_fds();
        let out = run(&server, protocol, "too-many", 3);
        assert!(out[0].contains("before"), "{protocol}: {out:?}");
        assert_eq!(out[1], "closed", "{protocol}: {out:?}");
        assert!(
            server
                .log()
                .contains("3 descriptors came with one message; at most 2 are accepted"),
            "{}",
            server.log()
        );
        // Within the cap, the same connection's calls go through.
        assert!(run(&server, protocol, "too-many", 2)[1].contains("with-fds"));
        wait_until("no descriptor is left open", || server.open_fds() == before);
    }
}

#[test]
fn descriptors_in_the_middle_of_a_message_end_the_connection() {
    for protocol in PROTOCOLS {
        let server = server(protocol, &[]);
        let before = server.open_fds();
        let out = run(&server, protocol, "mid-message", 1);
        assert!(out[0].contains("before"), "{protocol}: {out:?}");
        assert_eq!(out[1], "closed", "{protocol}: {out:?}");
        assert!(
            server.log().contains("in the middle of a message"),
            "{}",
            server.log()
        );
        wait_until("no descriptor is left open", || server.open_fds() == before);
    }
}

#[test]
fn a_thousand_connections_that_die_holding_descriptors_leave_none_open() {
    for protocol in PROTOCOLS {
        // The peer connects faster than the server notices its closes, so one uid can have
        // more than its default share (128) open at once: then the server would close new
        // connections before they send, and the peer's send would fail. Every connection
        // must be served, with its descriptors, for the count to mean anything.
        let server = server(
            protocol,
            &[
                "--max-connections",
                "2000",
                "--max-connections-per-uid",
                "2000",
            ],
        );
        let before = server.open_fds();
        assert_eq!(run(&server, protocol, "die", 1000), ["done"]);
        wait_until(
            "every descriptor the dead connections sent is closed",
            || server.open_fds() == before,
        );
        // The server still serves.
        assert!(run(&server, protocol, "too-many", 1)[1].contains("with-fds"));
    }
}

#[test]
fn ipc_client_pushes_descriptors_and_lists_those_that_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pushed.txt");
    std::fs::write(&file, "contents").unwrap();
    for protocol in PROTOCOLS {
        let server = server(protocol, &["--send-fds"]);
        let push = ["--push-fd", file.to_str().unwrap()];
        let out = if protocol == "plain" {
            let mut args = vec!["send"];
            args.extend(push);
            args.extend(["hello", "again"]);
            server.client(&args)
        } else {
            let mut args = vec!["call", "io.ipc.Messages.Echo", r#"{"message":"hello"}"#];
            args.extend(push);
            server.client(&args)
        };
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{protocol}: {stderr}");
        let expected = match protocol {
            "plain" => "hello\nagain\n",
            _ => "{\"message\":\"hello\"}\n",
        };
        assert_eq!(stdout, expected, "{protocol}");
        assert_eq!(
            stderr,
            format!("descriptor 0: {}\n", file.display()),
            "{protocol}"
        );
    }
}

#[test]
fn a_server_that_does_not_accept_descriptors_refuses_them_in_the_kernel() {
    for protocol in PROTOCOLS {
        let server = TestServer::start(&["--protocol", protocol]);
        let out = if protocol == "plain" {
            server.client(&["send", "--push-fd", "/dev/null", "hello"])
        } else {
            server.client(&[
                "call",
                "io.ipc.Messages.Echo",
                r#"{"message":"hello"}"#,
                "--push-fd",
                "/dev/null",
            ])
        };
        assert_eq!(out.status.code(), Some(76), "{protocol}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "ipc-client: the server does not accept file descriptors\n",
            "{protocol}"
        );
        // The server never saw the message, and goes on serving.
        let again = match protocol {
            "plain" => server.client(&["send", "x"]),
            _ => server.client(&["call", "io.ipc.Messages.Echo", r#"{"message":"x"}"#]),
        };
        assert!(again.status.success(), "{protocol}");
    }
}
