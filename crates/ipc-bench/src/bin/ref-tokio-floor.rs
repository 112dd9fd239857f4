//! Reference server: the floor of tokio's task-per-connection model, for the instruction
//! counts. The coalescing C reference's design on tokio: a current-thread runtime with the
//! I/O, time and signal drivers (what any server with timeouts and a graceful stop has), a task
//! per connection, wait for readiness then read what is there into one reused buffer, answer
//! every complete line in it into one write buffer, send that buffer. No allocation per
//! message, no framing beyond finding newlines. Line framing only. Not for production.
//!
//! Usage: ref-tokio-floor PATH [line [io-only]]
//!
//! `io-only` builds the runtime with the I/O driver alone (no timers, no signals; SIGTERM then
//! ends the process at once), to show what those drivers cost.

use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

/// Read and write buffers' size, as the C reference's.
const BUF: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: ref-tokio-floor PATH [line [io-only]]")
        .clone();
    let io_only = args.get(3).is_some_and(|a| a == "io-only");
    let mut builder = tokio::runtime::Builder::new_current_thread();
    if io_only {
        builder.enable_io();
    } else {
        builder.enable_all();
    }
    let runtime = builder.build().expect("runtime");
    runtime.block_on(async move {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        if io_only {
            loop {
                if let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(serve(stream));
                }
            }
        }
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM");
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve(stream));
                    }
                }
                _ = term.recv() => return,
            }
        }
    });
}

async fn serve(stream: UnixStream) {
    let mut rbuf: Vec<u8> = Vec::with_capacity(BUF);
    let mut wbuf: Vec<u8> = Vec::with_capacity(BUF);
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.try_read_buf(&mut rbuf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        }
        // Every complete line, answered into one buffer.
        let mut start = 0;
        while let Some(end) = memchr::memchr(b'\n', &rbuf[start..]) {
            wbuf.extend_from_slice(&rbuf[start..=start + end]);
            start += end + 1;
        }
        rbuf.drain(..start);
        let mut sent = 0;
        while sent < wbuf.len() {
            match stream.try_write(&wbuf[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stream.writable().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        wbuf.clear();
    }
}
