//! Addresses, and a server reached from another host through ssh: the real binaries, a real
//! `sshd` on 127.0.0.1 started by the test (its own host key and configuration in a temporary
//! directory, key-based login for the user `ipc-ssh-test` that `.ci/setup` creates), and a
//! real `ssh` (OpenSSH 10, which `.ci/setup` provides) named by `IPC_SSH`.

mod support;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::*;

/// The user the tests log in as.
const SSH_USER: &str = "ipc-ssh-test";
/// The host alias the tests' ssh configuration defines.
const HOST: &str = "ipc-test";

/// `sshd` on 127.0.0.1, and a wrapper around `ssh` that uses a configuration for it: host
/// `ipc-test`, the test user, the test's key, the server's host key as the only known one.
struct Sshd {
    dir: tempfile::TempDir,
    _daemon: Reaped,
}

impl Sshd {
    /// Starts it, or says why the test is skipped (`None`): it needs root, to run sshd and to
    /// log in as another user.
    fn start() -> Option<Sshd> {
        if !nix::unistd::getuid().is_root() {
            eprintln!("skipped: sshd and a second user need root (CI runs it as root)");
            return None;
        }
        assert!(
            nix::unistd::User::from_name(SSH_USER).unwrap().is_some(),
            "the user {SSH_USER} is missing: run `bash .ci/setup` once (as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        // The test user reads its authorized keys here, and runs ipc-client from here.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let made = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .output_within();
            assert!(made.status.success(), "ssh-keygen: {made:?}");
        }
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644)).unwrap();
        // sshd's privilege separation directory (.ci/setup makes it too).
        fs::create_dir_all("/run/sshd").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d_ = d.display();
        fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d_}/host_key\n\
                 PidFile {d_}/sshd.pid\nAuthorizedKeysFile {d_}/authorized_keys\n\
                 StrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nAllowUsers {SSH_USER}\nLogLevel VERBOSE\n"
            ),
        )
        .unwrap();
        let host_key = fs::read_to_string(d.join("host_key.pub")).unwrap();
        fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{port} {host_key}"),
        )
        .unwrap();
        fs::write(
            d.join("ssh_config"),
            format!(
                "Host {HOST}\n  HostName 127.0.0.1\n  Port {port}\n  User {SSH_USER}\n  \
                 IdentityFile {d_}/client_key\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {d_}/known_hosts\n  StrictHostKeyChecking yes\n  \
                 BatchMode yes\n  LogLevel ERROR\n"
            ),
        )
        .unwrap();
        for (name, ssh) in [("ssh", tool("ssh")), ("system-ssh", PathBuf::from("ssh"))] {
            let wrapper = d.join(name);
            fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\nexec {} -F {d_}/ssh_config \"$@\"\n",
                    ssh.display()
                ),
            )
            .unwrap();
            fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        }
        // ipc-client, where the test user may run it as the far end of ssh-exec:.
        fs::copy(client_bin(), d.join("ipc-client")).unwrap();
        let log = fs::File::create(d.join("sshd.log")).unwrap();
        let daemon = Reaped(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(d.join("sshd_config"))
                .stdin(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start /usr/sbin/sshd (bash .ci/setup installs it)"),
        );
        wait_until("sshd listens", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(Sshd {
            dir,
            _daemon: daemon,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ipc-client --socket ADDRESS ARGS...`, with `IPC_SSH` naming the wrapper of OpenSSH 10.
    fn client(&self, address: &str, args: &[&str]) -> Output {
        self.client_with("ssh", address, args)
    }

    /// The same, through the wrapper `ssh` (OpenSSH 10) or `system-ssh` (the system's).
    fn client_with(&self, ssh: &str, address: &str, args: &[&str]) -> Output {
        client_cmd()
            .env("IPC_SSH", self.path(ssh))
            .arg("--socket")
            .arg(address)
            .args(args)
            .output_within()
    }

    /// A server in a directory the test user may enter, on a socket it may connect to.
    fn server(&self, args: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("ipc.sock");
        let mut all = vec!["--socket-mode", "0666"];
        all.extend_from_slice(args);
        TestServer::start_at(dir, path, &all)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- sshd log ---\n{}", self.log());
        }
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ssh_unix(server: &TestServer) -> String {
    format!("ssh-unix:{HOST}:{}", server.path().display())
}

fn ssh_exec_bridge(sshd: &Sshd, server: &TestServer) -> String {
    format!(
        "ssh-exec:{SSH_USER}@{HOST}:{} bridge --socket {}",
        sshd.path("ipc-client").display(),
        server.path().display()
    )
}

/// 200 messages, pipelined on one connection: every reply comes back, in order.
fn messages() -> Vec<String> {
    (0..200)
        .map(|i| format!("message {i} {}", "x".repeat(i * 7)))
        .collect()
}

fn expected(messages: &[String]) -> String {
    messages.iter().map(|m| format!("{m}\n")).collect()
}

#[test]
fn unix_addresses_reach_local_servers_and_other_schemes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let address = format!("unix:{}", path.display());
    let mut server = Reaped(
        server_cmd()
            .args(["--socket", &address, "-q"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the server accepts", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    // The server took `unix:PATH` as the path, not as a file named so.
    assert!(!dir.path().join("unix:").exists());
    let out = client(Path::new(&address), &["send", "one", "two"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "one\ntwo\n");
    let out = client(Path::new(&address), &["ping"]);
    assert_eq!(stdout(&out), format!("live: {}\n", path.display()));
    let _ = server.0.kill();

    // An abstract name, written both ways.
    let name = format!("ipc-remote-test-{}", std::process::id());
    let _server = Reaped(
        server_cmd()
            .args(["--socket", &format!("unix:@{name}"), "-q"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until("the abstract server accepts", || {
        client(Path::new(&format!("@{name}")), &["ping"])
            .status
            .success()
    });
    let out = client(Path::new(&format!("unix:@{name}")), &["send", "abstract"]);
    assert_eq!(stdout(&out), "abstract\n", "{out:?}");

    // Schemes this version does not speak are refused by name, as usage errors.
    let out = client(Path::new("vsock:3:9"), &["send", "x"]);
    assert_eq!(code(out.status), 64, "{out:?}");
    assert!(stderr(&out).contains("vsock: addresses are not supported"));
    // A tcp: address needs TLS settings (tests/tls.rs has the rest).
    let out = client(Path::new("tcp:127.0.0.1:9"), &["send", "x"]);
    assert_eq!(code(out.status), 80, "{out:?}");
    assert!(stderr(&out).contains("--tls-ca"), "{out:?}");
    // A server listens on this host only; ping and bridge probe this host's sockets.
    let out = server_cmd()
        .args(["--socket", "ssh-unix:box:/run/ipc.sock"])
        .output_within();
    assert_eq!(code(out.status), 64, "{out:?}");
    assert!(stderr(&out).contains("listens on a socket of this host"));
    let out = client(Path::new("ssh-unix:box:/run/ipc.sock"), &["ping"]);
    assert_eq!(code(out.status), 64, "{out:?}");
    let out = client_cmd()
        .args(["bridge", "ssh-exec:box:cat"])
        .output_within();
    assert_eq!(code(out.status), 64, "{out:?}");
}

#[test]
fn ssh_unix_reaches_a_remote_socket_as_the_user_ssh_logs_in_as() {
    let Some(sshd) = Sshd::start() else { return };
    let uid = nix::unistd::User::from_name(SSH_USER)
        .unwrap()
        .unwrap()
        .uid
        .to_string();
    // Only the ssh user is admitted: a local connection of root's is not.
    let server = sshd.server(&["--allow-uid", &uid]);
    let refused = server.client(&["send", "from root"]);
    assert!(!refused.status.success(), "{refused:?}");

    let messages = messages();
    let mut args = vec!["send"];
    args.extend(messages.iter().map(String::as_str));
    let out = sshd.client(&ssh_unix(&server), &args);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), expected(&messages));
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {SSH_USER}")),
        "{}",
        sshd.log()
    );
}

#[test]
fn ssh_exec_carries_both_protocols_through_a_remote_bridge() {
    let Some(sshd) = Sshd::start() else { return };
    let plain = sshd.server(&[]);
    let messages = messages();
    let mut args = vec!["send"];
    args.extend(messages.iter().map(String::as_str));
    let out = sshd.client(&ssh_exec_bridge(&sshd, &plain), &args);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), expected(&messages));

    let varlink = sshd.server(&["--protocol", "varlink"]);
    let address = ssh_exec_bridge(&sshd, &varlink);
    let out = sshd.client(
        &address,
        &["call", "io.ipc.Messages.Echo", r#"{"message":"über ssh"}"#],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        json_values(&stdout(&out)),
        [serde_json::json!({"message": "über ssh"})]
    );
    // Descriptors cannot cross ssh: refused before anything is sent.
    let out = sshd.client(
        &address,
        &[
            "call",
            "io.ipc.Messages.Echo",
            "{}",
            "--push-fd",
            "/dev/null",
        ],
    );
    assert_eq!(code(out.status), 64, "{out:?}");
    assert!(stderr(&out).contains("cannot be passed through ssh"));
}

#[test]
fn one_way_calls_through_ssh_reach_the_server_after_the_client_exits() {
    let Some(sshd) = Sshd::start() else { return };
    let server = sshd.server(&["--protocol", "varlink"]);
    // Each ipc-client writes its call and exits at once, before ssh may even have logged in:
    // what it wrote must still reach the server.
    const CALLS: u64 = 10;
    for i in 0..CALLS {
        let out = sshd.client(
            &ssh_unix(&server),
            &[
                "call",
                "--oneway",
                "io.ipc.Messages.Echo",
                &format!(r#"{{"message":"one-way {i}"}}"#),
            ],
        );
        assert!(out.status.success(), "{out:?}");
    }
    // Stats counts itself too: the k-th look sees CALLS + k calls once all have arrived.
    let mut looks = 0;
    wait_until("every one-way call reached the server", || {
        looks += 1;
        let out = server.client(&["call", "io.ipc.Server.Stats"]);
        json_values(&stdout(&out))[0]["calls"] == serde_json::json!(CALLS + looks)
    });
}

#[test]
fn a_remote_end_that_dies_mid_call_is_an_error_with_its_status_not_a_hang() {
    let Some(sshd) = Sshd::start() else { return };
    // Reads part of the message, then exits.
    let out = sshd.client(
        &format!("ssh-exec:{HOST}:head -c 3 >/dev/null; exit 3"),
        &["--timeout", "0", "send", "hello"],
    );
    assert_eq!(code(out.status), 69, "{out:?}");
    assert!(
        stderr(&out).contains("ssh ended before the reply (ssh exit status: 3"),
        "{out:?}"
    );
    // Writes half a reply (length framing: a header announcing 100 bytes, and 2 of them).
    let out = sshd.client(
        &format!(r"ssh-exec:{HOST}:printf '\000\000\000\144ab'; exit 4"),
        &["--timeout", "0", "--framing", "length", "send", "hello"],
    );
    assert_ne!(code(out.status), 0, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    // The remote socket is not there: ssh says so and exits.
    let out = sshd.client(
        &format!("ssh-unix:{HOST}:/nonexistent/ipc.sock"),
        &["send", "hello"],
    );
    assert_eq!(code(out.status), 69, "{out:?}");
    assert!(stderr(&out).contains("ssh exit status: 255"), "{out:?}");
}

#[test]
fn ssh_that_cannot_log_in_start_or_forward_says_why() {
    let Some(sshd) = Sshd::start() else { return };
    let server = sshd.server(&[]);
    // A user the server does not let in (AllowUsers).
    let out = sshd.client(
        &format!("ssh-unix:root@{HOST}:{}", server.path().display()),
        &["send", "x"],
    );
    assert_eq!(code(out.status), 69, "{out:?}");
    assert!(stderr(&out).contains("ssh exit status: 255"), "{out:?}");
    // No ssh to run.
    let out = client_cmd()
        .env("IPC_SSH", "/nonexistent/ssh")
        .args(["--socket", &ssh_unix(&server), "send", "x"])
        .output_within();
    assert_eq!(code(out.status), 69, "{out:?}");
    assert!(
        stderr(&out).contains("cannot start /nonexistent/ssh"),
        "{out:?}"
    );
    // The system's ssh: an OpenSSH older than 9.4 would log in and forward nothing, so it is
    // refused with the way out; a newer one works.
    let version = Command::new("ssh").arg("-V").output_within();
    let version = stderr(&version);
    let out = sshd.client_with("system-ssh", &ssh_unix(&server), &["send", "x"]);
    let (major, minor) = version
        .strip_prefix("OpenSSH_")
        .and_then(|v| v.split_once('.'))
        .map(|(major, rest)| {
            let minor: String = rest.chars().take_while(char::is_ascii_digit).collect();
            (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap())
        })
        .expect("ssh -V names an OpenSSH");
    if (major, minor) < (9, 4) {
        assert_eq!(code(out.status), 64, "{version}: {out:?}");
        assert!(stderr(&out).contains("needs OpenSSH 9.4"), "{out:?}");
        // The way out it names works with the same ssh.
        let out = sshd.client_with(
            "system-ssh",
            &ssh_exec_bridge(&sshd, &server),
            &["send", "x"],
        );
        assert_eq!(stdout(&out), "x\n", "{out:?}");
    } else {
        assert_eq!(stdout(&out), "x\n", "{version}: {out:?}");
    }
}

#[test]
fn varlinkctl_reaches_the_server_through_the_same_ssh_unix_address() {
    let Some(sshd) = Sshd::start() else { return };
    let server = sshd.server(&["--protocol", "varlink"]);
    let out = Command::new(tool("varlinkctl"))
        .env("SYSTEMD_SSH", sshd.path("ssh"))
        .args(["call", &ssh_unix(&server), "io.ipc.Messages.Echo"])
        .arg(r#"{"message":"from varlinkctl"}"#)
        .output_within();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        json_values(&stdout(&out)),
        [serde_json::json!({"message": "from varlinkctl"})]
    );
}
