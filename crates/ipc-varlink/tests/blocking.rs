//! The blocking Varlink client with no runtime in sight, and on a runtime's thread: typed
//! calls, error replies, one-way, pipelined and streamed calls, introspection, time limits. The
//! service runs on a runtime of its own thread; every call has a time limit or a bounded
//! server, so no test can hang.

use std::time::Duration;

use localipc_server::{Framing, Server, ShutdownHandle};
use localipc_varlink::blocking::VarlinkClient;
use localipc_varlink::{CallError, Service, VarlinkError, messages_interface};
use serde_json::{Value, json};

mod common;
use common::{Slept, slow_interface};

struct Served {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    handle: ShutdownHandle,
    _runtime: tokio::runtime::Runtime,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// `io.ipc.Messages` and `org.example.slow` (whose `Nap` sleeps), on a runtime of its own.
fn serve() -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let slow = slow_interface();
    let service = Service::builder()
        .product("blocking")
        .interface(messages_interface("Mensagem recebida!"))
        .interface(slow)
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.sock");
    let server = runtime
        .block_on(async {
            Server::builder(service)
                .socket(&path)
                .framing(Framing::Nul)
                .accept_fds(true)
                .send_fds(true)
                .bind()
        })
        .unwrap();
    let handle = server.handle();
    runtime.spawn(server.serve(std::future::pending()));
    Served {
        _dir: dir,
        path,
        handle,
        _runtime: runtime,
    }
}

fn connect(served: &Served) -> VarlinkClient {
    VarlinkClient::connect_with(&served.path, Some(Duration::from_secs(10)), 1 << 20).unwrap()
}

#[test]
fn descriptors_both_ways_without_a_runtime() {
    use std::io::{Read, Write};
    let served = serve();
    let mut client = connect(&served);
    client.accept_fds(2);
    let (mut read_end, write_end) = std::io::pipe().unwrap();
    // io.ipc.Messages.Echo gives back the descriptors of its call.
    let (reply, fds): (Value, _) = client
        .call_with_fds(
            "io.ipc.Messages.Echo",
            &json!({"message": "fd"}),
            vec![write_end.into()],
        )
        .unwrap();
    assert_eq!(reply, json!({"message": "fd"}));
    let [back] = <[std::os::fd::OwnedFd; 1]>::try_from(fds).unwrap();
    std::fs::File::from(back).write_all(b"x").unwrap();
    let mut byte = [0];
    read_end.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
}

#[test]
fn every_kind_of_call_without_a_runtime() {
    let served = serve();
    let mut client = connect(&served);
    let reply: Value = client
        .call("io.ipc.Messages.Echo", &json!({"message": "hi"}))
        .unwrap();
    assert_eq!(reply, json!({"message": "hi"}));
    let replies: Vec<Value> = client
        .call_more(
            "io.ipc.Messages.Count",
            &json!({"count": 3, "message": "m"}),
        )
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let indices: Vec<_> = replies
        .iter()
        .map(|r| r["index"].as_i64().unwrap())
        .collect();
    assert_eq!(indices, [0, 1, 2]);
    client
        .oneway("io.ipc.Messages.Echo", &json!({"message": "no reply"}))
        .unwrap();
    let calls = (1..=3).map(|ms| ("org.example.slow.Nap", json!({ "ms": ms })));
    let naps: Vec<Result<Slept, VarlinkError>> = client.pipeline(calls).unwrap();
    let naps: Vec<_> = naps.into_iter().map(|r| r.unwrap().ms).collect();
    assert_eq!(naps, [1, 2, 3]);
    assert_eq!(client.info().unwrap().product, "blocking");
    assert!(
        client
            .describe("org.example.slow")
            .unwrap()
            .contains("method Nap(")
    );
}

#[test]
fn an_error_reply_is_an_error_and_the_connection_goes_on() {
    let served = serve();
    let mut client = connect(&served);
    match client.call::<_, Value>("io.ipc.Messages.Nope", &json!({})) {
        Err(CallError::Reply(e)) => assert_eq!(e.name(), "org.varlink.service.MethodNotFound"),
        other => panic!("{other:?}"),
    }
    let reply: Value = client
        .call("io.ipc.Messages.Echo", &json!({"message": "on"}))
        .unwrap();
    assert_eq!(reply["message"], "on");
}

#[test]
fn a_timed_out_call_never_hands_its_reply_to_the_next() {
    let served = serve();
    let mut client =
        VarlinkClient::connect_with(&served.path, Some(Duration::from_millis(100)), 1 << 20)
            .unwrap();
    let late = client.call::<_, Slept>("org.example.slow.Nap", &json!({"ms": 400}));
    assert!(matches!(late, Err(CallError::Timeout(_))), "{late:?}");
    std::thread::sleep(Duration::from_millis(500));
    let next: Slept = client
        .call("org.example.slow.Nap", &json!({"ms": 1}))
        .unwrap();
    assert_eq!(next, Slept { ms: 1 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_runtime_s_thread_calls_work_and_nothing_panics() {
    let served = std::thread::spawn(serve).join().unwrap();
    let mut client = connect(&served);
    let reply: Value = client
        .call("io.ipc.Messages.Echo", &json!({"message": "rt"}))
        .unwrap();
    assert_eq!(reply["message"], "rt");
    let counted = client
        .call_more::<_, Value>("io.ipc.Messages.Count", &json!({"count": 2}))
        .unwrap()
        .count();
    assert_eq!(counted, 2);
    drop(client);
    std::thread::spawn(move || drop(served)).join().unwrap();
}
