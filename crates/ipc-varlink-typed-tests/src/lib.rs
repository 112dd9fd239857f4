//! The code generated from the descriptions in `idl/` (and the example's), one module each,
//! for the tests of this package and the compile-fail cases (which use it as a dependency).

/// `io.systemd.Hostname`.
pub mod hostname {
    localipc_varlink::include_interface!("io.systemd.Hostname");
}

/// `io.systemd.Resolve`.
pub mod resolve {
    localipc_varlink::include_interface!("io.systemd.Resolve");
}

/// `org.example.everything`: every type of the IDL.
pub mod everything {
    localipc_varlink::include_interface!("org.example.everything");
}

/// `org.example.counter`, the example's interface.
pub mod counter {
    localipc_varlink::include_interface!("org.example.counter");
}

use std::path::{Path, PathBuf};

use localipc_server::{Framing, Server, ShutdownHandle};
use localipc_varlink::Service;

/// A service served on a runtime of its own (so that blocking clients and other programs can
/// call it from the test's thread), on a socket in a temporary directory; stopped when dropped.
pub struct Served {
    path: PathBuf,
    handle: ShutdownHandle,
    /// Taken when dropped.
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Serves `service` with one worker thread.
    ///
    /// # Panics
    ///
    /// If the runtime or the socket cannot be made.
    pub fn start(service: Service) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("typed.sock");
        // Entered, not blocked on: the caller may be on a runtime of its own.
        let server = {
            let _entered = runtime.enter();
            Server::builder(service)
                .socket(&path)
                .framing(Framing::Nul)
                .bind()
                .expect("bind the socket")
        };
        let handle = server.handle();
        runtime.spawn(server.serve(std::future::pending()));
        Self {
            path,
            handle,
            runtime: Some(runtime),
            _dir: dir,
        }
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.handle.shutdown();
        // Without blocking: the test may be dropping it on a runtime's thread.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// An implementation of `org.example.everything`, as the tests serve it.
pub mod implementation {
    use std::sync::Arc;

    use localipc_varlink::{Context, MethodError, More};

    use crate::everything::{
        Error, MatchParameters, MatchReply, MaybeParameters, MaybeReply, Node, NothingParameters,
        NothingReply, ReflectParameters, ReflectReply, WalkParameters, WalkReply,
    };
    use crate::hostname::{DescribeParameters, DescribeReply};

    /// Answers `Reflect` with its parameters, walks trees depth first, refuses on demand.
    pub struct Everything;

    impl crate::everything::Methods for Everything {
        async fn reflect(
            &self,
            p: ReflectParameters,
            _ctx: &Context,
        ) -> Result<ReflectReply, MethodError<Error>> {
            Ok(ReflectReply {
                all: p.all,
                node: p.node,
            })
        }

        fn walk(
            self: Arc<Self>,
            p: WalkParameters,
            _ctx: Context,
        ) -> impl futures::Stream<Item = Result<More<WalkReply>, MethodError<Error>>> + Send + 'static
        {
            let mut order = Vec::new();
            depth_first(&p.root, 0, &mut order);
            let last = order.len().saturating_sub(1);
            let items: Vec<_> = order
                .into_iter()
                .enumerate()
                .map(|(i, reply)| {
                    Ok(if i == last {
                        More::last(reply)
                    } else {
                        More::next(reply)
                    })
                })
                .collect();
            futures::stream::iter(items)
        }

        async fn maybe(
            &self,
            p: MaybeParameters,
            _ctx: &Context,
        ) -> Result<MaybeReply, MethodError<Error>> {
            if p.refuse {
                return Err(Error::Refused {
                    why: p.why,
                    code: 7,
                }
                .into());
            }
            Ok(MaybeReply {})
        }

        async fn r#match(
            &self,
            p: MatchParameters,
            _ctx: &Context,
        ) -> Result<MatchReply, MethodError<Error>> {
            Ok(MatchReply { r#loop: p.r#ref })
        }

        async fn nothing(
            &self,
            _: NothingParameters,
            _ctx: &Context,
        ) -> Result<NothingReply, MethodError<Error>> {
            Ok(NothingReply {})
        }
    }

    fn depth_first(node: &Node, depth: i64, order: &mut Vec<WalkReply>) {
        order.push(WalkReply {
            label: node.label.clone(),
            depth,
        });
        for child in &node.children {
            depth_first(child, depth + 1, order);
        }
    }

    /// Describes a made-up host.
    pub struct Host;

    impl crate::hostname::Methods for Host {
        async fn describe(
            &self,
            _: DescribeParameters,
            _ctx: &Context,
        ) -> Result<DescribeReply, MethodError<crate::hostname::Error>> {
            Ok(DescribeReply {
                hostname: "typed".into(),
                static_hostname: Some("typed".into()),
                pretty_hostname: None,
                default_hostname: Some("localhost".into()),
                hostname_source: "static".into(),
                icon_name: None,
                chassis: Some("vm".into()),
                deployment: None,
                location: None,
                kernel_name: "Linux".into(),
                kernel_release: "6.18".into(),
                kernel_version: "#1".into(),
                operating_system_pretty_name: Some("Debian".into()),
                operating_system_cpe_name: None,
                operating_system_home_url: Some("https://www.debian.org/".into()),
                operating_system_support_end: None,
                operating_system_release_data: Some(vec!["ID=debian".into()]),
                machine_information_data: None,
                hardware_vendor: None,
                hardware_model: None,
                hardware_serial: None,
                firmware_version: None,
                firmware_vendor: None,
                firmware_date: None,
                machine_id: "0123456789abcdef0123456789abcdef".into(),
                boot_id: "fedcba9876543210fedcba9876543210".into(),
                product_uuid: None,
                v_sock_cid: Some(3),
            })
        }
    }
}
