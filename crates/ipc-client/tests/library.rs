//! The client library against an in-process server: one-shot sends, many exchanges on one
//! connection, pipelined batches, and errors as typed values.

use std::time::Duration;

use ipc_client::{Client, ClientError, ClientOptions, Framing};
use ipc_server::Server;

async fn start(
    framing: Framing,
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    ipc_server::ShutdownHandle,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.sock");
    let server = Server::builder(ipc_core::Echo)
        .socket(&path)
        .framing(framing)
        .bind()
        .unwrap();
    let handle = server.handle();
    tokio::spawn(server.serve(std::future::pending()));
    (dir, path, handle)
}

#[tokio::test]
async fn send_request_and_pipeline() {
    for framing in [Framing::Line, Framing::Length] {
        let (_dir, path, handle) = start(framing).await;
        let opts = ClientOptions::default().framing(framing);
        let reply = ipc_client::send_with(&path, "one shot", opts)
            .await
            .unwrap();
        assert_eq!(reply, "one shot");

        let mut client = Client::connect_with(&path, opts).await.unwrap();
        for i in 0..10 {
            assert_eq!(
                client.request(format!("req {i}")).await.unwrap(),
                format!("req {i}")
            );
        }
        // A batch far larger than the socket buffers.
        let batch: Vec<String> = (0..20_000).map(|i| format!("batch {i}")).collect();
        let replies = client.pipeline(batch.clone()).await.unwrap();
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
        ipc_client::send(&missing, "x").await,
        Err(ClientError::NoSocket { .. })
    ));
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(matches!(
        ipc_client::send(&stale, "x").await,
        Err(ClientError::Refused { .. })
    ));
    let mute = dir.path().join("mute.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&mute).unwrap();
    let opts = ClientOptions::default().timeout(Some(Duration::from_millis(100)));
    assert!(matches!(
        ipc_client::send_with(&mute, "x", opts).await,
        Err(ClientError::Timeout(_))
    ));
    let (_d, path, _h) = start(Framing::Line).await;
    assert!(matches!(
        ipc_client::send(&path, "a\nb").await,
        Err(ClientError::Message(_))
    ));
}
