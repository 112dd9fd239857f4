//! Running as a daemon and from scripts: systemd socket activation and readiness, log formats
//! and verbosity, completions and man pages, environment variables, and the scriptable client
//! (`send -`, several messages, `--raw`, `ping`).

use std::io::Read;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::process::{Command, Stdio};

mod support;
use support::*;

/// Runs ipc-server as systemd would: a listening socket on fd 3, LISTEN_FDS=1 and LISTEN_PID
/// naming the server's own process (Python keeps its pid across exec).
#[test]
fn serves_a_socket_activated_listener_and_never_unlinks_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let log = dir.path().join("log");
    let script = r#"
import os, socket, sys
path, binary, log = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)  # dup2 onto itself keeps close-on-exec
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
err = os.open(log, os.O_WRONLY | os.O_CREAT)
os.dup2(err, 2)
os.execv(binary, [binary, "--mode", "ack", "--socket", "/nonexistent/ignored.sock"])
"#;
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&path)
        .arg(server_bin())
        .arg(&log)
        .env("RUST_LOG", "debug")
        .spawn()
        .unwrap();
    let out = {
        let mut got = None;
        wait_until("the activated server answers", || {
            let out = client(&path, &["--timeout", "1", "send", "x"]);
            let ok = out.status.success();
            got = Some(out);
            ok
        });
        got.unwrap()
    };
    assert_eq!(out.stdout, "Mensagem recebida!\n".as_bytes());
    signal(&child, Signal::SIGTERM);
    assert!(wait_within(&mut child).success());
    // systemd owns the socket file: it is still there.
    assert!(path.exists(), "the activated socket was unlinked");
    assert!(!std::path::Path::new("/nonexistent/ignored.sock").exists());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("using the sockets passed in"), "{log}");
}

#[test]
fn sends_ready_and_stopping_to_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let path = dir.path().join("s.sock");
    let mut child = server_cmd()
        .arg("--socket")
        .arg(&path)
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"READY=1\n");
    // Ready means connectable.
    assert_eq!(client(&path, &["send", "up"]).stdout, b"up\n");
    signal(&child, Signal::SIGTERM);
    let n = sock.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"STOPPING=1\n");
    assert!(wait_within(&mut child).success());
}

#[test]
fn json_logs_and_verbosity_flags() {
    let mut server = TestServer::start(&["--log-format", "json", "-v"]);
    server.client(&["send", "x"]);
    server.signal(Signal::SIGTERM);
    server.wait();
    let log = server.log();
    let mut levels = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        levels.push(v["level"].as_str().unwrap().to_owned());
    }
    assert!(levels.iter().any(|l| l == "INFO"), "{log}");

    // -q keeps only warnings, even with RUST_LOG unset.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.sock");
    let quiet = server_cmd()
        .args(["-q", "--socket"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the quiet server listens", || path.exists());
    signal(&quiet, Signal::SIGTERM);
    let mut quiet = quiet;
    assert!(wait_within(&mut quiet).success());
    let mut stderr = String::new();
    quiet
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn completions_and_man_pages() {
    for binary in ["ipc-server", "ipc-client"] {
        for (shell, marker) in [
            (
                "bash",
                format!("complete -F _{}", binary.replace('-', "__")),
            ),
            ("zsh", format!("#compdef {binary}")),
            ("fish", format!("complete -c {binary}")),
        ] {
            let out = binary_cmd(binary)
                .args(["completions", shell])
                .output_within();
            assert!(out.status.success());
            let text = String::from_utf8(out.stdout).unwrap();
            assert!(
                text.contains(&marker),
                "{binary} {shell}: {marker:?} missing"
            );
            assert!(text.contains("socket"), "{binary} {shell}");
        }
        let out = binary_cmd(binary).arg("man").output_within();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(&format!(".TH {binary} 1")), "{text}");
        assert!(text.contains("socket"));
        // The variables behind the flags are listed.
        assert!(text.contains(".SH ENVIRONMENT"), "{text}");
        for var in [
            "IPC_SOCKET",
            "IPC_FRAMING",
            "IPC_MAX_FRAME",
            "IPC_LOG_FORMAT",
        ] {
            assert!(
                text.contains(var),
                "{binary}: {var} missing from the man page"
            );
        }
        let only = if binary == "ipc-server" {
            ["IPC_IDLE_TIMEOUT", "IPC_REQUEST_TIMEOUT"]
        } else {
            ["IPC_TIMEOUT", "IPC_RAW_QUIET"]
        };
        for var in only {
            assert!(
                text.contains(var),
                "{binary}: {var} missing from the man page"
            );
        }
    }
}

#[test]
fn environment_variables_set_the_flags_in_both_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("env.sock");
    let mut server = server_cmd()
        .env("IPC_SOCKET", &path)
        .env("IPC_MODE", "ack")
        .env("IPC_ACK_TEXT", "env ok")
        .env("IPC_FRAMING", "length")
        .env("IPC_SOCKET_MODE", "0640")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the socket exists", || path.exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o640);
    let out = client_cmd()
        .env("IPC_SOCKET", &path)
        .env("IPC_FRAMING", "length")
        .args(["send", "x"])
        .output_within();
    assert_eq!(out.stdout, b"env ok\n");
    server.kill().unwrap();
    wait_within(&mut server);
}

#[test]
fn send_reads_stdin_sends_several_and_writes_raw() {
    let server = TestServer::start(&[]);
    let out = client_cmd()
        .arg("--socket")
        .arg(server.path())
        .args(["send", "-"])
        .output_fed_within(b"from stdin\n");
    assert_eq!(out.stdout, b"from stdin\n");

    let out = server.client(&["send", "a", "b", "c"]);
    assert_eq!(out.stdout, b"a\nb\nc\n");
    let out = server.client(&["send", "--raw", "a", "b"]);
    assert_eq!(out.stdout, b"ab");
}

#[test]
fn ping_tells_each_state_with_its_own_exit_code() {
    let server = TestServer::start(&[]);
    let out = server.client(&["ping"]);
    assert_eq!(code(out.status), 0);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("live: "));

    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    for (path, expected, word) in [
        (stale, 69, "stale socket"),
        (file, 78, "not a socket"),
        (dir.path().join("none"), 66, "nothing there"),
    ] {
        let out = client(&path, &["status"]);
        assert_eq!(code(out.status), expected, "{word}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{word}: {}\n", path.display())
        );
    }
    // The help lists every code ping can return.
    let help = client(dir.path(), &["ping", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for code in ["0", "75", "69", "78", "66", "77"] {
        assert!(help.contains(code), "{code} missing from: {help}");
    }
}

#[test]
fn ping_calls_live_only_a_server_that_answers() {
    // A stopped server still holds its socket, and the kernel still queues connections to it:
    // ping must not call it live.
    let server = TestServer::start(&[]);
    server.signal(Signal::SIGSTOP);
    let out = server.client(&["--timeout", "0.5", "ping"]);
    server.signal(Signal::SIGCONT);
    assert_eq!(code(out.status), 75, "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("not answering: {}\n", server.path().display())
    );
    // Running again, it answers; ping sent it no message.
    let out = server.client(&["ping"]);
    assert_eq!(code(out.status), 0, "{out:?}");
    wait_until("the server logs both pings", || {
        server.log().matches("answered=0").count() >= 2
    });
    assert!(!server.log().contains("answered=1"), "{}", server.log());
}

#[test]
fn subcommands_refuse_flags_they_do_not_use() {
    let server = TestServer::start(&[]);
    for args in [
        &["ping", "--framing", "length"][..],
        &["ping", "--max-frame", "10"],
        &["--raw-quiet", "1", "ping"],
        &["call", "io.ipc.Messages.Echo", "--framing", "nul"],
        &["introspect", "--raw-quiet", "1"],
    ] {
        let out = server.client(args);
        assert_eq!(code(out.status), 64, "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not use --"), "{args:?}: {err}");
    }
    // From the environment they are let through (IPC_FRAMING is often set for every command).
    let out = client_cmd()
        .env("IPC_FRAMING", "length")
        .args(["--socket", server.path().to_str().unwrap(), "ping"])
        .output_within();
    assert_eq!(code(out.status), 0, "{out:?}");
    // --framing errors and help name every framing.
    let out = server.client(&["--framing", "tlv", "send", "x"]);
    assert_eq!(code(out.status), 64);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line, length, nul, raw"), "{err}");
    let help = server.client(&["send", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("`nul`"));
}
