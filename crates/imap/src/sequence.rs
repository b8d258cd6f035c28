//! Sequence sets (RFC 9051 section 9, `sequence-set`): `1:5,7,9:*`, for message sequence
//! numbers and UIDs alike. `*` is the largest number in use.

/// Ranges in a set: a bound is a number or `*` (`None`). An empty list with `saved` is `$`,
/// the result a `SEARCH RETURN (SAVE)` kept (RFC 5182), resolved by the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(Vec<(Option<u32>, Option<u32>)>, bool);

/// Ranges one set may hold: a client that needs more sends `1:*`.
pub const SEQUENCE_RANGES_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error("bad sequence set")]
    Malformed,
    #[error("sequence set has more than {SEQUENCE_RANGES_MAX} ranges")]
    TooManyRanges,
}

impl SequenceSet {
    pub fn parse(text: &[u8]) -> Result<SequenceSet, SequenceError> {
        let text = std::str::from_utf8(text).map_err(|_| SequenceError::Malformed)?;
        if text == "$" {
            return Ok(SequenceSet(Vec::new(), true));
        }
        if text.is_empty() {
            return Err(SequenceError::Malformed);
        }
        let mut ranges = Vec::new();
        for item in text.split(',') {
            if ranges.len() >= SEQUENCE_RANGES_MAX {
                return Err(SequenceError::TooManyRanges);
            }
            let (first, last) = match item.split_once(':') {
                Some((first, last)) => (bound(first)?, bound(last)?),
                None => {
                    let only = bound(item)?;
                    (only, only)
                }
            };
            ranges.push((first, last));
        }
        Ok(SequenceSet(ranges, false))
    }

    /// Whether this is `$`, the saved search result (RFC 5182).
    pub fn is_saved(&self) -> bool {
        self.1
    }

    /// Whether `number` is in the set, with `*` standing for `largest`.
    pub fn contains(&self, number: u32, largest: u32) -> bool {
        self.0.iter().any(|&(first, last)| {
            let first = first.unwrap_or(largest);
            let last = last.unwrap_or(largest);
            let (low, high) = if first <= last {
                (first, last)
            } else {
                (last, first)
            };
            (low..=high).contains(&number)
        })
    }

    /// Every number of the set found in `available` (ascending), with `*` the largest of them.
    /// RFC 9051 section 6.4.8: a UID range matching nothing is not an error, and `n:*` always
    /// matches the largest UID even when it is below `n`.
    pub fn select(&self, available: &[u32]) -> Vec<u32> {
        let largest = available.last().copied().unwrap_or(0);
        available
            .iter()
            .copied()
            .filter(|&number| self.contains(number, largest))
            .collect()
    }
}

fn bound(text: &str) -> Result<Option<u32>, SequenceError> {
    if text == "*" {
        return Ok(None);
    }
    text.parse::<u32>()
        .ok()
        .filter(|&number| number > 0)
        .map(Some)
        .ok_or(SequenceError::Malformed)
}

/// Write ascending numbers as a compact set: `1:3,5`.
pub fn compact(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut index = 0;
    while index < numbers.len() {
        let start = numbers[index];
        let mut end = start;
        while index + 1 < numbers.len() && numbers[index + 1] == end.wrapping_add(1) {
            index += 1;
            end = numbers[index];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        index += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_stars_and_reversed_bounds() {
        let set = SequenceSet::parse(b"1:3,7,9:*").expect("set");
        assert_eq!(
            set.select(&[1, 2, 3, 4, 7, 8, 10, 12]),
            vec![1, 2, 3, 7, 10, 12]
        );
        let set = SequenceSet::parse(b"5:2").expect("set");
        assert_eq!(set.select(&[1, 2, 3, 4, 5, 6]), vec![2, 3, 4, 5]);
        let set = SequenceSet::parse(b"100:*").expect("set");
        assert_eq!(set.select(&[3, 4]), vec![4]);
        assert!(SequenceSet::parse(b"0").is_err());
        assert!(SequenceSet::parse(b"1:").is_err());
        assert!(SequenceSet::parse(b"").is_err());
    }

    #[test]
    fn compacts() {
        assert_eq!(compact(&[1, 2, 3, 5, 7, 8]), "1:3,5,7:8");
        assert_eq!(compact(&[]), "");
    }
}
