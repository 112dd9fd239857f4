//! Generated clients against generated servers, over a real socket: every type of the IDL
//! through a call and back, streams, declared and undeclared errors, one-way calls, policies
//! named by the generated `Method`, the blocking client; and the descriptions' round trips.
//! Every call has a time limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use localipc_typed_tests::everything::{
    self, All, AllInline, AllInlineDeep, AllMood, AllMoods, Colour, Node, WalkReply,
};
use localipc_typed_tests::implementation::{Everything, Host};
use localipc_typed_tests::{Served, counter, hostname, resolve};
use localipc_varlink::{CallError, Policy, Service, TypedCallError, VarlinkClient};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(10);

fn all() -> All {
    let mut anything = serde_json::Map::new();
    anything.insert("free".into(), json!({"form": [1, "two", null]}));
    All {
        flag: true,
        count: -42,
        ratio: 0.1,
        text: "olá \u{1F980}".into(),
        colour: Colour::LightBlue,
        maybe: None,
        list: vec![1, 2, 3],
        table: BTreeMap::from([("pi".into(), 3.25), ("e".into(), 2.5)]),
        nested: Some(BTreeMap::from([
            ("c".into(), Colour::Red),
            ("d".into(), Colour::Green),
        ])),
        anything,
        inline: AllInline {
            x: 1,
            y: 2,
            deep: AllInlineDeep { z: Some(3) },
        },
        mood: AllMood::Sad,
        moods: vec![AllMoods::Calm, AllMoods::Angry],
        r#type: "keyword".into(),
        camel_case: 5,
        http_status: Some(404),
    }
}

fn tree() -> Node {
    let leaf = |label: &str| Node {
        label: label.into(),
        next: None,
        children: Vec::new(),
    };
    Node {
        label: "root".into(),
        next: Some(Box::new(leaf("sibling"))),
        children: vec![
            Node {
                children: vec![leaf("a1")],
                ..leaf("a")
            },
            leaf("b"),
        ],
    }
}

fn served() -> Served {
    let service = Service::builder()
        .interface(
            everything::interface(Arc::new(Everything))
                // Only root may call Nothing (the tests run as root or not: both are checked).
                .allow_method(everything::Method::Nothing, Policy::uid(0)),
        )
        .interface(hostname::interface(Arc::new(Host)))
        .build()
        .unwrap();
    Served::start(service)
}

async fn connect(served: &Served) -> VarlinkClient {
    let mut client = VarlinkClient::connect(served.path()).await.unwrap();
    client.set_timeout(Some(LIMIT));
    client
}

#[tokio::test]
async fn every_type_goes_through_a_call_and_back() {
    let served = served();
    let mut conn = connect(&served).await;
    let mut client = everything::Client(&mut conn);
    let reply = client.reflect(all(), Some(tree())).await.unwrap();
    assert_eq!(reply.all, all());
    assert_eq!(reply.node, Some(tree()));
    // On the wire, the description's names: renamed fields, keywords, enum values.
    let raw: serde_json::Value = conn
        .call(
            "org.example.everything.Reflect",
            &everything::ReflectParameters {
                all: all(),
                node: None,
            },
        )
        .await
        .unwrap();
    let wire = &raw["all"];
    assert_eq!(wire["camelCase"], 5);
    assert_eq!(wire["HTTPStatus"], 404);
    assert_eq!(wire["type"], "keyword");
    assert_eq!(wire["colour"], "light_blue");
    assert_eq!(wire["moods"], json!(["calm", "angry"]));
    assert!(wire.get("maybe").is_none(), "absent optionals are left out");
    assert!(raw.get("node").is_none());
}

#[tokio::test]
async fn streams_errors_oneway_and_policies() {
    let served = served();
    let mut conn = connect(&served).await;
    let mut client = everything::Client(&mut conn);
    let walked: Vec<WalkReply> = client
        .walk(tree())
        .await
        .unwrap()
        .map(Result::unwrap)
        .collect()
        .await;
    let labels: Vec<(String, i64)> = walked.into_iter().map(|w| (w.label, w.depth)).collect();
    assert_eq!(
        labels,
        [
            ("root".into(), 0),
            ("a".into(), 1),
            ("a1".into(), 2),
            ("b".into(), 1)
        ]
    );
    // A declared error, typed; the connection goes on.
    let refused = client
        .maybe(true, Some("because".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.declared(),
            Some(everything::Error::Refused { why: Some(why), code: 7 }) if why == "because"
        ),
        "{refused:?}"
    );
    client.maybe(false, None).await.unwrap();
    assert_eq!(client.r#match("kw").await.unwrap().r#loop, "kw");
    client.match_oneway("kw").await.unwrap();
    client.maybe_oneway(true, None).await.unwrap();
    // The policy named by the generated Method: refused for anyone but root, undeclared.
    let nothing = client.nothing().await;
    if nix_is_root() {
        nothing.unwrap();
    } else {
        let e = nothing.unwrap_err();
        assert!(
            matches!(&e, TypedCallError::Call(CallError::Reply(r))
                if r.name() == "org.varlink.service.PermissionDenied"),
            "{e:?}"
        );
    }
    // Still usable after all of that, and the description served is the generated one.
    assert_eq!(
        conn.describe(everything::NAME).await.unwrap(),
        everything::DESCRIPTION
    );
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .is_some_and(|uids| uids.split_whitespace().next() == Some("0"))
}

#[test]
fn the_blocking_client_makes_the_same_calls() {
    let served = served();
    let mut conn = localipc_varlink::blocking::VarlinkClient::connect_with(
        served.path(),
        Some(LIMIT),
        1 << 20,
    )
    .unwrap();
    let mut client = everything::BlockingClient(&mut conn);
    assert_eq!(client.reflect(all(), None).unwrap().all, all());
    let depths: Vec<i64> = client
        .walk(tree())
        .unwrap()
        .map(|r| r.unwrap().depth)
        .collect();
    assert_eq!(depths, [0, 1, 2, 1]);
    let refused = client.maybe(true, None).unwrap_err();
    assert_eq!(
        refused.declared(),
        Some(&everything::Error::Refused { why: None, code: 7 })
    );
    let mut host = hostname::BlockingClient(&mut conn);
    let described = host.describe().unwrap();
    assert_eq!(described.v_sock_cid, Some(3));
    // PascalCase on the wire.
    let raw: serde_json::Value = conn
        .call("io.systemd.Hostname.Describe", &json!({}))
        .unwrap();
    assert_eq!(raw["VSockCID"], 3);
    assert_eq!(raw["OperatingSystemHomeURL"], "https://www.debian.org/");
    assert_eq!(raw["MachineID"], "0123456789abcdef0123456789abcdef");
}

#[tokio::test]
async fn a_reply_that_does_not_fit_names_the_method() {
    // A server whose Reflect is not what the client was generated from.
    let other = localipc_varlink::Interface::new(everything::DESCRIPTION)
        .unwrap()
        .method("Reflect", |_: serde_json::Value, _ctx| async {
            Ok::<_, localipc_varlink::VarlinkError>(json!({"all": {"flag": "not a bool"}}))
        });
    let served = Served::start(Service::builder().interface(other).build().unwrap());
    let mut conn = connect(&served).await;
    let e = everything::Client(&mut conn)
        .reflect(all(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, TypedCallError::Call(CallError::Json { method, .. })
            if method == "org.example.everything.Reflect"),
        "{e:?}"
    );
}

/// Every description parses, prints and parses again to the same interface, and its code
/// carries it unchanged.
#[test]
fn descriptions_round_trip() {
    let ours = [
        include_str!("../../ipc-varlink/interfaces/org.varlink.service.varlink"),
        include_str!("../../ipc-varlink/interfaces/io.ipc.Server.varlink"),
        include_str!("../../ipc-varlink/interfaces/io.ipc.Messages.varlink"),
    ];
    let generated = [
        everything::DESCRIPTION,
        hostname::DESCRIPTION,
        resolve::DESCRIPTION,
        counter::DESCRIPTION,
        localipc_varlink::SERVER_IDL,
        localipc_varlink::MESSAGES_IDL,
    ];
    for text in ours.iter().chain(&generated) {
        let parsed = zlink_idl::Interface::try_from(*text).unwrap();
        let printed = parsed.to_string();
        let again = zlink_idl::Interface::try_from(printed.as_str())
            .unwrap_or_else(|e| panic!("{printed}: {e}"));
        assert_eq!(parsed, again, "{printed}");
    }
    assert_eq!(
        localipc_varlink::SERVER_IDL,
        include_str!("../../ipc-varlink/interfaces/io.ipc.Server.varlink")
    );
    assert_eq!(
        counter::DESCRIPTION,
        include_str!("../../../examples/org.example.counter.varlink")
    );
}

/// A reply of systemd-resolved (as its documentation shows one) decodes into the generated
/// types and encodes back to the same JSON.
#[test]
fn a_resolved_reply_round_trips_through_the_types() {
    let wire = json!({
        "addresses": [
            {"ifindex": 2, "family": 2, "address": [192, 0, 2, 1]},
            {"family": 10, "address": [32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]}
        ],
        "name": "example.com",
        "flags": 1048577
    });
    let reply: resolve::ResolveHostnameReply = serde_json::from_value(wire.clone()).unwrap();
    assert_eq!(reply.addresses[1].ifindex, None);
    assert_eq!(serde_json::to_value(&reply).unwrap(), wire);
    let error = localipc_varlink::VarlinkError::new(
        "io.systemd.Resolve.DNSError",
        json!({"rcode": 3, "extendedDNSErrorCode": 9}),
    );
    let typed = <resolve::Error as localipc_varlink::DeclaredError>::from_reply(&error)
        .unwrap()
        .unwrap();
    assert_eq!(
        typed,
        resolve::Error::DNSError {
            rcode: 3,
            extended_dns_error_code: Some(9),
            extended_dns_error_message: None
        }
    );
}
