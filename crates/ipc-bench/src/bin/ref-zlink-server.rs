//! `ref-zlink-server SOCKET`: the Varlink reference server of the benchmark suite, written with
//! zlink (tokio, service macro) as its documentation shows: io.ipc.Messages with `Echo` and a
//! streaming `Count`, the same interface as `ipc-server --protocol varlink`. Runs on a
//! current-thread runtime, as zlink's server serves every connection from one task.

use futures::Stream;
use serde::{Deserialize, Serialize};
use zlink::introspect::Type;
use zlink::{Reply, Server, service};

#[derive(Debug, Serialize, Deserialize, Type)]
struct Echoed {
    message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Type)]
struct Counted {
    index: i64,
    message: String,
}

struct Messages;

#[service(interface = "io.ipc.Messages")]
impl Messages {
    async fn echo(&self, message: String) -> Echoed {
        Echoed { message }
    }

    #[zlink(more)]
    async fn count(
        &self,
        more: bool,
        count: i64,
        message: Option<String>,
    ) -> impl Stream<Item = Reply<Counted>> + Unpin {
        let count = if more { count.max(1) } else { 1 };
        let message = message.unwrap_or_default();
        futures::stream::iter((0..count).map(move |index| {
            Reply::new(Some(Counted {
                index,
                message: message.clone(),
            }))
            .set_continues(Some(index + 1 < count))
        }))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let socket = std::env::args()
        .nth(1)
        .ok_or("usage: ref-zlink-server SOCKET")?;
    let _ = std::fs::remove_file(&socket);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = zlink::tokio::unix::bind(&socket)?;
            Server::new(listener, Messages).run().await?;
            Ok(())
        })
}
