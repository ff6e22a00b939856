//! Shared secrets: the job's bearer tokens and the constant-time comparison every check uses.
//!
//! Reading a token from a file or the environment is the binaries' business (the
//! launcher's `credentials`); this module only says what a valid token is and how two
//! secrets are compared without leaking, through timing, how much of a guess was right.

use subtle::ConstantTimeEq;

/// Why a token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Nothing but whitespace.
    #[error("the token is empty")]
    Empty,
    /// A character that cannot travel in an HTTP header (`authorization: Bearer <token>`).
    #[error(
        "the token holds a character that is not printable ASCII at byte {index}; \
         use letters, digits and punctuation (e.g. 64 hex digits)"
    )]
    NotPrintable {
        /// Byte index of the first such character.
        index: usize,
    },
}

/// A bearer token: printable ASCII, not empty. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} bytes, redacted>)", self.0.len())
    }
}

impl Token {
    /// The token in `text`, leading and trailing whitespace removed (so a file written by
    /// `echo` or an editor, with its final newline, works).
    ///
    /// # Errors
    /// [`TokenError`] for an empty token or one with a character outside printable ASCII.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if let Some(index) = token.bytes().position(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(TokenError::NotPrintable { index });
        }
        Ok(Self(token.to_string()))
    }

    /// The token's text, to send it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this token, compared in constant time.
    #[must_use]
    pub fn matches(&self, candidate: &[u8]) -> bool {
        constant_time_eq(self.0.as_bytes(), candidate)
    }
}

/// Whether `a == b`, in time that depends only on the lengths, never on where they differ.
/// (The length itself is not secret: tokens and session secrets have public formats.)
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"Secret"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn parse_trims_and_refuses_empty_or_unprintable_tokens() {
        let t = Token::parse("  abc123\n").unwrap();
        assert_eq!(t.expose(), "abc123");
        assert!(t.matches(b"abc123"));
        assert!(!t.matches(b"abc124"));
        assert_eq!(Token::parse(" \n\t"), Err(TokenError::Empty));
        assert_eq!(Token::parse(""), Err(TokenError::Empty));
        assert_eq!(
            Token::parse("ab cd"),
            Err(TokenError::NotPrintable { index: 2 })
        );
        assert_eq!(
            Token::parse("abé"),
            Err(TokenError::NotPrintable { index: 2 })
        );
    }

    #[test]
    fn debug_never_shows_the_value() {
        let t = Token::parse("hunter2").unwrap();
        let shown = format!("{t:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes"), "{shown}");
    }
}
