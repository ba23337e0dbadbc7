//! Invariants of the PROXY protocol header parser (`proto::proxy_protocol`):
//! the frontend calls it again with the whole buffer each time bytes arrive,
//! so a prefix must either need more or decide exactly as the whole input
//! does; a header it accepts lies inside the input, within the spec's
//! lengths, and starts the way `looks` calls a header.

use crate::proto::proxy_protocol::{self as pp, Looks, MAX_V1, MAX_V2, Parse};

pub fn proxy_protocol(data: &[u8]) {
    let whole = pp::parse(data);
    for cut in super::cut_points(data.len()) {
        let got = pp::parse(data.get(..cut).unwrap_or_default());
        if got != Parse::NeedMore {
            assert_eq!(got, whole, "a prefix of {cut} bytes decides differently");
        }
    }
    if let Parse::Done(header) = &whole {
        assert!(header.consumed <= data.len(), "consumed past the input");
        assert_eq!(
            pp::looks(data),
            Looks::Proxy,
            "a header that does not look like one"
        );
        match header.version {
            1 => {
                assert!(header.consumed <= MAX_V1, "v1 line too long");
                let line = data.get(..header.consumed).unwrap_or_default();
                assert!(line.ends_with(b"\r\n"), "v1 line without its CRLF");
            }
            2 => assert!(header.consumed <= MAX_V2, "v2 header too long"),
            v => panic!("version {v}"),
        }
    }
    // Bytes that can't start a header are never waited on past the
    // longest header.
    if data.len() > MAX_V2 {
        assert_ne!(
            whole,
            Parse::NeedMore,
            "still waiting after {} bytes",
            data.len()
        );
    }
}
