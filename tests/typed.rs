//! Code generated from Varlink descriptions (localipc-varlink-codegen) against peers written by
//! others: the typed clients call the reference Python `varlink` server, and systemd's
//! `varlinkctl` calls and introspects the generated servers.

use std::sync::Arc;

use futures::StreamExt;
use localipc_typed_tests::everything::{
    self, All, AllInline, AllInlineDeep, AllMood, Colour, Node,
};
use localipc_typed_tests::implementation::{Everything, Host};
use localipc_typed_tests::{Served, hostname};
use localipc_varlink::{Service, VarlinkClient};
use serde_json::json;

mod support;
use support::*;

fn all() -> All {
    All {
        flag: false,
        count: 7,
        ratio: 1.5,
        text: "olá".into(),
        colour: Colour::LightBlue,
        maybe: Some("here".into()),
        list: vec![3, 2, 1],
        table: [("k".to_owned(), 0.25)].into(),
        nested: Some([("n".to_owned(), Colour::Green)].into()),
        anything: json!({"any": ["thing", 1]}).as_object().unwrap().clone(),
        inline: AllInline {
            x: -1,
            y: 0,
            deep: AllInlineDeep { z: None },
        },
        mood: AllMood::Happy,
        moods: Vec::new(),
        r#type: "t".into(),
        camel_case: 1,
        http_status: None,
    }
}

fn tree() -> Node {
    Node {
        label: "top".into(),
        next: None,
        children: vec![Node {
            label: "child".into(),
            next: None,
            children: Vec::new(),
        }],
    }
}

#[test]
fn generated_clients_call_the_reference_python_server() {
    let idl =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ipc-varlink-typed-tests/idl");
    let py = PythonServer::start("everything_server.py", &[idl.as_os_str()]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE, async {
            let mut conn = VarlinkClient::connect(py.path()).await.unwrap();
            let mut client = everything::Client(&mut conn);
            let reply = client.reflect(all(), Some(tree())).await.unwrap();
            assert_eq!(reply.all, all());
            assert_eq!(reply.node, Some(tree()));
            let depths: Vec<i64> = client
                .walk(tree())
                .await
                .unwrap()
                .map(|r| r.unwrap().depth)
                .collect()
                .await;
            assert_eq!(depths, [0, 1]);
            let refused = client.maybe(true, Some("py".into())).await.unwrap_err();
            assert_eq!(
                refused.declared(),
                Some(&everything::Error::Refused {
                    why: Some("py".into()),
                    code: 7
                })
            );
            client.nothing().await.unwrap();
            assert_eq!(client.r#match("kw").await.unwrap().r#loop, "kw");
        })
        .await
        .expect("the calls within the tests' patience");
    });
    // The blocking client, on the same server.
    let mut conn =
        localipc_varlink::blocking::VarlinkClient::connect_with(py.path(), Some(PATIENCE), 1 << 20)
            .unwrap();
    let mut client = everything::BlockingClient(&mut conn);
    assert_eq!(client.reflect(all(), None).unwrap().all, all());
    client.maybe(false, None).unwrap();
}

#[test]
fn varlinkctl_calls_and_introspects_the_generated_servers() {
    let served = Served::start(
        Service::builder()
            .interface(everything::interface(Arc::new(Everything)))
            .interface(hostname::interface(Arc::new(Host)))
            .build()
            .unwrap(),
    );
    let at = format!("unix:{}", served.path().display());
    let dir = tempfile::tempdir().unwrap();
    for (name, description) in [
        (everything::NAME, everything::DESCRIPTION),
        (hostname::NAME, hostname::DESCRIPTION),
    ] {
        let idl = varlinkctl_ok(&["introspect", &at, name]);
        let file = dir.path().join(format!("{name}.varlink"));
        std::fs::write(&file, &idl).unwrap();
        varlinkctl_ok(&["validate-idl", file.to_str().unwrap()]);
        // varlinkctl reformats; the same interface either way.
        assert!(same_interface(&idl, description), "{name}: served {idl}");
    }
    let described = json_values(&varlinkctl_ok(&[
        "call",
        &at,
        "io.systemd.Hostname.Describe",
        "{}",
    ]));
    assert_eq!(described[0]["Hostname"], "typed");
    assert_eq!(described[0]["VSockCID"], 3);
    let parameters = json!({"all": serde_json::to_value(all()).unwrap()}).to_string();
    let reflected = json_values(&varlinkctl_ok(&[
        "call",
        &at,
        "org.example.everything.Reflect",
        &parameters,
    ]));
    assert_eq!(reflected[0]["all"], serde_json::to_value(all()).unwrap());
    let walked = json_values(&varlinkctl_ok(&[
        "call",
        "--more",
        &at,
        "org.example.everything.Walk",
        &json!({"root": tree()}).to_string(),
    ]));
    let labels: Vec<_> = walked.iter().map(|w| w["label"].clone()).collect();
    assert_eq!(labels, [json!("top"), json!("child")]);
    let refused = varlinkctl(&[
        "call",
        &at,
        "org.example.everything.Maybe",
        r#"{"refuse": true}"#,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("org.example.everything.Refused"),
        "{refused:?}"
    );
}

/// Whether two descriptions describe the same interface (comments included), whatever their
/// layout.
fn same_interface(a: &str, b: &str) -> bool {
    zlink_idl::Interface::try_from(a).unwrap() == zlink_idl::Interface::try_from(b).unwrap()
}
