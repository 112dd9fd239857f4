//! Each example in `examples/` runs and does what its header comment says.

use std::process::Stdio;

mod support;
use support::*;

/// Starts a long-running example on a temp socket; returns it, its socket path and the temp dir.
fn start(name: &str) -> (std::process::Child, std::path::PathBuf, tempfile::TempDir) {
    start_with(name, &[])
}

/// As [`start`], with more arguments after the socket path.
fn start_with(
    name: &str,
    args: &[&str],
) -> (std::process::Child, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.sock"));
    let child = example_cmd(name)
        .arg(&path)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the example listens", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    (child, path, dir)
}

/// What `cmd` printed, once it succeeded (its stderr otherwise).
fn stdout_of(mut cmd: std::process::Command) -> String {
    let out = cmd.output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
fn descriptors_example_streams_into_the_pipe_it_was_handed() {
    let (child, path, _dir) = start("descriptors");
    // Python's standard send_fds as the client: a pipe's write end with the request; the lines
    // come through the pipe, the count as the reply; a request without one is told so.
    let script = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
r, w = os.pipe()
socket.send_fds(s, [b"lines 5000\n"], [w])
os.close(w)
with os.fdopen(r, "rb") as pipe:
    lines = pipe.read().decode().splitlines()
print(len(lines), lines[0], lines[-1])
f = s.makefile("rb")
print(f.readline().decode().strip())
s.sendall(b"lines 1\n")
print(f.readline().decode().strip())
"#;
    let mut python = std::process::Command::new("python3");
    python.args(["-c", script]).arg(&path);
    assert_eq!(
        stdout_of(python),
        "5000 line 1 line 5000\nstreamed 5000 lines\nerror: no descriptor came with the request\n"
    );
    stop(child, &path);
}

#[test]
fn descriptors_example_hands_a_file_to_a_peer_that_may_not_open_it() {
    // Two real users: the test runs as root and starts the other one with setpriv.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: running as two users needs root (CI runs it as root)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let served = tempfile::tempdir().unwrap();
    let notes = served.path().join("notes.txt");
    std::fs::write(&notes, "for the server's eyes").unwrap();
    // Only root may read the file, or even look into its directory.
    std::fs::set_permissions(&notes, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(served.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (child, path, dir) = start_with("descriptors", &[served.path().to_str().unwrap()]);
    // nobody may reach the socket.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Python's standard recv_fds as nobody's client: it cannot open the file itself, and
    // reads it through the descriptor the server sends back.
    let script = r#"
import os, socket, sys
try:
    open(sys.argv[2])
    print("opened it myself")
except PermissionError:
    print("denied")
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
for request in [b"open notes.txt\n", b"open ../etc\n"]:
    s.sendall(request)
    msg, fds, _, _ = socket.recv_fds(s, 1000, 4)
    print(msg.decode().strip(), len(fds))
    for fd in fds:
        print(os.read(fd, 100).decode())
        os.close(fd)
"#;
    // The system's Python: one under root's home is not nobody's to run.
    let mut python = as_nobody("--clear-groups", "/usr/bin/python3");
    python.args(["-c", script]).arg(&path).arg(&notes);
    assert_eq!(
        stdout_of(python),
        "denied\nopened notes.txt 1\nfor the server's eyes\nerror: give a plain file name 0\n"
    );
    stop(child, &path);
}

#[test]
fn restart_example_hands_its_socket_over_on_sigusr2() {
    let (mut child, path, _dir) = start("restart");
    let served_by = || {
        let out = client(&path, &["send", "who"]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let first = served_by();
    assert_eq!(first, format!("served by pid {}\n", child.id()));
    // Clients keep coming while it restarts: none is refused, each is answered.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let looping = {
        let (path, stop) = (path.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut answered = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let out = client(&path, &["send", "x"]);
                assert!(out.status.success(), "{out:?}");
                assert!(out.stdout.starts_with(b"served by pid "));
                answered += 1;
            }
            answered
        })
    };
    signal(&child, Signal::SIGUSR2);
    // The old process drains and exits; the new one serves.
    assert!(wait_within(&mut child).success());
    let second = served_by();
    assert_ne!(second, first);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(looping.join().unwrap() > 0);
    let pid: i32 = second.trim().rsplit(' ').next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).unwrap();
    wait_until("the new process removed the socket", || !path.exists());
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

#[test]
fn boxed_example_serves_the_handler_named_on_its_command_line() {
    for (mode, expected) in [
        ("upper", "HELLO\n"),
        ("echo", "hello\n"),
        ("ack", "Mensagem recebida!\n"),
    ] {
        let (child, path, _dir) = start_with("boxed", &[mode]);
        assert_eq!(
            String::from_utf8_lossy(&client(&path, &["send", "hello"]).stdout),
            expected
        );
        stop(child, &path);
    }
}

#[test]
fn tower_example_limits_the_time_of_a_call() {
    let (child, path, _dir) = start("tower");
    let out = client(&path, &["send", "10"]);
    assert_eq!(out.stdout, b"took 10 ms\n", "{out:?}");
    // Past the 1 s timeout layer: the call fails and the connection closes, with no reply.
    let out = client(&path, &["--timeout", "10", "send", "5000"]);
    assert_eq!(code(out.status), 76, "{out:?}");
    // Others are still served.
    assert_eq!(client(&path, &["send", "20"]).stdout, b"took 20 ms\n");
    stop(child, &path);
}

#[test]
fn sessions_example_keeps_one_total_per_connection() {
    let (child, path, _dir) = start("sessions");
    assert_eq!(client(&path, &["send", "1", "2", "3"]).stdout, b"1\n3\n6\n");
    assert_eq!(client(&path, &["send", "10", "5"]).stdout, b"10\n15\n");
    // Connections that came and went left nothing behind: only the asking one is open.
    assert_eq!(client(&path, &["send", "open"]).stdout, b"1\n");
    stop(child, &path);
}

#[test]
fn concurrent_example_overlaps_the_calls_of_one_connection() {
    let out = example_cmd("concurrent").output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "{text}");
    for (i, line) in lines[..8].iter().enumerate() {
        assert_eq!(*line, format!("request {}", i + 1), "in order: {text}");
    }
    // One after another they would take 400 ms.
    let ms: u64 = lines[8]
        .strip_prefix("8 requests of 50 ms each in ")
        .and_then(|r| r.strip_suffix(" ms"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(ms < 300, "{text}");
}

#[test]
fn varlink_example_adds_refuses_and_streams_changes() {
    let (child, path, _dir) = start("varlink");
    // A watcher first: it sees the value now, then each change.
    let mut watcher = Reaped(
        client_cmd()
            .arg("--socket")
            .arg(&path)
            .args(["call", "org.example.counter.Watch", "--more"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines =
        std::io::BufRead::lines(std::io::BufReader::new(watcher.stdout.take().unwrap()));
    assert_eq!(lines.next().unwrap().unwrap(), r#"{"value":0}"#);
    let out = client(&path, &["call", "org.example.counter.Add", r#"{"by": 2}"#]);
    assert_eq!(out.stdout, b"{\"value\":2}\n");
    let out = client(&path, &["call", "org.example.counter.Add", r#"{"by": 0}"#]);
    assert_eq!(code(out.status), 79);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"org.example.counter.BadStep {"by":0}"#)
    );
    // The same call from Python, with the reference package.
    let script = "import sys, varlink\n\
        with varlink.Client(address='unix:' + sys.argv[1]) as c, c.open('org.example.counter') as counter:\n\
        \x20   print(counter.Add(3)['value'])\n";
    let out = std::process::Command::new(varlink_python())
        .args(["-c", script])
        .arg(&path)
        .output_within();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "5\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(lines.next().unwrap().unwrap(), r#"{"value":2}"#);
    assert_eq!(lines.next().unwrap().unwrap(), r#"{"value":5}"#);
    let out = client(&path, &["introspect", "org.example.counter"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("error BadStep (by: int)"));
    stop(child, &path);
    // The watcher's stream ended with the shutdown error.
    assert_eq!(code(wait_within(&mut watcher)), 79);
}

#[test]
fn varlink_example_lets_only_its_group_add_and_everyone_read() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: running as another user needs root (CI runs it as root)");
        return;
    }
    // Two real users: nobody without the group, and nobody with it as a supplementary group.
    let (child, path, dir) = start_with("varlink", &["4243"]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let calls = |groups: &str, calls: &[&str]| {
        let out = as_nobody(groups, "php")
            .arg(peer("varlink_calls.php"))
            .arg(&path)
            .args(calls)
            .output_within();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let add = r#"{"method": "org.example.counter.Add", "parameters": {"by": 2}}"#;
    let get = r#"{"method": "org.example.counter.Get"}"#;
    // Refused, then allowed, on the same connection.
    let replies = calls("--clear-groups", &[add, get]);
    let lines: Vec<&str> = replies.lines().collect();
    assert_eq!(
        lines,
        [
            r#"{"error":"org.varlink.service.PermissionDenied","parameters":{}}"#,
            r#"{"parameters":{"value":0}}"#
        ],
        "{replies}"
    );
    // A member adds; everyone sees it.
    assert_eq!(
        calls("--groups=4243", &[add]),
        "{\"parameters\":{\"value\":2}}\n"
    );
    assert_eq!(
        calls("--clear-groups", &[get]),
        "{\"parameters\":{\"value\":2}}\n"
    );
    stop(child, &path);
}
