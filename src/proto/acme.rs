//! The ACME order flow (RFC 8555) for one certificate, as a sans-IO state
//! machine: it says which request to send next (signed with the account
//! key), reads each response, and ends with the certificate chain or a
//! typed failure. The caller answers [`Flow::challenges`]: HTTP-01's key
//! authorization at `/.well-known/acme-challenge/TOKEN` on port 80, or
//! TLS-ALPN-01's certificate for `acme-tls/1` on port 443.
//! It never sends, waits or reads a clock: waits come out as durations,
//! responses go in whole (see `http_reply`), entropy comes in.

use std::fmt;
use std::time::Duration;

use ring::rand::SecureRandom;

use super::base64::encode_url;
use super::http_reply::Response;
use super::jose::{Key, KeyError};
use super::json::{self, Value, quote};

/// Polls of one authorization or order before giving up.
const MAX_POLLS: u32 = 60;
/// `badNonce` answers in a row before giving up.
const MAX_BAD_NONCES: u32 = 5;
/// The longest wait a server's `Retry-After` may ask for.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The wait between polls when the server names none.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Where a request goes: an `http(s)://host[:port]/path` URL, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    text: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, AcmeError> {
        let bad = || AcmeError::BadUrl(text.chars().take(200).collect());
        if text.len() > 2048 || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad());
        }
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad());
        };
        let split = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        if authority.contains('@') || authority.is_empty() {
            return Err(bad());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(bad)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            None => {
                if tls {
                    443
                } else {
                    80
                }
            }
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(bad)?,
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
            path: if path.is_empty() { "/" } else { path }.to_string(),
            text: text.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The `Host` header's value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match (self.tls, self.port) {
            (true, 443) | (false, 80) => host,
            (_, port) => format!("{host}:{port}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
}

/// One request to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    /// A JWS for POST.
    pub body: Option<String>,
}

impl Request {
    /// The whole request as bytes (HTTP/1.1, one request per connection).
    pub fn to_bytes(&self, user_agent: &str) -> Vec<u8> {
        let method = match self.method {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
        };
        let mut out = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: {user_agent}\r\n\
             Accept: */*\r\nConnection: close\r\n",
            self.url.path,
            self.url.host_header()
        );
        if let Some(body) = &self.body {
            out.push_str("Content-Type: application/jose+json\r\n");
            out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            out.push_str(body);
        } else {
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    Send(Request),
    /// Ask again for the next step after this long.
    Wait(Duration),
    /// Issued: the certificate chain, PEM.
    Done(String),
}

/// Why an order failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcmeError {
    BadUrl(String),
    /// An answer that is not what ACME promises (what was missing).
    Protocol(&'static str),
    Json(json::JsonError),
    /// The server's problem document: its type and detail.
    Problem {
        status: u16,
        kind: String,
        detail: String,
    },
    /// An authorization or order went invalid (the challenge's error).
    Invalid(String),
    /// The challenge type asked for is not offered for a name.
    NoChallenge(ChallengeKind, String),
    TooManyPolls,
    Key(KeyError),
}

impl fmt::Display for AcmeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcmeError::BadUrl(u) => write!(f, "not a usable URL: {}", u.escape_debug()),
            AcmeError::Protocol(what) => write!(f, "the ACME server's answer lacks {what}"),
            AcmeError::Json(e) => write!(f, "the ACME server's answer: {e}"),
            AcmeError::Problem {
                status,
                kind,
                detail,
            } => write!(
                f,
                "the ACME server said {status} {}: {}",
                kind.escape_debug(),
                detail.escape_debug()
            ),
            AcmeError::Invalid(why) => write!(f, "validation failed: {}", why.escape_debug()),
            AcmeError::NoChallenge(kind, name) => write!(
                f,
                "no {} challenge offered for {}",
                kind.as_str(),
                name.escape_debug()
            ),
            AcmeError::TooManyPolls => write!(f, "still pending after {MAX_POLLS} polls"),
            AcmeError::Key(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for AcmeError {}

impl From<KeyError> for AcmeError {
    fn from(e: KeyError) -> AcmeError {
        AcmeError::Key(e)
    }
}

impl From<json::JsonError> for AcmeError {
    fn from(e: json::JsonError) -> AcmeError {
        AcmeError::Json(e)
    }
}

/// How the server is to validate a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChallengeKind {
    /// A token at `/.well-known/acme-challenge/` on port 80 (RFC 8555 §8.3).
    Http01,
    /// A self-signed certificate offered for ALPN `acme-tls/1` on port 443
    /// (RFC 8737).
    TlsAlpn01,
}

impl ChallengeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengeKind::Http01 => "http-01",
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// A challenge to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub name: String,
    pub token: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Directory,
    /// A fresh nonce, then back to `then`.
    Nonce,
    Account,
    NewOrder,
    Authz(usize),
    Respond(usize),
    PollAuthz(usize),
    Finalize,
    PollOrder,
    Download,
    Done,
}

/// One certificate's order, from the directory to the chain.
pub struct Flow {
    kind: ChallengeKind,
    directory: Url,
    names: Vec<String>,
    email: Option<String>,
    new_nonce: Option<Url>,
    new_account: Option<Url>,
    new_order: Option<Url>,
    nonce: Option<String>,
    account: Option<String>,
    order: Option<Url>,
    authorizations: Vec<Url>,
    /// Per authorization: the name and the http-01 challenge's URL.
    pending: Vec<(String, String, Url)>,
    finalize: Option<Url>,
    certificate: Option<Url>,
    step: Step,
    /// The step a nonce fetch returns to.
    resume: Step,
    wait: Option<Duration>,
    polls: u32,
    bad_nonces: u32,
    chain: Option<String>,
    /// The authorization a challenge answer belongs to.
    resume_authz: usize,
}

impl Flow {
    /// An order for `names` from the directory at `directory`, with a known
    /// account URL (stored from an earlier run) or a new account.
    pub fn new(
        directory: &str,
        names: &[&str],
        email: Option<&str>,
        account: Option<&str>,
        kind: ChallengeKind,
    ) -> Result<Flow, AcmeError> {
        Ok(Flow {
            kind,
            directory: Url::parse(directory)?,
            names: names.iter().map(|n| n.to_string()).collect(),
            email: email.map(str::to_string),
            new_nonce: None,
            new_account: None,
            new_order: None,
            nonce: None,
            account: account.map(str::to_string),
            order: None,
            authorizations: Vec::new(),
            pending: Vec::new(),
            finalize: None,
            certificate: None,
            step: Step::Directory,
            resume: Step::Directory,
            wait: None,
            polls: 0,
            bad_nonces: 0,
            chain: None,
            resume_authz: 0,
        })
    }

    /// The account URL, once known (to store for the next run).
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }

    /// The challenges to answer now.
    pub fn challenges(&self) -> Vec<Challenge> {
        self.pending
            .iter()
            .map(|(name, token, _)| Challenge {
                name: name.clone(),
                token: token.clone(),
            })
            .collect()
    }

    /// The next thing to do; `cert_key` is the certificate's key (its
    /// request is made at finalization).
    #[inline(never)]
    pub fn next(
        &mut self,
        account_key: &Key,
        cert_key: &Key,
        rng: &dyn SecureRandom,
    ) -> Result<Next, AcmeError> {
        if let Some(wait) = self.wait.take() {
            return Ok(Next::Wait(wait));
        }
        if self.step == Step::Done {
            return self
                .chain
                .clone()
                .map(Next::Done)
                .ok_or(AcmeError::Protocol("a certificate"));
        }
        if self.step == Step::Directory {
            return Ok(Next::Send(Request {
                method: Method::Get,
                url: self.directory.clone(),
                body: None,
            }));
        }
        let Some(nonce) = self.nonce.take() else {
            if self.step != Step::Nonce {
                self.resume = self.step;
                self.step = Step::Nonce;
            }
            let url = self
                .new_nonce
                .clone()
                .ok_or(AcmeError::Protocol("newNonce"))?;
            return Ok(Next::Send(Request {
                method: Method::Head,
                url,
                body: None,
            }));
        };
        let (url, payload): (Url, Option<String>) = match self.step {
            Step::Account => {
                let contact = self
                    .email
                    .as_ref()
                    .map(|e| format!(r#","contact":[{}]"#, quote(&format!("mailto:{e}"))))
                    .unwrap_or_default();
                let url = self
                    .new_account
                    .clone()
                    .ok_or(AcmeError::Protocol("newAccount"))?;
                let payload = format!(r#"{{"termsOfServiceAgreed":true{contact}}}"#);
                let jws = account_key.sign_jws(rng, url.as_str(), &nonce, None, Some(&payload))?;
                return Ok(post(url, jws));
            }
            Step::NewOrder => {
                let ids: Vec<String> = self
                    .names
                    .iter()
                    .map(|n| format!(r#"{{"type":"dns","value":{}}}"#, quote(n)))
                    .collect();
                let url = self
                    .new_order
                    .clone()
                    .ok_or(AcmeError::Protocol("newOrder"))?;
                (
                    url,
                    Some(format!(r#"{{"identifiers":[{}]}}"#, ids.join(","))),
                )
            }
            Step::Authz(i) | Step::PollAuthz(i) => (self.authz(i)?, None),
            Step::Respond(i) => {
                let url = self
                    .pending
                    .get(i)
                    .map(|(_, _, url)| url.clone())
                    .ok_or(AcmeError::Protocol("a challenge"))?;
                (url, Some("{}".to_string()))
            }
            Step::Finalize => {
                let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
                let csr = cert_key.csr(rng, &names)?;
                let url = self
                    .finalize
                    .clone()
                    .ok_or(AcmeError::Protocol("finalize"))?;
                (url, Some(format!(r#"{{"csr":"{}"}}"#, encode_url(&csr))))
            }
            Step::PollOrder => (
                self.order
                    .clone()
                    .ok_or(AcmeError::Protocol("an order URL"))?,
                None,
            ),
            Step::Download => (
                self.certificate
                    .clone()
                    .ok_or(AcmeError::Protocol("a certificate URL"))?,
                None,
            ),
            Step::Directory | Step::Nonce | Step::Done => {
                return Err(AcmeError::Protocol("a step to take"));
            }
        };
        let kid = self
            .account
            .clone()
            .ok_or(AcmeError::Protocol("an account"))?;
        let jws =
            account_key.sign_jws(rng, url.as_str(), &nonce, Some(&kid), payload.as_deref())?;
        Ok(post(url, jws))
    }

    #[inline(never)]
    fn authz(&self, i: usize) -> Result<Url, AcmeError> {
        self.authorizations
            .get(i)
            .cloned()
            .ok_or(AcmeError::Protocol("an authorization"))
    }

    /// Reads the response to the request [`next`](Self::next) gave.
    pub fn handle(&mut self, response: &Response) -> Result<(), AcmeError> {
        if let Some(nonce) = response.header("replay-nonce") {
            self.nonce = Some(nonce.to_string());
        }
        if self.step == Step::Nonce {
            if self.nonce.is_none() {
                return Err(AcmeError::Protocol("a Replay-Nonce"));
            }
            self.step = self.resume;
            return Ok(());
        }
        if !(200..300).contains(&response.status) {
            let problem = problem(response);
            if let AcmeError::Problem { kind, .. } = &problem {
                if kind == "urn:ietf:params:acme:error:badNonce" && self.bad_nonces < MAX_BAD_NONCES
                {
                    // Try the same step again with the nonce this answer gave.
                    self.bad_nonces += 1;
                    return Ok(());
                }
            }
            return Err(problem);
        }
        self.bad_nonces = 0;
        if self.step == Step::Download {
            let chain = String::from_utf8(response.body.clone())
                .map_err(|_| AcmeError::Protocol("a PEM certificate chain"))?;
            if !chain.contains("-----BEGIN CERTIFICATE-----") {
                return Err(AcmeError::Protocol("a PEM certificate chain"));
            }
            self.chain = Some(chain);
            self.pending.clear();
            self.step = Step::Done;
            return Ok(());
        }
        let body = json::parse(&response.body)?;
        let url_at = |key: &'static str| -> Result<Url, AcmeError> {
            Url::parse(body.str_at(key).ok_or(AcmeError::Protocol(key))?)
        };
        match self.step {
            Step::Directory => {
                self.new_nonce = Some(url_at("newNonce")?);
                self.new_account = Some(url_at("newAccount")?);
                self.new_order = Some(url_at("newOrder")?);
                self.step = if self.account.is_some() {
                    Step::NewOrder
                } else {
                    Step::Account
                };
            }
            Step::Account => {
                let location = response
                    .header("location")
                    .ok_or(AcmeError::Protocol("the account's Location"))?;
                self.account = Some(location.to_string());
                self.step = Step::NewOrder;
            }
            Step::NewOrder => {
                let location = response
                    .header("location")
                    .ok_or(AcmeError::Protocol("the order's Location"))?;
                self.order = Some(Url::parse(location)?);
                self.finalize = Some(url_at("finalize")?);
                self.authorizations = body
                    .get("authorizations")
                    .and_then(Value::as_array)
                    .ok_or(AcmeError::Protocol("authorizations"))?
                    .iter()
                    .map(|v| Url::parse(v.as_str().unwrap_or("")))
                    .collect::<Result<_, _>>()?;
                self.order_status(&body)?;
            }
            Step::Authz(i) => match status(&body)? {
                "valid" => self.authz_done(i),
                "pending" => {
                    let name = body
                        .get("identifier")
                        .and_then(|id| id.str_at("value"))
                        .ok_or(AcmeError::Protocol("the identifier"))?
                        .to_string();
                    let challenge = body
                        .get("challenges")
                        .and_then(Value::as_array)
                        .and_then(|all| {
                            all.iter()
                                .find(|c| c.str_at("type") == Some(self.kind.as_str()))
                        })
                        .ok_or_else(|| AcmeError::NoChallenge(self.kind, name.clone()))?;
                    let token = challenge
                        .str_at("token")
                        .filter(|t| valid_token(t))
                        .ok_or(AcmeError::Protocol("a usable token"))?;
                    let url = Url::parse(challenge.str_at("url").unwrap_or(""))?;
                    self.pending.push((name, token.to_string(), url));
                    self.step = Step::Respond(self.pending.len() - 1);
                    self.resume_authz = i;
                }
                other => return Err(AcmeError::Invalid(format!("authorization {other}"))),
            },
            Step::Respond(_) => {
                self.step = Step::PollAuthz(self.resume_authz);
            }
            Step::PollAuthz(i) => match status(&body)? {
                "valid" => self.authz_done(i),
                "pending" | "processing" => self.poll()?,
                _ => {
                    let why = body
                        .get("challenges")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c.get("error"))
                        .filter_map(|e| e.str_at("detail"))
                        .next()
                        .unwrap_or("the authorization is invalid");
                    return Err(AcmeError::Invalid(why.to_string()));
                }
            },
            Step::Finalize | Step::PollOrder => self.order_status(&body)?,
            Step::Nonce | Step::Download | Step::Done => {}
        }
        if let Some(wait) = response
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
        {
            if self.wait.is_some() {
                self.wait = Some(Duration::from_secs(wait).min(MAX_WAIT));
            }
        }
        Ok(())
    }

    fn authz_done(&mut self, i: usize) {
        self.polls = 0;
        self.step = if i + 1 < self.authorizations.len() {
            Step::Authz(i + 1)
        } else {
            Step::Finalize
        };
    }

    fn poll(&mut self) -> Result<(), AcmeError> {
        self.polls += 1;
        if self.polls > MAX_POLLS {
            return Err(AcmeError::TooManyPolls);
        }
        self.wait = Some(POLL_EVERY);
        Ok(())
    }

    /// Acts on an order object's status.
    fn order_status(&mut self, body: &Value) -> Result<(), AcmeError> {
        match status(body)? {
            "pending" => self.step = Step::Authz(0),
            "ready" => self.step = Step::Finalize,
            "processing" => {
                self.step = Step::PollOrder;
                self.poll()?;
            }
            "valid" => {
                self.certificate = Some(Url::parse(
                    body.str_at("certificate")
                        .ok_or(AcmeError::Protocol("the certificate URL"))?,
                )?);
                self.step = Step::Download;
            }
            other => return Err(AcmeError::Invalid(format!("order {other}"))),
        }
        Ok(())
    }
}

#[inline(never)]
fn post(url: Url, jws: String) -> Next {
    Next::Send(Request {
        method: Method::Post,
        url,
        body: Some(jws),
    })
}

fn status(body: &Value) -> Result<&str, AcmeError> {
    body.str_at("status").ok_or(AcmeError::Protocol("a status"))
}

/// A token may only hold base64url characters (RFC 8555 §8.3): it becomes
/// a path the frontend answers.
fn valid_token(token: &str) -> bool {
    (16..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A failed answer's problem document (RFC 7807), or its status alone.
fn problem(response: &Response) -> AcmeError {
    let doc = json::parse(&response.body).ok();
    let field = |key: &str| {
        doc.as_ref()
            .and_then(|d| d.str_at(key))
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>()
    };
    AcmeError::Problem {
        status: response.status,
        kind: field("type"),
        detail: field("detail"),
    }
}

#[cfg(test)]
#[path = "acme_tests.rs"]
mod tests;
