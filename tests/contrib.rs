//! What `contrib/` ships works as shipped: the systemd service's command line and environment
//! serve a socket with the mode the unit asks for, and the AppArmor profile lets in every signal
//! that stops the server. (`.ci/check-contrib` checks the units with `systemd-analyze verify`
//! and the profile with `apparmor_parser`.)

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

mod support;
use support::*;

fn contrib(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path);
    fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The value of every `KEY=` line of a unit, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_service_unit_runs_as_written() {
    let unit = contrib("systemd/ipc-server.service");
    let exec = unit_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    let mut words = exec[0].split_whitespace();
    assert_eq!(
        words.next(),
        Some("/usr/local/bin/ipc-server"),
        "where the README installs it"
    );
    // The unit's socket is in its RuntimeDirectory (/run/ipc); here, in a temp dir.
    assert_eq!(unit_values(&unit, "RuntimeDirectory"), ["ipc"]);
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().to_str().unwrap().to_owned();
    let args: Vec<String> = words.map(|w| w.replace("/run/ipc", &run)).collect();
    let mut cmd = server_cmd();
    clean_env(&mut cmd);
    for assignment in unit_values(&unit, "Environment")
        .iter()
        .flat_map(|line| line.split_whitespace())
    {
        let (name, value) = assignment.split_once('=').unwrap();
        cmd.env(name, value);
    }
    let path = dir.path().join("ipc.sock");
    let log = dir.path().join("log");
    let mut child = Reaped(
        cmd.args(&args)
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the unit's server listens", || {
        std::os::unix::net::UnixStream::connect(&path).is_ok()
    });
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o660, "the unit's --socket-mode");
    let mut conn = connect(&path);
    std::io::Write::write_all(&mut conn, b"unit\n").unwrap();
    assert_eq!(read_line(&mut conn).unwrap(), b"unit");
    drop(conn);
    signal(&child.0, Signal::SIGTERM);
    let log = fs::read_to_string(&log).unwrap();
    assert!(wait_within(&mut child.0).success(), "{log}");
    let log = fs::read_to_string(dir.path().join("log")).unwrap();
    // --log-format json: every line is a JSON object, the limits among the start-up fields.
    let listening = log
        .lines()
        .find(|l| l.contains("\"listening\""))
        .unwrap_or_else(|| panic!("{log}"));
    for field in [
        "\"max_connections\":1024",
        "\"idle_timeout_secs\":60.0",
        "\"shutdown_timeout_secs\":10.0",
    ] {
        assert!(listening.contains(field), "{field} in {listening}");
    }
    assert!(
        log.lines().all(|l| l.starts_with('{') && l.ends_with('}')),
        "{log}"
    );
}

#[test]
fn the_service_unit_restarts_without_refusing_anyone() {
    let unit = contrib("systemd/ipc-server.service");
    // A reload is the server's seamless restart signal...
    assert_eq!(
        unit_values(&unit, "ExecReload"),
        ["/bin/kill -USR2 $MAINPID"]
    );
    assert!(
        server_cmd()
            .arg("--help")
            .output_within()
            .stdout
            .windows(b"SIGUSR2 restarts it seamlessly".len())
            .any(|w| w == b"SIGUSR2 restarts it seamlessly"),
        "SIGUSR2 is the restart signal"
    );
    // ...and a restart keeps the socket and its lock in the descriptor store.
    let max: Vec<u32> = unit_values(&unit, "FileDescriptorStoreMax")
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(matches!(max[..], [n] if n >= 2), "{max:?}");
}

#[test]
fn the_socket_unit_and_the_service_agree() {
    let socket = contrib("systemd/ipc-server.socket");
    let service = contrib("systemd/ipc-server.service");
    assert_eq!(unit_values(&socket, "ListenStream"), ["/run/ipc/ipc.sock"]);
    assert!(
        service.contains("--socket /run/ipc/ipc.sock"),
        "the same path alone"
    );
    // The group the socket is shared with is the one the sysusers file creates.
    let sysusers = contrib("systemd/ipc-server.sysusers");
    assert!(
        sysusers.lines().any(|l| l.starts_with("u ipc ")),
        "{sysusers}"
    );
    assert_eq!(unit_values(&socket, "SocketGroup"), ["ipc"]);
    assert_eq!(unit_values(&service, "User"), ["ipc"]);
}

#[test]
fn the_apparmor_profile_lets_in_every_stop_signal() {
    let profile = contrib("apparmor/usr.local.bin.ipc-server");
    let set = profile
        .lines()
        .find_map(|l| l.trim().strip_prefix("signal (receive) set=("))
        .and_then(|rest| rest.split_once(')'))
        .map(|(set, _)| {
            set.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| panic!("no signal (receive) rule in:\n{profile}"));
    for (_, name) in localipc_server::signal::STOP_SIGNALS {
        let short = name.trim_start_matches("SIG").to_ascii_lowercase();
        assert!(
            set.contains(&short),
            "{name} stops the server, but the profile refuses it: {set:?}"
        );
    }
    assert!(
        profile.contains("/usr/local/bin/ipc-server {"),
        "the install path"
    );
}
