//! Punycode decoding (RFC 3492), to read IDN A-labels (`xn--...`) as the Unicode a person sees.
//!
//! Written here rather than taken from the `idna` crate: decoding is 60 lines of a frozen
//! algorithm, while `idna` brings in the ICU4X normalisation tables.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 128;
/// A label is at most 63 octets (RFC 1035), so its decoded form is short.
const DECODED_LENGTH_MAX_CHARS: usize = 63;

fn adapt(mut delta: u32, points: u32, first: bool) -> u32 {
    delta /= if first { DAMP } else { 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

fn digit_value(byte: u8) -> Option<u32> {
    match byte {
        b'a'..=b'z' => Some(u32::from(byte - b'a')),
        b'A'..=b'Z' => Some(u32::from(byte - b'A')),
        b'0'..=b'9' => Some(u32::from(byte - b'0') + 26),
        _ => None,
    }
}

/// Decode the part of a label after `xn--`. `None` for anything malformed.
pub fn decode(input: &str) -> Option<String> {
    let (basic, extended) = match input.rfind('-') {
        Some(position) => (&input[..position], &input[position + 1..]),
        None => ("", input),
    };
    if !basic.is_ascii() {
        return None;
    }
    let mut output: Vec<char> = basic.chars().collect();
    let mut n = INITIAL_N;
    let mut i: u32 = 0;
    let mut bias = INITIAL_BIAS;
    let bytes = extended.as_bytes();
    let mut position = 0;
    while position < bytes.len() {
        let old_i = i;
        let mut weight: u32 = 1;
        let mut k = BASE;
        loop {
            let digit = digit_value(*bytes.get(position)?)?;
            position += 1;
            i = i.checked_add(digit.checked_mul(weight)?)?;
            let threshold = if k <= bias {
                T_MIN
            } else if k >= bias + T_MAX {
                T_MAX
            } else {
                k - bias
            };
            if digit < threshold {
                break;
            }
            weight = weight.checked_mul(BASE - threshold)?;
            k += BASE;
        }
        let length = output.len() as u32 + 1;
        bias = adapt(i - old_i, length, old_i == 0);
        n = n.checked_add(i / length)?;
        i %= length;
        output.insert(i as usize, char::from_u32(n)?);
        if output.len() > DECODED_LENGTH_MAX_CHARS {
            return None;
        }
        i += 1;
    }
    Some(output.into_iter().collect())
}

/// A domain with each `xn--` label decoded; labels that fail to decode are kept as they are.
pub fn to_unicode(domain: &str) -> String {
    domain
        .split('.')
        .map(|label| {
            label
                .strip_prefix("xn--")
                .and_then(decode)
                .unwrap_or_else(|| label.to_string())
        })
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3492_and_idn_examples() {
        assert_eq!(decode("bcher-kva").as_deref(), Some("bücher"));
        assert_eq!(to_unicode("xn--bcher-kva.example"), "bücher.example");
        // Cyrillic "а" in place of the Latin "a" of paypal.
        assert_eq!(to_unicode("xn--pypal-4ve.com"), "pаypal.com");
        assert_eq!(
            decode("egbpdaj6bu4bxfgehfvwxn").as_deref(),
            Some("ليهمابتكلموشعربي؟")
        );
    }

    #[test]
    fn malformed_input_is_none() {
        assert_eq!(decode("!!!"), None);
        assert_eq!(decode("zzzzzzzzzzzzzzzzzzzzzzzzzz"), None);
        assert_eq!(to_unicode("xn--!!.example"), "xn--!!.example");
    }
}
