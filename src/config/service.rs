//! pagekite.net's service defaults, as pagekite.py 1.5.2 has them:
//! `defaults`, `whitelabel = DOMAIN` and `whitelabels = DOMAIN` expand to a
//! frontend pool, certificate names, an error page and a dynamic DNS
//! provider (`SetServiceDefaults`/`SetWhitelabelDefaults` in pk.py, with
//! `APPVER_DNS`, `SERVICE_CERTS` and `DYNDNS` from common.py), applied in
//! command-line order with pagekite.py's clobber rules; and `dyndns`, read
//! and written back the way pagekite.py does. Pure data and string work: it
//! dials nothing, resolves nothing and sends no DNS update (rkite does not
//! send them yet).

use super::{ConfigError, FrontendPool, bad_fmt, specs};

/// pagekite.py's `APPVER_DNS(tld)`: `fe4_` and the digits of the first three
/// parts of its version (1.5.2.201011), then the domain.
pub const POOL_PREFIX: &str = "fe4_152.";

/// common.py's `SERVICE_CERTS`.
pub const SERVICE_CERTS: &[&str] = &[
    "b5p.us",
    "frontends.b5p.us",
    "pagekite.net",
    "pagekite.me",
    "pagekite.com",
    "pagekite.org",
    "testing.is",
    "302.is",
];

/// common.py's `DYNDNS` providers, in pagekite.py's sorted key order; the
/// whitelabel ones have `%s` for the domain.
const DYNDNS: &[(&str, &str)] = &[
    (
        "beanstalks.net",
        "http://up.b5p.us/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
    (
        "dyndns.org",
        "https://%(user)s:%(pass)s@members.dyndns.org/nic/update?wildcard=NOCHG&backmx=NOCHG&hostname=%(domain)s&myip=%(ip)s",
    ),
    (
        "no-ip.com",
        "https://%(user)s:%(pass)s@dynupdate.no-ip.com/nic/update?hostname=%(domain)s&myip=%(ip)s",
    ),
    (
        "pagekite.net",
        "http://up.pagekite.net/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
    (
        "whitelabel",
        "http://dnsup.%s/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
    (
        "whitelabels",
        "https://dnsup.%s/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s",
    ),
];

fn provider_url(name: &str) -> Option<&'static str> {
    DYNDNS.iter().find(|(n, _)| *n == name).map(|(_, url)| *url)
}

/// `--dyndns`: pagekite.py's `(provider URL, user, password)`, as read and
/// written back by `--settings`; `proto::dyndns::Provider` makes it a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynDns {
    pub url: String,
    pub user: String,
    pub pass: String,
}

impl DynDns {
    /// pagekite.py's reading: a URL, `PROVIDER`, `USER@PROVIDER` or
    /// `USER:PASS@PROVIDER` (a known provider's name becomes its URL);
    /// empty means none.
    pub fn parse(arg: &str) -> Option<DynDns> {
        let known = |p: &str| provider_url(p).map_or(p.to_string(), str::to_string);
        if arg.starts_with("http") {
            return Some(DynDns::plain(arg.to_string()));
        }
        if let Some((userpass, provider)) = arg.rsplit_once('@') {
            let (user, pass) = userpass.split_once(':').unwrap_or((userpass, ""));
            // Without a provider there is nothing to update (and nothing
            // an option file could hold).
            return (!provider.is_empty()).then(|| DynDns {
                url: known(provider),
                user: user.to_string(),
                pass: pass.to_string(),
            });
        }
        (!arg.is_empty()).then(|| DynDns::plain(known(arg)))
    }

    fn plain(url: String) -> DynDns {
        DynDns {
            url,
            user: String::new(),
            pass: String::new(),
        }
    }

    /// The provider's name when pagekite.py has one for the URL (never
    /// `beanstalks.net`, as pagekite.py writes it), else the URL.
    fn provider(&self) -> &str {
        DYNDNS
            .iter()
            .filter(|(name, url)| *url == self.url && *name != "beanstalks.net")
            .map(|(name, _)| *name)
            .next_back()
            .unwrap_or(&self.url)
    }

    /// The `dyndns = …` value pagekite.py writes (password in clear).
    pub fn to_arg(&self) -> String {
        let prov = self.provider();
        match (self.user.is_empty(), self.pass.is_empty()) {
            (_, false) => format!("{}:{}@{prov}", self.user, self.pass),
            (false, true) => format!("{}@{prov}", self.user),
            (true, true) => prov.to_string(),
        }
    }
}

/// Which service's defaults: pagekite.net's, or a white-label domain's
/// (`whitelabels` uses https for its error page and DNS updates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    PageKiteNet,
    Whitelabel { domain: String, secure: bool },
}

/// The values a [`Service`] sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub pool: FrontendPool,
    pub certs: Vec<String>,
    pub error_url: String,
    pub dyndns: DynDns,
}

impl Service {
    pub fn defaults(&self) -> Defaults {
        let others = |skip: &str| {
            SERVICE_CERTS
                .iter()
                .filter(|c| **c != skip)
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
        };
        let (tld, mut certs, error_url, dyndns) = match self {
            Service::PageKiteNet => (
                "b5p.us".to_string(),
                vec!["b5p.us".to_string()],
                "https://pagekite.net/offline/?".to_string(),
                provider_url("pagekite.net").unwrap_or_default().to_string(),
            ),
            Service::Whitelabel { domain, secure } => {
                let (s, key) = if *secure {
                    ("s", "whitelabels")
                } else {
                    ("", "whitelabel")
                };
                (
                    domain.clone(),
                    vec![format!("fe.{domain}"), domain.clone()],
                    format!("http{s}://www.{domain}/offline/?"),
                    provider_url(key)
                        .unwrap_or_default()
                        .replacen("%s", domain, 1),
                )
            }
        };
        certs.extend(others(&tld));
        Defaults {
            pool: FrontendPool {
                count: 1,
                name: format!("{POOL_PREFIX}{tld}"),
                port: 443,
            },
            certs,
            error_url,
            dyndns: DynDns::plain(dyndns),
        }
    }

    /// The option line that asks for these defaults.
    pub fn line(&self) -> String {
        match self {
            Service::PageKiteNet => "defaults".to_string(),
            Service::Whitelabel {
                domain,
                secure: false,
            } => format!("whitelabel = {domain}"),
            Service::Whitelabel {
                domain,
                secure: true,
            } => format!("whitelabels = {domain}"),
        }
    }

    /// pagekite.py's `check=True`: whether these are exactly the values of
    /// one of the services (certificate names in any order). The white-label
    /// domain is the one the pool's name is made from.
    #[inline(never)]
    pub fn matching(front: &Front) -> Option<Service> {
        let pool = front.pool.as_ref()?;
        let mut candidates = vec![Service::PageKiteNet];
        if let Some(domain) = pool.name.strip_prefix(POOL_PREFIX) {
            for secure in [false, true] {
                candidates.push(Service::Whitelabel {
                    domain: domain.to_string(),
                    secure,
                });
            }
        }
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        candidates.into_iter().find(|s| {
            let d = s.defaults();
            front.pool.as_ref() == Some(&d.pool)
                && front.error_url.as_deref() == Some(d.error_url.as_str())
                && front.dyndns.as_ref() == Some(&d.dyndns)
                && sorted(&front.certs) == sorted(&d.certs)
        })
    }
}

/// The settings the service defaults touch, after every option that sets
/// them has been applied in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Front {
    pub pool: Option<FrontendPool>,
    pub certs: Vec<String>,
    /// The error URL for every domain (`errorurl = URL`).
    pub error_url: Option<String>,
    pub dyndns: Option<DynDns>,
}

impl Front {
    /// pagekite.py's `clobber=True`: the pool, error page and DNS provider
    /// are replaced, the certificate names are added to.
    fn apply(&mut self, service: &Service) {
        let d = service.defaults();
        self.pool = Some(d.pool);
        self.error_url = Some(d.error_url);
        self.dyndns = Some(d.dyndns);
        for cert in d.certs {
            if !self.certs.contains(&cert) {
                self.certs.push(cert);
            }
        }
    }

    /// Applies the options that touch these settings in the order given:
    /// a later `frontends`, `errorurl` or `dyndns` wins over an earlier
    /// `defaults`, and `defaults` wins over earlier ones, as in pagekite.py.
    #[inline(never)]
    pub(super) fn from_matches(m: &getopts::Matches) -> Result<Front, ConfigError> {
        let mut events: Vec<(usize, &str, String)> = Vec::new();
        for pos in m.opt_positions("defaults") {
            events.push((pos, "defaults", String::new()));
        }
        for flag in [
            "whitelabel",
            "whitelabels",
            "frontends",
            "errorurl",
            "dyndns",
            "fe_certname",
        ] {
            for (pos, value) in m.opt_strs_pos(flag) {
                events.push((pos, flag, value));
            }
        }
        events.sort_by_key(|e| e.0);
        let mut front = Front::default();
        for (_, flag, value) in events {
            match flag {
                "defaults" => front.apply(&Service::PageKiteNet),
                "whitelabel" | "whitelabels" => {
                    let domain = value.trim().to_ascii_lowercase();
                    if !specs::valid_domain(&domain) || domain.contains('*') {
                        return Err(bad_fmt(
                            flag,
                            format_args!("{value:?} is not a domain name"),
                        ));
                    }
                    front.apply(&Service::Whitelabel {
                        domain,
                        secure: flag == "whitelabels",
                    });
                }
                "frontends" => front.pool = Some(specs::parse_frontend_pool(&value)?),
                // `DOMAIN:URL` pages are per domain; the rest is the default.
                "errorurl" if !value.contains(":http") => front.error_url = Some(value),
                "dyndns" => front.dyndns = DynDns::parse(&value),
                // pagekite.py: an empty name clears the list.
                "fe_certname" if value.is_empty() => front.certs.clear(),
                "fe_certname" => {
                    let cert = value.to_ascii_lowercase();
                    if !front.certs.contains(&cert) {
                        front.certs.push(cert);
                    }
                }
                _ => {}
            }
        }
        Ok(front)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values pk.py's SetServiceDefaults and SetWhitelabelDefaults set,
    /// copied from pagekite.py 1.5.2 by hand.
    #[test]
    fn defaults_are_pagekite_py_s() {
        let d = Service::PageKiteNet.defaults();
        assert_eq!(
            d.pool,
            FrontendPool {
                count: 1,
                name: "fe4_152.b5p.us".into(),
                port: 443
            }
        );
        assert_eq!(
            d.certs,
            [
                "b5p.us",
                "frontends.b5p.us",
                "pagekite.net",
                "pagekite.me",
                "pagekite.com",
                "pagekite.org",
                "testing.is",
                "302.is"
            ]
        );
        assert_eq!(d.error_url, "https://pagekite.net/offline/?");
        assert_eq!(
            d.dyndns.url,
            "http://up.pagekite.net/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s"
        );
        assert_eq!(d.dyndns.to_arg(), "pagekite.net");

        let w = Service::Whitelabel {
            domain: "example.com".into(),
            secure: false,
        }
        .defaults();
        assert_eq!(w.pool.name, "fe4_152.example.com");
        assert_eq!((w.pool.count, w.pool.port), (1, 443));
        assert_eq!(&w.certs[..3], ["fe.example.com", "example.com", "b5p.us"]);
        assert_eq!(w.certs.len(), 2 + SERVICE_CERTS.len());
        assert_eq!(w.error_url, "http://www.example.com/offline/?");
        assert_eq!(
            w.dyndns.to_arg(),
            "http://dnsup.example.com/?hostname=%(domain)s&myip=%(ips)s&sign=%(sign)s"
        );
        let s = Service::Whitelabel {
            domain: "example.com".into(),
            secure: true,
        }
        .defaults();
        assert_eq!(s.error_url, "https://www.example.com/offline/?");
        assert!(s.dyndns.url.starts_with("https://dnsup.example.com/?"));
        // A white-label domain that is one of pagekite.net's is not listed twice.
        let own = Service::Whitelabel {
            domain: "pagekite.me".into(),
            secure: false,
        }
        .defaults();
        assert_eq!(own.certs.len(), 1 + SERVICE_CERTS.len());
    }

    #[test]
    fn dyndns_reads_and_writes_as_pagekite_py() {
        for (arg, url, user, pass) in [
            ("pagekite.net", "http://up.pagekite.net/", "", ""),
            (
                "bob@no-ip.com",
                "https://%(user)s:%(pass)s@dynupdate",
                "bob",
                "",
            ),
            ("bob:pw:x@dyndns.org", "https://%(user)s", "bob", "pw:x"),
            (
                "https://dns.test/?h=%(domain)s",
                "https://dns.test/",
                "",
                "",
            ),
            ("custom.test", "custom.test", "", ""),
        ] {
            let d = DynDns::parse(arg).unwrap();
            assert!(d.url.starts_with(url), "{arg}: {d:?}");
            assert_eq!((d.user.as_str(), d.pass.as_str()), (user, pass), "{arg}");
            assert_eq!(d.to_arg(), arg, "written back");
        }
        assert_eq!(DynDns::parse(""), None);
        assert_eq!(DynDns::parse("bob:pw@"), None);
        // beanstalks.net is written as its URL, as pagekite.py does.
        let b = DynDns::parse("beanstalks.net").unwrap();
        assert!(b.to_arg().starts_with("http://up.b5p.us/"));
    }
}
