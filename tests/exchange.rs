//! Echo and ack in both framings, through the real client, raw sockets, socat and Python; and
//! the input edge cases (empty messages, CRLF, a last line without `\n`, invalid UTF-8).

use std::io::Write;
use std::net::Shutdown;

mod support;
use support::*;

fn stdout(out: &std::process::Output) -> &[u8] {
    assert!(
        out.status.success(),
        "client failed: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    &out.stdout
}

#[test]
fn echo_line_through_the_client_binary() {
    let server = TestServer::start(&["--mode", "echo"]);
    assert_eq!(stdout(&server.client(&["send", "texto"])), b"texto\n");
}

#[test]
fn ack_line_through_the_client_binary() {
    let server = TestServer::start(&["--mode", "ack"]);
    assert_eq!(
        stdout(&server.client(&["send", "texto"])),
        "Mensagem recebida!\n".as_bytes()
    );
}

#[test]
fn ack_text_is_settable() {
    let server = TestServer::start(&["--mode", "ack", "--ack-text", "got it"]);
    assert_eq!(stdout(&server.client(&["send", "x"])), b"got it\n");
}

#[test]
fn echo_and_ack_with_length_framing_through_the_client_binary() {
    let echo = TestServer::start(&["--mode", "echo", "--framing", "length"]);
    let out = echo.client(&["--framing", "length", "send", "multi\nline"]);
    assert_eq!(stdout(&out), b"multi\nline\n");
    let ack = TestServer::start(&["--mode", "ack", "--framing", "length"]);
    let out = ack.client(&["--framing", "length", "send", "x"]);
    assert_eq!(stdout(&out), "Mensagem recebida!\n".as_bytes());
}

#[test]
fn raw_line_exchanges_on_one_connection() {
    let server = TestServer::start(&[]);
    let mut s = server.connect();
    for msg in [&b"one"[..], b"two", b"three"] {
        s.write_all(msg).unwrap();
        s.write_all(b"\n").unwrap();
        assert_eq!(read_line(&mut s).unwrap(), msg);
    }
}

#[test]
fn raw_ack_with_length_framing() {
    let server = TestServer::start(&["--mode", "ack", "--framing", "length"]);
    let mut s = server.connect();
    write_frame(&mut s, b"anything").unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), b"Mensagem recebida!");
}

#[test]
fn line_edge_cases_empty_crlf_invalid_utf8_and_unterminated_last_line() {
    let server = TestServer::start(&[]);
    let mut s = server.connect();
    // Empty line -> empty reply; `\r` is kept; bytes are not decoded; a last line without `\n`
    // is a message of its own once the client shuts its side down.
    s.write_all(b"\nwin\r\n\xff\xfe\x00bin\nlast").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        read_to_close(&mut s).unwrap(),
        b"\nwin\r\n\xff\xfe\x00bin\nlast\n"
    );
}

#[test]
fn length_edge_cases_zero_length_and_binary_payloads() {
    let server = TestServer::start(&["--framing", "length"]);
    let mut s = server.connect();
    for payload in [&b""[..], b"\n\r\n", b"\xff\x00\xc3"] {
        write_frame(&mut s, payload).unwrap();
        assert_eq!(read_frame(&mut s).unwrap(), payload);
    }
}

#[test]
fn disconnect_mid_frame_is_survived() {
    let server = TestServer::start(&["--framing", "length"]);
    {
        let mut s = server.connect();
        s.write_all(b"\0\0\0\x10half").unwrap();
    } // dropped mid-frame
    {
        let mut s = server.connect();
        s.write_all(b"\0\0").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // Nothing is answered for a truncated frame: the server just closes.
        assert_eq!(read_to_close(&mut s).unwrap(), b"");
    }
    let mut s = server.connect();
    write_frame(&mut s, b"still here").unwrap();
    assert_eq!(read_frame(&mut s).unwrap(), b"still here");
    wait_until("the truncated frame is logged", || {
        server.log().contains("stream ended inside a frame")
    });
}

#[test]
fn socat_round_trip() {
    let server = TestServer::start(&[]);
    let out = sh(
        &format!("socat - UNIX-CONNECT:{}", server.path().display()),
        b"hello\n",
    );
    assert!(
        out.status.success(),
        "socat failed (is it installed?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hello\n");
}

#[test]
fn python_af_unix_client_gets_its_lines_back() {
    let server = TestServer::start(&[]);
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
s.connect(sys.argv[1])
lines = [b"alpha", b"beta", "ol\u00e1".encode(), b"\xff raw"]
s.sendall(b"".join(l + b"\n" for l in lines))
got = b""
while got.count(b"\n") < len(lines):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
assert got.split(b"\n")[:-1] == lines, got
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(server.path())
        .output_within();
    assert!(
        out.status.success(),
        "python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"ok\n");
}

/// `ipc-client bridge` as a remote command's end: stdin and stdout carry the protocol.
fn bridge(server: &TestServer) -> std::process::Child {
    client_cmd()
        .arg("--socket")
        .arg(server.path())
        .arg("bridge")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn bridge_carries_the_plain_protocol_from_stdin_to_stdout() {
    let server = TestServer::start(&[]);
    // The end of stdin ends the sending side; the replies still come, then the bridge ends
    // when the server closes.
    let out = client_cmd()
        .arg("--socket")
        .arg(server.path())
        .arg("bridge")
        .output_fed_within(b"one\ntwo\n");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"one\ntwo\n");
}

#[test]
fn bridge_carries_varlink_calls_while_its_stdin_stays_open() {
    use std::io::{BufRead, BufReader, Write};
    let server = TestServer::start(&["--protocol", "varlink"]);
    let mut child = Reaped(bridge(&server));
    let mut stdin = child.stdin.take().unwrap();
    // Replies are read on a thread, so a stalled bridge fails the test at its deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        loop {
            let mut reply = Vec::new();
            match stdout.read_until(0, &mut reply) {
                Ok(0) | Err(_) => break,
                Ok(_) => tx.send(reply).unwrap(),
            }
        }
    });
    for text in ["first", "second"] {
        let call = format!(
            "{{\"method\":\"io.ipc.Messages.Echo\",\"parameters\":{{\"message\":\"{text}\"}}}}\0"
        );
        stdin.write_all(call.as_bytes()).unwrap();
        stdin.flush().unwrap();
        // No half-close: the reply must come while stdin stays open.
        let reply = rx
            .recv_timeout(PATIENCE)
            .expect("the reply came through the bridge");
        let expected = format!("{{\"parameters\":{{\"message\":\"{text}\"}}}}\0");
        assert_eq!(String::from_utf8_lossy(&reply), expected);
    }
    drop(stdin);
    assert!(wait_within(&mut child).success());
}

#[test]
fn bridge_to_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = client(&dir.path().join("none.sock"), &["bridge"]);
    assert_eq!(out.status.code(), Some(66), "{out:?}");
}
