//! Peer input as error messages show it: at most a short prefix.
//!
//! A refusal names what was wrong (a tensor's name, a worker's label), but a peer chooses
//! those strings freely; an error that copied them whole would let one request of 8 MiB
//! make every log line and every reply 8 MiB. Every error that quotes peer input holds a
//! [`Quoted`] instead of the string: at most [`QUOTE_BYTES`] of it, and its length.

use std::fmt;

/// Most bytes of peer input an error message shows.
pub const QUOTE_BYTES: usize = 64;

/// A peer's string as an error keeps it: its first [`QUOTE_BYTES`] bytes at most (cut on
/// a character boundary) and the length of the whole.
///
/// Shown as the string itself when it was short enough, else as the prefix, `…` and the
/// whole length: `aaaa…(8388608 bytes)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quoted {
    /// At most [`QUOTE_BYTES`] bytes of the string.
    prefix: String,
    /// Bytes in the whole string.
    len: usize,
}

/// The prefix of `s` an error may show; see [`Quoted`].
#[must_use]
pub fn quote(s: &str) -> Quoted {
    let mut end = s.len().min(QUOTE_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Quoted {
        prefix: s[..end].to_string(),
        len: s.len(),
    }
}

impl Quoted {
    /// Whether the whole string is kept.
    #[must_use]
    pub fn is_whole(&self) -> bool {
        self.prefix.len() == self.len
    }

    /// The kept prefix (the whole string when [`Self::is_whole`]).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

/// Equal to a string when the whole string was kept and is that string.
impl PartialEq<str> for Quoted {
    fn eq(&self, other: &str) -> bool {
        self.is_whole() && self.prefix == other
    }
}

impl PartialEq<&str> for Quoted {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl From<&str> for Quoted {
    fn from(s: &str) -> Self {
        quote(s)
    }
}

impl From<String> for Quoted {
    fn from(s: String) -> Self {
        if s.len() <= QUOTE_BYTES {
            let len = s.len();
            return Self { prefix: s, len };
        }
        quote(&s)
    }
}

impl From<&String> for Quoted {
    fn from(s: &String) -> Self {
        quote(s)
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_whole() {
            f.write_str(&self.prefix)
        } else {
            write!(f, "{}…({} bytes)", self.prefix, self.len)
        }
    }
}

/// Shows at most the first `max` items of a peer's list (a shape), then how many more.
#[must_use]
pub fn quote_list<T: fmt::Debug>(items: &[T], max: usize) -> String {
    if items.len() <= max {
        return format!("{items:?}");
    }
    let shown: Vec<String> = items[..max].iter().map(|x| format!("{x:?}")).collect();
    format!("[{}, … ({} in all)]", shown.join(", "), items.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_shown_whole() {
        assert_eq!(quote("w0").to_string(), "w0");
        assert!(quote("").is_whole());
        let exact = "x".repeat(QUOTE_BYTES);
        assert_eq!(quote(&exact).to_string(), exact);
    }

    #[test]
    fn long_strings_are_cut_to_the_prefix_and_their_length() {
        let huge = "a".repeat(8 << 20);
        let q = quote(&huge);
        assert_eq!(q.prefix().len(), QUOTE_BYTES);
        let shown = q.to_string();
        assert_eq!(shown, format!("{}…(8388608 bytes)", "a".repeat(64)));
        assert!(shown.len() < 100, "{}", shown.len());
        assert_eq!(Quoted::from(huge), q);
    }

    #[test]
    fn the_cut_falls_on_a_character_boundary() {
        // 63 ASCII bytes then a 2-byte character: the cut at 64 would split it.
        let s = format!("{}é{}", "a".repeat(63), "b".repeat(10));
        let q = quote(&s);
        assert_eq!(q.prefix(), "a".repeat(63));
        assert!(!q.is_whole());
    }

    #[test]
    fn long_lists_show_their_first_items_and_their_count() {
        assert_eq!(quote_list(&[1u64, 2], 8), "[1, 2]");
        let long: Vec<u64> = (0..100_000).collect();
        assert_eq!(quote_list(&long, 3), "[0, 1, 2, … (100000 in all)]");
    }
}
