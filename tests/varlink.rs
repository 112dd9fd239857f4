//! `ipc-server --protocol varlink` and `ipc-client call / introspect` against the reference
//! Varlink implementations (the Python `varlink` package, client and server, and
//! `asyncvarlink`), raw peers (`socat`, a plain socket), and at scale: 1,000 connections x 100
//! calls, a 100,000-reply stream, a subscriber that never reads.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

mod support;
use support::*;

fn varlink_server() -> TestServer {
    TestServer::start(&["--protocol", "varlink"])
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Runs a Python client from `tests/peers` against a fresh `--protocol varlink` server and
/// returns the JSON object it prints of what it saw.
fn python_client_of_our_server(script: &str) -> Value {
    let server = varlink_server();
    let out = Command::new(varlink_python())
        .arg(peer(script))
        .arg(server.path())
        .output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_reference_python_client_calls_our_server() {
    let seen = python_client_of_our_server("varlink_client.py");
    assert_eq!(
        seen,
        json!({
            "ack": {"reply": "Mensagem recebida!"},
            "after_oneway": {"message": "after"},
            "count": [0, 1, 2, 3, 4],
            "echo": {"message": "olá"},
            "expected_more": "org.varlink.service.ExpectedMore",
            "interfaces": ["io.ipc.Messages", "io.ipc.Server", "org.varlink.service"],
            "missing": "org.varlink.service.InterfaceNotFound",
            "stats_calls": true,
        })
    );
}

#[test]
fn asyncvarlink_pipelines_calls_to_our_server() {
    let seen = python_client_of_our_server("asyncvarlink_client.py");
    assert_eq!(
        seen,
        json!({
            "after_oneway": "after",
            "count": [0, 1, 2, 3],
            "error": "org.varlink.service.MethodNotFound",
            "error_parameters": {"method": "io.ipc.Messages.Nope"},
            "pipelined": true,
        })
    );
}

/// The reference Python server, on a fresh path; killed on drop.
#[test]
fn our_client_calls_the_reference_python_server() {
    let py = PythonServer::start("varlink_server.py", &[]);
    let out = client(
        py.path(),
        &["call", "io.ipc.Messages.Echo", r#"{"message": "oi"}"#],
    );
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_lines(&out.stdout), [json!({"message": "oi"})]);

    let out = client(
        py.path(),
        &[
            "call",
            "io.ipc.Messages.Count",
            r#"{"count": 3, "message": "m"}"#,
            "--more",
        ],
    );
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let indexes: Vec<Value> = json_lines(&out.stdout)
        .iter()
        .map(|r| r["index"].clone())
        .collect();
    assert_eq!(indexes, [json!(0), json!(1), json!(2)]);

    let out = client(py.path(), &["call", "io.ipc.Messages.Fail"]);
    assert_eq!(code(out.status), 79);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("io.ipc.Messages.Refused") && stderr.contains("on purpose"),
        "{stderr}"
    );

    let out = client(
        py.path(),
        &[
            "call",
            "io.ipc.Messages.Echo",
            r#"{"message": "x"}"#,
            "--oneway",
        ],
    );
    assert_eq!(code(out.status), 0);
    assert!(out.stdout.is_empty());

    let out = client(py.path(), &["introspect"]);
    assert_eq!(code(out.status), 0);
    let info = &json_lines(&out.stdout)[0];
    assert_eq!(info["product"], "python reference");
    let out = client(py.path(), &["introspect", "io.ipc.Messages"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("method Count("));
    drop(py);
}

#[test]
fn ipc_client_call_prints_json_and_exits_79_on_an_error_reply() {
    let server = varlink_server();
    let out = server.client(&["call", "io.ipc.Messages.Ack", r#"{"message": "x"}"#]);
    assert_eq!(code(out.status), 0);
    assert_eq!(
        json_lines(&out.stdout),
        [json!({"reply": "Mensagem recebida!"})]
    );

    let out = server.client(&["call", "io.ipc.Messages.Echo", "{}"]);
    assert_eq!(code(out.status), 79);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("org.varlink.service.InvalidParameter"),
        "{stderr}"
    );
    assert!(stderr.contains("message"), "{stderr}");

    let out = server.client(&["call", "io.ipc.Messages.Echo", "[1]"]);
    assert_eq!(code(out.status), 64);

    let out = server.client(&["introspect", "io.ipc.Server"]);
    assert_eq!(code(out.status), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("method Monitor()"));

    // A server that does not speak Varlink: the client says the server closed.
    let plain = TestServer::start(&[]);
    let out = plain.client(&[
        "--timeout",
        "0.5",
        "call",
        "io.ipc.Messages.Echo",
        r#"{"message": "x"}"#,
    ]);
    assert_eq!(code(out.status), 75);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--protocol varlink"), "{stderr}");
}

#[test]
fn a_stream_of_100000_replies_arrives_complete_and_in_order() {
    let server = varlink_server();
    let out = server.client(&[
        "call",
        "io.ipc.Messages.Count",
        r#"{"count": 100000, "message": "s"}"#,
        "--more",
    ]);
    assert_eq!(
        code(out.status),
        0,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replies = json_lines(&out.stdout);
    assert_eq!(replies.len(), 100_000);
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply, &json!({"index": i, "message": "s"}));
    }
}

#[test]
fn bad_frames_close_the_connection_and_bad_calls_get_error_replies() {
    let server = varlink_server();
    // A well-formed call with an unknown method: an error reply, and the connection goes on.
    let out = sh(
        &format!(
            "printf '%s\\0%s\\0' '{{\"method\":\"a.b.C\"}}' \
             '{{\"method\":\"io.ipc.Messages.Echo\",\"parameters\":{{\"message\":\"ok\"}}}}' \
             | socat -t 2 - UNIX-CONNECT:{}",
            server.path().display()
        ),
        b"",
    );
    let replies: Vec<Value> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|m| !m.is_empty())
        .map(|m| serde_json::from_slice(m).unwrap())
        .collect();
    assert_eq!(
        replies,
        [
            json!({"error": "org.varlink.service.InterfaceNotFound", "parameters": {"interface": "a.b"}}),
            json!({"parameters": {"message": "ok"}}),
        ]
    );
    // Not JSON, not an object (even an array of a call's fields, in order), no method: each
    // closes its connection, with a log line.
    for bad in [
        &b"{not json"[..],
        b"[1,2]",
        br#"["io.ipc.Messages.Echo",{"message":"arr"}]"#,
        b"{\"parameters\":{}}",
    ] {
        let mut s = server.connect();
        s.write_all(bad).unwrap();
        s.write_all(b"\0").unwrap();
        assert_eq!(
            read_to_close(&mut s).unwrap(),
            b"",
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // A message with no NUL within the maximum size closes too, before it is buffered whole.
    let mut s = server.connect();
    let big = vec![b' '; 2 << 20];
    let _ = s.write_all(&big);
    assert_eq!(read_to_close(&mut s).unwrap_or_default(), b"");
    wait_until("the log tells why", || {
        server.log().matches("not a Varlink call").count() >= 4
    });
    assert!(
        server.log().contains("frame larger than the maximum"),
        "{}",
        server.log()
    );
}

#[test]
fn shutdown_ends_an_open_monitor_stream_with_an_error_reply() {
    let mut server = varlink_server();
    let mut watcher = Reaped(
        client_cmd()
            .arg("--socket")
            .arg(server.path())
            .args(["call", "io.ipc.Server.Monitor", "--more"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The subscription is live once its own call shows in the stream.
    let mut stdout = watcher.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    server.signal(Signal::SIGTERM);
    let status = wait_within(&mut watcher);
    let mut err = String::new();
    watcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(code(status), 79, "{err}");
    assert!(err.contains("io.ipc.Server.ShuttingDown"), "{err}");
    assert!(server.wait().success());
}

#[test]
fn a_subscriber_that_never_reads_does_not_grow_the_servers_memory() {
    let server = varlink_server();
    let mut subscriber = server.connect();
    subscriber
        .write_all(b"{\"method\":\"io.ipc.Server.Monitor\",\"more\":true}\0")
        .unwrap();
    let rss = || rss_kib(server.pid());
    // 200,000 calls, each an event of about 150 bytes for the subscriber: 30 MB if kept.
    let mut busy = server.connect();
    let call = b"{\"method\":\"io.ipc.Messages.Echo\",\"parameters\":{\"message\":\"m\"}}\0";
    let mut before = 0;
    // Batches small enough that the requests and their replies fit in the socket buffers.
    let batch: Vec<u8> = call
        .iter()
        .copied()
        .cycle()
        .take(call.len() * 1000)
        .collect();
    for round in 0..200 {
        busy.write_all(&batch).unwrap();
        let mut replies = 0;
        let mut buf = vec![0u8; 1 << 16];
        while replies < 1000 {
            let n = busy.read(&mut buf).unwrap();
            assert!(n > 0, "the server closed the busy connection");
            replies += buf[..n].iter().filter(|b| **b == 0).count();
        }
        if round == 10 {
            before = rss();
        }
    }
    let after = rss();
    assert!(
        after < before + 8 * 1024,
        "the server grew from {before} KiB to {after} KiB with a subscriber that never reads"
    );
    // When it finally reads, it learns that it missed events: after what the socket buffers
    // and the channel's backlog held.
    let mut missed = false;
    for _ in 0..20_000 {
        let message = read_nul(&mut subscriber).unwrap();
        if String::from_utf8_lossy(&message).contains("\"missed\"") {
            missed = true;
            break;
        }
    }
    assert!(missed, "no `missed` event");
}

#[test]
fn a_thousand_connections_of_a_hundred_calls_each_get_every_reply_right() {
    // All from one user: its share is the whole cap.
    let server = TestServer::start(&["--protocol", "varlink", "--max-connections-per-uid", "1024"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let path = server.path().to_owned();
    let checked = rt.block_on(async move {
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
        let mut tasks = tokio::task::JoinSet::new();
        for conn in 0..1000 {
            let path = path.clone();
            let limit = std::sync::Arc::clone(&limit);
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                let mut c = localipc_varlink::VarlinkClient::connect_with(
                    &path,
                    Some(PATIENCE),
                    localipc_varlink::DEFAULT_MAX_MESSAGE,
                )
                .await
                .unwrap();
                // Half pipelined, half one at a time.
                let calls: Vec<_> = (0..50)
                    .map(|i| {
                        (
                            "io.ipc.Messages.Echo",
                            json!({"message": format!("{conn}/{i}")}),
                        )
                    })
                    .collect();
                let replies: Vec<Result<Value, _>> = c.pipeline(calls).await.unwrap();
                let mut good = 0;
                for (i, reply) in replies.into_iter().enumerate() {
                    assert_eq!(reply.unwrap()["message"], format!("{conn}/{i}"));
                    good += 1;
                }
                for i in 50..100 {
                    let reply: Value = c
                        .call(
                            "io.ipc.Messages.Echo",
                            &json!({"message": format!("{conn}/{i}")}),
                        )
                        .await
                        .unwrap();
                    assert_eq!(reply["message"], format!("{conn}/{i}"));
                    good += 1;
                }
                good
            });
        }
        let mut total = 0;
        while let Some(done) = tasks.join_next().await {
            total += done.unwrap();
        }
        total
    });
    assert_eq!(checked, 100_000);
}

#[test]
fn varlink_takes_nul_framing_only() {
    let out = server_cmd()
        .args([
            "--protocol",
            "varlink",
            "--framing",
            "length",
            "--socket",
            "/tmp/unused.sock",
        ])
        .output_within();
    assert_eq!(code(out.status), 64);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NUL framing"));
    // Error replies and Monitor events must always fit a message.
    let out = server_cmd()
        .args(["--protocol", "varlink", "--max-frame", "4096"])
        .args(["--socket", "/tmp/unused.sock"])
        .output_within();
    assert_eq!(code(out.status), 64);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-frame of at least 8192"),
        "{out:?}"
    );
}

/// Socket activation as systemd does it (a listening socket on fd 3, LISTEN_FDS and LISTEN_PID;
/// Python keeps its pid across exec), with --protocol varlink.
#[test]
fn a_socket_activated_varlink_server_answers_calls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let script = r#"
import os, socket, sys
path, binary = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
s.listen(16)
os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(binary, [binary, "--protocol", "varlink", "--socket", "/nonexistent/ignored.sock"])
"#;
    let mut child = Reaped(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .arg(server_bin())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut out = None;
    wait_until("the activated server answers", || {
        let got = client(
            &path,
            &[
                "--timeout",
                "1",
                "call",
                "io.ipc.Messages.Echo",
                r#"{"message": "up"}"#,
            ],
        );
        let ok = got.status.success();
        out = Some(got);
        ok
    });
    assert_eq!(json_lines(&out.unwrap().stdout), [json!({"message": "up"})]);
    signal(&child, Signal::SIGTERM);
    assert!(wait_within(&mut child).success());
    assert!(path.exists(), "the activated socket was unlinked");
}

/// Checks that the connection `s` still answers calls.
fn still_answers(s: &mut std::os::unix::net::UnixStream) {
    assert_eq!(
        call_on(
            s,
            br#"{"method":"io.ipc.Messages.Echo","parameters":{"message":"on"}}"#
        ),
        json!({"parameters": {"message": "on"}})
    );
}

/// Sends one call on `s` and reads its reply, as JSON.
fn call_on(s: &mut std::os::unix::net::UnixStream, call: &[u8]) -> Value {
    s.write_all(call).unwrap();
    s.write_all(b"\0").unwrap();
    serde_json::from_slice(&read_nul(s).unwrap()).unwrap()
}

#[test]
fn parameters_that_do_not_fit_get_an_error_naming_the_parameter() {
    let server = varlink_server();
    let mut s = server.connect();
    let invalid = |parameter: &str| json!({"error": "org.varlink.service.InvalidParameter", "parameters": {"parameter": parameter}});
    // Parameters are an object, not the fields in order.
    assert_eq!(
        call_on(
            &mut s,
            br#"{"method":"io.ipc.Messages.Echo","parameters":["hi"]}"#
        ),
        invalid("parameters")
    );
    // An IDL int is a signed 64-bit integer: one past it names the parameter, not the value.
    assert_eq!(
        call_on(
            &mut s,
            br#"{"method":"io.ipc.Messages.Count","parameters":{"count":9223372036854775808},"more":true}"#
        ),
        invalid("count")
    );
    // The connection goes on.
    still_answers(&mut s);
}

#[test]
fn a_call_to_a_huge_unknown_name_gets_an_error_reply_that_fits() {
    let server = varlink_server();
    let mut s = server.connect();
    // Just under the default --max-frame of 1 MiB.
    let name = format!("io.ipc.Messages.{}", "X".repeat(1_048_500));
    let reply = call_on(&mut s, format!(r#"{{"method":"{name}"}}"#).as_bytes());
    assert_eq!(
        reply["error"],
        json!("org.varlink.service.MethodNotFound"),
        "{}",
        &reply.to_string()[..200]
    );
    let repeated = reply["parameters"]["method"].as_str().unwrap();
    assert!(repeated.len() <= 512, "{} bytes repeated", repeated.len());
    assert!(
        repeated.starts_with("io.ipc.Messages.XXX") && repeated.ends_with('…'),
        "{repeated}"
    );
    let name = format!("{}.Method", "x".repeat(1_048_500));
    let reply = call_on(&mut s, format!(r#"{{"method":"{name}"}}"#).as_bytes());
    assert_eq!(
        reply["error"],
        json!("org.varlink.service.InterfaceNotFound")
    );
    assert!(reply["parameters"]["interface"].as_str().unwrap().len() <= 512);
    still_answers(&mut s);
}

#[test]
fn huge_method_names_reach_monitor_subscribers_cut_and_pin_no_memory() {
    let server = varlink_server();
    let mut watcher = server.connect();
    watcher
        .write_all(b"{\"method\":\"io.ipc.Server.Monitor\",\"more\":true}\0")
        .unwrap();
    // Its own call is its first call event; the harness's probe connection may still be
    // closing, so a `disconnected` event can come before it.
    let first = loop {
        let event: Value = serde_json::from_slice(&read_nul(&mut watcher).unwrap()).unwrap();
        if event["parameters"]["event"]["kind"] == json!("call") {
            break event;
        }
        assert_eq!(
            event["parameters"]["event"]["kind"],
            json!("disconnected"),
            "{event}"
        );
    };
    assert_eq!(
        first["parameters"]["event"]["method"],
        json!("io.ipc.Server.Monitor"),
        "{first}"
    );
    let mut caller = server.connect();
    let name = format!("io.ipc.Messages.{}", "Y".repeat(1_048_500));
    let call = format!("{{\"method\":\"{name}\"}}\0");
    // 64 MiB of names while the subscriber reads nothing: the events must not hold them.
    let before = rss_kib(server.pid());
    for _ in 0..64 {
        caller.write_all(call.as_bytes()).unwrap();
        read_nul(&mut caller).unwrap();
    }
    let after = rss_kib(server.pid());
    assert!(
        after < before + 16 * 1024,
        "the server grew from {before} KiB to {after} KiB holding events for a silent subscriber"
    );
    // The subscriber is still connected, and sees each call with its name cut.
    for _ in 0..64 {
        let event: Value = serde_json::from_slice(&read_nul(&mut watcher).unwrap()).unwrap();
        let event = &event["parameters"]["event"];
        if event["kind"] != json!("call") {
            continue;
        }
        let method = event["method"].as_str().unwrap();
        assert!(method.len() <= 512 && method.ends_with('…'), "{method}");
        assert_eq!(event["error"], json!("org.varlink.service.MethodNotFound"));
    }
}

#[test]
fn stats_counts_the_connections_the_caps_turned_away_or_made_wait() {
    let server = TestServer::start(&[
        "--protocol",
        "varlink",
        "--max-connections",
        "3",
        "--max-connections-per-uid",
        "2",
    ]);
    let echo = |s: &mut std::os::unix::net::UnixStream| {
        call_on(
            s,
            br#"{"method":"io.ipc.Messages.Echo","parameters":{"message":"x"}}"#,
        )
    };
    // The harness's probe connection must be gone before the share is counted.
    wait_until("the probe connection is closed", || {
        server.log().contains("closed answered=0")
    });
    // This uid's share is 2: a third connection is closed at once, twice.
    let mut a = server.connect();
    let mut b = server.connect();
    echo(&mut a);
    echo(&mut b);
    for _ in 0..2 {
        let mut refused = server.connect();
        let _ = refused.write_all(b"{\"method\":\"io.ipc.Server.Stats\"}\0");
        assert_eq!(read_to_close(&mut refused).unwrap_or_default(), b"");
    }
    drop(b);
    // The reference client reads the counters.
    let stats: Value = serde_json::from_str(&run_python(
        "import json, sys, varlink\n\
         with varlink.Client(address='unix:' + sys.argv[1]) as c:\n\
         \x20   with c.open('io.ipc.Server') as s:\n\
         \x20       print(json.dumps(s.Stats()))\n",
        server.path(),
    ))
    .unwrap();
    assert_eq!(stats["refused_uid_share"], json!(2), "{stats}");
    assert_eq!(stats["refused_allow_list"], json!(0), "{stats}");
    assert_eq!(stats["connection_cap_reached"], json!(0), "{stats}");
    drop(a);

    // Every slot taken: counted each time it happens (the harness's probe and `a`, then `a`
    // and `b`, then `b` and the waiting client), not once per waiting client.
    let server = TestServer::start(&["--protocol", "varlink", "--max-connections", "2"]);
    let mut a = server.connect();
    let mut b = server.connect();
    echo(&mut a);
    echo(&mut b);
    let mut waiting = server.connect();
    waiting
        .write_all(b"{\"method\":\"io.ipc.Server.Stats\"}\0")
        .unwrap();
    // The server must have found every slot taken before one frees, or there is nothing to
    // count: its accept loop may not have run between `b` and the close of `a`.
    wait_until("the server finds every slot taken", || {
        server.log().contains("every connection slot is taken")
    });
    drop(a);
    let stats: Value = serde_json::from_slice(&read_nul(&mut waiting).unwrap()).unwrap();
    let reached = stats["parameters"]["connection_cap_reached"]
        .as_u64()
        .unwrap();
    assert!((1..=3).contains(&reached), "{stats}");
    drop(b);
}

/// Runs a Python script with the reference `varlink` package, with `path` as its argument, and
/// returns what it printed.
fn run_python(script: &str, path: &std::path::Path) -> String {
    let out = Command::new(varlink_python())
        .arg("-c")
        .arg(script)
        .arg(path)
        .output_within();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
