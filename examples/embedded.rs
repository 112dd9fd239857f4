//! A server inside an application that does other work, then stops it from the application and
//! waits for the drain to finish.
//!
//! Run it: cargo run -p localipc-cli --example embedded
//! It serves on a temporary socket, talks to itself three times, shuts the server down, and
//! exits.

use std::time::Duration;

use localipc_server::Server;
use localipc_server::{BoxError, Bytes, handler_fn};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join(format!("ipc-embedded-{}.sock", std::process::id()));

    // A handler from a closure: no type to declare.
    let handler = handler_fn(|request: Bytes, ctx| async move {
        let job = String::from_utf8_lossy(&request).into_owned();
        Ok::<_, BoxError>(Bytes::from(format!(
            "job {job} done for pid {:?}",
            ctx.peer().unix().and_then(|p| p.pid)
        )))
    });
    let server = Server::builder(handler).socket(&path).bind()?;
    let handle = server.handle();
    let serving = tokio::spawn(server.serve(std::future::pending()));

    // The application's own work goes on meanwhile.
    for job in 1..=3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let reply = localipc_client::send(&path, job.to_string()).await?;
        println!("{}", String::from_utf8_lossy(&reply));
    }

    // Stop the server from the application and wait until it has drained.
    handle.shutdown();
    handle.stopped().await;
    serving.await??;
    println!("server stopped; socket removed: {}", !path.exists());
    Ok(())
}
