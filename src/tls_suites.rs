//! Which TLS cipher suites rkite offers first.
//! ring's provider lists AES-256-GCM first; this machine may run another
//! faster: AES-128-GCM where the CPU has AES instructions (ten AES rounds
//! instead of fourteen, SHA-256 instead of SHA-384 in the key schedule),
//! ChaCha20-Poly1305 where it has not (a router's MIPS or ARM core, where
//! ring's table-free AES is several times slower). All of them stay on
//! offer; only the order changes. A TLS server follows its client's order,
//! so a backend chooses for its own tunnels and a frontend leaves every
//! client its choice. Part of `tls.rs` (which owns every rustls call): it
//! only reorders, and holds no TLS state.

use rustls::CipherSuite as Suite;
use rustls::crypto::CryptoProvider;

/// ring's provider with its suites in this machine's order of speed, TLS
/// 1.3's ahead of TLS 1.2's as before.
pub fn ordered(mut provider: CryptoProvider, aes_in_hardware: bool) -> CryptoProvider {
    // Picked out rank by rank rather than sorted (bench/size.md): each
    // version's suites of one bulk cipher keep ring's order.
    let ring = std::mem::take(&mut provider.cipher_suites);
    for tls13 in [true, false] {
        for wanted in 0..=3 {
            provider.cipher_suites.extend(ring.iter().filter(|s| {
                s.tls13().is_some() == tls13 && rank(Bulk::of(s.suite()), aes_in_hardware) == wanted
            }));
        }
    }
    provider
}

/// The bulk cipher of a suite: what orders suites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bulk {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
    Other,
}

impl Bulk {
    pub fn of(suite: Suite) -> Bulk {
        // By IANA number, as the ClientHello carries them.
        match u16::from(suite) {
            // TLS 1.3; TLS 1.2 ECDHE with ECDSA, then with RSA keys.
            0x1301 | 0xc02b | 0xc02f => Bulk::Aes128Gcm,
            0x1302 | 0xc02c | 0xc030 => Bulk::Aes256Gcm,
            0x1303 | 0xcca9 | 0xcca8 => Bulk::ChaCha20Poly1305,
            _ => Bulk::Other,
        }
    }
}

fn rank(bulk: Bulk, aes_in_hardware: bool) -> u8 {
    match (bulk, aes_in_hardware) {
        (Bulk::Aes128Gcm, true) | (Bulk::ChaCha20Poly1305, false) => 0,
        (Bulk::Aes128Gcm, false) | (Bulk::ChaCha20Poly1305, true) => 1,
        (Bulk::Aes256Gcm, _) => 2,
        (Bulk::Other, _) => 3,
    }
}

/// Whether the CPU has the instructions ring's fast AES-GCM needs.
pub fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 1, ECX: bit 25 AES-NI, bit 1 PCLMULQDQ. One
        // instruction; std's detection macro and a sort cost the static
        // binary a page (bench/size.md).
        #[allow(unused_unsafe)]
        // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
        let ecx = unsafe { std::arch::x86_64::__cpuid(1) }.ecx;
        ecx & (1 << 25) != 0 && ecx & (1 << 1) != 0
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Bulk::{Aes128Gcm as A128, Aes256Gcm as A256, ChaCha20Poly1305 as C20};

    /// (TLS 1.3?, bulk cipher) of each suite offered, in order.
    fn offered(aes: bool) -> Vec<(bool, Bulk)> {
        let p = ordered(rustls::crypto::ring::default_provider(), aes);
        let suites = p.cipher_suites.iter();
        suites
            .map(|s| (s.tls13().is_some(), Bulk::of(s.suite())))
            .collect()
    }

    #[test]
    fn the_fastest_cipher_for_the_cpu_comes_first_and_none_is_dropped() {
        // ring: TLS 1.3 AES-256, AES-128, ChaCha20; TLS 1.2 the same three
        // for ECDSA, then for RSA keys.
        let with = [(true, A128), (true, C20), (true, A256)]
            .into_iter()
            .chain([A128, A128, C20, C20, A256, A256].map(|b| (false, b)));
        assert_eq!(offered(true), with.collect::<Vec<_>>());
        let without = [(true, C20), (true, A128), (true, A256)]
            .into_iter()
            .chain([C20, C20, A128, A128, A256, A256].map(|b| (false, b)));
        assert_eq!(offered(false), without.collect::<Vec<_>>());
        let p = ordered(rustls::crypto::ring::default_provider(), true);
        let first = p.cipher_suites.first().map(|s| s.suite());
        assert_eq!(first, Some(Suite::TLS13_AES_128_GCM_SHA256));
    }
}
