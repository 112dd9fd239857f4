//! The classic socket programs this project grew from, written in PHP with its sockets
//! extension as they were: no framing at all. With `--framing raw` they and ours talk both ways.
//!
//! - `tests/peers/client.php` writes its message with no terminator and reads once;
//! - `tests/peers/server.php` reads once, writes `Mensagem recebida!` cut to 16 bytes, closes;
//! - `tests/peers/select_server.php` does the same for many clients with `socket_select`, and
//!   keeps each connection open for its next message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod support;
use support::*;

/// Runs the PHP client against `path`, with a deadline.
fn php_client(path: &Path, message: &str) -> Output {
    Command::new("php")
        .arg(peer("client.php"))
        .arg(path)
        .arg(message)
        .output_within()
}

/// Starts one of the PHP servers on a fresh path and waits until it accepts.
fn php_server(script: &str) -> (Reaped, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("php.sock");
    let child = Reaped(
        Command::new("php")
            .arg(peer(script))
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("php (php-cli, with its sockets extension)"),
    );
    wait_until("the PHP server accepts", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    (child, dir, path)
}

#[test]
fn the_php_client_gets_the_ack_and_its_echo_from_our_server() {
    let server = TestServer::start(&["--mode", "ack", "--framing", "raw"]);
    let out = php_client(server.path(), "texto");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"Mensagem recebida!");

    let server = TestServer::start(&["--mode", "echo", "--framing", "raw"]);
    let out = php_client(server.path(), "texto com espaços\ne linhas");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "texto com espaços\ne linhas"
    );
}

#[test]
fn our_client_talks_to_the_simple_php_server() {
    let (_php, _dir, path) = php_server("server.php");
    // The server closes after its reply: that ends the reply.
    let out = client(&path, &["--framing", "raw", "send", "texto"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"Mensagem recebid\n");
}

#[test]
fn our_client_talks_to_the_select_php_server() {
    let (_php, _dir, path) = php_server("select_server.php");
    // The server keeps the connection open: a quiet moment ends each reply, and the next
    // message goes on the same connection.
    let out = client(&path, &["--framing", "raw", "send", "--raw", "um", "dois"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"Mensagem recebidMensagem recebid");
    // Two clients at once are both served.
    let a = std::thread::spawn({
        let path = path.clone();
        move || client(&path, &["--framing", "raw", "send", "a"])
    });
    let b = client(&path, &["--framing", "raw", "send", "b"]);
    assert_eq!(b.stdout, b"Mensagem recebid\n", "{b:?}");
    assert_eq!(a.join().unwrap().stdout, b"Mensagem recebid\n");
}

#[test]
fn our_raw_client_and_server_talk_too() {
    let server = TestServer::start(&["--mode", "echo", "--framing", "raw"]);
    let out = server.client(&["--framing", "raw", "send", "one", "two"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
}
