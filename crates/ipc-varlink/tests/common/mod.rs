//! What the Varlink library tests share: `org.example.slow`, whose `Nap` sleeps as long as
//! asked (and whose `Missing` is described but not implemented).

use std::time::Duration;

use localipc_varlink::{Interface, VarlinkError};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
pub struct Nap {
    pub ms: u64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct Slept {
    pub ms: u64,
}

/// `org.example.slow`.
pub fn slow_interface() -> Interface {
    Interface::new(
        "interface org.example.slow\nmethod Nap(ms: int) -> (ms: int)\nmethod Missing() -> ()\n",
    )
    .unwrap()
    .method("Nap", |p: Nap, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(p.ms)).await;
        Ok::<_, VarlinkError>(Slept { ms: p.ms })
    })
}
