//! The status line of the replies a backend waits for from a frontend (to
//! its tunnel request, and to `CONNECT name:443` before TLS): the one
//! judgement of whether the frontend said yes. Only a first line that is
//! exactly `HTTP/1.x 200`, optionally followed by a space and a reason
//! phrase, is a yes; anything else is a failed handshake with a reason the
//! log can state. Sans-IO: it judges text, reading it is the caller's job.

use std::fmt;

/// Why a status line is not `HTTP/1.x 200`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadStatus {
    /// The reply's first line is empty.
    Empty,
    /// The line does not start with `HTTP/1.x ` (one digit, one space).
    NotHttp1,
    /// No three-digit status code follows the version.
    NoCode,
    /// A well-formed status line with another code than 200.
    Code(u16),
}

impl fmt::Display for BadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadStatus::Empty => f.write_str("the reply's status line is empty"),
            BadStatus::NotHttp1 => f.write_str("the reply is not HTTP/1.x"),
            BadStatus::NoCode => f.write_str("the reply's status line has no status code"),
            BadStatus::Code(code) => write!(f, "the reply's status is {code}, not 200"),
        }
    }
}

impl std::error::Error for BadStatus {}

/// Ok if `line` (a reply's first line, line ending removed) is
/// `HTTP/1.<digit> 200`, alone or followed by a space and a reason phrase.
pub fn check_200(line: &str) -> Result<(), BadStatus> {
    if line.is_empty() {
        return Err(BadStatus::Empty);
    }
    let rest = line.strip_prefix("HTTP/1.").ok_or(BadStatus::NotHttp1)?;
    let rest = match rest.as_bytes() {
        [minor, b' ', ..] if minor.is_ascii_digit() => rest.get(2..).unwrap_or_default(),
        _ => return Err(BadStatus::NotHttp1),
    };
    let (code, after) = match rest.as_bytes() {
        [a, b, c, tail @ ..] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            (code, tail)
        }
        _ => return Err(BadStatus::NoCode),
    };
    // "HTTP/1.1 2000" is not 200 with a strange reason: the code must end.
    if !matches!(after.first(), None | Some(b' ')) {
        return Err(BadStatus::NoCode);
    }
    if code != 200 {
        return Err(BadStatus::Code(code));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http1_200_as_the_status_is_a_yes() {
        for ok in [
            "HTTP/1.1 200 OK",
            "HTTP/1.0 200 Connection Established",
            "HTTP/1.1 200",
            "HTTP/1.1 200 ",
            "HTTP/1.1 200 not 404",
        ] {
            assert_eq!(check_200(ok), Ok(()), "{ok:?}");
        }
        let cases = [
            ("", BadStatus::Empty),
            ("HTTP/1.1 404 Not 200 here", BadStatus::Code(404)),
            ("HTTP/1.1 403 Forbidden, 200 times", BadStatus::Code(403)),
            ("HTTP/1.1 500", BadStatus::Code(500)),
            ("HTTP/1.1 201 Created", BadStatus::Code(201)),
            ("HTTP/1.1 2000 OK", BadStatus::NoCode),
            ("HTTP/1.1 20 OK", BadStatus::NoCode),
            ("HTTP/1.1 20x OK", BadStatus::NoCode),
            ("HTTP/1.1  200 OK", BadStatus::NoCode),
            ("HTTP/1.1 200OK", BadStatus::NoCode),
            ("HTTP/1.1", BadStatus::NotHttp1),
            ("HTTP/1.10 200 OK", BadStatus::NotHttp1),
            ("HTTP/2 200", BadStatus::NotHttp1),
            ("HTTP/1.x 200 OK", BadStatus::NotHttp1),
            ("http/1.1 200 OK", BadStatus::NotHttp1),
            ("SSH-2.0 HTTP/1.1 200 OK", BadStatus::NotHttp1),
            (" HTTP/1.1 200 OK", BadStatus::NotHttp1),
            ("HTTP/1.\u{e9} 200", BadStatus::NotHttp1),
            ("HTTP/1.1 2\u{e9}0", BadStatus::NoCode),
        ];
        for (line, want) in cases {
            assert_eq!(check_200(line), Err(want), "{line:?}");
        }
    }

    #[test]
    fn reasons_say_what_was_wrong() {
        assert_eq!(
            BadStatus::Code(404).to_string(),
            "the reply's status is 404, not 200"
        );
        assert!(BadStatus::NotHttp1.to_string().contains("HTTP/1.x"));
    }
}
