//! The server as a library, in-process: custom handlers, failing, panicking and hanging handlers,
//! what the server reports it listens on, and shutdown driven by a future the test controls.
//! Every wait has a deadline, so a regression fails instead of hanging.

use std::future::Future;
use std::time::Duration;

use localipc_server::{
    BoxError, Bytes, Context, Handler, ListenAddress, Response, Server, ServerError, ShutdownHandle,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The longest any step of these tests may take.
const DEADLINE: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no result within {DEADLINE:?}"))
}

/// Echoes, but fails on `fail`, panics on `panic` and never answers `hang`.
struct Moody;

impl Handler for Moody {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        match &request[..] {
            b"fail" => Err("refusing on purpose".into()),
            b"panic" => panic!("handler blew up on purpose"),
            b"hang" => std::future::pending().await,
            b"whoami" => Ok(format!(
                "uid={} conn={}",
                ctx.peer().uid().unwrap_or(u32::MAX),
                ctx.connection_id()
            )
            .into()),
            _ => Ok(request.into()),
        }
    }
}

/// Sends one line and reads one; `None` when the server closed instead.
async fn exchange(s: &mut BufReader<UnixStream>, msg: &str) -> Option<String> {
    within("an exchange", async {
        s.get_mut()
            .write_all(format!("{msg}\n").as_bytes())
            .await
            .unwrap();
        let mut line = String::new();
        let n = s.read_line(&mut line).await.unwrap();
        (n > 0).then(|| line.trim_end_matches('\n').to_owned())
    })
    .await
}

async fn connect(path: &std::path::Path) -> BufReader<UnixStream> {
    BufReader::new(within("connect", UnixStream::connect(path)).await.unwrap())
}

/// Writes `input` in one write, then reads everything until the server closes.
async fn one_write_then_all(path: &std::path::Path, input: &[u8]) -> Vec<u8> {
    let mut s = within("connect", UnixStream::connect(path)).await.unwrap();
    within("a batch", async {
        s.write_all(input).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        out
    })
    .await
}

/// A running server with `Moody` at a fresh path, its request timeout set to 300 ms.
async fn moody(max_connections: usize) -> (tempfile::TempDir, std::path::PathBuf, ShutdownHandle) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.sock");
    let server = Server::builder(Moody)
        .socket(&path)
        .max_connections(max_connections)
        .request_timeout(Some(Duration::from_millis(300)))
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    (dir, path, handle)
}

#[tokio::test]
async fn failing_and_panicking_handlers_end_only_their_connection() {
    let (_dir, path, handle) = moody(64).await;
    let mut bystander = connect(&path).await;
    assert_eq!(exchange(&mut bystander, "hi").await.as_deref(), Some("hi"));

    for poison in ["fail", "panic", "hang"] {
        let mut victim = connect(&path).await;
        assert_eq!(exchange(&mut victim, "ok").await.as_deref(), Some("ok"));
        // The connection ends with no reply...
        assert_eq!(exchange(&mut victim, poison).await, None, "{poison}");
        // ...and everyone else is still served.
        let upper = poison.to_uppercase();
        assert_eq!(
            exchange(&mut bystander, &upper).await.as_deref(),
            Some(upper.as_str())
        );
    }

    let me = nix_uid();
    let reply = exchange(&mut bystander, "whoami").await.unwrap();
    assert!(reply.starts_with(&format!("uid={me} conn=")), "{reply}");

    handle.shutdown();
    within("the server stops", handle.stopped()).await;
    assert!(!path.exists(), "the socket file is removed");
}

#[tokio::test]
async fn replies_made_before_a_failure_are_written_before_the_close() {
    let (_dir, path, handle) = moody(64).await;
    // Four requests in one write; the third ends the connection in each of three ways. The
    // first two replies were made before it and must arrive; the fourth is never handled.
    for poison in ["fail", "panic", "hang"] {
        let input = format!("good\ngood\n{poison}\ngood\n");
        let got = one_write_then_all(&path, input.as_bytes()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            "good\ngood\n",
            "with {poison}"
        );
    }
    handle.shutdown();
    within("the server stops", handle.stopped()).await;
}

#[tokio::test]
async fn a_hung_handler_gives_its_permit_back_after_the_request_timeout() {
    // One connection at a time: the second is served only once the first is closed.
    let (_dir, path, handle) = moody(1).await;
    let mut hung = connect(&path).await;
    hung.get_mut().write_all(b"hang\n").await.unwrap();
    let mut next = connect(&path).await;
    assert_eq!(
        exchange(&mut next, "served").await.as_deref(),
        Some("served")
    );
    let mut rest = String::new();
    assert_eq!(
        within("the hung connection closes", hung.read_line(&mut rest))
            .await
            .unwrap(),
        0
    );
    handle.shutdown();
    within("the server stops", handle.stopped()).await;
}

#[tokio::test]
async fn the_handle_stops_the_server_and_open_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let server = Server::builder(localipc_server::Echo)
        .socket(&path)
        .bind()
        .unwrap();
    let handle = server.handle();
    let running = tokio::spawn(server.serve(std::future::pending()));
    let mut client = connect(&path).await;
    assert_eq!(exchange(&mut client, "x").await.as_deref(), Some("x"));
    handle.shutdown();
    within("serve returns", running).await.unwrap().unwrap();
    let mut rest = String::new();
    assert_eq!(
        within("the connection closes", client.read_line(&mut rest))
            .await
            .unwrap(),
        0
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn a_server_reports_what_it_really_listens_on() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ipc-lib-test-{}", std::process::id());
    // An abstract listener bound by the application.
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr).unwrap();
    let server = Server::builder(localipc_server::Echo)
        .listener(listener)
        .bind()
        .unwrap();
    assert_eq!(
        server.address(),
        &ListenAddress::Abstract(name.as_bytes().to_vec())
    );
    assert_eq!(server.path(), None);
    assert_eq!(server.address().to_string(), format!("@{name}"));
    drop(server);

    // The same through `socket("@name")`, served and reached by name.
    let server = Server::builder(localipc_server::Echo)
        .socket(format!("@{name}"))
        .bind()
        .unwrap();
    assert_eq!(server.address().to_string(), format!("@{name}"));
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    let mut s = BufReader::new(
        within("connect", UnixStream::connect(format!("\0{name}")))
            .await
            .unwrap(),
    );
    assert_eq!(
        exchange(&mut s, "abstract").await.as_deref(),
        Some("abstract")
    );
    handle.shutdown();
    within("the server stops", handle.stopped()).await;

    // A path-bound server reports its path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let server = Server::builder(localipc_server::Echo)
        .socket(&path)
        .bind()
        .unwrap();
    assert_eq!(server.path(), Some(path.as_path()));
    drop(server);

    // Varlink's address forms: `unix:PATH` is the path, `unix:@NAME` the abstract name.
    let server = Server::builder(localipc_server::Echo)
        .socket(format!("unix:{}", path.display()))
        .bind()
        .unwrap();
    assert_eq!(server.path(), Some(path.as_path()));
    assert_eq!(server.config().socket_path, path);
    drop(server);
    let server = Server::builder(localipc_server::Echo)
        .socket(format!("unix:@{name}"))
        .bind()
        .unwrap();
    assert_eq!(server.address().to_string(), format!("@{name}"));
    drop(server);
    // Another host's address, or a scheme not spoken, is refused; no file is made.
    let refused = |address: &str| {
        Server::builder(localipc_server::Echo)
            .socket(address)
            .bind()
            .unwrap_err()
    };
    assert!(matches!(
        refused("ssh-unix:box:/run/ipc.sock"),
        ServerError::NotLocal { .. }
    ));
    let vsock = refused("vsock:3:7000");
    assert!(matches!(vsock, ServerError::Address(_)), "{vsock:?}");
    assert!(
        vsock
            .to_string()
            .contains("vsock: addresses are not supported")
    );
    assert!(!std::path::Path::new("vsock:3:7000").exists());
    // TCP is served with TLS only, unless plain TCP on loopback is asked for.
    let tcp = refused("tcp:127.0.0.1:0");
    assert!(matches!(tcp, ServerError::InvalidConfig(_)), "{tcp:?}");
    assert!(tcp.to_string().contains("needs TLS"), "{tcp}");
    assert!(!std::path::Path::new("tcp:127.0.0.1:0").exists());
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}

/// Keeps an entry per open connection, through the connection hooks.
#[derive(Default)]
struct PerConnection {
    open: std::sync::Mutex<std::collections::HashMap<u64, u64>>,
    most: std::sync::atomic::AtomicUsize,
}

impl Handler for PerConnection {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let mut open = self.open.lock().unwrap();
        *open.entry(ctx.connection_id()).or_default() += 1;
        Ok(request.into())
    }

    fn connected(&self, ctx: &Context) {
        let mut open = self.open.lock().unwrap();
        open.insert(ctx.connection_id(), 0);
        self.most
            .fetch_max(open.len(), std::sync::atomic::Ordering::SeqCst);
    }

    fn disconnected(&self, ctx: &Context) {
        self.open.lock().unwrap().remove(&ctx.connection_id());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_state_goes_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.sock");
    let state = std::sync::Arc::new(PerConnection::default());
    let server = Server::builder(std::sync::Arc::clone(&state))
        .socket(&path)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    // 1,000 connections come and go, 50 at a time; some say something, some do not.
    for wave in 0..20 {
        let mut conns = Vec::new();
        for i in 0..50 {
            let mut c = connect(&path).await;
            if (wave + i) % 2 == 0 {
                assert_eq!(exchange(&mut c, "hi").await.as_deref(), Some("hi"));
            }
            conns.push(c);
        }
        drop(conns);
    }
    within("every connection's state is gone", async {
        while !state.open.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(state.most.load(std::sync::atomic::Ordering::SeqCst) >= 50);
    handle.shutdown();
    within("the server stops", handle.stopped()).await;
}

#[tokio::test]
async fn a_long_call_learns_of_the_shutdown_and_ends_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.sock");
    let watcher = localipc_server::handler_fn(|_request: Bytes, ctx: Context| async move {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => Ok::<_, BoxError>(Bytes::from("late")),
            () = ctx.shutdown() => Ok(Bytes::from("shutting down")),
        }
    });
    let server = Server::builder(watcher)
        .socket(&path)
        .shutdown_timeout(Duration::from_secs(60))
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    let mut client = connect(&path).await;
    client.get_mut().write_all(b"watch\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.shutdown();
    let mut line = String::new();
    within("the reply", client.read_line(&mut line))
        .await
        .unwrap();
    assert_eq!(line, "shutting down\n");
    // The drain did not wait for the 60 s shutdown timeout.
    within("the server stops", handle.stopped()).await;
}

#[tokio::test]
async fn requests_of_one_connection_overlap_with_concurrency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conc.sock");
    let waits = localipc_server::handler_fn(|request: Bytes, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, BoxError>(request)
    });
    let server = Server::builder(waits)
        .socket(&path)
        .concurrency(8)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    let mut s = within("connect", UnixStream::connect(&path)).await.unwrap();
    let batch: String = (0..8).map(|i| format!("r{i}\n")).collect();
    let started = std::time::Instant::now();
    s.write_all(batch.as_bytes()).await.unwrap();
    let mut got = vec![0; batch.len()];
    within("the replies", s.read_exact(&mut got)).await.unwrap();
    let took = started.elapsed();
    assert_eq!(String::from_utf8(got).unwrap(), batch, "in request order");
    // One after another they take 400 ms.
    assert!(took < Duration::from_millis(300), "{took:?}");
    handle.shutdown();
    within("the server stops", handle.stopped()).await;
}

#[tokio::test]
async fn server_bind_takes_an_at_name_as_an_abstract_name_and_creates_no_file() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("@ipc-lib-bind-{}", std::process::id());
    let config = localipc_server::ServerConfig::new(&name);
    let server = Server::bind(config, localipc_server::Echo).unwrap();
    assert!(
        matches!(server.address(), ListenAddress::Abstract(_)),
        "{:?}",
        server.address()
    );
    assert!(!std::path::Path::new(&name).exists(), "a file named {name}");
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(std::future::pending()));
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..]).unwrap();
    let stream = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
    stream.set_nonblocking(true).unwrap();
    let mut conn = BufReader::new(UnixStream::from_std(stream).unwrap());
    assert_eq!(exchange(&mut conn, "hi").await.as_deref(), Some("hi"));
    handle.shutdown();
    within("the stop", serving).await.unwrap().unwrap();
}

/// Reads what the pipe sent with the request holds (`read`), or says how many descriptors came
/// with it and whether index 1 can be taken twice (`count`).
struct PipeReader;

impl Handler for PipeReader {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        use std::io::Read;
        match &request[..] {
            b"read" => {
                let fd = ctx
                    .take_fd(0)
                    .ok_or("no descriptor came with the request")?;
                let mut text = String::new();
                std::fs::File::from(fd).read_to_string(&mut text)?;
                Ok(format!("read {text}").into())
            }
            _ => {
                let twice = (ctx.take_fd(1).is_some(), ctx.take_fd(1).is_some());
                Ok(format!("count {} {twice:?}", ctx.fd_count()).into())
            }
        }
    }
}

/// Sends `line` with `fds` in one `sendmsg`, and reads one reply line.
fn send_with_fds(
    s: &mut std::io::BufReader<std::os::unix::net::UnixStream>,
    line: &str,
    fds: &[std::os::fd::RawFd],
) -> String {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::io::BufRead;
    use std::os::fd::AsRawFd;
    let data = format!("{line}\n");
    let control = [ControlMessage::ScmRights(fds)];
    let control = if fds.is_empty() {
        &[][..]
    } else {
        &control[..]
    };
    sendmsg::<()>(
        s.get_ref().as_raw_fd(),
        &[std::io::IoSlice::new(data.as_bytes())],
        control,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    let mut reply = String::new();
    s.read_line(&mut reply).unwrap();
    reply.trim_end().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_takes_the_descriptors_that_came_with_its_request() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    for concurrency in [1, 4] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fds.sock");
        let server = Server::builder(PipeReader)
            .socket(&path)
            .accept_fds(true)
            .concurrency(concurrency)
            .bind()
            .unwrap();
        tokio::spawn(server.serve(std::future::pending()));
        let replies = within(
            "calls with descriptors",
            tokio::task::spawn_blocking(move || {
                let stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
                stream.set_read_timeout(Some(DEADLINE)).unwrap();
                let mut s = std::io::BufReader::new(stream);
                let (r, mut w) = std::io::pipe().unwrap();
                w.write_all(b"through the pipe").unwrap();
                drop(w);
                let (a, b) = std::io::pipe().unwrap();
                vec![
                    send_with_fds(&mut s, "read", &[r.as_raw_fd()]),
                    // Three with the next request, none with the one after: descriptors
                    // belong to their own request only.
                    send_with_fds(&mut s, "count", &[a.as_raw_fd(), b.as_raw_fd(), 0]),
                    send_with_fds(&mut s, "count", &[]),
                ]
            }),
        )
        .await
        .unwrap();
        assert_eq!(
            replies,
            [
                "read through the pipe",
                "count 3 (true, false)",
                "count 0 (false, false)"
            ],
            "concurrency {concurrency}"
        );
    }
}

#[cfg(feature = "systemd")]
#[tokio::test]
async fn a_handover_that_fails_leaves_the_server_serving_and_says_why() {
    use localipc_server::handover::{HandoverError, Successor};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let server = Server::builder(localipc_server::Echo)
        .socket(&path)
        .bind()
        .unwrap();
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(std::future::pending()));
    // A successor that exits at once.
    let e = within(
        "a failed successor",
        handle.hand_over(Successor::new("/bin/false")),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, HandoverError::Exited(_)), "{e:?}");
    // One that never says it is ready; meanwhile a second handover is refused.
    let hung = Successor::new("/bin/sleep")
        .args(["30"])
        .ready_timeout(Duration::from_millis(500));
    let (first, second) = tokio::join!(handle.hand_over(hung), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        handle.hand_over(Successor::new("/bin/true")).await
    });
    assert!(
        matches!(first, Err(HandoverError::NotReady(_))),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(HandoverError::InProgress)),
        "{second:?}"
    );
    // A program that cannot start.
    let e = handle
        .hand_over(Successor::new(dir.path().join("nothing-here")))
        .await
        .unwrap_err();
    assert!(matches!(e, HandoverError::Exited(_)), "{e:?}");
    // Still serving, and still the socket's owner.
    let mut client = connect(&path).await;
    assert_eq!(
        exchange(&mut client, "still").await.as_deref(),
        Some("still")
    );
    drop(client);
    handle.shutdown();
    within("the stop", serving).await.unwrap().unwrap();
    assert!(!path.exists());
    let e = handle
        .hand_over(Successor::new("/bin/true"))
        .await
        .unwrap_err();
    assert!(matches!(e, HandoverError::NotServing), "{e:?}");
}

#[tokio::test]
async fn each_address_has_its_own_limits_and_allow_lists() {
    use localipc_server::{AccessPolicy, Endpoint};
    let dir = tempfile::tempdir().unwrap();
    let (main, other) = (dir.path().join("main.sock"), dir.path().join("other.sock"));
    let name = format!("ipc-lib-endpoint-{}", std::process::id());
    let someone_else = nix_uid() + 1;
    let server = Server::builder(localipc_server::Echo)
        .socket(&main)
        .max_connections(8)
        // Admits another user only.
        .also_listen(Endpoint::new(&other).access(AccessPolicy::new(vec![someone_else], vec![])))
        // One connection at a time.
        .also_listen(Endpoint::new(format!("unix:@{name}")).max_connections(1))
        .bind()
        .unwrap();
    let addresses: Vec<_> = server.addresses().map(ToString::to_string).collect();
    assert_eq!(
        addresses,
        [
            main.display().to_string(),
            other.display().to_string(),
            format!("@{name}")
        ]
    );
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    let connect = |path: String| async move {
        BufReader::new(within("connect", UnixStream::connect(path)).await.unwrap())
    };
    // The main address admits this user; the other does not.
    let mut m = connect(main.display().to_string()).await;
    assert_eq!(exchange(&mut m, "main").await.as_deref(), Some("main"));
    let mut o = connect(other.display().to_string()).await;
    let _ = o.get_mut().write_all(b"other\n").await;
    let mut refused = String::new();
    // Closed without a reply (an end of stream, or a reset for the unread request).
    let read = within("the refusal", o.read_line(&mut refused)).await;
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?} {refused:?}");
    // The abstract address takes one connection at a time; the main one is not held up by it.
    let abstract_name = format!("\0{name}");
    let mut first = connect(abstract_name.clone()).await;
    assert_eq!(
        exchange(&mut first, "first").await.as_deref(),
        Some("first")
    );
    let mut second = connect(abstract_name).await;
    second.get_mut().write_all(b"second\n").await.unwrap();
    let mut line = String::new();
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read_line(&mut line));
    assert!(waited.await.is_err(), "served past its cap: {line:?}");
    let mut more = Vec::new();
    for i in 0..3 {
        let mut c = connect(main.display().to_string()).await;
        let msg = format!("main {i}");
        assert_eq!(exchange(&mut c, &msg).await, Some(msg));
        more.push(c);
    }
    // Its slot frees when the first closes: the second is answered.
    drop(first);
    within(
        "the second abstract connection",
        second.read_line(&mut line),
    )
    .await
    .unwrap();
    assert_eq!(line, "second\n");
    handle.shutdown();
    within("the server stops", handle.stopped()).await;
    assert!(!main.exists() && !other.exists());
}
