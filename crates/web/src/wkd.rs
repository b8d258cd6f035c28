//! Web Key Directory (draft-koch-openpgp-webkey-service): where a client that knows only an
//! address finds its OpenPGP key. The local part, lowercased, is hashed with SHA-1 and encoded
//! in z-base-32 (RFC 6189 section 5.1.6's alphabet); the key is served in binary.
//!
//! Two URL forms: the direct method on the domain itself,
//! `https://DOMAIN/.well-known/openpgpkey/hu/HASH?l=LOCAL`, and the advanced method on a
//! dedicated host, `https://openpgpkey.DOMAIN/.well-known/openpgpkey/DOMAIN/hu/HASH?l=LOCAL`.

pub use letterlock_crypto::wkd::{local_part_hash, zbase32, ZBASE32_ALPHABET};

/// What a WKD request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// The policy file: its presence says the domain takes part in WKD.
    Policy { domain: String },
    /// The key of the address whose local part hashes to `hash`.
    Key {
        domain: String,
        hash: String,
        local_part: Option<String>,
    },
}

/// Parse a WKD path (with query). `host` is the request's host (without port), used by the
/// direct method, where the domain is not in the path.
pub fn parse(path_and_query: &str, host: &str) -> Option<Request> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let rest = path.strip_prefix("/.well-known/openpgpkey/")?;
    let local_part = query.split('&').find_map(|pair| {
        pair.strip_prefix("l=")
            .map(|value| percent_decode(value).to_lowercase())
    });
    let segments: Vec<&str> = rest.split('/').collect();
    let host = host.to_ascii_lowercase();
    match segments.as_slice() {
        ["policy"] => Some(Request::Policy { domain: host }),
        ["hu", hash] if valid_hash(hash) => Some(Request::Key {
            domain: host,
            hash: (*hash).to_string(),
            local_part,
        }),
        [domain, "policy"] => Some(Request::Policy {
            domain: domain.to_ascii_lowercase(),
        }),
        [domain, "hu", hash] if valid_hash(hash) => Some(Request::Key {
            domain: domain.to_ascii_lowercase(),
            hash: (*hash).to_string(),
            local_part,
        }),
        _ => None,
    }
}

fn valid_hash(hash: &str) -> bool {
    hash.len() == 32 && hash.bytes().all(|byte| ZBASE32_ALPHABET.contains(&byte))
}

/// `%XX` decoding of a query value; malformed escapes are kept as they are.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(value) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                out.push(value);
                index += 3;
                continue;
            }
        }
        out.push(if bytes[index] == b'+' {
            b' '
        } else {
            bytes[index]
        });
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_methods() {
        assert_eq!(
            parse(
                "/.well-known/openpgpkey/example.org/hu/kei1q4tipxxu1yj79k9kfukdhfy631xe?l=alice",
                "openpgpkey.example.org"
            ),
            Some(Request::Key {
                domain: "example.org".into(),
                hash: "kei1q4tipxxu1yj79k9kfukdhfy631xe".into(),
                local_part: Some("alice".into())
            })
        );
        assert_eq!(
            parse(
                "/.well-known/openpgpkey/hu/kei1q4tipxxu1yj79k9kfukdhfy631xe",
                "Example.ORG"
            ),
            Some(Request::Key {
                domain: "example.org".into(),
                hash: "kei1q4tipxxu1yj79k9kfukdhfy631xe".into(),
                local_part: None
            })
        );
        assert_eq!(
            parse("/.well-known/openpgpkey/policy", "example.org"),
            Some(Request::Policy {
                domain: "example.org".into()
            })
        );
        assert_eq!(
            parse("/.well-known/openpgpkey/hu/short", "example.org"),
            None
        );
        assert_eq!(parse("/other", "example.org"), None);
        assert_eq!(percent_decode("joe%2Edoe"), "joe.doe");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
    }
}
