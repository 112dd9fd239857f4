//! Descriptors both ways. With a request: the client hands the server the write end of a pipe,
//! and the server streams lines into it, while the reply only says how many it sent. With a
//! reply: the server opens a file from a directory the client may not read, and hands the
//! open file to the client (privilege separation: the server decides, the client reads).
//!
//! Run it:    cargo run -p localipc-cli --example descriptors -- /tmp/fds.sock [DIR]
//! Talk to it (Python's standard library):
//!   python3 -c 'import os, socket; s = socket.socket(socket.AF_UNIX); s.connect("/tmp/fds.sock")
//!   r, w = os.pipe(); socket.send_fds(s, [b"lines 3\n"], [w]); os.close(w)
//!   print(os.read(r, 100)); print(s.recv(100))'
//! prints `b'line 1\nline 2\nline 3\n'` then `b'streamed 3 lines\n'`. And `open NAME` gets
//! `DIR/NAME`, opened for reading:
//!   python3 -c 'import os, socket; s = socket.socket(socket.AF_UNIX); s.connect("/tmp/fds.sock")
//!   s.sendall(b"open notes.txt\n"); msg, fds, _, _ = socket.recv_fds(s, 100, 1)
//!   print(msg, os.read(fds[0], 100))'
//! Stop it with Ctrl-C (or SIGTERM): the socket file is removed.

use localipc_server::Server;
use localipc_server::signal::ShutdownSignals;
use localipc_server::{BoxError, Bytes, Context, Handler, Response};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;

/// `lines N` writes N lines into the pipe sent with the request; `open NAME` sends back the
/// file NAME of the directory served, open for reading.
struct Files {
    dir: Option<std::path::PathBuf>,
}

impl Handler for Files {
    async fn handle(&self, request: Bytes, ctx: &Context) -> Result<Response, BoxError> {
        let text = String::from_utf8_lossy(&request);
        if let Some(name) = text.strip_prefix("open ") {
            return Ok(self.open(name, ctx).into());
        }
        let Some(count) = text
            .strip_prefix("lines ")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            return Ok("error: send `lines N` with the write end of a pipe".into());
        };
        // Taken now: a descriptor not taken by the time `handle` returns is closed.
        let Some(fd) = ctx.take_fd(0) else {
            return Ok("error: no descriptor came with the request".into());
        };
        // A pipe end, checked and switched to non-blocking by tokio.
        let mut pipe = match pipe::Sender::from_owned_fd(fd) {
            Ok(pipe) => pipe,
            Err(e) => return Ok(format!("error: not the write end of a pipe: {e}").into()),
        };
        for i in 1..=count {
            pipe.write_all(format!("line {i}\n").as_bytes()).await?;
        }
        Ok(format!("streamed {count} lines").into())
    }
}

impl Files {
    /// Opens `name` (a plain file name) in the directory served and pushes it for the reply.
    fn open(&self, name: &str, ctx: &Context) -> String {
        let Some(dir) = &self.dir else {
            return "error: no directory is served".to_owned();
        };
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return "error: give a plain file name".to_owned();
        }
        // The server's own rights open it; the peer gets the open file, read-only.
        let file = match std::fs::File::open(dir.join(name)) {
            Ok(file) => file,
            Err(e) => return format!("error: {name}: {e}"),
        };
        match ctx.push_fd(file.into()) {
            Ok(_) => format!("opened {name}"),
            Err(e) => format!("error: {e}"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .map_or_else(localipc_server::default_socket_path, Into::into);
    let dir = std::env::args().nth(2).map(Into::into);
    let mut signals = ShutdownSignals::new()?;
    let server = Server::builder(Files { dir })
        .socket(&path)
        .accept_fds(true)
        .send_fds(true)
        .bind()?;
    println!("descriptors example on {}", path.display());
    server
        .serve(async move {
            signals.recv().await;
        })
        .await?;
    Ok(())
}
