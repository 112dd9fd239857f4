//! A Varlink service in an in-process server, called with the Varlink client: typed calls,
//! error replies, one-way, pipelined and streamed calls, introspection, counters and events,
//! cancel safety and shutdown. Every test runs under a deadline.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use localipc_server::{Framing, Server};
use localipc_varlink::interfaces::server::{self, EventKind};
use localipc_varlink::{
    CallError, Empty, Interface, More, Policy, Service, TypedCallError, VarlinkClient,
    VarlinkError, messages_interface,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

mod common;
use common::{Slept, slow_interface};

const DEADLINE: Duration = Duration::from_secs(30);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the test took longer than its deadline")
}

/// `Messages` plus `io.ipc.Server`, and `org.example.slow` whose `Nap` sleeps.
fn service() -> Service {
    let slow = slow_interface();
    Service::builder()
        .vendor("tests")
        .product("library")
        .interface(messages_interface("Mensagem recebida!"))
        .interface(slow)
        .server_interface()
        .build()
        .unwrap()
}

struct Running {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    handle: localipc_server::ShutdownHandle,
}

fn start() -> Running {
    start_with(service())
}

/// Serves `service` on a fresh socket.
fn start_with(service: Service) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let server = Server::builder(service)
        .socket(&path)
        .framing(Framing::Nul)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    Running {
        _dir: dir,
        path,
        handle,
    }
}

fn reply_name(e: CallError) -> String {
    match e {
        CallError::Reply(e) => e.name().to_owned(),
        other => panic!("expected an error reply, got {other}"),
    }
}

#[tokio::test]
async fn typed_calls_and_the_standard_error_replies() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        let echoed: Value = c
            .call("io.ipc.Messages.Echo", &json!({"message": "olá"}))
            .await
            .unwrap();
        assert_eq!(echoed, json!({"message": "olá"}));
        let acked: Value = c
            .call("io.ipc.Messages.Ack", &json!({"message": "x"}))
            .await
            .unwrap();
        assert_eq!(acked, json!({"reply": "Mensagem recebida!"}));
        let cases = [
            (
                "io.ipc.Messages.Nope",
                json!({}),
                "org.varlink.service.MethodNotFound",
            ),
            (
                "org.example.none.Echo",
                json!({}),
                "org.varlink.service.InterfaceNotFound",
            ),
            (
                "org.example.slow.Missing",
                json!({}),
                "org.varlink.service.MethodNotImplemented",
            ),
            (
                "io.ipc.Messages.Echo",
                json!({}),
                "org.varlink.service.InvalidParameter",
            ),
            (
                "io.ipc.Messages.Echo",
                json!({"message": 5}),
                "org.varlink.service.InvalidParameter",
            ),
            (
                "io.ipc.Messages.Count",
                json!({"count": 2}),
                "org.varlink.service.ExpectedMore",
            ),
        ];
        for (method, parameters, error) in cases {
            let e = c.call::<_, Value>(method, &parameters).await.unwrap_err();
            assert_eq!(reply_name(e), error, "{method} {parameters}");
        }
        // The parameter at fault is named.
        let e = c
            .call::<_, Value>("io.ipc.Messages.Echo", &json!({"message": 5}))
            .await
            .unwrap_err();
        assert_eq!(
            e.reply().unwrap().parameters(),
            &json!({"parameter": "message"})
        );
        // And the connection is still good after all those errors.
        let echoed: Value = c
            .call("io.ipc.Messages.Echo", &json!({"message": "still here"}))
            .await
            .unwrap();
        assert_eq!(echoed["message"], "still here");
    })
    .await;
}

#[tokio::test]
async fn introspection_lists_and_describes_every_interface() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        let info = c.info().await.unwrap();
        assert_eq!(info.product, "library");
        for name in [
            "org.varlink.service",
            "io.ipc.Messages",
            "io.ipc.Server",
            "org.example.slow",
        ] {
            assert!(
                info.interfaces.iter().any(|i| i == name),
                "{name} in {info:?}"
            );
            let text = c.describe(name).await.unwrap();
            assert!(text.contains(&format!("interface {name}")), "{text}");
        }
        let e = c.describe("org.example.none").await.unwrap_err();
        assert_eq!(reply_name(e), "org.varlink.service.InterfaceNotFound");
    })
    .await;
}

#[tokio::test]
async fn a_long_stream_arrives_complete_and_in_order_then_the_next_call() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        #[derive(Deserialize)]
        struct Counted {
            index: i64,
            message: String,
        }
        {
            let stream = c
                .call_more::<_, Counted>(
                    "io.ipc.Messages.Count",
                    &json!({"count": 100_000, "message": "m"}),
                )
                .await
                .unwrap();
            futures::pin_mut!(stream);
            let mut expected = 0;
            while let Some(item) = stream.next().await {
                let item = item.unwrap();
                assert_eq!((item.index, item.message.as_str()), (expected, "m"));
                expected += 1;
            }
            assert_eq!(expected, 100_000);
        }
        let echoed: Value = c
            .call("io.ipc.Messages.Echo", &json!({"message": "after"}))
            .await
            .unwrap();
        assert_eq!(echoed["message"], "after");
    })
    .await;
}

#[tokio::test]
async fn oneway_and_pipelined_calls() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        c.oneway("io.ipc.Messages.Echo", &json!({"message": "quiet"}))
            .await
            .unwrap();
        let calls = (0..200).map(|i| {
            let method = if i % 50 == 7 {
                "io.ipc.Messages.Bad"
            } else {
                "io.ipc.Messages.Echo"
            };
            (method, json!({"message": format!("m{i}")}))
        });
        let replies: Vec<Result<Value, VarlinkError>> = c.pipeline(calls).await.unwrap();
        assert_eq!(replies.len(), 200);
        for (i, reply) in replies.iter().enumerate() {
            match reply {
                Ok(v) => assert_eq!(v["message"], format!("m{i}")),
                Err(e) => {
                    assert_eq!(i % 50, 7);
                    assert_eq!(e.name(), "org.varlink.service.MethodNotFound");
                }
            }
        }
        // The one-way call got no reply: the next call's reply is its own.
        let stats = server::Client(&mut c).stats().await.unwrap();
        assert_eq!(stats.calls, 202);
        assert_eq!(stats.errors, 4);
        assert_eq!(stats.connections_open, 1);
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_call_never_hands_its_reply_to_the_next() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        let nap = json!({"ms": 300});
        let slow = c.call::<_, Slept>("org.example.slow.Nap", &nap);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow)
                .await
                .is_err()
        );
        let quick: Slept = c
            .call("org.example.slow.Nap", &json!({"ms": 1}))
            .await
            .unwrap();
        assert_eq!(quick, Slept { ms: 1 });
        // A streamed call dropped half-way: the client refuses to go on.
        {
            let stream = c
                .call_more::<_, Value>("io.ipc.Messages.Count", &json!({"count": 1000}))
                .await
                .unwrap();
            futures::pin_mut!(stream);
            stream.next().await.unwrap().unwrap();
        }
        let e = c
            .call::<_, Value>("io.ipc.Messages.Echo", &json!({"message": "x"}))
            .await;
        assert!(
            matches!(
                e,
                Err(CallError::Connection(
                    localipc_client::ClientError::Unusable { .. }
                ))
            ),
            "{e:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn monitor_streams_events_and_shutdown_ends_it_with_an_error_reply() {
    let s = start();
    within(async {
        // The typed client generated from io.ipc.Server's description.
        let mut watcher = server::Client(VarlinkClient::connect(&s.path).await.unwrap());
        let mut events = watcher.monitor().await.unwrap();
        // The first event is the Monitor call itself: the subscription is live from then on.
        let first = events.next().await.unwrap().unwrap().event;
        assert_eq!(first.method.as_deref(), Some("io.ipc.Server.Monitor"));
        let mut other = VarlinkClient::connect(&s.path).await.unwrap();
        let _: Value = other
            .call("io.ipc.Messages.Echo", &json!({"message": "seen"}))
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            let event = event.unwrap().event;
            let method = event.method.clone().unwrap_or_default();
            seen.push((event.kind, method.clone()));
            if method == "io.ipc.Messages.Echo" {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                (EventKind::Connected, String::new()),
                (EventKind::Call, "io.ipc.Messages.Echo".to_owned())
            ]
        );
        s.handle.shutdown();
        // Ended with an error io.ipc.Server declares, as a value of its Error enum.
        let last = events.next().await.unwrap().unwrap_err();
        assert!(
            matches!(
                last,
                TypedCallError::Declared(server::Error::ShuttingDown {})
            ),
            "{last:?}"
        );
        assert!(events.next().await.is_none());
    })
    .await;
}

#[tokio::test]
async fn streamed_methods_written_with_more() {
    let ticks = Interface::new(
        "interface org.example.ticks\nmethod Ticks(n: int) -> (tick: int)\n\
         method Broken() -> (tick: int)\n",
    )
    .unwrap()
    .streaming("Ticks", |p: Value, _ctx| {
        let n = p["n"].as_i64().unwrap_or(0);
        futures::stream::iter((0..n).map(move |i| {
            let tick = json!({ "tick": i });
            Ok::<_, VarlinkError>(if i + 1 == n {
                More::last(tick)
            } else {
                More::next(tick)
            })
        }))
    })
    .streaming("Broken", |_: Empty, _ctx| {
        futures::stream::iter([Ok::<_, VarlinkError>(More::next(json!({"tick": 0})))])
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.sock");
    let server = Server::builder(Service::builder().interface(ticks).build().unwrap())
        .socket(&path)
        .framing(Framing::Nul)
        .bind()
        .unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    within(async {
        let mut c = VarlinkClient::connect(&path).await.unwrap();
        let ticks: Vec<Value> = c
            .call_more("org.example.ticks.Ticks", &json!({"n": 3}))
            .await
            .unwrap()
            .map(|t: Result<Value, CallError>| t.unwrap()["tick"].clone())
            .collect()
            .await;
        assert_eq!(ticks, [json!(0), json!(1), json!(2)]);
        let replies: Vec<Result<Value, CallError>> = c
            .call_more("org.example.ticks.Broken", &Empty {})
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(replies.len(), 2);
        assert!(replies[0].is_ok());
        let e = replies.into_iter().nth(1).unwrap().unwrap_err();
        assert_eq!(reply_name(e), localipc_varlink::STREAM_ENDED);
    })
    .await;
}

#[test]
fn a_method_the_description_does_not_have_is_refused_at_build() {
    let interface = Interface::new("interface org.example.a\nmethod A() -> ()\n")
        .unwrap()
        .method("B", |_: Empty, _ctx| async {
            Ok::<_, VarlinkError>(Empty {})
        });
    let e = Service::builder().interface(interface).build().unwrap_err();
    assert!(e.to_string().contains("no method B"), "{e}");
}

#[tokio::test]
async fn a_reply_that_does_not_fit_its_type_names_the_method_and_the_connection_goes_on() {
    let s = start();
    within(async {
        let mut c = VarlinkClient::connect(&s.path).await.unwrap();
        // Echo answers `message`, not `ms`.
        let e = c
            .call::<_, Slept>("io.ipc.Messages.Echo", &json!({"message": "x"}))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, CallError::Json { method, .. } if method == "io.ipc.Messages.Echo"),
            "{e:?}"
        );
        assert!(e.to_string().starts_with("io.ipc.Messages.Echo: "), "{e}");
        let reply: Value = c
            .call("io.ipc.Messages.Echo", &json!({"message": "still"}))
            .await
            .unwrap();
        assert_eq!(reply, json!({"message": "still"}));
    })
    .await;
}

#[tokio::test]
async fn floats_keep_every_bit_through_a_service() {
    #[derive(Serialize, Deserialize)]
    struct Float {
        x: f64,
    }
    let same = Interface::new("interface org.example.float\nmethod Same(x: float) -> (x: float)\n")
        .unwrap()
        .method(
            "Same",
            |p: Float, _ctx| async move { Ok::<_, VarlinkError>(p) },
        );
    let s = start_with(Service::builder().interface(same).build().unwrap());
    let path = &s.path;
    within(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // The default parser reads this one unit in the last place off.
        let text = "18807550956297025341211";
        let exact: f64 = text.parse().unwrap();
        let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
        let call = format!(r#"{{"method":"org.example.float.Same","parameters":{{"x":{text}}}}}"#);
        s.write_all(call.as_bytes()).await.unwrap();
        s.write_all(b"\0").await.unwrap();
        let mut reply = Vec::new();
        while !reply.ends_with(b"\0") {
            assert!(s.read_buf(&mut reply).await.unwrap() > 0);
        }
        let reply: Value = serde_json::from_slice(&reply[..reply.len() - 1]).unwrap();
        let x = reply["parameters"]["x"].to_string();
        assert_eq!(
            x.parse::<f64>().unwrap().to_bits(),
            exact.to_bits(),
            "{text} came back as {x}"
        );
        // And through the client, both ways.
        let mut c = VarlinkClient::connect(path).await.unwrap();
        let back: Float = c
            .call("org.example.float.Same", &Float { x: exact })
            .await
            .unwrap();
        assert_eq!(back.x.to_bits(), exact.to_bits());
    })
    .await;
    s.handle.shutdown();
}

/// `org.example.store`: `Get` for every caller, `Set` only for `setters`, and the whole
/// interface only for `readers`.
fn store(readers: Option<Policy>, setters: Policy) -> Service {
    #[derive(Deserialize)]
    struct Set {
        #[allow(dead_code)]
        value: i64,
    }
    let mut interface = Interface::new(
        "interface org.example.store\nmethod Get() -> ()\nmethod Set(value: int) -> ()\n",
    )
    .unwrap()
    .method("Get", |_: Empty, _ctx| async {
        Ok::<_, VarlinkError>(Empty {})
    })
    .method("Set", |_: Set, _ctx| async {
        Ok::<_, VarlinkError>(Empty {})
    })
    .allow_method("Set", setters);
    if let Some(readers) = readers {
        interface = interface.allow(readers);
    }
    Service::builder()
        .interface(interface)
        .server_interface()
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_refused_call_gets_permission_denied_and_the_connection_goes_on() {
    within(async {
        let me = nix::unistd::geteuid().as_raw();
        let server = start_with(store(None, Policy::uid(me.wrapping_add(1))));
        let mut c = VarlinkClient::connect(&server.path).await.unwrap();
        let e = c
            .call::<_, Empty>("org.example.store.Set", &json!({"value": 1}))
            .await;
        assert_eq!(
            reply_name(e.unwrap_err()),
            "org.varlink.service.PermissionDenied"
        );
        // Refused before its parameters are decoded: bad ones do not show.
        let e = c
            .call::<_, Empty>("org.example.store.Set", &json!({"value": "x"}))
            .await;
        assert_eq!(
            reply_name(e.unwrap_err()),
            "org.varlink.service.PermissionDenied"
        );
        // The same connection goes on, for what the caller may do.
        let _: Empty = c.call("org.example.store.Get", &Empty {}).await.unwrap();
        let stats: Value = c.call("io.ipc.Server.Stats", &Empty {}).await.unwrap();
        assert_eq!(stats["refused_permission"], 2, "{stats}");
        assert_eq!(stats["errors"], 2, "{stats}");
        server.handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn a_call_must_pass_its_interface_s_policy_and_its_method_s() {
    within(async {
        // Allowed by the method's policy, refused by the interface's.
        let server = start_with(store(
            Some(Policy::check("nobody", |_| false)),
            Policy::anyone(),
        ));
        let mut c = VarlinkClient::connect(&server.path).await.unwrap();
        for method in ["org.example.store.Get", "org.example.store.Set"] {
            let e = c.call::<_, Empty>(method, &json!({"value": 1})).await;
            assert_eq!(
                reply_name(e.unwrap_err()),
                "org.varlink.service.PermissionDenied"
            );
        }
        // The standard interfaces are not the store's: they still answer.
        assert!(c.info().await.is_ok());
        server.handle.shutdown();
        // And with both passed, the call runs.
        let server = start_with(store(Some(Policy::same_user()), Policy::same_user()));
        let mut c = VarlinkClient::connect(&server.path).await.unwrap();
        let _: Empty = c
            .call("org.example.store.Set", &json!({"value": 1}))
            .await
            .unwrap();
        server.handle.shutdown();
    })
    .await;
}

#[tokio::test]
async fn monitor_is_for_root_and_the_server_s_user_unless_the_service_says_otherwise() {
    within(async {
        let me = nix::unistd::geteuid().as_raw();
        let server = start_with(store(None, Policy::anyone()));
        let mut c = VarlinkClient::connect(&server.path).await.unwrap();
        let stream = c
            .call_more::<_, Value>("io.ipc.Server.Monitor", &Empty {})
            .await
            .unwrap();
        drop(stream); // allowed: it streams (and this connection is then done)
        server.handle.shutdown();
        let service = Service::builder()
            .server_interface()
            .monitor_policy(Policy::uid(me.wrapping_add(1)))
            .build()
            .unwrap();
        let server = start_with(service);
        let mut c = VarlinkClient::connect(&server.path).await.unwrap();
        let stream = c
            .call_more::<_, Value>("io.ipc.Server.Monitor", &Empty {})
            .await
            .unwrap();
        futures::pin_mut!(stream);
        let first = stream.next().await.unwrap();
        assert_eq!(
            reply_name(first.unwrap_err()),
            "org.varlink.service.PermissionDenied"
        );
        server.handle.shutdown();
    })
    .await;
}

#[test]
fn a_policy_for_a_method_the_description_does_not_have_is_refused_at_build() {
    let interface = Interface::new("interface org.example.a\nmethod A() -> ()\n")
        .unwrap()
        .allow_method("B", Policy::anyone());
    let e = Service::builder().interface(interface).build().unwrap_err();
    assert!(e.to_string().contains("no method B"), "{e}");
}

/// `org.example.fds.Read` reads the pipe that the parameter `fd` names (an index into the
/// descriptors sent with the call, as sd-varlink numbers them); `Open` opens a file and sends
/// it back, named by its index in the reply's descriptors.
fn fds_interface() -> Interface {
    #[derive(Deserialize)]
    struct Read {
        fd: usize,
    }
    #[derive(Deserialize)]
    struct Open {
        path: String,
    }
    #[derive(Serialize)]
    struct Text {
        text: String,
    }
    Interface::new(
        "interface org.example.fds\n\
         method Read(fd: int) -> (text: string)\n\
         method Open(path: string) -> (fd: int)\n\
         error NoSuchDescriptor(fd: int)\n",
    )
    .unwrap()
    .method(
        "Read",
        |p: Read, ctx: localipc_varlink::Context| async move {
            use std::io::Read as _;
            let Some(fd) = ctx.take_fd(p.fd) else {
                return Err(VarlinkError::new(
                    "org.example.fds.NoSuchDescriptor",
                    json!({ "fd": p.fd }),
                ));
            };
            let mut text = String::new();
            std::fs::File::from(fd)
                .read_to_string(&mut text)
                .map_err(|e| {
                    VarlinkError::new(
                        "org.example.fds.NoSuchDescriptor",
                        json!({ "error": e.to_string() }),
                    )
                })?;
            Ok(Text { text })
        },
    )
    .method(
        "Open",
        |p: Open, ctx: localipc_varlink::Context| async move {
            let fail = |e: String| {
                VarlinkError::new("org.example.fds.NoSuchDescriptor", json!({ "error": e }))
            };
            let file = std::fs::File::open(&p.path).map_err(|e| fail(e.to_string()))?;
            let fd = ctx.push_fd(file.into()).map_err(|e| fail(e.to_string()))?;
            Ok::<_, VarlinkError>(json!({ "fd": fd }))
        },
    )
}

/// Serves [`fds_interface`] on a socket in a new directory, accepting descriptors, and sending
/// them when `send`; returns the directory and the socket's path.
fn serve_fds(send: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fds.sock");
    let service = Service::builder()
        .interface(fds_interface())
        .build()
        .unwrap();
    let server = Server::builder(service)
        .socket(&path)
        .framing(Framing::Nul)
        .accept_fds(true)
        .send_fds(send)
        .bind()
        .unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_reads_the_descriptor_its_parameters_name_by_index() {
    use std::io::{BufRead, Write};
    use std::os::fd::AsRawFd;
    let (_dir, path) = serve_fds(false);
    let replies = within(tokio::task::spawn_blocking(move || {
        let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut s = std::io::BufReader::new(stream);
        let mut call = |index: usize, fds: &[std::os::fd::RawFd]| {
            use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
            let call = format!(
                "{{\"method\":\"org.example.fds.Read\",\"parameters\":{{\"fd\":{index}}}}}\0"
            );
            let control = [ControlMessage::ScmRights(fds)];
            sendmsg::<()>(
                s.get_ref().as_raw_fd(),
                &[std::io::IoSlice::new(call.as_bytes())],
                if fds.is_empty() { &[] } else { &control },
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            let mut reply = Vec::new();
            s.read_until(0, &mut reply).unwrap();
            serde_json::from_slice::<Value>(&reply[..reply.len() - 1]).unwrap()
        };
        let pipe = |text: &str| {
            let (r, mut w) = std::io::pipe().unwrap();
            w.write_all(text.as_bytes()).unwrap();
            r
        };
        let (first, second) = (pipe("first"), pipe("second"));
        vec![
            // The second descriptor sent with the call.
            call(1, &[first.as_raw_fd(), second.as_raw_fd()]),
            // None came with this call: those of the one before are not its own.
            call(0, &[]),
        ]
    }))
    .await
    .unwrap();
    assert_eq!(replies[0], json!({"parameters": {"text": "second"}}));
    assert_eq!(replies[1]["error"], "org.example.fds.NoSuchDescriptor");
}

#[tokio::test]
async fn the_client_passes_descriptors_both_ways() {
    use std::io::Write;
    within(async {
        let (dir, path) = serve_fds(true);
        let file = dir.path().join("handed-back.txt");
        std::fs::write(&file, "from the server").unwrap();
        let mut client = VarlinkClient::connect(&path).await.unwrap();
        client.accept_fds(4);
        for round in 0..10 {
            // To the server: the pipe the parameters name.
            let (r, mut w) = std::io::pipe().unwrap();
            w.write_all(format!("round {round}").as_bytes()).unwrap();
            drop(w);
            let (reply, fds): (Value, _) = client
                .call_with_fds("org.example.fds.Read", &json!({"fd": 0}), vec![r.into()])
                .await
                .unwrap();
            assert_eq!(reply, json!({"text": format!("round {round}")}));
            assert!(fds.is_empty());
            // From the server: the file it opened, named by index.
            let (reply, mut fds): (Value, _) = client
                .call_with_fds("org.example.fds.Open", &json!({"path": file}), Vec::new())
                .await
                .unwrap();
            assert_eq!(reply, json!({"fd": 0}));
            assert_eq!(fds.len(), 1);
            let text = std::io::read_to_string(std::fs::File::from(fds.remove(0))).unwrap();
            assert_eq!(text, "from the server");
        }
        // A plain call between them carries none.
        let e = client
            .call::<_, Value>("org.example.fds.Read", &json!({"fd": 0}))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("NoSuchDescriptor"), "{e}");
    })
    .await;
}
