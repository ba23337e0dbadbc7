//! `--authfile`, rkite's own list of the users a frontend serves: one user
//! per line, `NAME SECRET DOMAINS PROTOS [MAX_TUNNELS]` separated by
//! blanks, `#` comments and blank lines ignored. DOMAINS is a comma list of
//! names and `*.parent` wildcards (as `--domain` takes them), PROTOS a comma
//! list of protocols (`http` covers `http-8080` too, `http-8080` only that
//! port, `*` every protocol the frontend serves), MAX_TUNNELS the most
//! tunnels (backend connections) that user's kites may hold at once (0 or
//! absent: no cap). Parsing and matching only, over text the caller read;
//! errors carry the line number (the caller adds the file name).

use std::fmt;

use super::kite::{KiteId, wildcards};

#[derive(Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub name: String,
    pub secret: String,
    /// Lower case names and `*.parent` wildcards.
    pub domains: Vec<String>,
    /// Lower case `proto` / `proto-port` entries; empty means `*`.
    pub protos: Vec<String>,
    /// 0: no cap.
    pub max_tunnels: usize,
}

// The secret stays out of debug output (settings are debug-printed).
impl fmt::Debug for AuthUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthUser")
            .field("name", &self.name)
            .field("domains", &self.domains)
            .field("protos", &self.protos)
            .field("max_tunnels", &self.max_tunnels)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub problem: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.problem)
    }
}

/// Parses a whole authfile.
pub fn parse(text: &str) -> Result<Vec<AuthUser>, LineError> {
    let mut users: Vec<AuthUser> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |problem: String| LineError { line, problem };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        let (name, secret, domains, protos, max) = match fields.as_slice() {
            [n, s, d, p] => (*n, *s, *d, *p, None),
            [n, s, d, p, m] => (*n, *s, *d, *p, Some(*m)),
            _ => {
                return Err(bad(format!(
                    "expected NAME SECRET DOMAINS PROTOS [MAX_TUNNELS], found {} field(s)",
                    fields.len()
                )));
            }
        };
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        {
            return Err(bad(format!(
                "user name {name:?}: letters, digits and - _ . @ only"
            )));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(bad(format!("user {name} is listed twice")));
        }
        let domains = list(domains)
            .map(|d| {
                let bare = d.strip_prefix("*.").unwrap_or(&d);
                let ok = !bare.is_empty()
                    && bare.split('.').all(|l| {
                        !l.is_empty()
                            && l.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if ok {
                    Ok(d)
                } else {
                    Err(bad(format!("{d:?} is not a domain or *.domain")))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let protos = if protos == "*" {
            Vec::new()
        } else {
            list(protos)
                .map(|p| match KiteId::parse(&p) {
                    Some(id) => Ok(id.name()),
                    None => Err(bad(format!("{p:?} is not a protocol (http, raw-22, *)"))),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let max_tunnels = match max {
            None => 0,
            Some(m) => m
                .parse()
                .map_err(|_| bad(format!("MAX_TUNNELS {m:?} is not a whole number")))?,
        };
        if domains.is_empty() {
            return Err(bad("no domains".into()));
        }
        users.push(AuthUser {
            name: name.to_string(),
            secret: secret.to_string(),
            domains,
            protos,
            max_tunnels,
        });
    }
    Ok(users)
}

fn list(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
}

impl AuthUser {
    /// Whether this user may fly `domain` over protocol `id`.
    pub fn covers(&self, id: &KiteId, domain: &str) -> bool {
        let proto_ok =
            self.protos.is_empty() || self.protos.iter().any(|p| *p == id.name() || *p == id.base);
        proto_ok
            && std::iter::once(domain.to_string())
                .chain(wildcards(domain, false))
                .any(|n| self.domains.contains(&n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_with_comments_and_blank_lines() {
        let text = "# the club's users\n\nalice  pw-a  alice.example.com,*.alice.example.com  http,websocket  2\n\
                    bob pw-b bob.example.net * # no cap\n";
        let users = parse(text).unwrap();
        assert_eq!(users.len(), 2);
        let a = &users[0];
        assert_eq!(
            (a.name.as_str(), a.secret.as_str(), a.max_tunnels),
            ("alice", "pw-a", 2)
        );
        let http = KiteId::parse("http").unwrap();
        let http8080 = KiteId::parse("http-8080").unwrap();
        let raw = KiteId::parse("raw-22").unwrap();
        assert!(a.covers(&http, "alice.example.com"));
        assert!(a.covers(&http8080, "blog.alice.example.com"));
        assert!(!a.covers(&raw, "alice.example.com"));
        assert!(!a.covers(&http, "example.com"));
        assert!(!a.covers(&http, "malice.example.com"));
        let b = &users[1];
        assert!(b.covers(&raw, "bob.example.net"));
        assert!(!b.covers(&raw, "x.bob.example.net"));
        assert_eq!(b.max_tunnels, 0);
        assert!(
            !format!("{a:?}").contains("pw-a"),
            "no secret in debug output"
        );
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, what) in [
            ("a pw d.test\n", 1, "found 3 field(s)"),
            ("\n# c\na pw d.test http x\n", 3, "MAX_TUNNELS"),
            ("a pw d.test ht/tp\n", 1, "not a protocol"),
            ("a pw bad..name http\n", 1, "not a domain"),
            ("a pw d.test http\na pw2 e.test http\n", 2, "listed twice"),
            ("a!b pw d.test http\n", 1, "user name"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.problem.contains(what), "{text:?}: {err}");
        }
    }
}
