//! The client library against an in-process server: one-shot sends, many exchanges on one
//! connection, pipelined batches, errors as typed values, and no reply ever handed to the wrong
//! call after a timeout or a dropped future. Every test runs under a deadline.

use std::future::Future;
use std::time::Duration;

use localipc_client::{Bytes, Client, ClientError, ClientOptions, Framing, PipelineError};
use localipc_server::{BoxError, Handler, Server, handler_fn};

const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the test took longer than its deadline")
}

/// Echoes, but takes 400 ms over `slow`, and fails on `oops` (which closes the connection).
fn moody() -> impl Handler {
    handler_fn(|request: Bytes, _ctx| async move {
        match &request[..] {
            b"slow" => tokio::time::sleep(Duration::from_millis(400)).await,
            b"oops" => return Err::<Bytes, BoxError>("no".into()),
            // A large message makes the handler as slow, so the server reads nothing meanwhile.
            r if r.len() > 100_000 => tokio::time::sleep(Duration::from_millis(400)).await,
            _ => {}
        }
        Ok(request)
    })
}

async fn start_with<H: Handler>(
    handler: H,
    framing: Framing,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    localipc_server::ShutdownHandle,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let server = Server::builder(handler)
        .socket(&path)
        .framing(framing)
        .max_frame(8 << 20)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    (dir, path, handle)
}

async fn start(
    framing: Framing,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    localipc_server::ShutdownHandle,
) {
    start_with(localipc_server::Echo, framing).await
}

#[tokio::test]
async fn a_timed_out_request_never_hands_its_reply_to_the_next() {
    for framing in [Framing::Line, Framing::Length] {
        let (_dir, path, handle) = start_with(moody(), framing).await;
        // Shorter than the slow call, longer than what is left of it when the next call starts.
        let opts = ClientOptions::default()
            .framing(framing)
            .timeout(Some(Duration::from_millis(300)));
        let mut client = within(Client::connect_with(&path, opts)).await.unwrap();
        assert!(matches!(
            within(client.request("slow")).await,
            Err(ClientError::Timeout(_))
        ));
        // The late "slow" reply is dropped, not returned here.
        assert_eq!(within(client.request("fast")).await.unwrap(), "fast");
        assert_eq!(within(client.request("other")).await.unwrap(), "other");
        // The same after a pipelined batch that timed out half-way.
        let err = within(client.pipeline(["a", "slow", "b"]))
            .await
            .unwrap_err();
        assert!(matches!(err.error, ClientError::Timeout(_)), "{err}");
        assert_eq!(err.replies, ["a"]);
        assert_eq!(
            within(client.pipeline(["c", "d"])).await.unwrap(),
            ["c", "d"]
        );
        handle.shutdown();
    }
}

#[tokio::test]
async fn a_dropped_request_never_hands_its_reply_to_the_next() {
    let (_dir, path, handle) = start_with(moody(), Framing::Line).await;
    let opts = ClientOptions::default().max_frame(8 << 20);
    let mut client = within(Client::connect_with(&path, opts)).await.unwrap();
    tokio::select! {
        reply = client.request("slow") => panic!("the slow call answered first: {reply:?}"),
        () = tokio::time::sleep(Duration::from_millis(50)) => {}
    }
    assert_eq!(within(client.request("fast")).await.unwrap(), "fast");

    // A message cut off half-way through its write (the server reads nothing while its handler
    // is busy with the first large one): the next call finishes writing it, then drops its
    // reply.
    let big = vec![b'x'; 3 << 20];
    tokio::select! {
        r = client.pipeline([&big[..], &big[..]]) => panic!("the large batch finished first: {r:?}"),
        () = tokio::time::sleep(Duration::from_millis(100)) => {}
    }
    assert_eq!(within(client.request("after")).await.unwrap(), "after");
    handle.shutdown();
}

#[tokio::test]
async fn a_failed_batch_returns_the_replies_that_came() {
    let (_dir, path, handle) = start_with(moody(), Framing::Line).await;
    let mut client = within(Client::connect(&path)).await.unwrap();
    let PipelineError { replies, error } =
        within(client.pipeline(["good", "good", "oops", "good"]))
            .await
            .unwrap_err();
    assert_eq!(replies, ["good", "good"]);
    assert!(matches!(error, ClientError::Closed), "{error}");
    // The connection is gone: later calls say so at once.
    assert!(!client.is_usable());
    assert!(matches!(
        within(client.request("again")).await,
        Err(ClientError::Unusable { .. })
    ));
    handle.shutdown();
}

#[tokio::test]
async fn raw_framing_refuses_use_after_an_abandoned_call() {
    let (_dir, path, handle) = start_with(moody(), Framing::Raw).await;
    let opts = ClientOptions::default()
        .framing(Framing::Raw)
        .timeout(Some(Duration::from_millis(200)));
    let mut client = within(Client::connect_with(&path, opts)).await.unwrap();
    assert_eq!(within(client.request("texto")).await.unwrap(), "texto");
    assert!(matches!(
        within(client.request("slow")).await,
        Err(ClientError::Timeout(_))
    ));
    assert!(matches!(
        within(client.request("next")).await,
        Err(ClientError::Unusable { .. })
    ));
    handle.shutdown();
}

#[tokio::test]
async fn messages_may_be_borrowed() {
    let (_dir, path, handle) = start(Framing::Line).await;
    let mut client = within(Client::connect(&path)).await.unwrap();
    let words: Vec<String> = ["one", "two"].map(String::from).to_vec();
    for word in &words {
        assert_eq!(within(client.request(word)).await.unwrap(), word.as_str());
        assert_eq!(
            within(client.request(word.as_bytes())).await.unwrap(),
            word.as_str()
        );
    }
    assert_eq!(within(client.pipeline(&words)).await.unwrap(), words);
    let line = String::from("borrowed");
    assert_eq!(
        within(localipc_client::send(&path, &line)).await.unwrap(),
        "borrowed"
    );
    handle.shutdown();
}

#[tokio::test]
async fn send_request_and_pipeline() {
    for framing in [Framing::Line, Framing::Length] {
        let (_dir, path, handle) = start(framing).await;
        let opts = ClientOptions::default().framing(framing);
        let reply = within(localipc_client::send_with(&path, "one shot", opts))
            .await
            .unwrap();
        assert_eq!(reply, "one shot");

        let mut client = within(Client::connect_with(&path, opts)).await.unwrap();
        for i in 0..10 {
            assert_eq!(
                within(client.request(format!("req {i}"))).await.unwrap(),
                format!("req {i}")
            );
        }
        // A batch far larger than the socket buffers.
        let batch: Vec<String> = (0..20_000).map(|i| format!("batch {i}")).collect();
        let replies = within(client.pipeline(batch.clone())).await.unwrap();
        assert_eq!(replies.len(), batch.len());
        assert!(replies.iter().zip(&batch).all(|(r, b)| r == b));
        handle.shutdown();
    }
}

#[tokio::test]
async fn errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.sock");
    assert!(matches!(
        within(localipc_client::send(&missing, "x")).await,
        Err(ClientError::NoSocket { .. })
    ));
    let long = format!("/tmp/{}", "x".repeat(103));
    assert!(matches!(
        within(localipc_client::send(&long, "x")).await,
        Err(ClientError::PathTooLong {
            len: 108,
            max: 107,
            ..
        })
    ));
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(matches!(
        within(localipc_client::send(&stale, "x")).await,
        Err(ClientError::Refused { .. })
    ));
    let mute = dir.path().join("mute.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let opts = ClientOptions::default().timeout(Some(Duration::from_millis(100)));
    assert!(matches!(
        within(localipc_client::send_with(&mute, "x", opts)).await,
        Err(ClientError::Timeout(_))
    ));
    let (_d, path, _h) = start(Framing::Line).await;
    assert!(matches!(
        within(localipc_client::send(&path, "a\nb")).await,
        Err(ClientError::Message(_))
    ));
}

#[test]
fn a_runtime_without_timers_gives_an_error_not_a_panic() {
    // The server runs on a runtime of its own, with every driver.
    let full = tokio::runtime::Runtime::new().unwrap();
    let (_d, path, _h) = full.block_on(start(Framing::Line));
    // The client's runtime has I/O but no timers.
    let io_only = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    io_only.block_on(async {
        // With a time limit (the default), it says what the runtime lacks...
        let e = Client::connect(&path).await.unwrap_err();
        assert!(matches!(e, ClientError::Runtime(_)), "{e:?}");
        assert!(e.to_string().contains("enable_time"), "{e}");
        // ...and without one, it needs no timer and works.
        let options = ClientOptions::default().timeout(None);
        let mut client = Client::connect_with(&path, options).await.unwrap();
        assert_eq!(client.request("no timer").await.unwrap(), "no timer");
    });
    // Outside any runtime: an error too.
    let e = futures::executor::block_on(Client::connect(&path)).unwrap_err();
    assert!(matches!(e, ClientError::Runtime(_)), "{e:?}");
}

#[tokio::test]
async fn a_closed_connection_says_the_server_may_be_stopping() {
    let (_d, path, _h) = start_with(moody(), Framing::Line).await;
    let mut client = Client::connect(&path).await.unwrap();
    let e = within(client.request("oops")).await.unwrap_err();
    assert!(matches!(e, ClientError::Closed), "{e:?}");
    assert!(e.to_string().contains("stopping or restarting"), "{e}");
    // The connection is of no more use, and says why.
    let e = within(client.request("again")).await.unwrap_err();
    assert!(matches!(e, ClientError::Unusable { .. }), "{e:?}");
    assert!(!client.is_usable());
}

#[test]
fn a_runtime_without_io_gives_an_error_not_a_panic() {
    let full = tokio::runtime::Runtime::new().unwrap();
    let (_d, path, _h) = full.block_on(start(Framing::Line));
    // The client's runtime has timers but no I/O driver (enable_io forgotten).
    let time_only = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let e = time_only.block_on(Client::connect(&path)).unwrap_err();
    assert!(matches!(e, ClientError::Runtime(_)), "{e:?}");
    assert!(e.to_string().contains("enable_io"), "{e}");
}

/// Echoes with the request's descriptors given back; `slow` answers after 100 ms.
fn echo_fds() -> impl Handler {
    handler_fn(|request: Bytes, ctx| async move {
        ctx.echo_fds();
        if &request[..] == b"slow" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, BoxError>(request)
    })
}

/// A byte written through `sent_back` arrives at `read_end`: they are the same pipe.
fn same_pipe(sent_back: std::os::fd::OwnedFd, read_end: &mut std::io::PipeReader) -> bool {
    use std::io::{Read, Write};
    let mut w = std::fs::File::from(sent_back);
    w.write_all(b"x").unwrap();
    let mut byte = [0];
    read_end.read_exact(&mut byte).unwrap();
    byte == *b"x"
}

#[tokio::test]
async fn descriptors_go_with_their_own_call_even_after_abandoned_ones() {
    for framing in [Framing::Line, Framing::Length] {
        within(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("fds.sock");
            let server = Server::builder(echo_fds())
                .socket(&path)
                .framing(framing)
                .accept_fds(true)
                .send_fds(true)
                .bind()
                .unwrap();
            tokio::spawn(server.serve(std::future::pending()));
            let options = ClientOptions::default().framing(framing).accept_fds(4);
            let mut client = Client::connect_with(&path, options).await.unwrap();
            let (mut r, w) = std::io::pipe().unwrap();
            for i in 0..20 {
                // A call abandoned before its reply: the next one must not take that reply,
                // nor let the server bind its descriptor to the abandoned request.
                let abandoned =
                    tokio::time::timeout(Duration::from_millis(20), client.request("slow"));
                assert!(abandoned.await.is_err());
                let message = format!("with-fd {i}");
                let (reply, fds) = client
                    .request_with_fds(&message, vec![w.try_clone().unwrap().into()])
                    .await
                    .unwrap();
                assert_eq!(reply, message.as_bytes(), "{framing}");
                assert_eq!(fds.len(), 1, "{framing} call {i}");
                assert!(same_pipe(fds.into_iter().next().unwrap(), &mut r));
                // A call without descriptors gets none back.
                let (reply, fds) = client.request_with_fds("plain", Vec::new()).await.unwrap();
                assert_eq!((&reply[..], fds.len()), (&b"plain"[..], 0));
            }
        })
        .await;
    }
}

/// A server written here that answers the first request with `fds` descriptors, sent with the
/// reply's second byte when `late`; returns the client's error.
async fn bad_descriptors(count: usize, late: bool) -> ClientError {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = [0; 4];
        conn.read_exact(&mut request).unwrap();
        let fds: Vec<std::os::fd::OwnedFd> = (0..count)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect();
        let reply: &[u8] = if late {
            // The first byte alone, read by the client before the rest comes (the kernel
            // would otherwise join the two in one read).
            conn.write_all(b"o").unwrap();
            std::thread::sleep(Duration::from_millis(200));
            b"ne\n"
        } else {
            b"one\n"
        };
        localipc_core::fds::send_with_fds(&conn, &[std::io::IoSlice::new(reply)], &fds).unwrap();
        // Held open until the client is done.
        let _ = conn.read(&mut request);
    });
    let options = ClientOptions::default().accept_fds(4);
    let mut client = Client::connect_with(&path, options).await.unwrap();
    let e = client
        .request_with_fds("one", Vec::new())
        .await
        .unwrap_err();
    drop(client);
    server.join().unwrap();
    e
}

#[tokio::test]
async fn descriptors_past_the_cap_or_in_the_middle_of_a_reply_are_refused() {
    within(async {
        let e = bad_descriptors(5, false).await;
        assert!(matches!(e, ClientError::Fds(_)), "{e:?}");
        assert!(e.to_string().contains("at most 4 are accepted"), "{e}");
        let e = bad_descriptors(1, true).await;
        assert!(matches!(e, ClientError::Fds(_)), "{e:?}");
        assert!(e.to_string().contains("middle of a message"), "{e}");
    })
    .await;
}
