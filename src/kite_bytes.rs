//! Stream bytes per kite for `--metrics`, with labels bounded by design:
//! an ended stream's bytes wait under the name it was opened for until a
//! scrape looks its kite up among the kites configured or registered then,
//! or seen so at an earlier scrape ([`Known`]); what matches no kite, or
//! comes past the limits, is counted as unmatched. A kite once seen keeps
//! its counters (a counter series should not vanish). Data and pure look-ups only (kite names from `proto`): the
//! engine's `Counters` hold one, `metrics` reads it.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::proto::kite::{self, KiteKey};

/// Ended streams whose kite is not looked up yet (done at each scrape).
pub const MAX_PENDING: usize = 1024;
/// Kites with byte counts; later ones are counted as unmatched.
pub const MAX_KITES: usize = 4096;

/// Stream bytes per kite: ended streams wait in `pending` (by the name they
/// were opened for) until a scrape looks their kite up; the totals stay in
/// `kites`, which holds every kite seen (up to [`MAX_KITES`]).
#[derive(Default)]
pub struct KiteBytes {
    pub(crate) pending: HashMap<(String, String, u16), (u64, u64)>,
    pub(crate) kites: BTreeMap<KiteKey, (u64, u64)>,
    /// Bytes of streams whose kite could not be told (or past the limits).
    pub(crate) unmatched: (u64, u64),
}

impl KiteBytes {
    pub fn add_pending(&mut self, label: &str, bytes: (u64, u64)) {
        let full = self.pending.len() >= MAX_PENDING;
        match stream_target(label) {
            Some(t) if !full || self.pending.contains_key(&t) => {
                add(self.pending.entry(t).or_default(), bytes);
            }
            _ => add(&mut self.unmatched, bytes),
        }
    }

    /// Remembers the kites in `known`, and moves the pending counts to
    /// their kites among every one seen so far.
    pub fn settle(&mut self, known: &Known) {
        for key in &known.keys {
            if self.kites.len() < MAX_KITES && !self.kites.contains_key(key) {
                self.kites.insert(key.clone(), (0, 0));
            }
        }
        let seen = self.seen(known.frontend);
        for ((proto, host, port), bytes) in self.pending.drain() {
            match seen.find(&proto, &host, port) {
                Some(key) => add(self.kites.entry(key).or_default(), bytes),
                None => add(&mut self.unmatched, bytes),
            }
        }
    }

    /// Every kite seen so far, to look streams up in.
    pub fn seen(&self, frontend: bool) -> Known {
        Known {
            frontend,
            keys: self.kites.keys().cloned().collect(),
        }
    }
}

pub fn add(to: &mut (u64, u64), bytes: (u64, u64)) {
    to.0 = to.0.saturating_add(bytes.0);
    to.1 = to.1.saturating_add(bytes.1);
}

/// The protocol, host and port a stream was opened for, from its label
/// (`[https+]PROTO://HOST:PORT …`, as `public` and `local` write it).
pub fn stream_target(label: &str) -> Option<(String, String, u16)> {
    let label = label.strip_prefix("https+").unwrap_or(label);
    let (proto, rest) = label.split_once("://")?;
    let target = rest.split(' ').next()?;
    let (host, port) = target.rsplit_once(':')?;
    Some((proto.to_string(), host.to_string(), port.parse().ok()?))
}

/// The kites a stream may belong to now, and how the role finds one.
pub struct Known {
    pub frontend: bool,
    pub keys: HashSet<KiteKey>,
}

impl Known {
    pub fn find(&self, proto: &str, host: &str, port: u16) -> Option<KiteKey> {
        let hit = |key: &KiteKey| self.keys.contains(key).then(|| key.clone());
        if self.frontend {
            kite::find_for_frontend(proto, host, port, |key, _| hit(key))
        } else {
            kite::find_for_backend(proto, host, (port != 0).then_some(port), hit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::kite;

    #[test]
    fn stream_labels_name_their_target() {
        let t = |l: &str| stream_target(l);
        assert_eq!(
            t("http://a.test:80 from 127.0.0.1:5"),
            Some(("http".into(), "a.test".into(), 80))
        );
        assert_eq!(
            t("https+http://b.test:443 from [::1]:5"),
            Some(("http".into(), "b.test".into(), 443))
        );
        assert_eq!(
            t("raw://c.test:0 -> 127.0.0.1:22"),
            Some(("raw".into(), "c.test".into(), 0))
        );
        assert_eq!(t("nonsense"), None);
        assert_eq!(t("http://noport from x"), None);
    }

    #[test]
    fn ended_streams_settle_on_known_kites_only() {
        let mut k = KiteBytes::default();
        k.add_pending("http://www.a.test:80 from 1.2.3.4:5", (10, 100));
        k.add_pending("http://b.test:80 from 1.2.3.4:6", (1, 2));
        k.add_pending("garbage", (3, 4));
        let known = Known {
            frontend: true,
            keys: [kite::key("http", "*.a.test")].into_iter().collect(),
        };
        k.settle(&known);
        assert!(k.pending.is_empty());
        assert_eq!(
            k.kites.get(&kite::key("http", "*.a.test")),
            Some(&(10, 100))
        );
        assert_eq!(k.kites.len(), 1, "visitor names never become labels");
        assert_eq!(k.unmatched, (4, 6));
        let backend = Known {
            frontend: false,
            keys: [kite::key("http", "b.test")].into_iter().collect(),
        };
        k.add_pending("http://b.test:80 -> 127.0.0.1:8080", (5, 6));
        k.settle(&backend);
        assert_eq!(k.kites.get(&kite::key("http", "b.test")), Some(&(5, 6)));
        // A kite seen before still gets its streams' bytes when it is no
        // longer registered (the stream ended with its tunnel).
        k.add_pending("http://x.a.test:80 from 1.2.3.4:7", (1, 1));
        k.settle(&Known {
            frontend: true,
            keys: HashSet::new(),
        });
        assert_eq!(
            k.kites.get(&kite::key("http", "*.a.test")),
            Some(&(11, 101))
        );
    }

    #[test]
    fn pending_streams_are_bounded() {
        let mut k = KiteBytes::default();
        for i in 0..MAX_PENDING + 10 {
            k.add_pending(&format!("http://h{i}.test:80 from x"), (1, 1));
        }
        assert_eq!(k.pending.len(), MAX_PENDING);
        assert_eq!(k.unmatched, (10, 10));
    }
}
