//! The connection table: a slab whose tokens carry a generation, so an
//! event or timer for a connection that was closed and whose slot was reused
//! is recognised and dropped; per-address counts of public connections
//! (keyed by IPv4 address or IPv6 /64, see [`limit_key`]); and
//! the run queue of connections to drive in this round or the next. Pure
//! bookkeeping over any connection type (the table holds an entry's
//! connection, or nothing while it is taken out to be driven, so a
//! connection can't be found in two places at once); the reactor loop is
//! `engine`'s, and what a connection is belongs to the roles.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr};

use mio::Token;
use slab::Slab;

/// Tokens pack a slab index and a generation, so an event or timer for a
/// connection that was closed and whose slot was reused is recognised and
/// dropped. 32-bit targets (MIPS routers) get 20 index bits.
const INDEX_BITS: u32 = if usize::BITS >= 64 { 32 } else { 20 };
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const MAX_INDEX: usize = INDEX_MASK - 2;

/// Index part of a token, for log prefixes (`[t12]`, `[s7]`).
pub fn tag(token: Token) -> usize {
    token.0 & INDEX_MASK
}

/// Token of the signal self-pipe (never a table entry's).
pub const SIGNAL_TOKEN: Token = Token(usize::MAX);
/// Token of the waker that the name resolver uses (never a table entry's).
pub const WAKER_TOKEN: Token = Token(usize::MAX - 1);
const GEN_MASK: u32 = if usize::BITS >= 64 {
    u32::MAX
} else {
    (1 << (usize::BITS - INDEX_BITS)) - 1
};

pub(crate) fn pack(index: usize, generation: u32) -> Token {
    Token(index | ((generation as usize) << INDEX_BITS))
}

pub(crate) fn unpack(token: Token) -> (usize, u32) {
    (token.0 & INDEX_MASK, (token.0 >> INDEX_BITS) as u32)
}

/// The key `--max_conns_per_ip` counts under: an IPv4 address, or the /64
/// an IPv6 address is in, since one subscriber gets at least a /64 and can
/// use every address in it. IPv4-mapped addresses count as IPv4.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

struct Entry<C> {
    generation: u32,
    /// In the run queue for this round.
    queued: bool,
    /// The public client's [`limit_key`], counted in `per_ip`.
    ip: Option<IpAddr>,
    /// `None` while the connection is taken out to be driven.
    conn: Option<C>,
}

/// The connection table, of any connection type: the reactor's part knows
/// nothing of what a connection is.
pub struct Conns<C> {
    slab: Slab<Entry<C>>,
    generations: Vec<u32>,
    /// Open public connections per client address (`--max_conns_per_ip`).
    per_ip: std::collections::HashMap<IpAddr, u32>,
}

impl<C> Default for Conns<C> {
    fn default() -> Self {
        Conns {
            slab: Slab::new(),
            generations: Vec::new(),
            per_ip: std::collections::HashMap::new(),
        }
    }
}

impl<C> Conns<C> {
    /// The token the next insert will get (register the socket with it first).
    pub fn next_token(&self) -> Option<Token> {
        let index = self.slab.vacant_key();
        (index <= MAX_INDEX).then(|| pack(index, self.generations.get(index).copied().unwrap_or(0)))
    }

    pub fn insert(&mut self, conn: C) -> Token {
        self.insert_for(conn, None)
    }

    /// Inserts a public client's connection, counted against its address.
    pub fn insert_for(&mut self, conn: C, ip: Option<IpAddr>) -> Token {
        let ip = ip.map(limit_key);
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        let index = self.slab.vacant_key();
        if self.generations.len() <= index {
            self.generations.resize(index + 1, 0);
        }
        let generation = self.generations[index];
        self.slab.insert(Entry {
            generation,
            queued: false,
            ip,
            conn: Some(conn),
        });
        pack(index, generation)
    }

    fn entry(&mut self, token: Token) -> Option<&mut Entry<C>> {
        let (index, generation) = unpack(token);
        self.slab
            .get_mut(index)
            .filter(|e| e.generation & GEN_MASK == generation)
    }

    /// The connection, unless the token is stale or it is taken out.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut C> {
        self.entry(token).and_then(|e| e.conn.as_mut())
    }

    pub fn contains(&self, token: Token) -> bool {
        let (index, generation) = unpack(token);
        self.slab
            .get(index)
            .is_some_and(|e| e.generation & GEN_MASK == generation && e.conn.is_some())
    }

    /// Takes a connection out to drive it; [`Conns::put`] returns it.
    pub fn take(&mut self, token: Token) -> Option<C> {
        self.entry(token)?.conn.take()
    }

    /// Returns a taken connection (a no-op if its entry was removed meanwhile).
    pub fn put(&mut self, token: Token, conn: C) {
        if let Some(entry) = self.entry(token) {
            entry.conn = Some(conn);
        }
    }

    /// Forgets the entry; its connection, unless it is taken out right now.
    pub fn remove(&mut self, token: Token) -> Option<C> {
        let (index, _) = unpack(token);
        self.entry(token)?;
        let entry = self.slab.remove(index);
        if let Some(g) = self.generations.get_mut(index) {
            *g = g.wrapping_add(1) & GEN_MASK;
        }
        self.uncount_key(entry.ip);
        entry.conn
    }

    /// Stops counting a connection against its address: it turned out to
    /// be a backend's tunnel, not a visitor.
    pub fn uncount(&mut self, token: Token) {
        let key = self.entry(token).and_then(|e| e.ip.take());
        self.uncount_key(key);
    }

    /// Counts a connection against `ip` from now on, instead of whatever it
    /// was counted under: a PROXY protocol header named the visitor behind
    /// a load balancer.
    pub fn count_as(&mut self, token: Token, ip: IpAddr) {
        let key = limit_key(ip);
        let Some(entry) = self.entry(token) else {
            return;
        };
        let old = entry.ip.replace(key);
        *self.per_ip.entry(key).or_default() += 1;
        self.uncount_key(old);
    }

    fn uncount_key(&mut self, key: Option<IpAddr>) {
        if let Some(ip) = key {
            if let Some(count) = self.per_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.per_ip.remove(&ip);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Open public connections from `ip`'s [`limit_key`].
    pub fn from_ip(&self, ip: IpAddr) -> u32 {
        self.per_ip.get(&limit_key(ip)).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn tokens(&self) -> Vec<Token> {
        self.slab
            .iter()
            .map(|(i, e)| pack(i, e.generation))
            .collect()
    }
}

/// Which connections to drive in this round and which after the next poll.
/// A connection is queued at most once per round (its entry's flag), and
/// the flag is cleared whenever it leaves the round's queue, whichever way.
#[derive(Default)]
pub(crate) struct RunQueue {
    now: VecDeque<Token>,
    next: Vec<Token>,
    spare: Vec<Token>,
}

impl RunQueue {
    pub(crate) fn mark<C>(&mut self, conns: &mut Conns<C>, token: Token) {
        if let Some(entry) = conns.entry(token) {
            if !entry.queued {
                entry.queued = true;
                self.now.push_back(token);
            }
        }
    }

    pub(crate) fn defer(&mut self, token: Token) {
        self.next.push(token);
    }

    pub(crate) fn pop<C>(&mut self, conns: &mut Conns<C>) -> Option<Token> {
        let token = self.now.pop_front()?;
        if let Some(entry) = conns.entry(token) {
            entry.queued = false;
        }
        Some(token)
    }

    /// Moves what this round could not get to into the next round.
    pub(crate) fn defer_rest<C>(&mut self, conns: &mut Conns<C>) {
        while let Some(token) = self.pop(conns) {
            self.next.push(token);
        }
    }

    /// Starts a round: what was deferred is queued now.
    pub(crate) fn begin_round<C>(&mut self, conns: &mut Conns<C>) {
        // Swap with the spare so neither list reallocates round after round.
        std::mem::swap(&mut self.next, &mut self.spare);
        for i in 0..self.spare.len() {
            if let Some(&token) = self.spare.get(i) {
                self.mark(conns, token);
            }
        }
        self.spare.clear();
    }

    pub(crate) fn has_deferred(&self) -> bool {
        !self.next.is_empty()
    }

    pub(crate) fn queued_now(&self) -> usize {
        self.now.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_queue_never_loses_a_connection() {
        let mut conns: Conns<()> = Conns::default();
        let (a, b) = (conns.insert(()), conns.insert(()));
        let mut q = RunQueue::default();
        q.mark(&mut conns, a);
        q.mark(&mut conns, a);
        q.mark(&mut conns, b);
        assert_eq!(q.pop(&mut conns), Some(a));
        // The round runs out of budget: b moves on, and marking it again in
        // this round must still queue it (the flag is not left set).
        q.defer_rest(&mut conns);
        assert_eq!(q.pop(&mut conns), None);
        q.mark(&mut conns, b);
        assert_eq!(q.pop(&mut conns), Some(b));
        q.begin_round(&mut conns);
        q.mark(&mut conns, b);
        assert_eq!(
            q.pop(&mut conns),
            Some(b),
            "deferred, and marked again: queued once"
        );
        assert_eq!(q.pop(&mut conns), None);
        // Stale tokens are ignored.
        conns.remove(a);
        q.mark(&mut conns, a);
        assert_eq!(q.pop(&mut conns), None);
    }

    #[test]
    fn per_ip_counts_key_ipv6_by_64_and_let_tunnels_go() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut conns: Conns<()> = Conns::default();
        let a = conns.insert_for((), Some(ip("2001:db8:1:2::1")));
        let b = conns.insert_for((), Some(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")));
        conns.insert_for((), Some(ip("2001:db8:1:3::1")));
        assert_eq!(conns.from_ip(ip("2001:db8:1:2::99")), 2, "one /64");
        assert_eq!(conns.from_ip(ip("2001:db8:1:3::")), 1, "the next /64");
        conns.insert_for((), Some(ip("::ffff:192.0.2.1")));
        assert_eq!(conns.from_ip(ip("192.0.2.1")), 1, "mapped counts as IPv4");
        assert_eq!(conns.from_ip(ip("192.0.2.2")), 0, "IPv4 is per address");
        // A connection found to be a backend's tunnel stops counting, once.
        conns.uncount(a);
        conns.uncount(a);
        assert_eq!(conns.from_ip(ip("2001:db8:1:2::1")), 1);
        conns.remove(a);
        assert_eq!(conns.from_ip(ip("2001:db8:1:2::1")), 1);
        conns.remove(b);
        assert_eq!(conns.from_ip(ip("2001:db8:1:2::1")), 0);
        assert_eq!(limit_key(ip("::1")), ip("::"));
    }

    #[test]
    fn a_connection_counted_again_moves_to_the_visitor_it_names() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut conns: Conns<()> = Conns::default();
        // A balancer's connection is not counted until its header is read.
        let a = conns.insert_for((), None);
        conns.count_as(a, ip("192.0.2.7"));
        assert_eq!(conns.from_ip(ip("192.0.2.7")), 1);
        let b = conns.insert_for((), Some(ip("10.0.0.1")));
        conns.count_as(b, ip("192.0.2.7"));
        assert_eq!(conns.from_ip(ip("10.0.0.1")), 0, "the old address let go");
        assert_eq!(conns.from_ip(ip("192.0.2.7")), 2);
        conns.remove(a);
        conns.remove(b);
        assert_eq!(conns.from_ip(ip("192.0.2.7")), 0);
    }

    #[test]
    fn stale_tokens_are_rejected() {
        let mut conns: Conns<()> = Conns::default();
        let a = conns.insert(());
        assert!(conns.get_mut(a).is_some());
        assert!(conns.remove(a).is_some());
        let b = conns.insert(());
        assert_eq!(unpack(a).0, unpack(b).0, "the slot is reused");
        assert_ne!(a, b, "with a new generation");
        assert!(conns.get_mut(a).is_none());
        assert!(conns.remove(a).is_none());
        assert!(conns.get_mut(b).is_some());
        assert_ne!(b, SIGNAL_TOKEN);
        assert_ne!(b, WAKER_TOKEN);
    }
}
