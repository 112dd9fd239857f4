//! Each failure of `ipc-client` gives one line on stderr and its own exit code.

use std::fs;
use std::os::unix::net::UnixListener;
use std::process::Output;

mod support;
use support::*;

fn assert_fails(out: &Output, expected: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(out.status), expected, "stderr: {err}");
    assert!(err.contains(needle), "{needle:?} not in {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn nothing_at_the_path_exits_66() {
    let dir = tempfile::tempdir().unwrap();
    let out = client(&dir.path().join("none.sock"), &["send", "x"]);
    assert_fails(&out, 66, "no socket at");
}

#[test]
fn stale_socket_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&path).unwrap());
    let out = client(&path, &["send", "x"]);
    assert_fails(&out, 69, "stale socket");
}

#[test]
fn not_a_socket_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain");
    fs::write(&path, b"x").unwrap();
    let out = client(&path, &["send", "x"]);
    assert_fails(&out, 78, "is not a socket");
}

#[test]
fn server_closing_without_a_reply_exits_76() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rude.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = read_line(&mut s);
        // Close without answering.
    });
    let out = client(&path, &["send", "x"]);
    peer.join().unwrap();
    assert_fails(&out, 76, "closed the connection before replying");
    assert_fails(&out, 76, "check that --framing matches the server's");
}

#[test]
fn no_reply_in_time_exits_75() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mute.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let out = client(&path, &["--timeout", "0.3", "send", "x"]);
    drop(listener);
    assert_fails(&out, 75, "no reply within");
}

#[test]
fn message_too_large_for_the_framing_exits_65() {
    let server = TestServer::start(&[]);
    let out = server.client(&["--max-frame", "4", "send", "too long"]);
    assert_fails(&out, 65, "larger than the maximum");
    let out = server.client(&["send", "two\nlines"]);
    assert_fails(&out, 65, "newline");
}

#[test]
fn bad_usage_exits_64() {
    let out = client(std::path::Path::new("/nonexistent"), &["frobnicate"]);
    assert_eq!(code(out.status), 64);
}
