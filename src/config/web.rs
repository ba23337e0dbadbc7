//! The built-in file server's configuration, in pagekite.py's words:
//! `--webpath=HOST:PATH:POLICY:DIR` (pk.py's reading: an empty HOST is `*`,
//! an empty PATH the directory's own path, a directory's PATH ends in `/`),
//! `--httppass`, and the options pagekite.py 1.5 only kept for old files,
//! given a meaning here: `--webroot=DIR` shares DIR at `/` of every
//! built-in kite with `--webaccess`'s policy, `--webindexes` sets whether
//! directories are listed where a kite's `+indexes` does not say. Also the
//! quick share (`rkite /srv/www blog.example.com`): the short form's
//! directory becomes a `builtin` kite and its webpath. It checks that
//! shared paths exist (not while offline: fuzzed input never reaches the
//! file system) and serves nothing: `webserve` does.

use std::path::{Path, PathBuf};

use super::{ConfigError, bad_fmt};
use crate::proto::webfiles_page::{Indexes, Policy};

/// One shared directory (or file) and where it appears.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebPath {
    /// `*`, `DOMAIN` or `DOMAIN/PORT` (pagekite.py's key, as the short form
    /// writes it).
    pub host: String,
    /// The URL prefix, `/` first; a directory's ends in `/`.
    pub path: String,
    pub policy: Policy,
    /// Absolute.
    pub dir: PathBuf,
}

impl WebPath {
    /// The prefix's segments, for `proto::webfiles::find_mount`.
    pub fn prefix_segments(&self) -> Vec<String> {
        self.path
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_string)
            .collect()
    }

    /// `HOST:PATH:POLICY:DIR`, as pagekite.py writes it.
    pub fn to_arg(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.host,
            self.path,
            self.policy.name(),
            self.dir.display()
        )
    }
}

/// The file server's settings, shared by every `builtin` kite.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebSettings {
    pub paths: Vec<WebPath>,
    /// `--httppass`.
    pub password: Option<String>,
    /// `--webindexes`: listings where a kite's `+indexes` does not say.
    pub indexes: Indexes,
}

/// `path` made absolute against the working directory (no file system
/// access: `daemonize` moves to `/`, so relative paths are fixed now).
fn absolute(path: &str) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path))
}

fn check_exists(path: &Path, flag: &str) -> Result<(), ConfigError> {
    if super::offline::active() || path.exists() {
        return Ok(());
    }
    Err(bad_fmt(
        flag,
        format_args!("{} is no file or directory", path.display()),
    ))
}

/// `--webpath=HOST:PATH:POLICY:DIR`.
#[inline(never)]
pub(super) fn parse_webpath(arg: &str) -> Result<WebPath, ConfigError> {
    let mut parts = arg.splitn(4, ':');
    let (Some(host), Some(path), Some(policy), Some(dir)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad_fmt(
            "webpath",
            format_args!("{arg:?} is not HOST:PATH:POLICY:DIR"),
        ));
    };
    if dir.is_empty() {
        return Err(bad_fmt(
            "webpath",
            format_args!("{arg:?} names no directory"),
        ));
    }
    let policy = Policy::parse(policy).ok_or_else(|| {
        bad_fmt(
            "webpath",
            format_args!("policy {policy:?} is not default, public, private or otp"),
        )
    })?;
    let dir = absolute(dir);
    check_exists(&dir, "webpath")?;
    let mut path = if path.is_empty() {
        dir.display().to_string()
    } else {
        path.to_string()
    };
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if !super::offline::active() && dir.is_dir() && !path.ends_with('/') {
        path.push('/');
    }
    let host = match host.trim() {
        "" => "*".to_string(),
        h => h.to_ascii_lowercase(),
    };
    Ok(WebPath {
        host,
        path,
        policy,
        dir,
    })
}

/// `--webroot`, `--webaccess`, `--webindexes`, `--httppass`, every
/// `--webpath` and the short form's `shares`; `--webroot`'s comes last.
#[inline(never)]
pub(super) fn settings(
    webpaths: &[String],
    webroot: Option<&str>,
    webaccess: Option<&str>,
    webindexes: Option<&str>,
    httppass: Option<String>,
    shares: Vec<WebPath>,
) -> Result<WebSettings, ConfigError> {
    let mut paths = webpaths
        .iter()
        .map(|w| parse_webpath(w))
        .collect::<Result<Vec<_>, _>>()?;
    // The quick share's before `--webroot`'s, which `--settings` writes
    // as given rather than as a webpath.
    paths.extend(shares);
    let policy = match webaccess {
        Some(p) => Policy::parse(p).ok_or_else(|| {
            bad_fmt(
                "webaccess",
                format_args!("{p:?} is not default, public, private or otp"),
            )
        })?,
        None => Policy::Default,
    };
    if let Some(root) = webroot {
        let dir = absolute(root);
        check_exists(&dir, "webroot")?;
        paths.push(WebPath {
            host: "*".into(),
            path: "/".into(),
            policy,
            dir,
        });
    }
    let indexes = match webindexes {
        Some(i) => Indexes::parse(i)
            .ok_or_else(|| bad_fmt("webindexes", format_args!("{i:?} is not on, all or off")))?,
        None => Indexes::Off,
    };
    Ok(WebSettings {
        paths,
        password: httppass.filter(|p| !p.is_empty()),
        indexes,
    })
}

/// Whether a short-form word names something to share (a path that
/// exists), as pagekite.py's `ParseFriendlyBackendSpecs` decides. Never
/// while offline.
pub(super) fn is_shared_path(word: &str) -> bool {
    !super::offline::active() && Path::new(word).exists()
}

/// The webpaths of a quick share of `paths` on kite `domain` (port
/// `port`), as pagekite.py's `ParseFriendlyBackendSpecs` places them: the
/// first, if a directory, at `/`; the others (and a first file) at their
/// path below the directory they have in common (one path: its parent).
#[inline(never)]
pub(super) fn quick_shares(paths: &[&str], domain: &str, port: u16) -> Vec<WebPath> {
    let skip = match paths {
        [one] => dirname(one).len(),
        _ => {
            let mut common = paths.first().copied().unwrap_or_default().to_string();
            for p in paths {
                let same = common
                    .chars()
                    .zip(p.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                common = common.chars().take(same).collect();
            }
            dirname(&format!("{common}X")).len()
        }
    };
    let mut out = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let dir = absolute(path);
        let below = path.get(skip..).unwrap_or_default();
        let mut web = if (i == 0 && dir.is_dir()) || *path == "." {
            String::new()
        } else if dir.is_dir() && !path.starts_with('.') && !path.starts_with('/') {
            format!("{below}/")
        } else {
            below.to_string()
        };
        while let Some(cut) = web.strip_suffix("/.") {
            web = cut.to_string();
        }
        let mut key = format!("/{web}");
        while key.contains("//") {
            key = key.replace("//", "/");
        }
        out.push(WebPath {
            host: format!("{domain}/{port}"),
            path: key,
            policy: Policy::Default,
            dir,
        });
    }
    out
}

/// Python's `os.path.dirname`: everything before the last `/`, without
/// trailing slashes unless it is all slashes.
fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        None => "",
        Some(at) => {
            let head = path.get(..=at).unwrap_or_default();
            let trimmed = head.trim_end_matches('/');
            if trimmed.is_empty() { head } else { trimmed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webpaths_read_as_pagekite_reads_them() {
        let tmp = std::env::temp_dir();
        let t = tmp.display();
        let w = parse_webpath(&format!("blog.example.com/80:/files:public:{t}")).unwrap();
        assert_eq!(w.path, "/files/");
        assert_eq!(w.policy, Policy::Public);
        assert_eq!(w.prefix_segments(), ["files"]);
        let w = parse_webpath(&format!(":::{t}")).unwrap();
        assert_eq!(w.host, "*");
        assert_eq!(w.policy, Policy::Default);
        assert_eq!(w.path, format!("{t}/").replace("//", "/"));
        assert!(parse_webpath("a:/:nope:/tmp").is_err());
        assert!(parse_webpath("a:/:public").is_err());
        assert!(parse_webpath("a:/:public:/no/such/dir/rkite").is_err());
        let s = settings(
            &[],
            Some(&t.to_string()),
            Some("private"),
            Some("all"),
            None,
            vec![],
        )
        .unwrap();
        assert_eq!(s.paths.len(), 1);
        assert_eq!(s.paths[0].policy, Policy::Private);
        assert_eq!(s.indexes, Indexes::All);
        assert!(settings(&[], None, None, Some("maybe"), None, vec![]).is_err());
    }

    #[test]
    fn builtin_kites_are_http_kites() {
        let spec = |s: &str| super::super::specs::parse_service(s, "service_on", None);
        let kites = spec("http,http-8080:a.test:localhost:builtin:pw").unwrap();
        assert!(kites.iter().all(|k| k.builtin && k.origin() == "builtin"));
        assert!(spec("https:a.test:localhost:builtin:pw").is_err());
        assert!(spec("raw-22:a.test:localhost:builtin:pw").is_err());
    }

    #[test]
    fn quick_shares_sit_where_pagekite_puts_them() {
        let tmp = std::env::temp_dir().join(format!("rkite-qs-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("site/sub")).unwrap();
        std::fs::write(tmp.join("site/a.txt"), b"a").unwrap();
        let base = tmp.display().to_string();
        let at = |paths: &[&str]| -> Vec<String> {
            let owned: Vec<String> = paths.iter().map(|p| format!("{base}/{p}")).collect();
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            quick_shares(&refs, "k.test", 80)
                .into_iter()
                .map(|w| w.path)
                .collect()
        };
        assert_eq!(at(&["site"]), ["/"]);
        assert_eq!(at(&["site/a.txt"]), ["/a.txt"]);
        assert_eq!(at(&["site/sub", "site/a.txt"]), ["/", "/a.txt"]);
        assert_eq!(at(&["site/a.txt", "site/sub"]), ["/a.txt", "/sub"]);
        assert_eq!(dirname("/a/b/"), "/a/b");
        assert_eq!(dirname("/x"), "/");
        assert_eq!(dirname("x"), "");
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
