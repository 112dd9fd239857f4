//! Reference server: blocking std, one thread per connection, echo. Written as plainly as
//! possible, to measure ipc-server against. Not for production.
//!
//! Usage: ref-std-server PATH [line|length]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: ref-std-server PATH [line|length]");
    let length = args.next().as_deref() == Some("length");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).expect("bind");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || {
            let _ = if length {
                serve_length(stream)
            } else {
                serve_lines(stream)
            };
        });
    }
}

fn serve_lines(stream: UnixStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        writer.write_all(&line)?;
    }
}

fn serve_length(stream: UnixStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut frame = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if reader.read_exact(&mut len).is_err() {
            return Ok(());
        }
        frame.resize(u32::from_be_bytes(len) as usize, 0);
        reader.read_exact(&mut frame)?;
        writer.write_all(&len)?;
        writer.write_all(&frame)?;
    }
}
