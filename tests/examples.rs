//! Each example in `examples/` runs and does what its header comment says.

use std::process::Stdio;

mod support;
use support::*;

/// Starts a long-running example on a temp socket; returns it, its socket path and the temp dir.
fn start(name: &str) -> (std::process::Child, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.sock"));
    let child = example_cmd(name)
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the example listens", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    (child, path, dir)
}

fn stop(mut child: std::process::Child, path: &std::path::Path) {
    signal(&child, Signal::SIGTERM);
    assert!(wait_within(&mut child).success());
    assert!(!path.exists(), "socket left behind");
}

#[test]
fn uppercase_example() {
    let (child, path, _dir) = start("uppercase");
    let out = client(&path, &["send", "hello"]);
    assert_eq!(out.stdout, b"HELLO\n");
    stop(child, &path);
}

#[test]
fn counter_example_counts_across_connections() {
    let (child, path, _dir) = start("counter");
    for expected in ["1\n", "2\n", "3\n"] {
        assert_eq!(client(&path, &["send", "x"]).stdout, expected.as_bytes());
    }
    stop(child, &path);
}

#[test]
fn embedded_example_stops_its_own_server() {
    let out = example_cmd("embedded").output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for (i, job) in ["1", "2", "3"].iter().enumerate() {
        assert!(
            lines[i].starts_with(&format!("job {job} done for pid Some(")),
            "{text}"
        );
    }
    assert_eq!(lines[3], "server stopped; socket removed: true");
}

#[test]
fn client_example_against_the_real_server() {
    let server = TestServer::start(&["--mode", "echo"]);
    let out = example_cmd("client").arg(server.path()).output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "send: hello\nrequest: one\nrequest: two\nrequest: three\n\
         pipeline: 100 replies, last \"item 100\"\n"
    );
}
