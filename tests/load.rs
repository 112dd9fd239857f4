//! Many clients at once, deep pipelines and shutdown under load: no reply lost, reordered or
//! corrupted. Bounded in time by the harness's patience, with no timing assertions.

use std::io::{BufRead, BufReader, Write};
use std::thread;

mod support;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[test]
fn a_hundred_concurrent_clients() {
    let server = TestServer::start(&[]);
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(100));
    let clients: Vec<_> = (0..100)
        .map(|c| {
            let mut s = server.connect();
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                for i in 0..20 {
                    let msg = format!("client {c} message {i}");
                    s.write_all(format!("{msg}\n").as_bytes()).unwrap();
                    assert_eq!(read_line(&mut s).unwrap(), msg.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
}

#[test]
fn a_thousand_pipelined_requests_come_back_in_order() {
    let server = TestServer::start(&[]);
    let s = server.connect();
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        let mut all = String::new();
        for i in 0..1000 {
            all.push_str(&format!("request {i}\n"));
        }
        writer.write_all(all.as_bytes()).unwrap();
    });
    let mut reader = BufReader::new(s);
    for i in 0..1000 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, format!("request {i}\n"));
    }
    sender.join().unwrap();
}

/// Runs `conns` connections of `exchanges` request/reply rounds each; returns the replies each
/// connection got, checking every one it got. With `tolerate_close`, a connection may end early
/// (shutdown), but never with a wrong or out-of-order reply.
async fn run_load(
    path: std::path::PathBuf,
    conns: usize,
    exchanges: usize,
    tolerate_close: bool,
    started: Option<tokio::sync::mpsc::Sender<()>>,
) -> Vec<usize> {
    within(run_load_unbounded(
        path,
        conns,
        exchanges,
        tolerate_close,
        started,
    ))
    .await
}

/// The load's deadline: far above what it takes, so only a hang trips it.
const LOAD_DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LOAD_DEADLINE, f)
        .await
        .expect("the load did not finish within its deadline")
}

async fn run_load_unbounded(
    path: std::path::PathBuf,
    conns: usize,
    exchanges: usize,
    tolerate_close: bool,
    started: Option<tokio::sync::mpsc::Sender<()>>,
) -> Vec<usize> {
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let path = path.clone();
            let started = started.clone();
            tokio::spawn(async move {
                let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
                let (read, mut write) = stream.into_split();
                let mut read = tokio::io::BufReader::new(read);
                let mut line = Vec::new();
                for i in 0..exchanges {
                    let msg = format!("c{c}-m{i}\n");
                    if let Err(e) = write.write_all(msg.as_bytes()).await {
                        assert!(tolerate_close, "write failed: {e}");
                        return i;
                    }
                    line.clear();
                    match read.read_until(b'\n', &mut line).await {
                        Ok(n) if n > 0 => assert_eq!(line, msg.as_bytes(), "conn {c}"),
                        other => {
                            assert!(tolerate_close, "conn {c} ended early: {other:?}");
                            return i;
                        }
                    }
                    if let (0, Some(s)) = (i, &started) {
                        let _ = s.send(()).await;
                    }
                }
                exchanges
            })
        })
        .collect();
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await.unwrap());
    }
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_a_hundred_exchanges_each() {
    raise_fd_limit();
    // All from one user: its share is the whole cap.
    let server = TestServer::start(&["--max-connections-per-uid", "1024"]);
    let done = run_load(server.path().to_owned(), 1000, 100, false, None).await;
    assert!(done.iter().all(|&n| n == 100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_everything_it_read() {
    raise_fd_limit();
    let mut server = TestServer::start(&[
        "--shutdown-timeout",
        "10",
        "--log-format",
        "json",
        "--max-connections-per-uid",
        "1024",
    ]);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1000);
    let load = tokio::spawn(run_load(
        server.path().to_owned(),
        300,
        10_000,
        true,
        Some(tx),
    ));
    // Let every connection get going, then pull the plug mid-stream.
    for _ in 0..300 {
        within(rx.recv()).await.unwrap();
    }
    server.signal(Signal::SIGTERM);
    let received: usize = within(load).await.unwrap().into_iter().sum();
    assert_eq!(code(server.wait()), 0);
    assert!(!server.path().exists());
    // Every request the server answered reached its client: the server's own count of
    // answered requests equals what the clients received.
    // Read from the JSON log: the `answered` field of each connection's closing line.
    let answered: u64 = server
        .log()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .filter_map(|v| v["fields"]["answered"].as_u64())
        .sum();
    assert!(received >= 300, "{received}");
    assert_eq!(answered, received as u64);
}
