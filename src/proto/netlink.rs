//! The address changes the kernel announces on a `NETLINK_ROUTE` socket
//! (groups `RTMGRP_IPV4_IFADDR` and `RTMGRP_IPV6_IFADDR`): which local
//! addresses appeared and went, read from the bytes of one datagram. A
//! backend uses them to replace at once the tunnels bound to an address
//! that is gone (a new WAN lease) and to redial at once when an address
//! appears (the network came up). Bytes in, typed events out: no sockets
//! here, and nothing a malformed message contains can make it panic or
//! read past the datagram.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `RTM_NEWADDR` and `RTM_DELADDR` (linux/rtnetlink.h).
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// `IFA_ADDRESS` and `IFA_LOCAL` (linux/if_addr.h).
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// `struct nlmsghdr`, `struct ifaddrmsg`, `struct rtattr` sizes.
const NLMSG_HDR: usize = 16;
const IFADDRMSG: usize = 8;
const RTA_HDR: usize = 4;

/// One change of this host's addresses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AddrEvent {
    Added(IpAddr),
    Removed(IpAddr),
}

// `Debug` by hand, in the derived form: a log line prints the changes, and
// the static binary derives `Debug` shallowly (variant names only).
impl fmt::Debug for AddrEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrEvent::Added(ip) => f.debug_tuple("Added").field(ip).finish(),
            AddrEvent::Removed(ip) => f.debug_tuple("Removed").field(ip).finish(),
        }
    }
}

/// Netlink's 4-byte alignment.
fn align(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let bytes = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_ne_bytes(bytes))
}

/// The address changes in one datagram, in order; messages of other types
/// and malformed tails are skipped.
pub fn parse(datagram: &[u8]) -> Vec<AddrEvent> {
    let mut events = Vec::new();
    let mut at = 0;
    // Every message is at least a header long, so this ends.
    while let Some(len) = u32_at(datagram, at) {
        let len = len as usize;
        if len < NLMSG_HDR {
            break;
        }
        let Some(msg) = at.checked_add(len).and_then(|end| datagram.get(at..end)) else {
            break;
        };
        if let Some(event) = address_message(msg) {
            events.push(event);
        }
        at = at.saturating_add(align(len));
    }
    events
}

/// An `RTM_NEWADDR`/`RTM_DELADDR` message's address (its local one where
/// it has both, as on point-to-point links).
fn address_message(msg: &[u8]) -> Option<AddrEvent> {
    let kind = u16_at(msg, 4)?;
    if kind != RTM_NEWADDR && kind != RTM_DELADDR {
        return None;
    }
    let family = *msg.get(NLMSG_HDR)?;
    let mut at = NLMSG_HDR + IFADDRMSG;
    let (mut address, mut local) = (None, None);
    while let Some(rta_len) = u16_at(msg, at) {
        let rta_len = rta_len as usize;
        if rta_len < RTA_HDR {
            break;
        }
        let rta_type = u16_at(msg, at + 2)?;
        let payload = msg.get(at + RTA_HDR..at.checked_add(rta_len)?)?;
        let ip = ip_of(i32::from(family), payload);
        match rta_type {
            IFA_ADDRESS => address = ip.or(address),
            IFA_LOCAL => local = ip.or(local),
            _ => {}
        }
        at = at.saturating_add(align(rta_len));
    }
    let ip = local.or(address)?;
    Some(if kind == RTM_NEWADDR {
        AddrEvent::Added(ip)
    } else {
        AddrEvent::Removed(ip)
    })
}

fn ip_of(family: i32, payload: &[u8]) -> Option<IpAddr> {
    match family {
        libc_af::INET => {
            let b: [u8; 4] = payload.try_into().ok()?;
            Some(IpAddr::V4(Ipv4Addr::from(b)))
        }
        libc_af::INET6 => {
            let b: [u8; 16] = payload.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// The address family numbers (the same on every Linux architecture).
mod libc_af {
    pub const INET: i32 = 2;
    pub const INET6: i32 = 10;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written `Debug` reads as the derived one did.
    #[test]
    fn debug_reads_as_derived() {
        let events = [
            AddrEvent::Added(
                "192.0.2.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ),
            AddrEvent::Removed(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        assert_eq!(format!("{events:?}"), "[Added(192.0.2.1), Removed(::1)]");
    }

    /// One `RTM_*ADDR` message as the kernel writes it.
    fn message(kind: u16, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 24, 0, 0];
        body.extend_from_slice(&3u32.to_ne_bytes());
        for (t, payload) in attrs {
            let len = (RTA_HDR + payload.len()) as u16;
            body.extend_from_slice(&len.to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(payload);
            while body.len() % 4 != 0 {
                body.push(0);
            }
        }
        let mut msg = Vec::new();
        msg.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(&body);
        msg
    }

    #[test]
    fn added_and_removed_addresses_are_read_in_order() {
        let v6: Ipv6Addr = "2001:db8::7".parse().expect("v6");
        let mut datagram = message(
            RTM_NEWADDR,
            2,
            &[(IFA_ADDRESS, &[10, 0, 0, 2]), (IFA_LOCAL, &[10, 0, 0, 3])],
        );
        datagram.extend(message(RTM_DELADDR, 10, &[(IFA_ADDRESS, &v6.octets())]));
        // A route message in between is not an address change.
        datagram.extend(message(24, 2, &[(1, &[1, 2, 3, 4])]));
        datagram.extend(message(RTM_DELADDR, 2, &[(IFA_ADDRESS, &[192, 0, 2, 1])]));
        assert_eq!(
            parse(&datagram),
            [
                AddrEvent::Added(IpAddr::from([10, 0, 0, 3])),
                AddrEvent::Removed(IpAddr::V6(v6)),
                AddrEvent::Removed(IpAddr::from([192, 0, 2, 1])),
            ]
        );
    }

    #[test]
    fn malformed_datagrams_never_panic_or_overread() {
        let good = message(RTM_DELADDR, 2, &[(IFA_ADDRESS, &[192, 0, 2, 1])]);
        for cut in 0..good.len() {
            let events = parse(&good[..cut]);
            assert!(events.is_empty(), "a cut message is no event: {cut}");
        }
        // Lengths that lie: too short, too long, zero, and attribute
        // payloads of the wrong size.
        let mut lying = good.clone();
        lying[0] = 4;
        assert!(parse(&lying).is_empty());
        let mut long = good.clone();
        long[0] = 200;
        assert!(parse(&long).is_empty());
        assert!(parse(&message(RTM_NEWADDR, 2, &[(IFA_ADDRESS, &[1, 2, 3])])).is_empty());
        assert!(parse(&message(RTM_NEWADDR, 2, &[(IFA_ADDRESS, &[0; 16])])).is_empty());
        assert!(parse(&message(RTM_NEWADDR, 99, &[(IFA_ADDRESS, &[1, 2, 3, 4])])).is_empty());
        let mut zero_attr = message(RTM_NEWADDR, 2, &[(IFA_ADDRESS, &[1, 2, 3, 4])]);
        zero_attr[NLMSG_HDR + IFADDRMSG] = 0;
        zero_attr[NLMSG_HDR + IFADDRMSG + 1] = 0;
        assert!(parse(&zero_attr).is_empty());
        // Every byte of a real message flipped in turn: no panic.
        for i in 0..good.len() {
            let mut m = good.clone();
            m[i] ^= 0xff;
            let _ = parse(&m);
        }
    }
}
