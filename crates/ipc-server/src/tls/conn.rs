//! [`TlsConnection`]: a session's transport over TLS. rustls works on buffers here; the bytes
//! on the wire move through the plain TCP [`Connection`], so reads, writes, readiness and the
//! peer's progress work as they do on any other socket.
//!
//! What a session relies on holds through the encryption:
//! - **Written means handed to the kernel.** Plaintext is encrypted from the front of the
//!   caller's buffer, but the buffer is advanced past it only once its whole record has gone
//!   to the socket; until then a write says `WouldBlock`, and the session waits for room as
//!   for a full socket (it keeps its buffer, which it only appends to). So a session that has
//!   written its replies has nothing left in user space, and a close loses none of them.
//! - **Cancel-safe waits.** Ciphertext read from the socket is kept in the connection until
//!   rustls has taken it, and plaintext stays in rustls until a read hands it over, so a read
//!   dropped half-way loses nothing.
//! - **The end of the stream** is the client's `close_notify`, or the socket's end without
//!   one (the session then answers what is complete, as for a half-close). A clean end of the
//!   session sends `close_notify` before the socket closes.

use std::io::{self, Write};
use std::net::TcpStream;

use bytes::{Buf, BufMut, BytesMut};

use crate::conn::Connection;
use crate::transport::Transport;

/// Ciphertext asked of the socket per read.
const CIPHER_READ: usize = 16 * 1024 + 512;
/// Longest a close waits to send what is left of its records and `close_notify`.
const CLOSE_NOTIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Most plaintext encrypted per write (four full records).
const MAX_PLAIN: usize = 64 * 1024;

/// A TLS connection (server side) over an accepted TCP socket.
pub(crate) struct TlsConnection {
    tcp: Connection<TcpStream>,
    tls: Box<rustls::ServerConnection>,
    /// Ciphertext read from the socket that rustls has not taken yet.
    cipher_in: BytesMut,
    /// Ciphertext rustls made that the socket has not taken yet.
    cipher_out: BytesMut,
    /// Plaintext bytes at the front of the caller's buffer that were encrypted into
    /// `cipher_out`, and are skipped once it has gone.
    encrypted: usize,
    /// The client ended its side: `close_notify`, or the socket's end.
    ended: bool,
    /// `close_notify` was sent.
    closed: bool,
}

impl TlsConnection {
    /// A connection whose handshake has yet to be made ([`handshake`](Self::handshake)).
    pub(crate) fn new(tcp: Connection<TcpStream>, tls: rustls::ServerConnection) -> Self {
        Self {
            tcp,
            tls: Box::new(tls),
            cipher_in: BytesMut::new(),
            cipher_out: BytesMut::new(),
            encrypted: 0,
            ended: false,
            closed: false,
        }
    }

    /// The rustls side, for the client's certificate once the handshake is done.
    pub(crate) fn tls(&self) -> &rustls::ServerConnection {
        &self.tls
    }

    /// Makes the handshake: the client's certificate is verified on the way. The caller
    /// bounds it in time. An error (a certificate refused, say) is sent to the client as an
    /// alert, when the socket takes it.
    pub(crate) async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.seal_pending();
            while !self.cipher_out.is_empty() {
                self.tcp.write_buf(&mut self.cipher_out).await?;
            }
            if !self.tls.is_handshaking() {
                break;
            }
            if self.tcp.read(&mut self.cipher_in, CIPHER_READ).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed during the TLS handshake",
                ));
            }
            // Plaintext sent right after the handshake stays in rustls for the first read.
            self.absorb(None)?;
        }
        self.seal_pending();
        self.flush_now()?;
        Ok(())
    }

    /// Hands rustls the ciphertext read, and with `plain`, moves out every byte of plaintext
    /// it yields (so rustls's plaintext buffer never fills); without, it stops at the end of
    /// the handshake. Returns the bytes moved. An error
    /// of the protocol (a bad record, a refused certificate) is sent to the client as an
    /// alert, if the socket takes it now.
    fn absorb(&mut self, mut plain: Option<&mut BytesMut>) -> io::Result<usize> {
        let mut moved = 0;
        loop {
            match plain.as_deref_mut() {
                Some(plain) => moved += self.take_plaintext(plain)?,
                // During the handshake: what follows its end stays for the first read, which
                // takes the plaintext out as it goes (rustls holds at most 16 KiB of it).
                None if !self.tls.is_handshaking() => return Ok(moved),
                None => {}
            }
            if self.cipher_in.is_empty() {
                // Given back, so an idle connection holds no buffer of its own.
                self.cipher_in = BytesMut::new();
                return Ok(moved);
            }
            let taken = self.tls.read_tls(&mut &self.cipher_in[..])?;
            self.cipher_in.advance(taken);
            if let Err(e) = self.tls.process_new_packets() {
                self.seal_pending();
                let _ = self.flush_now();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if taken == 0 {
                return Ok(moved);
            }
        }
    }

    /// Moves the plaintext rustls holds into `plain` (straight from rustls's buffer); notes
    /// the client's end.
    fn take_plaintext(&mut self, plain: &mut BytesMut) -> io::Result<usize> {
        use std::io::BufRead;
        let mut moved = 0;
        loop {
            let mut reader = self.tls.reader();
            match reader.fill_buf() {
                // The client's close_notify, once everything before it is read.
                Ok([]) => {
                    self.ended = true;
                    return Ok(moved);
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    plain.extend_from_slice(chunk);
                    reader.consume(n);
                    moved += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                // The socket ended without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.ended = true;
                    return Ok(moved);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The socket has ended.
    fn socket_ended(&mut self) {
        let _ = self.tls.read_tls(&mut io::empty());
        self.ended = true;
    }

    /// Moves what rustls has to send into `cipher_out`.
    fn seal_pending(&mut self) {
        while self.tls.wants_write() {
            let mut out = (&mut self.cipher_out).writer();
            if self.tls.write_tls(&mut out).is_err() {
                break;
            }
        }
    }

    /// Writes what the socket takes of `cipher_out` now; once all is written, the buffer is
    /// given back, so an idle connection holds none of its own.
    fn flush_now(&mut self) -> io::Result<()> {
        while !self.cipher_out.is_empty() {
            match self.tcp.try_write_buf(&mut self.cipher_out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.cipher_out = BytesMut::new();
        Ok(())
    }
}

impl Transport for TlsConnection {
    /// Waits for plaintext (or the client's end) and moves it into `rbuf`.
    async fn read(&mut self, rbuf: &mut BytesMut, hint: usize) -> io::Result<usize> {
        loop {
            let moved = self.absorb(Some(rbuf))?;
            if moved > 0 {
                return Ok(moved);
            }
            if self.ended {
                return Ok(0);
            }
            // Records rustls made on its own (session tickets, a key update's answer).
            self.seal_pending();
            self.flush_now()?;
            if self.tcp.read(&mut self.cipher_in, hint).await? == 0 {
                self.socket_ended();
            }
        }
    }

    fn try_read(&mut self, rbuf: &mut BytesMut, hint: usize) -> io::Result<usize> {
        loop {
            let moved = self.absorb(Some(rbuf))?;
            if moved > 0 || self.ended {
                return Ok(moved);
            }
            if self.tcp.try_read(&mut self.cipher_in, hint)? == 0 {
                self.socket_ended();
            }
        }
    }

    /// Encrypts from the front of `buf` and advances past it once its records are all with
    /// the kernel; `WouldBlock` until then (see the module docs).
    fn try_write_buf<B: Buf>(&mut self, buf: &mut B) -> io::Result<usize> {
        self.flush_now()?;
        if !self.cipher_out.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.encrypted == 0 {
            let chunk = buf.chunk();
            let take = chunk.len().min(MAX_PLAIN);
            if take == 0 {
                return Ok(0);
            }
            self.encrypted = self.tls.writer().write(&chunk[..take])?;
            self.seal_pending();
            self.flush_now()?;
            if !self.cipher_out.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let written = std::mem::take(&mut self.encrypted).min(buf.remaining());
        buf.advance(written);
        Ok(written)
    }

    async fn write_buf<B: Buf + Send>(&mut self, buf: &mut B) -> io::Result<usize> {
        loop {
            match self.try_write_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Waits for room and sends more of the records.
                    self.tcp.write_buf(&mut self.cipher_out).await?;
                }
                result => return result,
            }
        }
    }

    fn unread_by_peer(&self) -> Option<usize> {
        Some(self.tcp.unread_by_peer()? + self.cipher_out.len())
    }

    fn hung_up(&mut self) -> impl std::future::Future<Output = io::Result<()>> + Send {
        self.tcp.hung_up()
    }

    fn discard_unread(&mut self, limit: usize) {
        self.cipher_in.clear();
        self.tcp.discard_unread(limit);
    }

    const LINGERS: bool = true;

    /// Sends `close_notify` after the replies (the client then knows the stream was not cut
    /// short), then closes as a TCP connection does, once the client has taken it all.
    async fn close(&mut self) {
        if !self.tls.is_handshaking() {
            self.tls.send_close_notify();
            self.closed = true;
            self.seal_pending();
        }
        let sent = tokio::time::timeout(CLOSE_NOTIFY_WAIT, async {
            while !self.cipher_out.is_empty() {
                if self.tcp.write_buf(&mut self.cipher_out).await.is_err() {
                    return;
                }
            }
        });
        let _ = sent.await;
        self.tcp.linger().await;
    }
}

/// Sends `close_notify`, if the socket takes it now: the session has ended (its replies
/// already with the kernel), and this tells the client the stream was not cut short.
impl Drop for TlsConnection {
    fn drop(&mut self) {
        if self.closed || self.tls.is_handshaking() {
            return;
        }
        self.tls.send_close_notify();
        self.seal_pending();
        let _ = self.flush_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::sync::Arc;

    /// A server config for `127.0.0.1` and a client config that trusts it (no client
    /// certificates: the transport is what is tested here).
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Whatever the socket takes, once the caller's buffer is empty every record is with the
    /// kernel: a session that has written its replies leaves nothing behind in user space, so
    /// it may wait for the next request (or close) without stalling a reader that waits for
    /// them. The socket's send buffer is made tiny and the peer reads slowly, so writes find
    /// it full, the last one too.
    #[tokio::test]
    async fn written_means_with_the_kernel_even_when_the_socket_is_full() {
        let (server_config, client_config) = configs();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        const TOTAL: usize = 4 * 1024 * 1024;
        let reader = std::thread::spawn(move || {
            let tcp = std::net::TcpStream::connect(address).unwrap();
            tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
                .unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let conn = rustls::ClientConnection::new(client_config, name).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let (mut got, mut chunk) = (0, vec![0u8; 4096]);
            while got < TOTAL {
                let n = tls.read(&mut chunk).expect("every byte arrives");
                assert!(n > 0, "the stream ended after {got} bytes");
                got += n;
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            got
        });
        let (stream, _) = listener.accept().unwrap();
        nix::sys::socket::setsockopt(&stream, nix::sys::socket::sockopt::SndBuf, &4096).unwrap();
        let tls = rustls::ServerConnection::new(server_config).unwrap();
        let mut conn = TlsConnection::new(Connection::new(stream).unwrap(), tls);
        conn.handshake().await.unwrap();
        let mut left = bytes::Bytes::from(vec![b'x'; TOTAL]);
        let mut full = 0;
        while left.has_remaining() {
            match conn.try_write_buf(&mut left) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    full += 1;
                    conn.write_buf(&mut left).await.unwrap();
                }
                Err(e) => panic!("{e}"),
            }
            if !left.has_remaining() {
                assert!(
                    conn.cipher_out.is_empty(),
                    "the caller's bytes all count as written, and {} bytes of records are \
                     still in user space",
                    conn.cipher_out.len()
                );
            }
        }
        assert!(
            full > 0,
            "the socket was never full: the test proves nothing"
        );
        assert_eq!(
            tokio::task::spawn_blocking(move || reader.join().unwrap())
                .await
                .unwrap(),
            TOTAL
        );
        drop(conn);
    }
}
