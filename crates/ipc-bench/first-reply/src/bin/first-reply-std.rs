//! The baseline of `ipc-bench-startup`: a client written with nothing but the standard
//! library's `UnixStream`, which connects to the socket given as its argument, sends one line,
//! reads the reply line and exits. What a user would write by hand.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn main() -> std::io::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .expect("usage: first-reply-std SOCKET");
    let mut conn = UnixStream::connect(path)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"first\n")?;
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply)?;
    assert_eq!(reply, "first\n");
    Ok(())
}
