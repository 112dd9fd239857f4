//! The blocking client with no runtime in sight, and called from inside one: the same replies,
//! errors and time limits as the async client, no reply handed to the wrong call after a
//! timeout, and an error (never a panic) where a blocking call cannot run. The server runs on
//! a runtime of its own thread; every call has a time limit, so no test can hang.

use std::time::Duration;

use localipc_client::blocking::{Client, send, send_with};
use localipc_client::{Bytes, ClientError, ClientOptions};
use localipc_server::{BoxError, Server, ShutdownHandle, handler_fn};

/// An echo server that takes 400 ms over `slow`, on a runtime of its own.
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

fn serve() -> Served {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let handler = handler_fn(|request: Bytes, ctx| async move {
        // Descriptors that come with a request go back with its reply.
        ctx.echo_fds();
        if &request[..] == b"slow" {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        Ok::<_, BoxError>(request)
    });
    let server = runtime
        .block_on(async {
            Server::builder(handler)
                .socket(&path)
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

#[test]
fn calls_without_a_runtime() {
    let served = serve();
    assert_eq!(send(&served.path, "once").unwrap(), "once");
    let mut client = Client::connect(&served.path).unwrap();
    assert_eq!(client.request("one").unwrap(), "one");
    let big = "x".repeat(300_000); // more than one read's worth
    assert_eq!(
        client.pipeline(["two", big.as_str(), "three"]).unwrap(),
        ["two", big.as_str(), "three"]
    );
    assert!(client.is_usable());
}

#[test]
fn descriptors_both_ways_without_a_runtime() {
    use std::io::{Read, Write};
    let served = serve();
    let options = ClientOptions::default().accept_fds(2);
    let mut client = Client::connect_with(&served.path, options).unwrap();
    let (mut read_end, write_end) = std::io::pipe().unwrap();
    let (reply, fds) = client
        .request_with_fds("with a pipe", vec![write_end.into()])
        .unwrap();
    assert_eq!(reply, "with a pipe");
    // What came back is the pipe that went: a byte written through it comes out here.
    let [back] = <[std::os::fd::OwnedFd; 1]>::try_from(fds).unwrap();
    std::fs::File::from(back).write_all(b"x").unwrap();
    let mut byte = [0];
    read_end.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
    assert_eq!(client.request("after").unwrap(), "after");
}

#[test]
fn a_timed_out_call_never_hands_its_reply_to_the_next() {
    let served = serve();
    let options = ClientOptions::default().timeout(Some(Duration::from_millis(100)));
    let mut client = Client::connect_with(&served.path, options).unwrap();
    assert!(matches!(
        client.request("slow"),
        Err(ClientError::Timeout(_))
    ));
    // The late reply to `slow` arrives meanwhile; the next call reads and drops it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(client.request("fast").unwrap(), "fast");
    assert_eq!(client.request("again").unwrap(), "again");
}

#[test]
fn errors_are_the_async_client_s() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    assert!(matches!(
        Client::connect(&missing),
        Err(ClientError::NoSocket { .. })
    ));
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(matches!(
        send(&stale, "x"),
        Err(ClientError::Refused { .. })
    ));
    // A server that accepts and never answers: the time limit holds.
    let silent = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let options = ClientOptions::default().timeout(Some(Duration::from_millis(200)));
    let started = std::time::Instant::now();
    assert!(matches!(
        send_with(&silent, "x", options),
        Err(ClientError::Timeout(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_runtime_calls_work_and_nothing_panics() {
    let served = std::thread::spawn(serve).join().unwrap();
    let path = served.path.clone();
    // Made, used and dropped on a runtime's worker thread (where Runtime::block_on panics).
    assert_eq!(send(&path, "worker").unwrap(), "worker");
    let mut client = Client::connect(&path).unwrap();
    assert_eq!(client.request("one").unwrap(), "one");
    // Moved into spawn_blocking, as the docs recommend, it goes on.
    let client = tokio::task::spawn_blocking(move || {
        assert_eq!(client.pipeline(["two", "three"]).unwrap(), ["two", "three"]);
        client
    })
    .await
    .unwrap();
    drop(client);
    // The server's runtime is dropped off this runtime's threads.
    std::thread::spawn(move || drop(served)).join().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_to_a_server_on_the_caller_s_own_thread_ends_by_its_time_limit() {
    // The server's tasks run on this very thread, which the blocking call holds: it cannot
    // answer, and the call ends with its time limit instead of hanging.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("own.sock");
    let server = Server::builder(localipc_server::Echo)
        .socket(&path)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    tokio::task::yield_now().await;
    let options = ClientOptions::default().timeout(Some(Duration::from_millis(300)));
    assert!(matches!(
        send_with(&path, "x", options),
        Err(ClientError::Timeout(_))
    ));
    handle.shutdown();
}
