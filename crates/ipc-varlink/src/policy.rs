//! Who may call what: a [`Policy`] on an interface or on one of its methods, checked against
//! who the caller is (a local one's credentials, from the kernel, `SO_PEERCRED` and
//! `SO_PEERGROUPS`; a remote one's verified certificate) before the method runs and before its
//! parameters are decoded.

use std::fmt;
use std::sync::Arc;

use localipc_core::{CertificateName, Context};

/// Who may make a call: a set of callers, by user, by group, by "the same user as the server",
/// by a name their certificate carries (callers over TCP with TLS), or by any test of the
/// call's [`Context`], joined with [`or`](Policy::or). Users and groups name local callers
/// only, and certificate names remote ones only.
///
/// A refused call gets `org.varlink.service.PermissionDenied`; the connection goes on. Attach a
/// policy with [`Interface::allow`](crate::Interface::allow) (every method of the interface)
/// or [`Interface::allow_method`](crate::Interface::allow_method) (one method); a call must pass
/// both its interface's policy and its method's.
///
/// ```
/// use localipc_varlink::Policy;
///
/// // Root, the server's own user, or any member of group 4242 (primary or supplementary).
/// let admins = Policy::uid(0).or(Policy::same_user()).or(Policy::group(4242));
/// assert_eq!(admins.to_string(), "uid 0 or the server's user or group 4242");
/// ```
#[derive(Clone)]
pub struct Policy(Arc<Rule>);

enum Rule {
    Anyone,
    Uid(u32),
    Group(u32),
    SameUser,
    Certificate(CertificateName),
    Check(String, Box<dyn Fn(&Context) -> bool + Send + Sync>),
    Any(Vec<Policy>),
}

impl Policy {
    /// Every caller.
    pub fn anyone() -> Self {
        Self(Arc::new(Rule::Anyone))
    }

    /// Callers running as user `uid`.
    pub fn uid(uid: u32) -> Self {
        Self(Arc::new(Rule::Uid(uid)))
    }

    /// Callers in group `gid`, as their primary group or as one of their supplementary groups
    /// (the kernel's list, on Linux 4.13 and later).
    pub fn group(gid: u32) -> Self {
        Self(Arc::new(Rule::Group(gid)))
    }

    /// Callers running as the same user as the server (its effective uid).
    pub fn same_user() -> Self {
        Self(Arc::new(Rule::SameUser))
    }

    /// Remote callers whose verified certificate carries `name` (`cn:alice`, `dns:host`,
    /// `uri:spiffe://...`, `sha256:...`: see [`CertificateName`]).
    pub fn certificate(name: CertificateName) -> Self {
        Self(Arc::new(Rule::Certificate(name)))
    }

    /// Callers for whom `test` returns true; `name` says who they are, in logs.
    pub fn check(
        name: impl Into<String>,
        test: impl Fn(&Context) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self(Arc::new(Rule::Check(name.into(), Box::new(test))))
    }

    /// Callers this policy or `other` lets in.
    pub fn or(self, other: Policy) -> Self {
        let mut any = match Arc::try_unwrap(self.0) {
            Ok(Rule::Any(list)) => list,
            Ok(rule) => vec![Policy(Arc::new(rule))],
            Err(shared) => vec![Policy(shared)],
        };
        any.push(other);
        Self(Arc::new(Rule::Any(any)))
    }

    /// Whether the caller of `ctx` is let in.
    pub fn allows(&self, ctx: &Context) -> bool {
        let peer = ctx.peer();
        match &*self.0 {
            Rule::Anyone => true,
            Rule::Uid(uid) => peer.uid() == Some(*uid),
            Rule::Group(gid) => peer.unix().is_some_and(|p| p.in_group(*gid)),
            Rule::SameUser => peer.uid() == Some(nix::unistd::geteuid().as_raw()),
            Rule::Certificate(name) => peer.certificate().is_some_and(|c| c.matches(name)),
            Rule::Check(_, test) => test(ctx),
            Rule::Any(list) => list.iter().any(|p| p.allows(ctx)),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Rule::Anyone => f.write_str("anyone"),
            Rule::Uid(uid) => write!(f, "uid {uid}"),
            Rule::Group(gid) => write!(f, "group {gid}"),
            Rule::SameUser => f.write_str("the server's user"),
            Rule::Certificate(name) => write!(f, "certificate {name}"),
            Rule::Check(name, _) => f.write_str(name),
            Rule::Any(list) => {
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" or ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Policy({self})")
    }
}

/// The policies a call must pass: its interface's and its method's, either absent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gate {
    policies: Vec<Policy>,
}

impl Gate {
    pub(crate) fn new(interface: Option<&Policy>, method: Option<&Policy>) -> Self {
        Self {
            policies: interface.into_iter().chain(method).cloned().collect(),
        }
    }

    /// The first policy the caller of `ctx` does not pass, if any.
    pub(crate) fn refusal(&self, ctx: &Context) -> Option<&Policy> {
        self.policies.iter().find(|p| !p.allows(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use localipc_core::PeerCredentials;

    fn caller(uid: u32, gid: u32, groups: &[u32]) -> Context {
        Context::new(
            1,
            PeerCredentials::new(uid, gid, None).with_groups(groups.to_vec()),
        )
    }

    #[test]
    fn each_rule_and_their_union() {
        let member = caller(1000, 1000, &[27, 4242]);
        let outsider = caller(1001, 1001, &[27]);
        assert!(Policy::anyone().allows(&outsider));
        assert!(Policy::uid(1000).allows(&member) && !Policy::uid(1000).allows(&outsider));
        assert!(Policy::group(4242).allows(&member) && !Policy::group(4242).allows(&outsider));
        assert!(
            Policy::group(1001).allows(&outsider),
            "the primary group counts"
        );
        let me = nix::unistd::geteuid().as_raw();
        assert!(Policy::same_user().allows(&caller(me, 0, &[])));
        assert!(!Policy::same_user().allows(&caller(me.wrapping_add(1), 0, &[])));
        let odd = Policy::check("odd uids", |ctx| {
            ctx.peer().uid().is_some_and(|u| u % 2 == 1)
        });
        assert!(odd.allows(&outsider) && !odd.allows(&member));
        let either = Policy::uid(7).or(Policy::group(4242)).or(odd);
        assert!(either.allows(&member) && either.allows(&outsider));
        assert!(!either.allows(&caller(8, 8, &[])));
        assert_eq!(either.to_string(), "uid 7 or group 4242 or odd uids");
    }

    #[test]
    fn certificates_are_named_as_users_are() {
        use localipc_core::{CertificateIdentity, CertificateName, Fingerprint, Peer};
        let remote = |cn: &str| {
            let identity = CertificateIdentity::new(Fingerprint([3; 32]), format!("CN={cn}"))
                .with(CertificateName::CommonName(cn.into()));
            Context::new(
                2,
                Peer::Certificate {
                    identity: Arc::new(identity),
                    address: "10.1.2.3:4000".parse().unwrap(),
                },
            )
        };
        let ci = Policy::certificate("cn:ci".parse().unwrap());
        assert!(ci.allows(&remote("ci")));
        assert!(!ci.allows(&remote("dev")));
        assert!(
            !ci.allows(&caller(0, 0, &[])),
            "a local caller has no certificate"
        );
        // Users and groups name local callers only: root's uid is no certificate's.
        assert!(!Policy::uid(0).allows(&remote("root")));
        assert!(!Policy::group(0).allows(&remote("root")));
        assert!(!Policy::same_user().allows(&remote("root")));
        let admins = Policy::uid(0).or(ci);
        assert!(admins.allows(&remote("ci")) && admins.allows(&caller(0, 0, &[])));
        assert_eq!(admins.to_string(), "uid 0 or certificate cn:ci");
    }

    #[test]
    fn a_call_must_pass_its_interface_and_its_method() {
        let gate = Gate::new(Some(&Policy::group(10)), Some(&Policy::uid(5)));
        assert!(gate.refusal(&caller(5, 10, &[])).is_none());
        assert_eq!(
            gate.refusal(&caller(6, 10, &[])).unwrap().to_string(),
            "uid 5"
        );
        assert_eq!(
            gate.refusal(&caller(5, 11, &[])).unwrap().to_string(),
            "group 10"
        );
        assert!(Gate::new(None, None).refusal(&caller(1, 1, &[])).is_none());
    }
}
