//! The frontend's verdict on one requested kite (protocol doc §2.7): ask for
//! a signature, accept, or reject with pagekite.py's reason words. Pure: the
//! clock and the challenge's random part are arguments, and the duplicate
//! check (which needs the live tunnel table) is left to the frontend.

use std::collections::HashMap;
use std::fmt;

use super::authdns::{self, AuthDomains};
use super::authfile::AuthUser;
use super::handshake::{KiteLine, challenge, check_challenge, verify};
use super::kite::{KiteId, secret_candidates};

/// What the frontend knows when it judges kites.
pub struct Policy<'a> {
    /// `proto:domain` → secret, as `--domain` expands (see config).
    pub secrets: &'a HashMap<String, String>,
    /// `--protos`.
    pub protos: &'a [String],
    /// `--ports`.
    pub ports: &'a [u16],
    /// Numeric `--rawports`.
    pub raw_ports: &'a [u16],
    /// `--rawports` lists `virtual`.
    pub raw_virtual: bool,
    /// The frontend's private challenge key, random per process.
    pub fe_secret: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Signature,
    Unauthorized,
    Port,
    Proto,
    /// The auth domain or `--authfile` says the user is over a quota.
    Quota,
}

impl Reason {
    /// The word pagekite.py puts in `X-PageKite-Invalid-Why`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Signature => "signature",
            Reason::Unauthorized => "unauthorized",
            Reason::Port => "port",
            Reason::Proto => "proto",
            Reason::Quota => "quota",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where kites without a local `--domain` secret may still be proven.
#[derive(Clone, Copy)]
pub struct Remote<'a> {
    /// `--authdomain`: the auth server checks the signature.
    pub auth_domains: &'a AuthDomains,
    /// `--authfile`'s users.
    pub users: &'a [AuthUser],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// First round: send this challenge in `X-PageKite-SignThis`.
    SignThis(String),
    Accept,
    Reject(Reason),
}

/// A verdict, or the auth domain to ask first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Judged {
    Done(Verdict),
    /// Signed with the secret of `--authfile`'s user at this index (the
    /// caller applies the user's cap).
    User(usize),
    /// Look this name up (`authdns::lookup_name`) and judge by its answer.
    Lookup {
        name: String,
        auth_domain: String,
    },
}

/// Judges one kite line, in pagekite.py's order of checks, with local
/// secrets only.
pub fn judge(policy: &Policy<'_>, line: &KiteLine, unix_time: u64, tok8: &str) -> Verdict {
    let none = AuthDomains::default();
    let remote = Remote {
        auth_domains: &none,
        users: &[],
    };
    match judge_with(policy, remote, line, unix_time, tok8) {
        Judged::Done(v) => v,
        Judged::User(_) => Verdict::Accept,
        // No auth domain, no look-up.
        Judged::Lookup { .. } => Verdict::Reject(Reason::Unauthorized),
    }
}

/// Judges one kite line, in pagekite.py's order of checks (pk.py
/// `GetDomainQuota`): the challenge, the local secret, then the auth
/// domain, which is also asked when a local secret does not match.
pub fn judge_with(
    policy: &Policy<'_>,
    remote: Remote<'_>,
    line: &KiteLine,
    unix_time: u64,
    tok8: &str,
) -> Judged {
    if line.token.is_empty() || line.sign.is_empty() {
        return Judged::Done(Verdict::SignThis(challenge(
            policy.fe_secret,
            &line.what(),
            unix_time,
            tok8,
        )));
    }
    let Some(id) = KiteId::parse(&line.proto) else {
        return Judged::Done(Verdict::Reject(Reason::Proto));
    };
    if let Err(reason) = served(policy, &id) {
        return Judged::Done(Verdict::Reject(reason));
    }
    if !check_challenge(policy.fe_secret, &line.what(), &line.token, unix_time) {
        return Judged::Done(Verdict::Reject(Reason::Unauthorized));
    }
    let local = secret_for(policy, &id, &line.domain);
    if local.is_some_and(|secret| verify(secret, &line.payload(), &line.sign)) {
        return Judged::Done(Verdict::Accept);
    }
    // `--authfile`'s users who may fly this kite, in file order.
    let mut covered = false;
    for (i, user) in remote.users.iter().enumerate() {
        if user.covers(&id, &line.domain) {
            if verify(&user.secret, &line.payload(), &line.sign) {
                return Judged::User(i);
            }
            covered = true;
        }
    }
    if let Some(adom) = remote.auth_domains.for_domain(&line.domain) {
        return match authdns::lookup_name(
            &line.srand,
            &line.token,
            &line.sign,
            &line.proto,
            &line.domain,
            adom,
        ) {
            Some(name) => Judged::Lookup {
                name,
                auth_domain: adom.to_string(),
            },
            None => Judged::Done(Verdict::Reject(Reason::Unauthorized)),
        };
    }
    Judged::Done(if local.is_some() || covered {
        Verdict::Reject(Reason::Signature)
    } else {
        Verdict::Reject(Reason::Unauthorized)
    })
}

/// Whether the frontend serves a kite's protocol and port at all.
fn served(policy: &Policy<'_>, id: &KiteId) -> Result<(), Reason> {
    if let Some(port) = id.port {
        let served = if id.base == "raw" {
            policy.raw_virtual || policy.raw_ports.contains(&port)
        } else {
            policy.ports.contains(&port)
        };
        if !served {
            return Err(Reason::Port);
        }
    }
    if !policy.protos.contains(&id.base) {
        return Err(Reason::Proto);
    }
    Ok(())
}

/// The secret a kite is checked against: its own name's, else the nearest
/// wildcard's.
fn secret_for<'a>(policy: &Policy<'a>, id: &KiteId, domain: &str) -> Option<&'a String> {
    secret_candidates(id, domain)
        .iter()
        .find_map(|k| policy.secrets.get(k))
}

/// After a configuration change: whether a kite's protocol and port are
/// still served (a kite an auth domain proved needs no more).
pub fn still_served(new: &Policy<'_>, proto: &str) -> bool {
    KiteId::parse(proto).is_some_and(|id| served(new, &id).is_ok())
}

/// After a configuration change: whether a kite accepted under `old` would
/// still be accepted under `new` with the same signature (served, and
/// checked against the same secret).
pub fn still_accepted(old: &Policy<'_>, new: &Policy<'_>, proto: &str, domain: &str) -> bool {
    let Some(id) = KiteId::parse(proto) else {
        return false;
    };
    if served(new, &id).is_err() {
        return false;
    }
    match (secret_for(old, &id, domain), secret_for(new, &id, domain)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::handshake::sign;

    const NOW: u64 = 1_795_303_899;

    fn fixture() -> (HashMap<String, String>, Vec<String>) {
        let mut secrets = HashMap::new();
        secrets.insert("http:*.example.test".to_string(), "s3cret".to_string());
        secrets.insert("websocket:*.example.test".to_string(), "s3cret".to_string());
        secrets.insert("http:other.test".to_string(), "pw2".to_string());
        secrets.insert("raw:ssh.test".to_string(), "pw3".to_string());
        let protos = ["http", "https", "raw", "websocket"]
            .map(String::from)
            .to_vec();
        (secrets, protos)
    }

    /// Runs both rounds like a backend would and returns the final verdict.
    fn two_rounds(policy: &Policy<'_>, proto: &str, domain: &str, secret: &str) -> Verdict {
        let mut line = KiteLine::parse(&format!("{proto}:{domain}:srand1::")).unwrap();
        line.sign = sign(secret, &line.payload(), "0badc0de");
        let Verdict::SignThis(challenge) = judge(policy, &line, NOW, "t1234567") else {
            panic!("first round must ask for a signature");
        };
        line.token = challenge;
        line.sign = sign(secret, &line.payload(), "12345678");
        judge(policy, &line, NOW + 30, "t7654321")
    }

    #[test]
    fn accepts_and_rejects_like_pagekite() {
        let (secrets, protos) = fixture();
        let policy = Policy {
            secrets: &secrets,
            protos: &protos,
            ports: &[9080, 9082],
            raw_ports: &[],
            raw_virtual: true,
            fe_secret: "fe-key",
        };
        assert_eq!(
            two_rounds(&policy, "http", "foo.example.test", "s3cret"),
            Verdict::Accept
        );
        assert_eq!(
            two_rounds(&policy, "http-9082", "foo.example.test", "s3cret"),
            Verdict::Accept
        );
        assert_eq!(
            two_rounds(&policy, "websocket", "a.b.example.test", "s3cret"),
            Verdict::Accept
        );
        assert_eq!(
            two_rounds(&policy, "http", "other.test", "pw2"),
            Verdict::Accept
        );
        assert_eq!(
            two_rounds(&policy, "raw-22", "ssh.test", "pw3"),
            Verdict::Accept
        );
        assert_eq!(
            two_rounds(&policy, "http", "foo.example.test", "wrong"),
            Verdict::Reject(Reason::Signature)
        );
        assert_eq!(
            two_rounds(&policy, "http", "nosecret.test", "x"),
            Verdict::Reject(Reason::Unauthorized)
        );
        assert_eq!(
            two_rounds(&policy, "https", "foo.example.test", "s3cret"),
            Verdict::Reject(Reason::Unauthorized)
        );
        assert_eq!(
            two_rounds(&policy, "http-8080", "foo.example.test", "s3cret"),
            Verdict::Reject(Reason::Port)
        );
        assert_eq!(
            two_rounds(&policy, "irc", "foo.example.test", "s3cret"),
            Verdict::Reject(Reason::Proto)
        );
    }

    #[test]
    fn forged_or_stale_challenges_are_unauthorized() {
        let (secrets, protos) = fixture();
        let policy = Policy {
            secrets: &secrets,
            protos: &protos,
            ports: &[9080],
            raw_ports: &[2222],
            raw_virtual: false,
            fe_secret: "fe-key",
        };
        let mut line =
            KiteLine::parse("http:foo.example.test:srand1:t0000000ffffffffffffffffffffffffffff:")
                .unwrap();
        line.sign = sign("s3cret", &line.payload(), "12345678");
        assert_eq!(
            judge(&policy, &line, NOW, "t1"),
            Verdict::Reject(Reason::Unauthorized)
        );

        let mut line = KiteLine::parse("http:foo.example.test:srand1::").unwrap();
        let Verdict::SignThis(c) = judge(&policy, &line, NOW, "t1234567") else {
            panic!()
        };
        line.token = c;
        line.sign = sign("s3cret", &line.payload(), "12345678");
        assert_eq!(
            judge(&policy, &line, NOW + 1300, "t1"),
            Verdict::Reject(Reason::Unauthorized)
        );
        // The challenge binds the srand: it can't be replayed for another one.
        line.srand = "srand2".into();
        line.sign = sign("s3cret", &line.payload(), "12345678");
        assert_eq!(
            judge(&policy, &line, NOW, "t1"),
            Verdict::Reject(Reason::Unauthorized)
        );
        // Raw ports: listed numbers only, when `virtual` is not given.
        assert_eq!(
            two_rounds(&policy, "raw-22", "ssh.test", "pw3"),
            Verdict::Reject(Reason::Port)
        );
        assert_eq!(
            two_rounds(&policy, "raw-2222", "ssh.test", "pw3"),
            Verdict::Accept
        );
    }

    #[test]
    fn a_reload_keeps_kites_whose_secret_and_service_stay() {
        let (secrets, protos) = fixture();
        let old = Policy {
            secrets: &secrets,
            protos: &protos,
            ports: &[9080, 9082],
            raw_ports: &[],
            raw_virtual: true,
            fe_secret: "fe-key",
        };
        let mut changed = secrets.clone();
        changed.insert("http:other.test".to_string(), "new-pw".to_string());
        changed.remove("raw:ssh.test");
        let http_only = ["http".to_string()];
        let new = Policy {
            secrets: &changed,
            protos: &protos,
            ports: &[9080],
            ..old
        };
        assert!(still_accepted(&old, &new, "http", "foo.example.test"));
        assert!(
            !still_accepted(&old, &new, "http", "other.test"),
            "new secret"
        );
        assert!(
            !still_accepted(&old, &new, "raw-22", "ssh.test"),
            "domain gone"
        );
        assert!(
            !still_accepted(&old, &new, "http-9082", "foo.example.test"),
            "port gone"
        );
        let narrower = Policy {
            protos: &http_only,
            ..new
        };
        assert!(!still_accepted(
            &old,
            &narrower,
            "websocket",
            "a.example.test"
        ));
        assert!(still_accepted(&old, &narrower, "http", "a.example.test"));
        assert!(!still_accepted(&old, &old, "bogus!", "a.example.test"));
    }

    #[test]
    fn without_a_matching_local_secret_the_auth_domain_is_asked() {
        let (secrets, protos) = fixture();
        let policy = Policy {
            secrets: &secrets,
            protos: &protos,
            ports: &[80],
            raw_ports: &[],
            raw_virtual: false,
            fe_secret: "fe",
        };
        let mut adoms = AuthDomains::default();
        adoms.apply("auth.test").unwrap();
        let remote = Remote {
            auth_domains: &adoms,
            users: &[],
        };
        let round = |domain: &str, secret: &str| {
            let mut line = KiteLine::parse(&format!("http:{domain}:srand1::")).unwrap();
            let Judged::Done(Verdict::SignThis(c)) =
                judge_with(&policy, remote, &line, NOW, "t1234567")
            else {
                panic!("a challenge first");
            };
            line.token = c;
            line.sign = sign(secret, &line.payload(), "0badc0de");
            (judge_with(&policy, remote, &line, NOW, "t7654321"), line)
        };
        // A local secret that matches needs no look-up.
        assert_eq!(round("other.test", "pw2").0, Judged::Done(Verdict::Accept));
        // One that does not is asked about, as pagekite.py does.
        for domain in ["other.test", "nobody.test"] {
            let (v, line) = round(domain, "wrong");
            let name = format!(
                "srand1.{}.{}.http.{domain}.auth.test.",
                line.token, line.sign
            );
            assert_eq!(
                v,
                Judged::Lookup {
                    name,
                    auth_domain: "auth.test".into()
                }
            );
        }
        // A salt with a dot is refused without asking.
        let mut line = KiteLine::parse("http:nobody.test:s.x::").unwrap();
        let Judged::Done(Verdict::SignThis(c)) =
            judge_with(&policy, remote, &line, NOW, "t1234567")
        else {
            panic!("a challenge first");
        };
        line.token = c;
        line.sign = sign("pw", &line.payload(), "0badc0de");
        assert_eq!(
            judge_with(&policy, remote, &line, NOW, "t1"),
            Judged::Done(Verdict::Reject(Reason::Unauthorized))
        );
    }
}
