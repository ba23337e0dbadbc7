//! JSON as far as rkite needs it: a strict reader for what an ACME server
//! (RFC 8555) answers, and the one string quoter every JSON rkite writes
//! uses (the status file, ACME requests). Bounded: input over
//! [`MAX_INPUT`] bytes or nesting over [`MAX_DEPTH`] levels is refused, so
//! a hostile server can't make it recurse deep or allocate much; nothing is
//! silently truncated. Pure: bytes in, a value or a typed error out.

use std::fmt;
use std::fmt::Write as _;

/// The largest document read (ACME objects are a few KiB).
pub const MAX_INPUT: usize = 256 * 1024;
/// The deepest nesting read (ACME needs 4).
pub const MAX_DEPTH: usize = 32;

/// A JSON value. Numbers keep their text (ACME's are small integers or
/// not needed); objects keep their members in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(String),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// The member `key` of an object (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// `key`'s value as a string.
    pub fn str_at(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }
}

/// Why a document was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonError {
    TooLarge(usize),
    TooDeep,
    /// Something unexpected at this byte offset.
    Unexpected(usize),
    /// The document ended inside a value.
    Truncated,
    /// Bytes after the value.
    Trailing(usize),
    BadEscape(usize),
    BadUtf8,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooLarge(n) => write!(f, "JSON document of {n} bytes (limit {MAX_INPUT})"),
            JsonError::TooDeep => write!(f, "JSON nested deeper than {MAX_DEPTH}"),
            JsonError::Unexpected(at) => write!(f, "unexpected byte in JSON at offset {at}"),
            JsonError::Truncated => f.write_str("JSON document ends inside a value"),
            JsonError::Trailing(at) => write!(f, "bytes after the JSON value at offset {at}"),
            JsonError::BadEscape(at) => write!(f, "bad escape in a JSON string at offset {at}"),
            JsonError::BadUtf8 => f.write_str("JSON text is not UTF-8"),
        }
    }
}

impl std::error::Error for JsonError {}

/// Reads one JSON document (whitespace around it allowed).
pub fn parse(input: &[u8]) -> Result<Value, JsonError> {
    if input.len() > MAX_INPUT {
        return Err(JsonError::TooLarge(input.len()));
    }
    let mut r = Reader { input, at: 0 };
    let value = r.value(0)?;
    r.skip_ws();
    if r.at < input.len() {
        return Err(JsonError::Trailing(r.at));
    }
    Ok(value)
}

struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn next(&mut self) -> Result<u8, JsonError> {
        let b = self.peek().ok_or(JsonError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn expect_word(&mut self, word: &[u8]) -> Result<(), JsonError> {
        let start = self.at;
        for &want in word {
            if self.next()? != want {
                return Err(JsonError::Unexpected(start));
            }
        }
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth >= MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.skip_ws();
        match self.peek().ok_or(JsonError::Truncated)? {
            b'{' => self.object(depth),
            b'[' => self.array(depth),
            b'"' => self.string().map(Value::String),
            b't' => self.expect_word(b"true").map(|()| Value::Bool(true)),
            b'f' => self.expect_word(b"false").map(|()| Value::Bool(false)),
            b'n' => self.expect_word(b"null").map(|()| Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(JsonError::Unexpected(self.at)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.at += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.unexpected());
            }
            let key = self.string()?;
            self.skip_ws();
            if self.next()? != b':' {
                return Err(JsonError::Unexpected(self.at - 1));
            }
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Ok(Value::Object(members)),
                _ => return Err(JsonError::Unexpected(self.at - 1)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.next()? {
                b',' => continue,
                b']' => return Ok(Value::Array(items)),
                _ => return Err(JsonError::Unexpected(self.at - 1)),
            }
        }
    }

    fn unexpected(&self) -> JsonError {
        match self.peek() {
            None => JsonError::Truncated,
            Some(_) => JsonError::Unexpected(self.at),
        }
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        let digits = |r: &mut Self| {
            let from = r.at;
            while matches!(r.peek(), Some(b'0'..=b'9')) {
                r.at += 1;
            }
            r.at > from
        };
        if self.peek() == Some(b'0') {
            self.at += 1;
        } else if !digits(self) {
            return Err(self.unexpected());
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return Err(self.unexpected());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !digits(self) {
                return Err(self.unexpected());
            }
        }
        let text = self.input.get(start..self.at).unwrap_or(&[]);
        let text = std::str::from_utf8(text).map_err(|_| JsonError::BadUtf8)?;
        Ok(Value::Number(text.to_string()))
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let at = self.at;
            match self.next()? {
                b'"' => return String::from_utf8(out).map_err(|_| JsonError::BadUtf8),
                b'\\' => {
                    let c = match self.next()? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode(at)?,
                        _ => return Err(JsonError::BadEscape(at)),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b if b < 0x20 => return Err(JsonError::Unexpected(at)),
                b => out.push(b),
            }
        }
    }

    fn hex4(&mut self, at: usize) -> Result<u32, JsonError> {
        let mut n = 0u32;
        for _ in 0..4 {
            let d = char::from(self.next()?)
                .to_digit(16)
                .ok_or(JsonError::BadEscape(at))?;
            n = n * 16 + d;
        }
        Ok(n)
    }

    /// `\uXXXX`, with a surrogate pair joined.
    fn unicode(&mut self, at: usize) -> Result<char, JsonError> {
        let first = self.hex4(at)?;
        let code = if (0xd800..0xdc00).contains(&first) {
            if self.next()? != b'\\' || self.next()? != b'u' {
                return Err(JsonError::BadEscape(at));
            }
            let second = self.hex4(at)?;
            if !(0xdc00..0xe000).contains(&second) {
                return Err(JsonError::BadEscape(at));
            }
            0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
        } else {
            first
        };
        char::from_u32(code).ok_or(JsonError::BadEscape(at))
    }
}

/// `text` as a JSON string, quoted and escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[path = "json_tests.rs"]
mod tests;
