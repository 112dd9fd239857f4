//! The Varlink side of `ipc-client`: `call` and `introspect`, their output (JSON, one object per
//! line) and their exit codes.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use localipc_varlink::{CallError, VarlinkClient};
use serde_json::Value;

use crate::exit;

/// A failure: the exit code and the line for stderr.
pub type Failure = (u8, String);

/// How to make a call.
#[derive(Debug)]
pub enum CallKind {
    /// One reply; `fds` go with the call.
    Plain {
        /// Descriptors passed with the call.
        fds: Vec<OwnedFd>,
    },
    /// `more`: every reply, until the last.
    More,
    /// `oneway`: no reply.
    Oneway,
}

/// Parses the parameters argument: a JSON object (`null` or nothing for none).
///
/// # Errors
///
/// A usage failure if it is not JSON, or not an object.
pub fn parse_parameters(text: Option<&str>) -> Result<Value, Failure> {
    let value = match text {
        None => return Ok(Value::Object(Default::default())),
        Some(text) => serde_json::from_str::<Value>(text)
            .map_err(|e| (exit::USAGE, format!("the parameters are not JSON: {e}")))?,
    };
    match value {
        Value::Null => Ok(Value::Object(Default::default())),
        Value::Object(_) => Ok(value),
        _ => Err((
            exit::USAGE,
            "the parameters must be a JSON object, such as '{\"message\": \"hi\"}'".to_owned(),
        )),
    }
}

/// Calls `method` (with descriptors, for a plain call) and writes each reply's parameters to `out`,
/// one JSON object per line; the descriptors that come with a plain call's reply are listed
/// on stderr.
/// `timeout` bounds connecting and, but for `more` calls (which may stream for ever), the reply.
///
/// # Errors
///
/// The exit code and message for what went wrong; replies already written stay written.
#[expect(clippy::too_many_arguments, reason = "the command's flags, one each")]
pub async fn call(
    path: &Path,
    tls: &crate::TlsArgs,
    timeout: Option<Duration>,
    max_message: usize,
    method: &str,
    parameters: &Value,
    kind: CallKind,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut client = connect(path, tls, timeout, max_message).await?;
    match kind {
        CallKind::Plain { fds } => {
            // Descriptors that come with the reply are taken, to be listed.
            client.accept_fds(localipc_client::MAX_FDS_PER_MESSAGE);
            let (reply, received): (Value, _) = client
                .call_with_fds(method, parameters, fds)
                .await
                .map_err(failure)?;
            crate::report_fds(received);
            print(out, &reply)
        }
        CallKind::Oneway => client.oneway(method, parameters).await.map_err(failure),
        CallKind::More => {
            client.set_timeout(None);
            let replies = client
                .call_more::<_, Value>(method, parameters)
                .await
                .map_err(failure)?;
            futures::pin_mut!(replies);
            while let Some(reply) = replies.next().await {
                print(out, &reply.map_err(failure)?)?;
            }
            Ok(())
        }
    }
}

/// Writes the service's `GetInfo` as JSON, or with `interface`, that interface's description.
///
/// # Errors
///
/// As [`call`].
pub async fn introspect(
    path: &Path,
    tls: &crate::TlsArgs,
    timeout: Option<Duration>,
    max_message: usize,
    interface: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut client = connect(path, tls, timeout, max_message).await?;
    match interface {
        None => {
            let info = client.info().await.map_err(failure)?;
            let info = serde_json::to_value(info).map_err(|e| (exit::SOFTWARE, e.to_string()))?;
            print(out, &info)
        }
        Some(interface) => {
            let text = client.describe(interface).await.map_err(failure)?;
            out.write_all(text.as_bytes())
                .and_then(|()| {
                    if text.ends_with('\n') {
                        Ok(())
                    } else {
                        out.write_all(b"\n")
                    }
                })
                .and_then(|()| out.flush())
                .map_err(crate::stdout_failure)
        }
    }
}

async fn connect(
    path: &Path,
    tls: &crate::TlsArgs,
    timeout: Option<Duration>,
    max_message: usize,
) -> Result<VarlinkClient, Failure> {
    let connection = tls
        .connect(path, timeout)
        .await
        .map_err(|e| failure(e.into()))?;
    Ok(VarlinkClient::from_connection(
        connection,
        timeout,
        max_message,
    ))
}

fn print(out: &mut dyn Write, value: &Value) -> Result<(), Failure> {
    serde_json::to_writer(&mut *out, value).map_err(|e| crate::stdout_failure(e.into()))?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .map_err(crate::stdout_failure)
}

/// The exit code and message of a failed call. A silent or closing server is what a server
/// that does not speak Varlink looks like, so those messages say what to check.
pub fn failure(e: CallError) -> Failure {
    use localipc_client::ClientError;
    const HINT: &str = "check that the server speaks Varlink (ipc-server --protocol varlink)";
    match e {
        CallError::Reply(error) => (exit::ERROR_REPLY, format!("error reply: {error}")),
        e @ (CallError::Connection(ClientError::Closed) | CallError::Protocol(_)) => {
            (exit::PROTOCOL, format!("{e}; {HINT}"))
        }
        e @ (CallError::Connection(ClientError::Timeout(_)) | CallError::Timeout(_)) => {
            (exit::TIMEOUT, format!("{e}; {HINT}"))
        }
        CallError::Connection(e) => crate::client_failure(e),
        e @ CallError::Json { .. } => (exit::PROTOCOL, e.to_string()),
        e => (exit::IO, e.to_string()),
    }
}
