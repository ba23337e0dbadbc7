use ring::rand::SystemRandom;

use super::*;

const DIR: &str = "https://127.0.0.1:14000/dir";

fn reply(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
    Response {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .chain([("replay-nonce".to_string(), format!("n-{}", body.len()))])
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

fn without_nonce(mut r: Response) -> Response {
    r.headers.retain(|(n, _)| n != "replay-nonce");
    r
}

/// A scripted server in pebble's words: what it answers to each request,
/// with the protected header's URL checked against the request's.
struct Server {
    /// Authorization polls still answered `pending`.
    pending_polls: u32,
    bad_nonce_once: bool,
    fail_validation: bool,
    seen: Vec<(Method, String)>,
}

impl Server {
    fn answer(&mut self, req: &Request) -> Response {
        self.seen.push((req.method, req.url.path.clone()));
        if let Some(body) = &req.body {
            let jws = json::parse(body.as_bytes()).unwrap();
            assert!(jws.str_at("signature").is_some());
        }
        if req.method == Method::Post && self.bad_nonce_once {
            self.bad_nonce_once = false;
            return reply(
                400,
                &[("content-type", "application/problem+json")],
                r#"{"type":"urn:ietf:params:acme:error:badNonce","detail":"JWS has an invalid anti-replay nonce"}"#,
            );
        }
        match (req.method, req.url.path.as_str()) {
            // A directory GET carries no nonce: the first POST needs a HEAD.
            (Method::Get, "/dir") => without_nonce(reply(
                200,
                &[],
                r#"{"keyChange":"https://127.0.0.1:14000/rollover-account-key",
                   "meta":{"externalAccountRequired":false,"termsOfService":"data:text/plain,Do%20what%20thou%20wilt"},
                   "newAccount":"https://127.0.0.1:14000/sign-me-up",
                   "newNonce":"https://127.0.0.1:14000/nonce-plz",
                   "newOrder":"https://127.0.0.1:14000/order-plz",
                   "revokeCert":"https://127.0.0.1:14000/revoke-cert"}"#,
            )),
            (Method::Head, "/nonce-plz") => reply(200, &[], ""),
            (Method::Post, "/sign-me-up") => reply(
                201,
                &[("location", "https://127.0.0.1:14000/my-account/7")],
                r#"{"status":"valid","contact":["mailto:ops@example.test"]}"#,
            ),
            (Method::Post, "/order-plz") => reply(
                201,
                &[("location", "https://127.0.0.1:14000/my-order/9")],
                r#"{"status":"pending","identifiers":[{"type":"dns","value":"kite.example.test"}],
                   "authorizations":["https://127.0.0.1:14000/authZ/a1"],
                   "finalize":"https://127.0.0.1:14000/finalize-order/9"}"#,
            ),
            (Method::Post, "/authZ/a1") => {
                let challenges_answered = self.seen.iter().any(|(_, p)| p == "/chalZ/c1");
                let status = match (challenges_answered, self.pending_polls) {
                    (false, _) => "pending",
                    (true, 0) if self.fail_validation => "invalid",
                    (true, 0) => "valid",
                    (true, _) => {
                        self.pending_polls -= 1;
                        "pending"
                    }
                };
                reply(
                    200,
                    &[],
                    &format!(
                        r#"{{"status":"{status}","identifier":{{"type":"dns","value":"kite.example.test"}},
                           "challenges":[{{"type":"dns-01","url":"https://127.0.0.1:14000/chalZ/c0","token":"AAAAAAAAAAAAAAAAAAAAAA","status":"pending"}},
                           {{"type":"http-01","url":"https://127.0.0.1:14000/chalZ/c1","token":"Rg5dV14Gh1Q-T0k3n_xyz","status":"{status}",
                             "error":{{"type":"urn:ietf:params:acme:error:connection","detail":"127.0.0.1: Connection refused"}}}}]}}"#
                    ),
                )
            }
            (Method::Post, "/chalZ/c1") => {
                reply(200, &[], r#"{"type":"http-01","status":"processing"}"#)
            }
            (Method::Post, "/finalize-order/9") => reply(
                200,
                &[("retry-after", "3")],
                r#"{"status":"processing","authorizations":[],"finalize":"https://127.0.0.1:14000/finalize-order/9"}"#,
            ),
            (Method::Post, "/my-order/9") => reply(
                200,
                &[],
                r#"{"status":"valid","certificate":"https://127.0.0.1:14000/certZ/5"}"#,
            ),
            (Method::Post, "/certZ/5") => reply(
                200,
                &[("content-type", "application/pem-certificate-chain")],
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
            other => panic!("unexpected request {other:?}"),
        }
    }
}

fn run(server: &mut Server, account: Option<&str>) -> (Result<String, AcmeError>, Vec<Next>, Flow) {
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).unwrap();
    let cert_key = Key::generate(&rng).unwrap();
    let mut flow = Flow::new(
        DIR,
        &["kite.example.test"],
        Some("ops@example.test"),
        account,
        ChallengeKind::Http01,
    )
    .unwrap();
    let mut steps = Vec::new();
    for _ in 0..100 {
        let next = match flow.next(&key, &cert_key, &rng) {
            Ok(next) => next,
            Err(e) => return (Err(e), steps, flow),
        };
        steps.push(next.clone());
        match next {
            Next::Send(req) => {
                let resp = server.answer(&req);
                if let Err(e) = flow.handle(&resp) {
                    return (Err(e), steps, flow);
                }
            }
            Next::Wait(_) => {}
            Next::Done(chain) => return (Ok(chain), steps, flow),
        }
    }
    panic!("no end in 100 steps");
}

fn server() -> Server {
    Server {
        pending_polls: 2,
        bad_nonce_once: false,
        fail_validation: false,
        seen: Vec::new(),
    }
}

#[test]
fn a_whole_order_from_the_directory_to_the_chain() {
    let mut s = server();
    let (chain, steps, flow) = run(&mut s, None);
    assert!(chain.unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(flow.account(), Some("https://127.0.0.1:14000/my-account/7"));
    let paths: Vec<&str> = s.seen.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/dir",
            "/nonce-plz",
            "/sign-me-up",
            "/order-plz",
            "/authZ/a1",
            "/chalZ/c1",
            "/authZ/a1",
            "/authZ/a1",
            "/authZ/a1",
            "/finalize-order/9",
            "/my-order/9",
            "/certZ/5",
        ]
    );
    // Two pending polls wait a second each; the finalize's Retry-After 3 s.
    let waits: Vec<Duration> = steps
        .iter()
        .filter_map(|s| match s {
            Next::Wait(d) => Some(*d),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [POLL_EVERY, POLL_EVERY, Duration::from_secs(3)]);
    // The challenge was offered while pending and is gone once issued.
    assert!(flow.challenges().is_empty());
}

#[test]
fn a_stored_account_skips_registration() {
    let mut s = server();
    let (chain, _, _) = run(&mut s, Some("https://127.0.0.1:14000/my-account/7"));
    assert!(chain.is_ok());
    assert!(!s.seen.iter().any(|(_, p)| p == "/sign-me-up"));
}

#[test]
fn a_bad_nonce_is_retried_with_the_fresh_one() {
    let mut s = server();
    s.bad_nonce_once = true;
    let (chain, _, _) = run(&mut s, None);
    assert!(chain.is_ok());
    let signups = s.seen.iter().filter(|(_, p)| p == "/sign-me-up").count();
    assert_eq!(signups, 2, "the refused request went again");
}

#[test]
fn a_failed_validation_says_why() {
    let mut s = server();
    s.fail_validation = true;
    s.pending_polls = 0;
    let (chain, _, _) = run(&mut s, None);
    assert_eq!(
        chain,
        Err(AcmeError::Invalid("127.0.0.1: Connection refused".into()))
    );
}

#[test]
fn the_challenge_to_serve_is_known_while_pending() {
    let rng = SystemRandom::new();
    let key = Key::generate(&rng).unwrap();
    let mut s = server();
    let mut flow = Flow::new(
        DIR,
        &["kite.example.test"],
        None,
        None,
        ChallengeKind::Http01,
    )
    .unwrap();
    for _ in 0..5 {
        if let Next::Send(req) = flow.next(&key, &key, &rng).unwrap() {
            flow.handle(&s.answer(&req)).unwrap();
        }
    }
    assert_eq!(
        flow.challenges(),
        [Challenge {
            name: "kite.example.test".into(),
            token: "Rg5dV14Gh1Q-T0k3n_xyz".into()
        }]
    );
}

#[test]
fn urls_and_tokens_are_checked() {
    for bad in [
        "ftp://x/",
        "https://",
        "https://user@host/",
        "https://host:0/",
        "https://host:99999/",
        "https://ho st/",
    ] {
        assert!(Url::parse(bad).is_err(), "{bad}");
    }
    let u = Url::parse("https://[::1]:14000/dir?x=1").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.path.as_str()),
        ("::1", 14000, "/dir?x=1")
    );
    assert_eq!(u.host_header(), "[::1]:14000");
    assert_eq!(
        Url::parse("http://acme.test").unwrap().host_header(),
        "acme.test"
    );
    assert!(valid_token("Rg5dV14Gh1Q-T0k3n_xyz"));
    for bad in ["short", "../../etc/passwd/xxxxxx", "abc def ghi jkl mno"] {
        assert!(!valid_token(bad), "{bad}");
    }
    let req = Request {
        method: Method::Post,
        url: Url::parse("https://127.0.0.1:14000/order-plz").unwrap(),
        body: Some("{}".into()),
    };
    assert_eq!(
        String::from_utf8(req.to_bytes("rkite")).unwrap(),
        "POST /order-plz HTTP/1.1\r\nHost: 127.0.0.1:14000\r\nUser-Agent: rkite\r\n\
         Accept: */*\r\nConnection: close\r\nContent-Type: application/jose+json\r\n\
         Content-Length: 2\r\n\r\n{}"
    );
}
