//! TCP with mutual TLS: the real binaries on 127.0.0.1, certificates made here (`rcgen`): a
//! CA, the server's certificate, clients' (allow-listed, not allow-listed, expired, from
//! another CA), a client without one, a handshake that stalls, and a thousand connections of
//! a hundred calls each, every reply checked.

mod support;

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use support::*;

/// The certificates of one test, as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, the server's certificate (for 127.0.0.1 and localhost), and clients: `alice` and
    /// `bob` from the CA, `old` (alice's name, expired), `mallory` from another CA.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca, ca_issuer) = authority("test CA");
        let (rogue, rogue_issuer) = authority("rogue CA");
        fs::write(dir.path().join("ca.pem"), &ca).unwrap();
        fs::write(dir.path().join("rogue-ca.pem"), &rogue).unwrap();
        let leaf = |name: &str, issuer: &Issuer<'_, KeyPair>, server: bool, expired: bool| {
            let mut params = if server {
                CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap()
            } else {
                CertificateParams::new(vec![format!("{name}.clients.test")]).unwrap()
            };
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![if server {
                ExtendedKeyUsagePurpose::ServerAuth
            } else {
                ExtendedKeyUsagePurpose::ClientAuth
            }];
            if expired {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        for (file, name, issuer, server, expired) in [
            ("server", "server", &ca_issuer, true, false),
            ("alice", "alice", &ca_issuer, false, false),
            ("bob", "bob", &ca_issuer, false, false),
            ("old", "alice", &ca_issuer, false, true),
            ("mallory", "mallory", &rogue_issuer, false, false),
        ] {
            let (cert, key) = leaf(name, issuer, server, expired);
            fs::write(dir.path().join(format!("{file}.pem")), cert).unwrap();
            fs::write(dir.path().join(format!("{file}.key")), key).unwrap();
        }
        Self { dir }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The server's TLS flags.
    fn server_args(&self) -> Vec<String> {
        [
            ("--tls-cert", "server.pem"),
            ("--tls-key", "server.key"),
            ("--tls-client-ca", "ca.pem"),
        ]
        .into_iter()
        .flat_map(|(flag, file)| [flag.to_owned(), self.file(file).display().to_string()])
        .collect()
    }

    /// `ipc-client` flags for the client `who` (none: no certificate).
    fn client_args(&self, who: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--tls-ca".to_owned(),
            self.file("ca.pem").display().to_string(),
        ];
        if let Some(who) = who {
            args.extend([
                "--tls-cert".to_owned(),
                self.file(&format!("{who}.pem")).display().to_string(),
                "--tls-key".to_owned(),
                self.file(&format!("{who}.key")).display().to_string(),
            ]);
        }
        args
    }

    /// A rustls client configuration of the test's own for `who` (trusting the CA).
    fn rustls_client(&self, who: &str) -> std::sync::Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for ca in localipc_core::pem::certificates(&self.file("ca.pem")).unwrap() {
            roots.add(ca).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            localipc_core::pem::certificates(&self.file(&format!("{who}.pem"))).unwrap(),
            localipc_core::pem::private_key(&self.file(&format!("{who}.key"))).unwrap(),
        )
        .unwrap();
        std::sync::Arc::new(config)
    }

    /// The library client's options for `who`.
    fn options(&self, who: &str) -> localipc_client::TcpOptions {
        let (cert, key) = (
            self.file(&format!("{who}.pem")),
            self.file(&format!("{who}.key")),
        );
        localipc_client::TcpOptions::tls(self.file("ca.pem"), Some((&cert, &key))).unwrap()
    }
}

/// A self-signed CA: its PEM, and what signs with it.
fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A server with a Unix socket (for the harness) and a TCP address on an ephemeral port of
/// 127.0.0.1 with `tcp_settings` (`;KEY=VALUE...`); returns it and `tcp:127.0.0.1:PORT`.
fn start(pki: &Pki, args: &[&str], tcp_settings: &str) -> (TestServer, String) {
    let mut all: Vec<String> = pki.server_args();
    all.push("--also-socket".into());
    all.push(format!("tcp:127.0.0.1:0{tcp_settings}"));
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let server = TestServer::start(&refs);
    let mut address = String::new();
    wait_until("the server says which port it listens on", || {
        let log = server.log();
        let Some(at) = log.find("address=tcp:127.0.0.1:") else {
            return false;
        };
        let rest = &log[at + "address=".len()..];
        address = rest
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        true
    });
    (server, address)
}

/// `ipc-client --socket ADDRESS` with `args`, within the harness's patience.
fn client_at(address: &str, args: &[String]) -> std::process::Output {
    let mut cmd = client_cmd();
    clean_env(&mut cmd);
    cmd.arg("--socket").arg(address).args(args);
    cmd.output_within()
}

/// The bytes the kernel holds in the send queue of this host's TCP socket bound to `port`
/// (`tx_queue` in `/proc/net/tcp`): written by its program, not yet taken by the peer.
fn send_queue(port: u16) -> usize {
    let table = fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .find_map(|row| {
            let cols: Vec<&str> = row.split_whitespace().collect();
            let local_port = u16::from_str_radix(cols.get(1)?.rsplit(':').next()?, 16).ok()?;
            let tx = cols.get(4)?.split(':').next()?;
            (local_port == port).then(|| usize::from_str_radix(tx, 16).ok())?
        })
        .expect("the client's socket is in /proc/net/tcp")
}

/// A runtime for a test's library clients.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The library's client over TCP with TLS, within the harness's patience.
async fn tls_client(
    address: &localipc_core::Address,
    options: &localipc_client::TcpOptions,
) -> localipc_client::Client {
    let connection = localipc_client::connect_tcp(address, options, Some(PATIENCE))
        .await
        .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
    localipc_client::Client::from_connection(
        connection,
        localipc_client::ClientOptions::default().timeout(Some(PATIENCE)),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn allow_listed_certificates_are_served_in_both_protocols() {
    let pki = Pki::new();
    for protocol in PROTOCOLS {
        let (server, address) = start(
            &pki,
            &["--protocol", protocol],
            ";allow-cert=cn:alice;allow-cert=dns:bob.clients.test",
        );
        for who in ["alice", "bob"] {
            let mut args = pki.client_args(Some(who));
            let out = if protocol == "plain" {
                args.extend(strings(&["send", "hello über TLS", "two"]));
                client_at(&address, &args)
            } else {
                args.extend(strings(&[
                    "call",
                    "io.ipc.Messages.Echo",
                    r#"{"message":"hello über TLS"}"#,
                ]));
                client_at(&address, &args)
            };
            assert!(
                out.status.success(),
                "{protocol} {who}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            if protocol == "plain" {
                assert_eq!(stdout, "hello über TLS\ntwo\n");
            } else {
                assert_eq!(stdout.trim(), r#"{"message":"hello über TLS"}"#);
            }
        }
        // The log names the peer by its certificate.
        assert!(
            server.log().contains("certificate CN=alice (sha256:"),
            "{}",
            server.log()
        );
        // The Unix socket's allow-lists are the server's (none here): still served.
        if protocol == "plain" {
            let out = server.client(&["send", "local"]);
            assert_eq!(out.stdout, b"local\n");
        }
    }
}

#[test]
fn certificates_that_are_not_allowed_get_no_reply() {
    let pki = Pki::new();
    let (server, address) = start(&pki, &[], ";allow-cert=cn:alice");
    let send = |args: Vec<String>| {
        let mut args = args;
        args.extend(strings(&["send", "secret"]));
        client_at(&address, &args)
    };
    // Verified, but not on the allow-list: the server closes before any reply.
    let out = send(pki.client_args(Some("bob")));
    assert_eq!(
        code(out.status),
        76,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    wait_until("the refusal is logged with the certificate", || {
        server.log().contains("peer not on the allow-list") && server.log().contains("CN=bob")
    });
    // Refused at the handshake: another CA's, an expired one, none at all.
    for (who, why) in [
        (Some("mallory"), "another CA's certificate"),
        (Some("old"), "an expired certificate"),
        (None, "no certificate"),
    ] {
        let out = send(pki.client_args(who));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(out.status), 80, "{why}: {stderr}");
        assert!(stderr.contains("TLS:"), "{why}: {stderr}");
        assert!(out.stdout.is_empty(), "{why}");
    }
    // A client that does not trust the server's CA refuses it.
    let mut args = strings(&["--tls-ca"]);
    args.push(pki.file("rogue-ca.pem").display().to_string());
    let out = send(args);
    assert_eq!(code(out.status), 80);
    assert!(String::from_utf8_lossy(&out.stderr).contains("UnknownIssuer"));
    // Plain TCP to a TLS port: the request is never served (what comes back is the TLS
    // alert that ends the connection, which a line client takes for a last line).
    let out = send(strings(&["--plain-tcp"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("secret"));
    // The server goes on serving alice.
    let out = send(pki.client_args(Some("alice")));
    assert_eq!(
        out.stdout,
        b"secret\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        server.log().contains("TLS handshake failed"),
        "{}",
        server.log()
    );
}

#[test]
fn a_stalled_handshake_frees_its_slot_at_the_deadline() {
    let pki = Pki::new();
    let (server, address) = start(
        &pki,
        &["--tls-handshake-timeout", "1"],
        ";max-connections=1",
    );
    let target = address.trim_start_matches("tcp:");
    // Connects and sends nothing: it holds the only slot, until the deadline.
    let mut staller = TcpStream::connect(target).unwrap();
    staller.set_read_timeout(Some(PATIENCE)).unwrap();
    // Let the server take it before the real client comes.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let mut args = pki.client_args(Some("alice"));
    args.extend(strings(&["--timeout", "15", "send", "after"]));
    let out = client_at(&address, &args);
    assert_eq!(
        out.stdout,
        b"after\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "served while the stalled handshake held the only slot"
    );
    // The staller was closed, not served.
    let mut rest = Vec::new();
    let _ = staller.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "the server wrote to a client that sent no hello"
    );
    assert!(
        server.log().contains("TLS handshake not done in time"),
        "{}",
        server.log()
    );
}

#[test]
fn plain_tcp_only_on_loopback_and_only_when_asked() {
    let pki = Pki::new();
    // Asked for, on loopback: served, to a client that asks for it too.
    let (server, address) = start(&pki, &["--plain-tcp"], "");
    assert!(server.log().contains("(plain)"), "{}", server.log());
    let out = client_at(&address, &strings(&["--plain-tcp", "send", "in the clear"]));
    assert_eq!(
        out.stdout,
        b"in the clear\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A TLS client gets no reply from a plain port.
    let mut args = pki.client_args(Some("alice"));
    args.extend(strings(&["--timeout", "3", "send", "x"]));
    let out = client_at(&address, &args);
    assert_ne!(code(out.status), 0);
    assert!(out.stdout.is_empty());
    drop(server);
    // Not on loopback, and not without being asked: the server refuses to start (64).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock").display().to_string();
    for (args, says) in [
        (
            vec!["--plain-tcp", "--also-socket", "tcp:0.0.0.0:0"],
            "only served on a loopback",
        ),
        (vec!["--also-socket", "tcp:127.0.0.1:0"], "needs TLS"),
    ] {
        let mut cmd = server_cmd();
        clean_env(&mut cmd);
        cmd.arg("--socket").arg(&sock).args(&args);
        let out = cmd.output_within();
        assert_eq!(code(out.status), 64, "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // A client asks for plain TCP to loopback only.
    let out = client_at(
        "tcp:192.0.2.1:9",
        &strings(&["--plain-tcp", "--timeout", "1", "send", "x"]),
    );
    assert_ne!(code(out.status), 0);
}

#[test]
fn each_certificate_has_its_share_of_connections() {
    let pki = Pki::new();
    let (server, address) = start(&pki, &[], ";max-connections-per-uid=2");
    let address: localipc_core::Address = address.parse().unwrap();
    runtime().block_on(async {
        let open = |who: &'static str| {
            let (address, options) = (address.clone(), pki.options(who));
            async move { tls_client(&address, &options).await }
        };
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut alice = open("alice").await;
            assert_eq!(alice.request("in").await.unwrap(), &b"in"[..]);
            held.push(alice);
        }
        // A third of alice's is closed at once; bob has a share of his own.
        let mut third = open("alice").await;
        assert!(third.request("over").await.is_err());
        let mut bob = open("bob").await;
        assert_eq!(bob.request("bob").await.unwrap(), &b"bob"[..]);
        // One of alice's closes: her next one is served.
        drop(held.pop());
        let mut again = None;
        for _ in 0..100 {
            let mut alice = open("alice").await;
            if alice.request("again").await.is_ok() {
                again = Some(alice);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            again.is_some(),
            "alice is served again once she is under her share"
        );
    });
    assert!(
        server.log().contains("peer=certificate sha256:"),
        "{}",
        server.log()
    );
}

#[test]
fn a_thousand_connections_of_a_hundred_calls_each() {
    let pki = Pki::new();
    let (server, address) = start(&pki, &["--max-connections-per-uid", "200"], "");
    let address: localipc_core::Address = address.parse().unwrap();
    let options = pki.options("alice");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let checked = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
        for conn in 0..1000u32 {
            let (address, options, limit) = (address.clone(), options.clone(), limit.clone());
            tasks.spawn(async move {
                let _turn = limit.acquire_owned().await.unwrap();
                let mut client = tls_client(&address, &options).await;
                let messages: Vec<String> = (0..100)
                    .map(|call| format!("conn {conn} call {call}"))
                    .collect();
                // Half pipelined, half one at a time: both paths of the client.
                let replies = client.pipeline(messages[..50].iter()).await.unwrap();
                let mut checked = 0;
                for (reply, sent) in replies.iter().zip(&messages[..50]) {
                    assert_eq!(reply, sent.as_bytes());
                    checked += 1;
                }
                assert_eq!(replies.len(), 50);
                for sent in &messages[50..] {
                    assert_eq!(client.request(sent).await.unwrap(), sent.as_bytes());
                    checked += 1;
                }
                checked
            });
        }
        let mut checked = 0u64;
        while let Some(done) = tasks.join_next().await {
            checked += done.unwrap();
        }
        checked
    });
    assert_eq!(checked, 100_000);
    drop(server);
}

#[test]
fn large_pipelines_come_back_whole_and_a_stop_ends_the_stream_cleanly() {
    let pki = Pki::new();
    let (server, address) = start(&pki, &[], "");
    let address: localipc_core::Address = address.parse().unwrap();
    runtime().block_on(async {
        let mut client = tls_client(&address, &pki.options("alice")).await;
        // 4 MB each way, more than any socket buffer: the server's writes wait for room over
        // and over, and every reply still arrives whole and in order.
        let batch: Vec<String> = (0..4000).map(|i| format!("{i:0>1000}")).collect();
        let replies = client.pipeline(batch.iter()).await.unwrap();
        assert_eq!(replies.len(), batch.len());
        for (reply, sent) in replies.iter().zip(&batch) {
            assert_eq!(reply, sent.as_bytes());
        }
        // A stop: the idle connection is closed with close_notify, which the client reads
        // as the server closing, not as a TLS error.
        server.signal(nix::sys::signal::Signal::SIGTERM);
        wait_until("the server has stopped", || {
            server.log().contains("stopped")
        });
        let late = client.request("after the stop").await;
        assert!(
            matches!(late, Err(localipc_client::ClientError::Closed)),
            "{late:?}"
        );
    });
}

#[test]
fn a_slow_reader_gets_every_reply_to_the_last() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = Pki::new();
    let (_server, address) = start(&pki, &[], "");
    let address: localipc_core::Address = address.parse().unwrap();
    runtime().block_on(async {
        let connection =
            localipc_client::connect_tcp(&address, &pki.options("alice"), Some(PATIENCE))
                .await
                .unwrap();
        let (mut reader, mut writer) = tokio::io::split(connection);
        // 16,000 requests of 2 KB (32 MB, more than TCP's buffers on loopback hold) in one
        // go, the connection kept open (no half-close); the replies are read slowly, so the
        // server's writes find the socket full again and again. Every reply must come, to the
        // last byte.
        let line = format!("{}\n", "x".repeat(2047));
        let requests = 16_000;
        let write = async move {
            for _ in 0..requests {
                writer.write_all(line.as_bytes()).await.unwrap();
            }
            writer.flush().await.unwrap();
            writer
        };
        let read = async move {
            let (mut got, mut chunk) = (0usize, vec![0u8; 16 * 1024]);
            while got < requests * 2048 {
                let n = reader.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the server closed after {got} bytes");
                got += n;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            got
        };
        let both = async { tokio::join!(write, read) };
        let (_writer, got) = tokio::time::timeout(PATIENCE, both)
            .await
            .expect("every reply arrives; the last ones stalled");
        assert_eq!(got, requests * 2048);
    });
}

#[test]
fn handlers_see_the_certificate_of_the_peer() {
    use localipc_server::{CertificateName, Server, TlsSettings, handler_fn};
    let pki = Pki::new();
    // A server of the library's own, on TCP only: its handler answers with what it knows of
    // the peer.
    let handler = handler_fn(
        |_request: bytes::Bytes, ctx: localipc_server::Context| async move {
            let id = ctx
                .peer()
                .certificate()
                .expect("a verified certificate")
                .clone();
            Ok::<_, localipc_server::BoxError>(format!(
                "{}|{}|{}|{}",
                id.common_names.join(","),
                id.dns_names.join(","),
                id.subject,
                id.fingerprint
            ))
        },
    );
    let settings = TlsSettings::new(
        pki.file("server.pem"),
        pki.file("server.key"),
        pki.file("ca.pem"),
    );
    runtime().block_on(async {
        let server = Server::builder(handler)
            .socket("tcp:127.0.0.1:0")
            .tls(settings)
            .bind()
            .unwrap();
        let localipc_server::ListenAddress::Tcp { address, tls: true } = server.address().clone()
        else {
            panic!("{:?}", server.address());
        };
        let handle = server.handle();
        let serving = tokio::spawn(server.serve(std::future::pending()));
        let address: localipc_core::Address = format!("tcp:{address}").parse().unwrap();
        let ask = |who: &'static str| {
            let (address, options) = (address.clone(), pki.options(who));
            async move {
                let mut client = tls_client(&address, &options).await;
                let reply = client.request("who am I").await.unwrap();
                String::from_utf8(reply.to_vec()).unwrap()
            }
        };
        let alice = ask("alice").await;
        let parts: Vec<&str> = alice.split('|').collect();
        assert_eq!(
            parts[..3],
            ["alice", "alice.clients.test", "CN=alice"],
            "{alice}"
        );
        // The fingerprint is what an allow-list names, and it reads back as itself.
        let fingerprint: CertificateName = parts[3].parse().unwrap();
        assert_eq!(fingerprint.to_string(), parts[3]);
        assert_eq!(
            ask("alice").await,
            alice,
            "the same certificate, the same identity"
        );
        let bob = ask("bob").await;
        assert!(
            bob.starts_with("bob|bob.clients.test|CN=bob|sha256:"),
            "{bob}"
        );
        assert_ne!(bob.split('|').nth(3), Some(parts[3]));
        handle.shutdown();
        serving.await.unwrap().unwrap();
    });
}

/// What a stop did to a client that lags: how many requests it wrote before the stop, how
/// many of them may not have left its own kernel, the replies it read, and how many the
/// server says it answered.
struct Lagging {
    written: usize,
    slack: usize,
    unsent: usize,
    replies: usize,
    answered: usize,
}

/// A client of the test's own that writes 16 KiB requests and reads nothing until the server
/// stops reading (its replies fill the client's small receive buffer, and requests wait in the
/// server's socket), then the stop (SIGTERM), then the client reads everything. `args` are the
/// server's. Every reply read is checked against its request.
fn stop_while_a_client_lags(args: &[&str]) -> Lagging {
    use std::io::Write;
    let pki = Pki::new();
    let (server, address) = start(&pki, args, "");
    let target: std::net::SocketAddr = address.trim_start_matches("tcp:").parse().unwrap();
    // A client socket with a small receive buffer, set before it connects (so it stays
    // small): the server's replies fill it at once, and requests then wait in the server's
    // socket, unread, as the stop comes.
    let fd = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::STREAM,
        None,
    )
    .unwrap();
    rustix::net::sockopt::set_socket_recv_buffer_size(&fd, 8192).unwrap();
    rustix::net::connect(&fd, &target).unwrap();
    let tcp = std::net::TcpStream::from(fd);
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(pki.rustls_client("alice"), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Requests of 16 KiB, each written only once the socket has room for it (so none is cut
    // off half-way), until the socket stays full for half a second.
    let line = |i: usize| format!("{i:0>16383}\n");
    let mut written = 0;
    while written < 4096 {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let mut room = [PollFd::new(&tls.sock, PollFlags::OUT)];
        let half_a_second = Timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        if rustix::event::poll(&mut room, Some(&half_a_second)).unwrap() == 0 {
            break;
        }
        tls.write_all(line(written).as_bytes()).unwrap();
        tls.flush().unwrap();
        written += 1;
    }
    assert!(
        written < 4096,
        "the server never stopped reading: the test proves nothing"
    );
    // What the client's own kernel still holds has not reached the server: those requests
    // (`slack` at most) are not owed a reply. The rest, in the server's socket, are.
    let unsent = send_queue(tls.sock.local_addr().unwrap().port());
    let slack = unsent.div_ceil(16 * 1024 + 22) + 1;
    server.signal(nix::sys::signal::Signal::SIGTERM);
    wait_until("the server begins to stop", || {
        server.log().contains("shutdown requested")
    });
    // Every request written whole before the stop is answered, in order; the connection was
    // never half-closed. (What follows the last reply may be a reset: the rest of a request
    // cut off by the write's time limit is left unread.)
    let mut all = Vec::new();
    if let Err(e) = tls.read_to_end(&mut all) {
        eprintln!("the read ended with {e}");
    }
    let replies: Vec<&[u8]> = all
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(*reply, line(i).trim_end().as_bytes(), "reply {i}");
    }
    wait_until("the server stops", || server.log().contains("stopped"));
    // The server's count of the replies it wrote whole, for this connection (the second: the
    // harness's probe was the first).
    let log = server.log();
    let answered = log
        .lines()
        .filter(|l| l.contains("conn{id=2}") && l.contains("answered="))
        .find_map(|l| {
            l.rsplit("answered=")
                .next()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no count of replies in the log: {log}"));
    Lagging {
        written,
        slack,
        unsent,
        replies: replies.len(),
        answered,
    }
}

#[test]
fn requests_that_reached_the_server_before_a_stop_are_answered_over_tls() {
    // A stop drains one maximum message and 256 KiB more of what waits in a socket: with
    // messages up to 64 MiB, all of this test's requests.
    let lag = stop_while_a_client_lags(&["--max-frame", "67108864"]);
    let Lagging {
        written,
        slack,
        unsent,
        replies,
        answered,
    } = lag;
    assert!(
        replies + slack >= written,
        "{written} requests were written before the stop ({slack} of them perhaps still in the \
         client's send queue, {unsent} bytes) and {replies} answered"
    );
    assert!(
        written > slack + 16,
        "too few requests reached the server's socket: the test proves little"
    );
    assert_eq!(
        replies, answered,
        "every reply the server wrote reaches the client"
    );
}

#[test]
fn replies_written_before_a_close_reach_a_slow_client_over_tcp() {
    // At the default maximum message, a stop drains 1.25 MiB of the requests waiting, and
    // closes with the rest unread: a plain close would reset the connection, and the kernel
    // would drop the replies the client has not taken yet. Every reply the server wrote must
    // reach the client.
    let lag = stop_while_a_client_lags(&[]);
    assert!(
        lag.answered < lag.written,
        "the drain took every request ({} of {}): no input was left unread, the test proves \
         nothing",
        lag.answered,
        lag.written
    );
    assert_eq!(
        lag.replies, lag.answered,
        "the server wrote {} replies and the client read {}",
        lag.answered, lag.replies
    );
}

#[test]
fn seamless_restarts_keep_the_tcp_address_and_lose_no_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let pki = Pki::new();
    // Port 0: the successor takes the TCP socket passed to it, so the port stays.
    let (server, address) = start(&pki, &[], "");
    let current = Arc::new(AtomicU32::new(server.pid() as u32));
    // The successors outlive the harness's server process: whichever serves last is stopped.
    struct StopLast(Arc<AtomicU32>);
    impl Drop for StopLast {
        fn drop(&mut self) {
            let pid = nix::unistd::Pid::from_raw(self.0.load(Ordering::SeqCst) as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _stop_last = StopLast(Arc::clone(&current));
    let parsed: localipc_core::Address = address.parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Clients as real ones behave, during the restarts: new connections with one call each,
    // and long-lived ones that call again and again (a call on a connection the old server
    // closed after its drain is sent again on a new one, as the README says).
    let load = {
        let (stop, options) = (Arc::clone(&stop), pki.options("alice"));
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for t in 0..6 {
                    let (stop, options, address) =
                        (Arc::clone(&stop), options.clone(), parsed.clone());
                    tasks.spawn(async move {
                        let (mut answered, mut resent, mut failures) = (0u64, 0u64, Vec::new());
                        let mut kept: Option<localipc_client::Client> = None;
                        let mut i = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            i += 1;
                            let request = format!("c{t}-{i}");
                            let long_lived = t % 3 == 0;
                            let mut client = match kept.take() {
                                Some(client) => client,
                                None => match localipc_client::connect_tcp(
                                    &address,
                                    &options,
                                    Some(PATIENCE),
                                )
                                .await
                                {
                                    Ok(c) => localipc_client::Client::from_connection(
                                        c,
                                        localipc_client::ClientOptions::default()
                                            .timeout(Some(PATIENCE)),
                                    ),
                                    Err(e) => {
                                        failures.push(format!("{request}: connect: {e}"));
                                        continue;
                                    }
                                },
                            };
                            match client.request(&request).await {
                                Ok(reply) if reply == request.as_bytes() => {
                                    answered += 1;
                                    if long_lived {
                                        kept = Some(client);
                                    }
                                }
                                Ok(reply) => failures.push(format!("{request}: got {reply:?}")),
                                // The old server closed this long-lived connection: again, on
                                // a new one.
                                Err(localipc_client::ClientError::Closed) if long_lived => {
                                    resent += 1;
                                }
                                Err(e) => failures.push(format!("{request}: {e}")),
                            }
                        }
                        (answered, resent, failures)
                    });
                }
                let mut total = (0u64, 0u64, Vec::new());
                while let Some(done) = tasks.join_next().await {
                    let (answered, resent, failures) = done.unwrap();
                    total.0 += answered;
                    total.1 += resent;
                    total.2.extend(failures);
                }
                total
            })
        })
    };
    let restarts = 5;
    for round in 1..=restarts {
        std::thread::sleep(Duration::from_millis(300));
        let old = current.load(Ordering::SeqCst);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old as i32),
            nix::sys::signal::Signal::SIGUSR2,
        )
        .unwrap();
        let mut next = 0;
        wait_until("the successor is ready", || {
            let log = server.log();
            let ready: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("the successor is ready"))
                .collect();
            if ready.len() < round {
                return false;
            }
            next = ready[round - 1]
                .rsplit("successor=")
                .next()
                .and_then(|p| p.split_whitespace().next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            true
        });
        assert_ne!(next, 0);
        current.store(next, Ordering::SeqCst);
        wait_until("the old server is gone", || {
            std::fs::read_to_string(format!("/proc/{old}/stat"))
                .map_or(true, |stat| stat.contains(") Z"))
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (answered, resent, failures) = load.join().unwrap();
    eprintln!("{restarts} restarts: {answered} calls answered, {resent} sent again");
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    assert!(answered > 100, "{answered}");
    // Every successor served the same address: the port stayed.
    let log = server.log();
    let port_lines = log.matches(&format!("address={address} ")).count();
    assert!(port_lines > restarts, "{log}");
}

#[test]
fn an_idle_tls_connection_is_closed_at_the_idle_timeout() {
    let pki = Pki::new();
    let (server, address) = start(&pki, &["--idle-timeout", "1"], "");
    let address: localipc_core::Address = address.parse().unwrap();
    runtime().block_on(async {
        let mut client = tls_client(&address, &pki.options("alice")).await;
        assert_eq!(client.request("awake").await.unwrap(), &b"awake"[..]);
        // Nothing for longer than the idle timeout: the server closes the connection.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let late = client.request("too late").await;
        assert!(
            matches!(late, Err(localipc_client::ClientError::Closed)),
            "{late:?}"
        );
    });
    assert!(
        server.log().contains("closing idle connection"),
        "{}",
        server.log()
    );
}

#[test]
fn python_ssl_clients_are_served_in_both_protocols() {
    // Python's standard ssl module: OpenSSL on the client's side, with a client certificate.
    let pki = Pki::new();
    for protocol in PROTOCOLS {
        let (_server, address) = start(&pki, &["--protocol", protocol], ";allow-cert=cn:alice");
        let port = address.rsplit(':').next().unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(peer("tls_client.py"))
            .args(["127.0.0.1", port])
            .args([
                pki.file("ca.pem"),
                pki.file("alice.pem"),
                pki.file("alice.key"),
            ])
            .args([protocol, "500"]);
        let out = cmd.output_within();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{protocol}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.starts_with("ok 500 TLSv1."), "{stdout}");
    }
}

#[test]
fn requests_sent_with_the_end_of_the_handshake_are_all_served() {
    use std::io::Write;
    // A client that writes a large pipelined batch the moment its side of the handshake is
    // done: its last handshake message and 256 KiB of requests reach the server together.
    let pki = Pki::new();
    let (_server, address) = start(&pki, &[], "");
    let target = address.trim_start_matches("tcp:");
    for round in 0..5 {
        let tcp = std::net::TcpStream::connect(target).unwrap();
        tcp.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut tls = rustls::StreamOwned::new(
            rustls::ClientConnection::new(
                pki.rustls_client("alice"),
                rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap(),
            )
            .unwrap(),
            tcp,
        );
        let batch: String = (0..256).map(|i| format!("{round}-{i:0>1017}\n")).collect();
        tls.write_all(batch.as_bytes()).unwrap();
        tls.flush().unwrap();
        let mut got = vec![0u8; batch.len()];
        tls.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(got == batch.as_bytes(), "round {round}: replies differ");
    }
}
