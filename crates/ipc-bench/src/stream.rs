//! The streamed-replies load: one connection makes Varlink `more` calls of
//! `io.ipc.Messages.Count` one after another, and every reply is checked (its index follows the
//! last one, and only the last reply of a call ends it).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use localipc_core::{FrameCodec, Framing};
use tokio_util::codec::Decoder;

use crate::measure::{LoadReport, new_histogram};

/// Replies per call.
pub const REPLIES_PER_CALL: u64 = 10_000;

#[derive(serde::Deserialize)]
struct Reply {
    parameters: Option<Counted>,
    #[serde(default)]
    continues: bool,
    error: Option<String>,
}

#[derive(serde::Deserialize)]
struct Counted {
    index: i64,
}

/// Streams for `duration` and reports replies per second; the latency histogram holds the time
/// of each whole call.
pub fn run(socket: &Path, duration: Duration) -> LoadReport {
    let mut report = LoadReport {
        msgs: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        lost: 0,
        reordered: 0,
        corrupted: 0,
        io_errors: 0,
    };
    let start = Instant::now();
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(_) => {
            report.io_errors += 1;
            return report;
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let call = format!(
        "{{\"method\":\"io.ipc.Messages.Count\",\"parameters\":{{\"count\":{REPLIES_PER_CALL},\
         \"message\":\"m\"}},\"more\":true}}\0"
    );
    let mut codec = FrameCodec::new(Framing::Nul, 1 << 20);
    let mut rbuf = BytesMut::with_capacity(256 * 1024);
    // Reads land here and are appended to `rbuf`: one copy, where growing `rbuf` to read
    // into it would zero its free space on every read.
    let mut chunk = vec![0u8; 64 * 1024];
    while start.elapsed() < duration {
        let began = Instant::now();
        if stream.write_all(call.as_bytes()).is_err() {
            report.io_errors += 1;
            break;
        }
        let mut next = 0i64;
        let ended = loop {
            let frame = match codec.decode(&mut rbuf) {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => break false,
                        Ok(n) => rbuf.extend_from_slice(&chunk[..n]),
                    }
                    continue;
                }
                Err(_) => break false,
            };
            report.bytes += frame.len() as u64;
            match serde_json::from_slice::<Reply>(&frame) {
                Ok(Reply {
                    parameters: Some(Counted { index }),
                    continues,
                    error: None,
                }) if index == next => {
                    report.msgs += 1;
                    next += 1;
                    if !continues {
                        break next as u64 == REPLIES_PER_CALL;
                    }
                }
                _ => {
                    report.corrupted += 1;
                    break false;
                }
            }
        };
        if !ended {
            report.lost += REPLIES_PER_CALL.saturating_sub(next as u64);
            break;
        }
        let _ = report.latency.record(began.elapsed().as_nanos() as u64);
    }
    report.elapsed = start.elapsed();
    report
}
