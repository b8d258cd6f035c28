//! Web Key Directory addressing (draft-koch-openpgp-webkey-service section 3.1): the local
//! part of an address, lowercased, hashed with SHA-1 and written in z-base-32 (RFC 6189 section
//! 5.1.6's alphabet). Shared by the WKD the server publishes and the client that looks keys up.

use sha1::{Digest, Sha1};

pub const ZBASE32_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// z-base-32 of `bytes`, most significant bit first.
pub fn zbase32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                ZBASE32_ALPHABET[((buffer >> bits) & 31) as usize],
            ));
        }
    }
    if bits > 0 {
        out.push(char::from(
            ZBASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize],
        ));
    }
    out
}

/// The WKD hash of a local part.
pub fn local_part_hash(local_part: &str) -> String {
    let digest = Sha1::digest(local_part.to_lowercase().as_bytes());
    zbase32(&digest)
}

/// The two URLs of `address`'s key: the advanced method (on `openpgpkey.<domain>`) first, then
/// the direct method (on the domain itself); each as (host, path and query).
pub fn key_locations(local_part: &str, domain: &str) -> [(String, String); 2] {
    let hash = local_part_hash(local_part);
    let domain = domain.to_ascii_lowercase();
    let query = percent_encode(local_part);
    [
        (
            format!("openpgpkey.{domain}"),
            format!("/.well-known/openpgpkey/{domain}/hu/{hash}?l={query}"),
        ),
        (
            domain,
            format!("/.well-known/openpgpkey/hu/{hash}?l={query}"),
        ),
    ]
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_gnupg() {
        // `gpg-wks-client --print-wkd-hash alice@example.org` (GnuPG 2.2.40).
        assert_eq!(local_part_hash("alice"), "kei1q4tipxxu1yj79k9kfukdhfy631xe");
        assert_eq!(local_part_hash("Alice"), "kei1q4tipxxu1yj79k9kfukdhfy631xe");
        // The example of draft-koch-openpgp-webkey-service section 3.1.
        assert_eq!(
            local_part_hash("Joe.Doe"),
            "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
        );
    }

    #[test]
    fn both_locations_in_the_drafts_order() {
        let [advanced, direct] = key_locations("Joe.Doe", "Example.ORG");
        assert_eq!(advanced.0, "openpgpkey.example.org");
        assert_eq!(
            advanced.1,
            "/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(direct.0, "example.org");
        assert_eq!(
            direct.1,
            "/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
        );
        assert_eq!(
            key_locations("a+b", "x.test")[1].1.rsplit('=').next(),
            Some("a%2Bb")
        );
    }
}
