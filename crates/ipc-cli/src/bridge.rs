//! `ipc-client bridge`: this process's stdin and stdout as a connection to a local server, so
//! that a remote command (`ssh host ipc-client bridge`) can carry either protocol, as
//! `varlink bridge` does.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::exit;

/// Connects to the server at `path` (within `timeout`) and copies `input` to it, on a thread
/// of its own, and its bytes to `output`, until the server closes. The end of `input` ends the
/// connection's sending side only (the server may still answer); the server closing ends the
/// bridge, whatever `input` still holds.
///
/// # Errors
///
/// The exit code and line for a connection that fails, or a copy that fails.
pub fn bridge(
    path: &Path,
    timeout: Option<Duration>,
    mut input: impl Read + Send + 'static,
    mut output: impl Write,
) -> Result<(), (u8, String)> {
    let failed = |what: &str, e: std::io::Error| (exit::IO, format!("{what}: {e}"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed("cannot start the runtime", e))?;
    let stream = runtime
        .block_on(localipc_client::connect_socket(path, timeout))
        .map_err(crate::client_failure)?
        .into_std()
        .and_then(|s| s.set_nonblocking(false).map(|()| s))
        .map_err(|e| failed("the connection", e))?;
    let mut to_server = stream
        .try_clone()
        .map_err(|e| failed("the connection", e))?;
    // The sending side: when the input ends, the server reads no more, and may still answer.
    // A thread of its own, as reading the input may block for ever; it ends with the process.
    std::thread::spawn(move || {
        if std::io::copy(&mut input, &mut to_server).is_ok() {
            let _ = to_server.shutdown(std::net::Shutdown::Write);
        }
    });
    // Each read goes out at once (stdout holds bytes back until a newline, which Varlink's
    // messages do not end with).
    let mut from_server = stream;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from_server.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed("from the server", e)),
        };
        output
            .write_all(&buf[..n])
            .and_then(|()| output.flush())
            .map_err(|e| failed("to the output", e))?;
    }
}
