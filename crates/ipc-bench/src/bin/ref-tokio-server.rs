//! Reference server: a minimal tokio server, `Framed` with `LinesCodec` (or
//! `LengthDelimitedCodec`), one task per connection, echo. Written as plainly as possible, to
//! measure ipc-server against. Not for production.
//!
//! Usage: ref-tokio-server PATH [line|length]

use futures::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec, LinesCodec};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: ref-tokio-server PATH [line|length]");
    let length = args.next().as_deref() == Some("length");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            if length {
                serve_length(stream).await;
            } else {
                serve_lines(stream).await;
            }
        });
    }
}

async fn serve_lines(stream: UnixStream) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(1 << 20));
    while let Some(Ok(line)) = framed.next().await {
        if framed.send(line).await.is_err() {
            return;
        }
    }
}

async fn serve_length(stream: UnixStream) {
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(1 << 20)
        .new_codec();
    let mut framed = Framed::new(stream, codec);
    while let Some(Ok(frame)) = framed.next().await {
        if framed.send(frame.freeze()).await.is_err() {
            return;
        }
    }
}
