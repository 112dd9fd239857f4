//! Concurrency within one connection: a handler that waits 50 ms (on a database, say) answers 8
//! pipelined requests of one connection in about 50 ms instead of 400, and the replies still
//! come back in request order.
//!
//! Run it: cargo run -p localipc-cli --example concurrent
//! It serves on a temporary socket, sends the batch, prints the replies and the time, and exits.

use std::time::{Duration, Instant};

use localipc_server::{BoxError, Bytes, Server, handler_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("ipc-concurrent-{}.sock", std::process::id()));
    let waits = handler_fn(|request: Bytes, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, BoxError>(request)
    });
    let server = Server::builder(waits).socket(&path).concurrency(8).bind()?;
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(std::future::pending()));

    let mut client = localipc_client::Client::connect(&path).await?;
    let batch: Vec<String> = (1..=8).map(|i| format!("request {i}")).collect();
    let started = Instant::now();
    let replies = client.pipeline(&batch).await?;
    let took = started.elapsed();
    for reply in &replies {
        println!("{}", String::from_utf8_lossy(reply));
    }
    println!("8 requests of 50 ms each in {} ms", took.as_millis());

    handle.shutdown();
    serving.await??;
    let _ = std::fs::remove_file(path.with_extension("sock.lock"));
    Ok(())
}
