//! What `ipc-bench-startup` measures: the blocking client of `localipc-client` doing what
//! `first-reply-std` does (connect to the socket given as its argument, one request, its reply,
//! exit), with its default time limit.

fn main() -> Result<(), localipc_client::ClientError> {
    let path = std::env::args_os()
        .nth(1)
        .expect("usage: first-reply-blocking SOCKET");
    let reply = localipc_client::blocking::send(path, "first")?;
    assert_eq!(reply, "first");
    Ok(())
}
