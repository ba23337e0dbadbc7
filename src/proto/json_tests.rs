use super::*;

/// RFC 8555 §7.1.1's directory, as a server sends it.
const DIRECTORY: &str = r#"{
  "newNonce": "https://example.com/acme/new-nonce",
  "newAccount": "https://example.com/acme/new-account",
  "newOrder": "https://example.com/acme/new-order",
  "newAuthz": "https://example.com/acme/new-authz",
  "revokeCert": "https://example.com/acme/revoke-cert",
  "keyChange": "https://example.com/acme/key-change",
  "meta": {
    "termsOfService": "https://example.com/acme/terms/2017-5-30",
    "website": "https://www.example.com/",
    "caaIdentities": ["example.com"],
    "externalAccountRequired": false
  }
}"#;

/// RFC 8555 §7.1.4's authorization, with its challenges.
const AUTHZ: &str = r#"{
  "status": "pending",
  "expires": "2016-01-02T14:09:30Z",
  "identifier": {"type": "dns", "value": "www.example.org"},
  "challenges": [
    {"url": "https://example.com/acme/chall/prV_B7yEyA4", "type": "http-01",
     "status": "pending", "token": "DGyRejmCefe7v4NfDGDKfA"},
    {"url": "https://example.com/acme/chall/Rg5dV14Gh1Q", "type": "dns-01",
     "status": "pending", "token": "DGyRejmCefe7v4NfDGDKfA", "validated": null}
  ],
  "wildcard": false, "retry": -1.5e+3
}"#;

#[test]
fn reads_the_rfc_examples() {
    let dir = parse(DIRECTORY.as_bytes()).unwrap();
    assert_eq!(
        dir.str_at("newOrder"),
        Some("https://example.com/acme/new-order")
    );
    let meta = dir.get("meta").unwrap();
    assert_eq!(
        meta.get("externalAccountRequired"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        meta.get("caaIdentities").and_then(Value::as_array).unwrap(),
        [Value::String("example.com".into())]
    );
    let authz = parse(AUTHZ.as_bytes()).unwrap();
    let challenges = authz.get("challenges").and_then(Value::as_array).unwrap();
    let http = challenges
        .iter()
        .find(|c| c.str_at("type") == Some("http-01"))
        .unwrap();
    assert_eq!(http.str_at("token"), Some("DGyRejmCefe7v4NfDGDKfA"));
    assert_eq!(challenges[1].get("validated"), Some(&Value::Null));
    assert_eq!(authz.get("retry"), Some(&Value::Number("-1.5e+3".into())));
}

#[test]
fn every_truncation_is_an_error_never_a_value_or_a_panic() {
    for doc in [DIRECTORY, AUTHZ] {
        let bytes = doc.as_bytes();
        for cut in 0..bytes.len() {
            let part = &bytes[..cut];
            // A prefix that is itself complete JSON does not exist here
            // (both documents are one object).
            assert!(parse(part).is_err(), "prefix of {cut} bytes parsed");
        }
    }
}

#[test]
fn strings_escape_and_unescape() {
    let text = "a\"b\\c\nd\u{1}é😀/";
    let quoted = quote(text);
    assert_eq!(quoted, "\"a\\\"b\\\\c\\nd\\u0001é😀/\"");
    assert_eq!(parse(quoted.as_bytes()), Ok(Value::String(text.into())));
    assert_eq!(
        parse(br#""\u00e9\ud83d\ude00\/\b\f\t\r""#),
        Ok(Value::String("é😀/\u{8}\u{c}\t\r".into()))
    );
}

#[test]
fn refuses_what_is_not_strict_json() {
    for (doc, want) in [
        (&b"{\"a\":1,}"[..], JsonError::Unexpected(7)),
        (b"[1 2]", JsonError::Unexpected(3)),
        (b"{a:1}", JsonError::Unexpected(1)),
        (b"01", JsonError::Trailing(1)),
        (b"1.", JsonError::Truncated),
        (b"-", JsonError::Truncated),
        (b"tru", JsonError::Truncated),
        (b"nul!", JsonError::Unexpected(0)),
        (b"\"\x01\"", JsonError::Unexpected(1)),
        (b"\"\\x\"", JsonError::BadEscape(1)),
        (b"\"\\ud800\"", JsonError::BadEscape(1)),
        (b"\"\\udc00\"", JsonError::BadEscape(1)),
        (b"\"\xff\"", JsonError::BadUtf8),
        (b"{} {}", JsonError::Trailing(3)),
        (b"", JsonError::Truncated),
    ] {
        assert_eq!(parse(doc), Err(want), "{}", doc.escape_ascii());
    }
}

#[test]
fn bounds_depth_and_size() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep));
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(ok.as_bytes()).is_ok());
    let big = vec![b' '; MAX_INPUT + 1];
    assert_eq!(parse(&big), Err(JsonError::TooLarge(MAX_INPUT + 1)));
}
