//! The server as a library, in-process: custom handlers, failing and panicking handlers, and
//! shutdown driven by a future the test controls.

use std::time::Duration;

use bytes::Bytes;
use ipc_core::{BoxError, Context, Handler};
use ipc_server::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Echoes, but fails on `fail` and panics on `panic`.
struct Moody;

impl Handler for Moody {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Bytes, BoxError> {
        match &request[..] {
            b"fail" => Err("refusing on purpose".into()),
            b"panic" => panic!("handler blew up on purpose"),
            b"whoami" => Ok(format!("uid={} conn={}", ctx.peer().uid, ctx.connection_id()).into()),
            _ => Ok(request),
        }
    }
}

async fn exchange(s: &mut BufReader<UnixStream>, msg: &str) -> std::io::Result<Option<String>> {
    s.get_mut().write_all(format!("{msg}\n").as_bytes()).await?;
    let mut line = String::new();
    let n = s.read_line(&mut line).await?;
    Ok((n > 0).then(|| line.trim_end_matches('\n').to_owned()))
}

async fn connect(path: &std::path::Path) -> BufReader<UnixStream> {
    BufReader::new(UnixStream::connect(path).await.unwrap())
}

#[tokio::test]
async fn failing_and_panicking_handlers_end_only_their_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.sock");
    let server = Server::builder(Moody).socket(&path).bind().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let mut bystander = connect(&path).await;
    assert_eq!(
        exchange(&mut bystander, "hi").await.unwrap().as_deref(),
        Some("hi")
    );

    for poison in ["fail", "panic"] {
        let mut victim = connect(&path).await;
        assert_eq!(
            exchange(&mut victim, "ok").await.unwrap().as_deref(),
            Some("ok")
        );
        // The connection ends with no reply...
        assert!(matches!(
            exchange(&mut victim, poison).await,
            Ok(None) | Err(_)
        ));
        // ...and everyone else is still served.
        assert_eq!(
            exchange(&mut bystander, poison.to_uppercase().as_str())
                .await
                .unwrap()
                .as_deref(),
            Some(poison.to_uppercase().as_str())
        );
    }

    let me = nix_uid();
    let reply = exchange(&mut bystander, "whoami").await.unwrap().unwrap();
    assert!(reply.starts_with(&format!("uid={me} conn=")), "{reply}");

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("serve returns after the shutdown future completes")
        .unwrap()
        .unwrap();
    assert!(!path.exists(), "the socket file is removed");
}

#[tokio::test]
async fn the_handle_stops_the_server_and_open_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sock");
    let server = Server::builder(ipc_core::Echo)
        .socket(&path)
        .bind()
        .unwrap();
    let handle = server.handle();
    let running = tokio::spawn(server.serve(std::future::pending()));
    let mut client = connect(&path).await;
    assert_eq!(
        exchange(&mut client, "x").await.unwrap().as_deref(),
        Some("x")
    );
    handle.shutdown();
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    assert_eq!(client.read_line(&mut rest).await.unwrap(), 0);
    assert!(!path.exists());
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}
