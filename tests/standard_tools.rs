//! The Varlink clients users already have, against the real `ipc-server --protocol varlink`:
//! systemd's `varlinkctl` (257, from Debian 13, which `.ci/setup` unpacks into the target
//! directory) and the Rust reference command line `varlink` (crate varlink-cli).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;

mod support;
use support::*;

fn varlink_server(args: &[&str]) -> TestServer {
    let mut all = vec!["--protocol", "varlink"];
    all.extend_from_slice(args);
    TestServer::start(&all)
}

fn address(server: &TestServer) -> String {
    format!("unix:{}", server.path().display())
}

fn calls_so_far(address: &str) -> i64 {
    let stats = varlinkctl_ok(&["call", address, "io.ipc.Server.Stats", "{}"]);
    json_values(&stats)[0]["calls"].as_i64().unwrap()
}

#[test]
fn varlinkctl_info_and_list_interfaces() {
    let server = varlink_server(&[]);
    let info = varlinkctl_ok(&["info", &address(&server)]);
    for line in [
        "Vendor: localipc",
        "Product: ipc-server",
        "URL: https://crates.io/crates/localipc-cli",
    ] {
        assert!(info.lines().any(|l| l.trim() == line), "{line} in:\n{info}");
    }
    let info = varlinkctl_ok(&["--json=short", "info", &address(&server)]);
    let info = &json_values(&info)[0];
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    let list = varlinkctl_ok(&["list-interfaces", &address(&server)]);
    let mut names: Vec<_> = list.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["io.ipc.Messages", "io.ipc.Server", "org.varlink.service"]
    );
}

#[test]
fn varlinkctl_validates_every_interface_we_ship() {
    let server = varlink_server(&[]);
    let dir = tempfile::tempdir().unwrap();
    let mut interfaces = vec![
        (address(&server), "io.ipc.Messages"),
        (address(&server), "io.ipc.Server"),
        (address(&server), "org.varlink.service"),
    ];
    // The example service's interface too.
    let example_path = dir.path().join("counter.sock");
    let _example = Reaped(example_cmd("varlink").arg(&example_path).spawn().unwrap());
    wait_until("the example listens", || {
        std::os::unix::net::UnixStream::connect(&example_path).is_ok()
    });
    interfaces.push((
        format!("unix:{}", example_path.display()),
        "org.example.counter",
    ));
    for (address, interface) in interfaces {
        let idl = varlinkctl_ok(&["introspect", &address, interface]);
        assert!(idl.contains(&format!("interface {interface}")), "{idl}");
        let file = dir.path().join(format!("{interface}.varlink"));
        std::fs::write(&file, &idl).unwrap();
        let out = varlinkctl(&["validate-idl", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{interface} fails validate-idl: {out:?}\n{idl}"
        );
    }
}

#[test]
fn varlinkctl_calls_streams_oneway_and_errors() {
    let server = varlink_server(&[]);
    let at = address(&server);
    let reply = varlinkctl_ok(&["call", &at, "io.ipc.Messages.Echo", r#"{"message": "olá"}"#]);
    assert_eq!(json_values(&reply), [serde_json::json!({"message": "olá"})]);

    let replies = varlinkctl_ok(&[
        "call",
        "--more",
        &at,
        "io.ipc.Messages.Count",
        r#"{"count": 3, "message": "m"}"#,
    ]);
    let indices: Vec<_> = json_values(&replies)
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);

    let before = calls_so_far(&at);
    let out = varlinkctl_ok(&[
        "call",
        "--oneway",
        &at,
        "io.ipc.Messages.Echo",
        r#"{"message": "x"}"#,
    ]);
    assert_eq!(out, "", "a one-way call prints nothing");
    wait_until("the one-way call is served", || {
        calls_so_far(&at) >= before + 2
    });

    // Error replies: varlinkctl exits non-zero and names the error.
    for (method, parameters, error) in [
        (
            "io.ipc.Messages.Nope",
            "{}",
            "org.varlink.service.MethodNotFound",
        ),
        (
            "io.ipc.Messages.Echo",
            "{}",
            "org.varlink.service.InvalidParameter",
        ),
        (
            "io.ipc.Nothing.Echo",
            "{}",
            "org.varlink.service.InterfaceNotFound",
        ),
    ] {
        let out = varlinkctl(&["call", &at, method, parameters]);
        assert!(!out.status.success(), "{method}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(error), "{method}: {err}");
    }
    // The connection-level guarantees hold: the server still answers.
    let reply = varlinkctl_ok(&["call", &at, "io.ipc.Messages.Ack", r#"{"message": "m"}"#]);
    assert_eq!(json_values(&reply)[0]["reply"], "Mensagem recebida!");
}

#[test]
fn varlinkctl_sees_a_stream_ended_by_shutdown() {
    let server = varlink_server(&[]);
    let at = address(&server);
    let mut monitor = Reaped(
        Command::new(tool("varlinkctl"))
            .args([
                "--json=short",
                "call",
                "--more",
                &at,
                "io.ipc.Server.Monitor",
                "{}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (tx, rx) = mpsc::channel();
    let stdout = monitor.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // Events flow: a call from another client shows up on the stream.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while !seen
        .iter()
        .any(|l: &String| l.contains("io.ipc.Messages.Echo"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no call event in {seen:?}"
        );
        varlinkctl_ok(&[
            "call",
            &at,
            "io.ipc.Messages.Echo",
            r#"{"message": "seen"}"#,
        ]);
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    server.signal(Signal::SIGTERM);
    let status = wait_within(&mut monitor);
    let mut err = String::new();
    std::io::Read::read_to_string(monitor.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(
        !status.success(),
        "the stream ends with an error reply: {err}"
    );
    assert!(err.contains("io.ipc.Server.ShuttingDown"), "{err}");
}

#[test]
fn varlinkctl_reaches_an_abstract_name() {
    let name = format!("@ipc-test-varlinkctl-{}", std::process::id());
    let mut server = Reaped(
        server_cmd()
            .args(["--protocol", "varlink", "--socket", &name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let at = format!("unix:{name}");
    wait_until("the server answers at its abstract name", || {
        varlinkctl(&["info", &at]).status.success()
    });
    let reply = varlinkctl_ok(&[
        "call",
        &at,
        "io.ipc.Messages.Echo",
        r#"{"message": "abstract"}"#,
    ]);
    assert_eq!(json_values(&reply)[0]["message"], "abstract");
    signal(&server, Signal::SIGTERM);
    assert!(wait_within(&mut server).success());
}

fn varlink_cli(args: &[&str]) -> Output {
    Command::new(tool("varlink")).args(args).output_within()
}

#[test]
fn the_rust_reference_cli_info_help_call_more_and_errors() {
    let server = varlink_server(&[]);
    let at = address(&server);
    let ok = |args: &[&str]| {
        let out = varlink_cli(args);
        assert!(out.status.success(), "varlink {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let info = ok(&["info", &at]);
    assert!(
        info.contains("Product: ipc-server") && info.contains("io.ipc.Messages"),
        "{info}"
    );
    let help = ok(&["help", &format!("{at}/io.ipc.Messages")]);
    assert!(
        help.contains("interface io.ipc.Messages") && help.contains("method Echo("),
        "{help}"
    );
    let reply = ok(&[
        "call",
        &format!("{at}/io.ipc.Messages.Echo"),
        r#"{"message": "hi"}"#,
    ]);
    assert_eq!(json_values(&reply), [serde_json::json!({"message": "hi"})]);
    let replies = ok(&[
        "call",
        "--more",
        &format!("{at}/io.ipc.Messages.Count"),
        r#"{"count": 2}"#,
    ]);
    let indices: Vec<_> = json_values(&replies)
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1]);
    for (method, error) in [
        ("io.ipc.Messages.Nope", "MethodNotFound"),
        ("io.ipc.Nothing.Echo", "InterfaceNotFound"),
    ] {
        let out = varlink_cli(&["call", &format!("{at}/{method}"), "{}"]);
        assert!(!out.status.success(), "{method}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(error), "{method}: {err}");
    }
}
