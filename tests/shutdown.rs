//! Graceful shutdown on SIGINT and SIGTERM, the shutdown deadline, and the forcing second signal.

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;

mod support;
use support::*;

fn stops_cleanly_on(sig: Signal) {
    let mut server = TestServer::start(&[]);
    let mut idle = server.connect();
    idle.write_all(b"before\n").unwrap();
    assert_eq!(read_line(&mut idle).unwrap(), b"before");
    server.signal(sig);
    assert_eq!(code(server.wait()), 0);
    assert!(!server.path().exists(), "socket file left behind");
    // The open connection was closed, not left hanging.
    assert_eq!(read_to_close(&mut idle).unwrap(), b"");
}

#[test]
fn sigint_exits_zero_and_removes_the_socket() {
    stops_cleanly_on(Signal::SIGINT);
}

#[test]
fn sigterm_exits_zero_and_removes_the_socket() {
    stops_cleanly_on(Signal::SIGTERM);
}

/// A connection whose replies cannot be written because its client never reads: the server
/// stays busy on it until something gives.
fn stalled_connection(server: &TestServer) -> UnixStream {
    let mut s = server.connect();
    s.set_write_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let line = vec![b'x'; 4095];
    let chunk = [&line[..], b"\n"].concat();
    loop {
        match s.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("unexpected write error: {e}"),
        }
    }
    s
}

#[test]
fn busy_connections_are_dropped_at_the_shutdown_timeout() {
    let mut server = TestServer::start(&["--shutdown-timeout", "0.5", "--idle-timeout", "0"]);
    let _stalled = stalled_connection(&server);
    server.signal(Signal::SIGTERM);
    assert_eq!(code(server.wait()), 0);
    assert!(!server.path().exists());
    assert!(
        server.log().contains("shutdown timeout reached"),
        "{}",
        server.log()
    );
}

#[test]
fn a_second_signal_forces_the_exit() {
    let mut server = TestServer::start(&["--shutdown-timeout", "3600", "--idle-timeout", "0"]);
    let _stalled = stalled_connection(&server);
    server.signal(Signal::SIGTERM);
    wait_until("the server drains", || server.log().contains("draining"));
    server.signal(Signal::SIGINT);
    assert_eq!(code(server.wait()), 0);
    assert!(!server.path().exists());
    assert!(server.log().contains("forced shutdown"), "{}", server.log());
}
