//! Per-worker session secrets: what proves that a call comes from the worker it names.
//!
//! Registration hands each worker a secret, `hex(HMAC-SHA256(key, "downpour session v1" ‖
//! worker id as u32 LE))`. Every later call that acts as that worker (pull, exchange,
//! heartbeat, evaluation report, leave, and registering again under its id) carries it,
//! and [`Sessions::check`] compares it in constant time with the one the key gives.
//!
//! The key never leaves the servers. Being a function of the key and the id, a secret
//! needs no per-worker storage and every shard that holds the same key can check it: shard
//! 0 issues the secret, shards 1.. check it when the worker attaches and on every call.
//! Where the key comes from (`--session-key-file`, shared by the shards of one job; a
//! random one otherwise) is the launcher's business; the key is saved in every
//! checkpoint, so secrets survive a server restart.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use downpour_core::token::constant_time_eq;

/// Bytes of a session key.
pub const KEY_BYTES: usize = 32;

/// The servers' key that session secrets are derived from. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// Why a session key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionKeyError {
    /// Not 64 hex digits.
    #[error("a session key is {} hex digits (32 random bytes); got {got} characters", KEY_BYTES * 2)]
    Format {
        /// Characters found (after trimming whitespace).
        got: usize,
    },
}

impl SessionKey {
    /// A fresh random key.
    #[must_use]
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The key written as 64 hex digits (whitespace around them ignored).
    ///
    /// # Errors
    /// [`SessionKeyError::Format`] when it is not 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, SessionKeyError> {
        let text = text.trim();
        let format = SessionKeyError::Format {
            got: text.chars().count(),
        };
        let bytes = decode_hex(text).ok_or(format.clone())?;
        Ok(Self(bytes.try_into().map_err(|_| format)?))
    }

    /// The key as 64 hex digits.
    #[must_use]
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// The session secret of `worker`.
    #[must_use]
    pub fn secret_of(&self, worker: u32) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(b"downpour session v1");
        mac.update(&worker.to_le_bytes());
        encode_hex(&mac.finalize().into_bytes())
    }
}

impl serde::Serialize for SessionKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for SessionKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// The presented secret is not the worker's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "wrong session secret for worker {worker}: only the process that registered as worker \
     {worker} may act as it"
)]
pub struct WrongSession {
    /// The worker named by the call.
    pub worker: u32,
}

/// How a shard checks session secrets.
///
/// Invariant: shard 0 always has a key (it issues the secrets); another shard has one when
/// it was given the job's key, and without it checks nothing (documented in
/// `docs/security.md`: shard the model only with `--session-key-file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    /// The key, when this shard has one.
    key: Option<SessionKey>,
}

impl Sessions {
    /// Sessions under `key`; `None` only on a shard other than 0 that was given no key.
    #[must_use]
    pub fn new(key: Option<SessionKey>) -> Self {
        Self { key }
    }

    /// The key, to save it in a checkpoint.
    #[must_use]
    pub fn key(&self) -> Option<&SessionKey> {
        self.key.as_ref()
    }

    /// The secret to hand `worker` at registration (`None`: this shard issues none).
    #[must_use]
    pub fn secret_of(&self, worker: u32) -> Option<String> {
        self.key.as_ref().map(|k| k.secret_of(worker))
    }

    /// Whether `presented` is `worker`'s secret, compared in constant time.
    ///
    /// # Errors
    /// [`WrongSession`] when it is not (an empty one included).
    pub fn check(&self, worker: u32, presented: &str) -> Result<(), WrongSession> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        if constant_time_eq(key.secret_of(worker).as_bytes(), presented.as_bytes()) {
            Ok(())
        } else {
            Err(WrongSession { worker })
        }
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_checked_against_the_worker_it_was_issued_to() {
        let sessions = Sessions::new(Some(SessionKey::random()));
        let s0 = sessions.secret_of(0).unwrap();
        let s1 = sessions.secret_of(1).unwrap();
        assert_eq!(s0.len(), 64);
        assert_ne!(s0, s1);
        assert_eq!(sessions.check(0, &s0), Ok(()));
        assert_eq!(sessions.check(1, &s0), Err(WrongSession { worker: 1 }));
        assert_eq!(sessions.check(0, ""), Err(WrongSession { worker: 0 }));
        assert_eq!(
            sessions.check(0, &s0[..63]),
            Err(WrongSession { worker: 0 })
        );
    }

    #[test]
    fn shards_with_the_same_key_agree_and_other_keys_do_not() {
        let key = SessionKey::random();
        let shard0 = Sessions::new(Some(key.clone()));
        let shard1 = Sessions::new(Some(SessionKey::from_hex(&key.to_hex()).unwrap()));
        let stranger = Sessions::new(Some(SessionKey::random()));
        let secret = shard0.secret_of(7).unwrap();
        assert_eq!(shard1.check(7, &secret), Ok(()));
        assert_eq!(stranger.check(7, &secret), Err(WrongSession { worker: 7 }));
        // A shard without a key checks nothing.
        assert_eq!(Sessions::new(None).check(7, ""), Ok(()));
    }

    #[test]
    fn keys_round_trip_through_hex_and_json_and_bad_ones_are_named() {
        let key = SessionKey::random();
        assert_eq!(
            SessionKey::from_hex(&format!(" {}\n", key.to_hex())),
            Ok(key.clone())
        );
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<SessionKey>(&json).unwrap(), key);
        assert_eq!(
            SessionKey::from_hex("abcd"),
            Err(SessionKeyError::Format { got: 4 })
        );
        assert!(SessionKey::from_hex(&"zz".repeat(32)).is_err());
        assert!(!format!("{key:?}").contains(&key.to_hex()));
    }
}
