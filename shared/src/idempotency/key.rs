//! Parsing the `Idempotency-Key` header and fingerprinting a request.

use sha2::{Digest, Sha256};

pub const MAX_KEY_LEN: usize = 255;

/// The header values [`IdempotencyKey::parse`] accepts, as a regular expression (for the OpenAPI
/// documents): a plain key — printable ASCII, not starting with a quote — or an RFC 8941 quoted
/// string, with the spaces and tabs around it that HTTP strips from any header value.
pub const KEY_PATTERN: &str = concat!(
    r#"^[ \t]*(?:[!#-~](?:[ -~]{0,253}[!-~])?"#,
    r#"|"(?:[ !#-\[\]-~]|\\["\\]){1,255}")[ \t]*$"#
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    Missing,
    Invalid(&'static str),
}

impl IdempotencyKey {
    /// Parses a header value: 1..=255 printable ASCII characters. An RFC 8941 quoted string
    /// (`"abc"`, with `\"` and `\\` escapes) is accepted and means its content.
    pub fn parse(raw: Option<&[u8]>) -> Result<Self, KeyError> {
        let raw = raw.ok_or(KeyError::Missing)?;
        let text = std::str::from_utf8(raw).map_err(|_| KeyError::Invalid("must be ASCII"))?;
        let value = match text.strip_prefix('"') {
            Some(rest) => unquote(rest)?,
            None => text.to_string(),
        };
        if value.is_empty() {
            return Err(KeyError::Invalid("must not be empty"));
        }
        if value.len() > MAX_KEY_LEN {
            return Err(KeyError::Invalid("must be at most 255 characters"));
        }
        if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(KeyError::Invalid("must be printable ASCII"));
        }
        Ok(IdempotencyKey(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The namespace of a service's Redis keys (`REDIS_KEY_PREFIX`, by default the service's name).
/// Never holds `{` or `}`, so that the hash tag [`redis_key`] puts after it is the key's only one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        if raw.is_empty() {
            Err("must not be empty")
        } else if raw.contains(['{', '}']) {
            Err("must not contain { or }: the idempotency keys' hash tag must be the only one in them")
        } else {
            Ok(KeyPrefix(raw.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Redis key holding one Idempotency-Key's state:
/// `<prefix>:idem:{<tag>}:<caller>:<method> <route>:<key>`, scoped by service, caller, method,
/// route and the client's key.
///
/// Every command on an entry (claim, complete, release) names this one key and no other, so the
/// entry's state lives in one slot of a Redis Cluster, on one master. Which slot is decided by the
/// hash tag `{<tag>}`: without one, a cluster would hash the first `{...}` found anywhere in the
/// key instead of the whole key — the route's pattern (`/items/{id}/restock`) or braces in the
/// client's key — and pile every key of such a route on one slot. The tag is a digest of
/// everything else in the key, so the slot depends on the whole key and the keys spread over the
/// slots, and so over the masters.
pub fn redis_key(
    prefix: &KeyPrefix,
    caller: &str,
    method: &str,
    route: &str,
    key: &IdempotencyKey,
) -> String {
    let rest = format!("{caller}:{method} {route}:{}", key.as_str());
    let digest = Sha256::new()
        .chain_update(prefix.as_str())
        .chain_update(b"\n")
        .chain_update(&rest)
        .finalize();
    // 64 bits of the digest: enough to spread keys over the 16384 slots.
    format!(
        "{}:idem:{{{}}}:{rest}",
        prefix.as_str(),
        hex::encode(&digest[..8])
    )
}

/// The content of an RFC 8941 sf-string whose opening quote has been removed.
fn unquote(rest: &str) -> Result<String, KeyError> {
    let mut out = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\')) => out.push(e),
                _ => return Err(KeyError::Invalid("has a bad escape in its quoted form")),
            },
            '"' => {
                return if chars.next().is_none() {
                    Ok(out)
                } else {
                    Err(KeyError::Invalid("has text after its closing quote"))
                }
            }
            c => out.push(c),
        }
    }
    Err(KeyError::Invalid("misses its closing quote"))
}

/// SHA-256 of method, path and the canonical JSON body (object keys sorted, no whitespace), so
/// that the same request written differently has the same fingerprint. A body that is not JSON is
/// fingerprinted as its bytes.
pub fn fingerprint(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(b"\n");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    if body.iter().all(u8::is_ascii_whitespace) {
        // An empty body and no body are the same request.
    } else {
        match serde_json::from_slice::<serde_json::Value>(body) {
            // serde_json's map is ordered by key, so this is canonical.
            Ok(value) => hasher.update(value.to_string().as_bytes()),
            Err(_) => hasher.update(body),
        }
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, KeyError> {
        IdempotencyKey::parse(Some(s.as_bytes())).map(|k| k.0)
    }

    #[test]
    fn plain_and_quoted_keys() {
        assert_eq!(parse("abc-123").unwrap(), "abc-123");
        assert_eq!(parse("\"abc\"").unwrap(), "abc");
        assert_eq!(parse(r#""a\"b\\c""#).unwrap(), r#"a"b\c"#);
        assert_eq!(parse("with space").unwrap(), "with space");
    }

    #[test]
    fn bad_keys() {
        assert_eq!(IdempotencyKey::parse(None), Err(KeyError::Missing));
        for bad in ["", "\"\"", "\"abc", "\"a\"b", "\"a\\x\"", "tab\there", "é"] {
            assert!(matches!(parse(bad), Err(KeyError::Invalid(_))), "{bad:?}");
        }
        assert!(parse(&"k".repeat(255)).is_ok());
        assert!(parse(&"k".repeat(256)).is_err());
        assert!(IdempotencyKey::parse(Some(&[0xff, 0x41])).is_err());
    }

    /// The documented pattern accepts exactly the header values the parser accepts (once HTTP has
    /// stripped the spaces and tabs around them), on a seeded sample of likely and unlikely keys.
    #[test]
    fn the_pattern_accepts_what_the_parser_accepts() {
        let pattern = regex::Regex::new(KEY_PATTERN).unwrap();
        let alphabet: Vec<char> = "ab \t\"\\#~!-é\u{7f}\u{1}".chars().collect();
        let mut seed: u64 = 0x5eed;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut samples: Vec<String> = vec![
            "k".repeat(255),
            "k".repeat(256),
            format!("\"{}\"", "k".repeat(255)),
            format!("\"{}\"", "k".repeat(256)),
            format!("\"{}\"", "\\\"".repeat(255)),
        ];
        for _ in 0..20_000 {
            let len = next(8);
            samples.push((0..len).map(|_| alphabet[next(alphabet.len())]).collect());
        }
        for sample in samples {
            let sent = sample.trim_matches([' ', '\t']);
            let parsed = IdempotencyKey::parse(Some(sent.as_bytes())).is_ok();
            assert_eq!(pattern.is_match(&sample), parsed, "{sample:?}");
        }
    }

    fn key(raw: &str) -> IdempotencyKey {
        IdempotencyKey::parse(Some(raw.as_bytes())).unwrap()
    }

    /// The hash tag of a Redis key, as a Redis Cluster finds it: the text between the first `{`
    /// and the first `}` after it, when not empty.
    fn hash_tag(key: &str) -> Option<&str> {
        let open = key.find('{')?;
        let close = key[open..].find('}')?;
        Some(&key[open + 1..open + close]).filter(|tag| !tag.is_empty())
    }

    #[test]
    fn redis_keys_are_scoped_and_readable() {
        let prefix = KeyPrefix::parse("stock").unwrap();
        let k = redis_key(&prefix, "c1", "POST", "/reserve", &key("abc"));
        let tag = hash_tag(&k).unwrap();
        assert_eq!(tag.len(), 16);
        assert_eq!(k, format!("stock:idem:{{{tag}}}:c1:POST /reserve:abc"));
        // Each part of the scope changes the key.
        for other in [
            redis_key(
                &KeyPrefix::parse("payment").unwrap(),
                "c1",
                "POST",
                "/reserve",
                &key("abc"),
            ),
            redis_key(&prefix, "c2", "POST", "/reserve", &key("abc")),
            redis_key(&prefix, "c1", "PUT", "/reserve", &key("abc")),
            redis_key(&prefix, "c1", "POST", "/release", &key("abc")),
            redis_key(&prefix, "c1", "POST", "/reserve", &key("abd")),
        ] {
            assert_ne!(hash_tag(&other), Some(tag), "{other}");
        }
    }

    /// A Redis Cluster hashes a key's tag alone; the tag is the digest, whatever braces the route
    /// or the client's key hold, so the keys of one route spread over the slots.
    #[test]
    fn the_slot_of_a_redis_key_depends_on_the_whole_key() {
        use redis::cluster_routing::Slot;
        let prefix = KeyPrefix::parse("stock").unwrap();
        let route = "/stock/items/{id}/restock";
        let slots: std::collections::HashSet<Slot> = (0..1000)
            .map(|i| {
                let k = redis_key(&prefix, "c1", "POST", route, &key(&format!("{{same}}-{i}")));
                let tag = hash_tag(&k).unwrap();
                assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{k}");
                assert_eq!(Slot::for_key(&k), Slot::for_key(tag), "{k}");
                Slot::for_key(&k)
            })
            .collect();
        // 1000 keys drawn at random over 16384 slots share about 30.
        assert!(slots.len() > 900, "{} slots", slots.len());
        // Without the tag, the route's `{id}` would have decided the slot of all of them.
        assert_eq!(
            Slot::for_key(format!("stock:idem:c1:POST {route}:a")),
            Slot::for_key(format!("stock:idem:c1:POST {route}:b"))
        );
    }

    #[test]
    fn prefixes_hold_no_braces() {
        assert!(KeyPrefix::parse("stock").is_ok());
        assert!(KeyPrefix::parse("tenant-a:stock").is_ok());
        for bad in ["", "{stock}", "st{ock", "stock}"] {
            assert!(KeyPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fingerprint_ignores_key_order_and_whitespace() {
        let a = fingerprint("POST", "/reserve", br#"{"a":1,"b":[1,2]}"#);
        let b = fingerprint("POST", "/reserve", b"{ \"b\": [1, 2], \"a\": 1 }");
        assert_eq!(a, b);
        assert_ne!(a, fingerprint("POST", "/release", br#"{"a":1,"b":[1,2]}"#));
        assert_ne!(a, fingerprint("POST", "/reserve", br#"{"a":2,"b":[1,2]}"#));
        assert_eq!(
            fingerprint("POST", "/x", b""),
            fingerprint("POST", "/x", b"  ")
        );
    }
}
