//! The client library: a one-shot send, many requests on one connection, and a pipelined batch.
//!
//! Start a server:  cargo run --bin ipc-server -- --mode echo --socket /tmp/echo.sock
//! Then run:        cargo run -p localipc-cli --example client -- /tmp/echo.sock

use localipc_client::{Client, ClientError};

#[tokio::main]
async fn main() -> Result<(), ClientError> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_client::default_socket_path, Into::into);

    // One message, one reply, connection closed.
    let reply = localipc_client::send(&path, "hello").await?;
    println!("send: {}", String::from_utf8_lossy(&reply));

    // Many exchanges on one connection.
    let mut client = Client::connect(&path).await?;
    for word in ["one", "two", "three"] {
        let reply = client.request(word).await?;
        println!("request: {}", String::from_utf8_lossy(&reply));
    }

    // A batch written before any reply is read; replies come back in order.
    let batch: Vec<String> = (1..=100).map(|i| format!("item {i}")).collect();
    let replies = client.pipeline(batch).await?;
    println!(
        "pipeline: {} replies, last {:?}",
        replies.len(),
        String::from_utf8_lossy(replies.last().map_or(&[][..], |r| &r[..]))
    );
    Ok(())
}
