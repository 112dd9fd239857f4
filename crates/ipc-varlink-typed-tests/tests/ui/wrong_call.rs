// A typed client: a method the description lacks, and an argument of the wrong type.
use localipc_typed_tests::counter;
use localipc_varlink::{Policy, VarlinkClient};

async fn calls(conn: &mut VarlinkClient) {
    let mut client = counter::Client(conn);
    let _ = client.reset().await;
    let _ = client.add("two").await;
}

fn policy(interface: localipc_varlink::Interface) -> localipc_varlink::Interface {
    interface.allow_method(counter::Method::Reset, Policy::same_user())
}

fn main() {
    let _ = (calls, policy);
}
