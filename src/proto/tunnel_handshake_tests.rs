//! Tests of the tunnel core through a whole PageKite handshake: a backend
//! core that starts with its CONNECT request, a frontend whose test role
//! judges it with the real `auth` and `handshake` code, the challenge
//! answered in band (AddKites), kites added later, a bad secret, and a
//! reconnecting backend that replaces its old tunnel and answers its
//! challenges on the new connection. The roles here are test stand-ins
//! for `frontend.rs`/`backend.rs`; the bytes are the real ones.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use super::super::auth::{self, Policy, Verdict};
use super::super::frame::{self, Frame, header_lines};
use super::super::handshake::{self, KiteAnswer, KiteLine, Prefix, TunnelRequest};
use super::pair::{Pair, Side};
use super::*;

const UNIX: u64 = 1_795_303_899;
const SRAND: &str = "5e33c345f2c50664e283c2182d9c8944d011";

/// The frontend's judge: secrets, protocols, ports, its challenge key.
struct Judge {
    secrets: HashMap<String, String>,
    protos: Vec<String>,
    ports: Vec<u16>,
    sessions: u32,
}

impl Judge {
    fn new() -> Judge {
        let mut secrets = HashMap::new();
        secrets.insert("http:foo.test".to_string(), "s3cret".to_string());
        secrets.insert("raw:foo.test".to_string(), "s3cret".to_string());
        secrets.insert("http:bad.test".to_string(), "other".to_string());
        Judge {
            secrets,
            protos: vec!["http".into(), "raw".into()],
            ports: vec![80],
            sessions: 0,
        }
    }

    fn answers(&mut self, request: &TunnelRequest) -> Vec<KiteAnswer> {
        let policy = Policy {
            secrets: &self.secrets,
            protos: &self.protos,
            ports: &self.ports,
            raw_ports: &[],
            raw_virtual: true,
            fe_secret: "fe-global-secret",
        };
        request
            .kites
            .iter()
            .map(|line| {
                let what = line.what();
                match auth::judge(&policy, line, UNIX, "t1234567") {
                    Verdict::SignThis(challenge) => KiteAnswer::SignThis { what, challenge },
                    Verdict::Accept => KiteAnswer::Ok { what },
                    Verdict::Reject(r) => KiteAnswer::Invalid {
                        what,
                        why: r.as_str().to_string(),
                    },
                }
            })
            .collect()
    }

    fn session(&mut self) -> String {
        self.sessions += 1;
        format!("6b0228e3:session{}", self.sessions)
    }
}

/// A backend kite line for `proto:domain`, signed with `secret` over
/// `token` (empty in the first round).
fn line(proto: &str, domain: &str, secret: &str, token: &str) -> KiteLine {
    let mut l = KiteLine {
        proto: proto.into(),
        domain: domain.into(),
        srand: SRAND.into(),
        token: token.into(),
        sign: String::new(),
    };
    l.sign = handshake::sign(secret, &l.payload(), "89fed543");
    l
}

/// The backend role's memory: answers seen, live kites, session id.
#[derive(Default)]
struct Backend {
    answers: Vec<KiteAnswer>,
    live: Vec<String>,
    session: Option<String>,
    challenges: Vec<(String, String)>,
}

type Shared = Rc<RefCell<Backend>>;

/// The backend's answer to the frontend's answers (head or NOOP): sign the
/// challenges in band, note what went live.
fn backend_answers(be: &Shared, headers: &str, secrets: &[(&str, &str)]) -> Control {
    let reply = handshake::parse_reply(header_lines(headers));
    let mut be = be.borrow_mut();
    if be.session.is_none() {
        be.session = reply.session_id.clone();
    }
    let mut signed = Vec::new();
    for answer in &reply.answers {
        match answer {
            KiteAnswer::SignThis { what, challenge } => {
                be.challenges.push((what.clone(), challenge.clone()));
                let mut parts = what.split(':');
                let (proto, domain) = (parts.next().unwrap(), parts.next().unwrap());
                let secret = secrets.iter().find(|(d, _)| *d == domain).unwrap().1;
                signed.push(line(proto, domain, secret, challenge));
            }
            KiteAnswer::Ok { what } => be.live.push(what.clone()),
            _ => {}
        }
        be.answers.push(answer.clone());
    }
    if signed.is_empty() {
        return Control::CONTINUE;
    }
    let lines = handshake::inband_request_lines("rkite-test", &signed);
    Control {
        reply: Some((lines, b"\r\n!")),
        next: Next::Live,
    }
}

const SECRETS: &[(&str, &str)] = &[("foo.test", "s3cret"), ("bad.test", "wrong")];

/// The frontend's reactor: reads the request head off the wire, judges it,
/// and makes the frontend core with the reply head queued.
fn accept(judge: &mut Judge, wire: &mut Vec<u8>, now: Instant) -> (Side, TunnelRequest) {
    let end = frame::find(wire, b"\r\n\r\n").expect("a request head") + 4;
    let request = handshake::parse_request(&wire[..end]).expect("a tunnel request");
    wire.drain(..end);
    let answers = judge.answers(&request);
    let session = judge.session();
    let info = handshake::FrontendInfo {
        protos: judge.protos.clone(),
        ports: judge.ports.clone(),
        raw_ports: vec![],
        motd: String::new(),
    };
    let reply = handshake::build_reply(request.prefix, &info, &answers, &session);
    let mut t: Tunnel<u32> =
        Tunnel::new(Config::new(Role::Frontend), now, Duration::from_secs(UNIX));
    t.send_raw(reply.as_bytes());
    t.set_serving(answers.iter().any(|a| matches!(a, KiteAnswer::Ok { .. })));
    let mut side = Side::with(t);
    side.inbox = std::mem::take(wire);
    (side, request)
}

/// A frontend role answering in-band requests with `judge`.
fn frontend_control(judge: Rc<RefCell<Judge>>) -> super::pair::ControlFn {
    Box::new(move |f: &Frame<'_>| {
        let request = match handshake::parse_kite_headers(f.headers()) {
            Ok(r) => r,
            Err(e) => {
                return Control {
                    reply: None,
                    next: Next::Fail(ControlError::InBand(e)),
                };
            }
        };
        if request.kites.is_empty() {
            return Control::CONTINUE;
        }
        let mut judge = judge.borrow_mut();
        let answers = judge.answers(&request);
        let session = judge.session();
        let lines = handshake::inband_reply_lines(Prefix::PageKite, &answers, &session);
        Control {
            reply: Some((lines, b"!")),
            next: Next::Live,
        }
    })
}

/// A backend core that connects with `lines` (and Replace, if given).
fn connect(be: &Shared, lines: &[KiteLine], replace: Option<&str>, now: Instant) -> Side {
    let request = handshake::build_request("rkite-test", replace, lines);
    let t = Tunnel::connect(
        Config::new(Role::Backend),
        now,
        Duration::from_secs(UNIX),
        request.as_bytes(),
    );
    let mut side = Side::with(t);
    let (head, noop) = (be.clone(), be.clone());
    side.on_reply = Some(Box::new(move |status: &str, headers: &str| {
        if !status.starts_with("HTTP/1.1 200") {
            return Control {
                reply: None,
                next: Next::Fail(ControlError::Rejected),
            };
        }
        backend_answers(&head, headers, SECRETS)
    }));
    side.control = Some(Box::new(move |f: &Frame<'_>| {
        backend_answers(&noop, f.header_block, SECRETS)
    }));
    side
}

/// A backend asking for foo.test, its request taken by a frontend that
/// judges in band with `judge`: (backend, frontend, the request).
fn dial_foo(
    be_role: &Shared,
    judge: &Rc<RefCell<Judge>>,
    now: Instant,
) -> (Side, Side, TunnelRequest) {
    let mut be = connect(
        be_role,
        &[line("http", "foo.test", "s3cret", "")],
        None,
        now,
    );
    let mut wire = Vec::new();
    be.send(&mut wire, usize::MAX);
    let (mut fe, request) = accept(&mut judge.borrow_mut(), &mut wire, now);
    fe.control = Some(frontend_control(judge.clone()));
    (be, fe, request)
}

#[test]
fn sign_this_in_band_add_kites_and_a_bad_secret() {
    let now = Pair::epoch();
    let be_role: Shared = Rc::default();
    let judge = Rc::new(RefCell::new(Judge::new()));
    let (be, fe, request) = dial_foo(&be_role, &judge, now);
    assert_eq!(*be.t.phase(), Phase::AwaitingReply);
    assert!(request.has_feature("AddKites"));
    let mut p = Pair { fe, be, now };
    // The reply head comes back cut anywhere; the backend answers the
    // challenge in band and the frontend accepts it.
    for _ in 0..4 {
        p.fe.send(&mut p.be.inbox, 7);
        let now = p.now;
        p.be.read(now, 5);
    }
    p.exchange();
    assert_eq!(*p.be.t.phase(), Phase::Live);
    {
        let be = be_role.borrow();
        assert!(
            matches!(&be.answers[0], KiteAnswer::SignThis { challenge, .. }
            if challenge.starts_with("t1234567"))
        );
        assert_eq!(be.live, [format!("http:foo.test:{SRAND}")]);
        assert_eq!(be.session.as_deref(), Some("6b0228e3:session1"));
    }
    assert_eq!(p.be.pongs, 1, "the backend's first PING was answered");
    // A stream flows over the new tunnel.
    p.be.plan.insert(1, (20_000, 1 << 40));
    let now = p.now;
    p.fe.open(now, 1, 30_000, 500, 1 << 40);
    for _ in 0..20 {
        let now = p.now;
        p.fe.pump(now, 1, 1 << 20);
        p.be.pump(now, 1, 1 << 20);
        p.fe.flush(1, 0);
        p.be.flush(1, 0);
        p.exchange();
    }
    p.check_complete().unwrap();
    // Kites added later: one good, one signed with the wrong secret.
    let lines = handshake::inband_request_lines(
        "rkite-test",
        &[
            line("raw-22", "foo.test", "s3cret", ""),
            line("http", "bad.test", "wrong", ""),
        ],
    );
    p.be.t.send_noop(&lines, b"\r\n!");
    p.exchange();
    let be = be_role.borrow();
    assert_eq!(
        be.live,
        [
            format!("http:foo.test:{SRAND}"),
            format!("raw-22:foo.test:{SRAND}")
        ]
    );
    assert!(be.answers.contains(&KiteAnswer::Invalid {
        what: format!("http:bad.test:{SRAND}"),
        why: "signature".into()
    }));
    assert!(p.fe.closed.is_none() && p.be.closed.is_none());
}

#[test]
fn a_reconnecting_backend_replaces_its_tunnel_and_signs_on_the_new_one() {
    let now = Pair::epoch();
    let judge = Rc::new(RefCell::new(Judge::new()));
    // First tunnel: live with a stream half way.
    let old_role: Shared = Rc::default();
    let (be, fe, _) = dial_foo(&old_role, &judge, now);
    let mut old = Pair { fe, be, now };
    old.exchange();
    old.be.plan.insert(1, (1 << 20, 1 << 40));
    old.fe.open(now, 1, 1 << 20, 100, 0);
    old.exchange();
    let session = old_role.borrow().session.clone().expect("a session id");
    let challenge = old_role.borrow().challenges[0].1.clone();
    // The backend reconnects with Replace and the challenge it kept: the
    // frontend drops the old tunnel (its streams end once) and accepts.
    let new_role: Shared = Rc::default();
    let signed = line("http", "foo.test", "s3cret", &challenge);
    let mut be = connect(&new_role, &[signed], Some(&session), now);
    let mut wire = Vec::new();
    be.send(&mut wire, usize::MAX);
    let (fe, request) = accept(&mut judge.borrow_mut(), &mut wire, now);
    assert_eq!(request.replace.as_deref(), Some(session.as_str()));
    old.fe.t.close(CloseReason::Replaced);
    old.fe.events();
    assert_eq!(old.fe.closed, Some(CloseReason::Replaced));
    let m = &old.fe.streams[&1];
    assert!(m.ended == 1 && m.dropped, "{m:?}");
    assert!(
        old.fe.t.poll_transmit().is_empty(),
        "its buffers are dropped"
    );
    let mut p = Pair { fe, be, now };
    p.exchange();
    assert_eq!(*p.be.t.phase(), Phase::Live);
    assert_eq!(new_role.borrow().live, [format!("http:foo.test:{SRAND}")]);
    assert!(
        !new_role
            .borrow()
            .answers
            .iter()
            .any(|a| matches!(a, KiteAnswer::SignThis { .. })),
        "answered on the new connection, no second challenge"
    );
}

#[test]
fn a_refused_tunnel_request_closes_the_backend() {
    let now = Pair::epoch();
    let be_role: Shared = Rc::default();
    let mut be = connect(
        &be_role,
        &[line("http", "foo.test", "s3cret", "")],
        None,
        now,
    );
    be.inbox
        .extend_from_slice(b"HTTP/1.0 403 Forbidden\r\n\r\n");
    be.read(now, usize::MAX);
    assert_eq!(
        be.closed,
        Some(CloseReason::Control(ControlError::Rejected))
    );
    // A reply head that never ends is cut off.
    let mut be = connect(&be_role, &[], None, now);
    be.inbox.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    be.inbox
        .extend(std::iter::repeat_n(b'x', handshake::MAX_HEAD + 10));
    be.read(now, usize::MAX);
    assert_eq!(be.closed, Some(CloseReason::ReplyTooLarge));
}

/// pagekite.py's frontend judges in-band answers on another thread and
/// only buffers its verdict until its next write: when its PONG went
/// first, the verdict waits for our next PING. The backend nudges with
/// PINGs, spaced out, until it comes, and then stops.
#[test]
fn a_verdict_held_back_by_the_frontend_is_nudged_out_with_pings() {
    let pings = |wire: &[u8]| wire.windows(6).filter(|w| w == b"PING: ").count();
    let mut now = Pair::epoch();
    let be_role: Shared = Rc::default();
    let judge = Rc::new(RefCell::new(Judge::new()));
    let (mut be, mut fe, _) = dial_foo(&be_role, &judge, now);
    // The reply with the challenge reaches the backend: it answers in band
    // and PINGs once, as always.
    fe.send(&mut be.inbox, usize::MAX);
    be.read(now, usize::MAX);
    let mut held = Vec::new();
    be.send(&mut held, usize::MAX);
    assert_eq!(pings(&held), 1);
    assert!(
        frame::find(&held, b"X-PageKite: ").is_some(),
        "the in-band answer"
    );
    // No verdict yet: PINGs at 0.5 s, 1.5 s, 3.5 s after the answer.
    let mut sent = Vec::new();
    for step in [400, 100, 999, 1, 2000] {
        now += Duration::from_millis(step);
        be.timeout(now);
        be.send(&mut sent, usize::MAX);
    }
    assert_eq!(pings(&sent), 3, "{}", String::from_utf8_lossy(&sent));
    // The frontend takes it all and answers: the kite is live and the
    // nudging stops (the next PING is the keepalive's, a minute on).
    fe.inbox.extend_from_slice(&held);
    fe.inbox.extend_from_slice(&sent);
    fe.read(now, usize::MAX);
    fe.send(&mut be.inbox, usize::MAX);
    be.read(now, usize::MAX);
    assert_eq!(be_role.borrow().live, [format!("http:foo.test:{SRAND}")]);
    let mut later = Vec::new();
    for _ in 0..40 {
        now += Duration::from_secs(1);
        be.timeout(now);
        be.send(&mut later, usize::MAX);
    }
    assert_eq!(pings(&later), 0, "{}", String::from_utf8_lossy(&later));
}
