//! The job file's `[limits]` section: how much any peer may make the server hold, and how
//! long a connection may stay silent. Every bound here is a defence against a client that
//! misbehaves (or an attacker who can reach the port); the defaults leave an honest job
//! far inside them.
//!
//! | key | default | bounds |
//! |---|---|---|
//! | `max_workers` | 1024 | worker records held (active, finished, left, and dead not yet folded) |
//! | `fold_dead_after_seconds` | 60 | a dead worker's record is folded into a count this long after it died |
//! | `max_connections` | 1024 | TCP connections served at once (after their HTTP/2 preface) |
//! | `max_pending_connections` | 256 | connections still owing their preface; the oldest is closed to make room |
//! | `handshake_timeout_seconds` | 10 | time a new connection has to send the HTTP/2 preface |
//! | `keepalive_interval_seconds` | 10 | HTTP/2 ping interval on a connection |
//! | `keepalive_timeout_seconds` | 20 | a connection whose ping goes unanswered this long is closed |

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Most bytes of a worker's name (its label in the status and logs).
pub const MAX_NAME_BYTES: usize = 256;

/// A `[limits]` value out of range, naming the key and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("limits.{key}: {reason}")]
pub struct LimitsError {
    /// The key.
    pub key: &'static str,
    /// Why, with the value.
    pub reason: String,
}

/// The `[limits]` section, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSpec {
    /// Worker records the server holds at most: a registration beyond is refused with
    /// `RESOURCE_EXHAUSTED`.
    pub max_workers: usize,
    /// Seconds after its death at which a dead worker's record is dropped and counted in
    /// the status's `dead_workers_folded` (it may register afresh later).
    pub fold_dead_after_seconds: f64,
    /// TCP connections served at once; a connection beyond is closed at once.
    pub max_connections: usize,
    /// Connections that have not yet sent their HTTP/2 preface, at once; when a new one
    /// comes the oldest is closed, so that idle sockets never keep a real client out.
    pub max_pending_connections: usize,
    /// Seconds a new connection has to send the HTTP/2 preface before it is closed.
    pub handshake_timeout_seconds: f64,
    /// Seconds between HTTP/2 keep-alive pings the server sends.
    pub keepalive_interval_seconds: f64,
    /// Seconds a ping may go unanswered before the connection is closed.
    pub keepalive_timeout_seconds: f64,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_workers: 1024,
            fold_dead_after_seconds: 60.0,
            max_connections: 1024,
            max_pending_connections: 256,
            handshake_timeout_seconds: 10.0,
            keepalive_interval_seconds: 10.0,
            keepalive_timeout_seconds: 20.0,
        }
    }
}

/// The transport's bounds, validated: what [`crate::service::serve`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportLimits {
    /// See [`LimitsSpec::max_connections`].
    pub max_connections: usize,
    /// See [`LimitsSpec::max_pending_connections`].
    pub max_pending_connections: usize,
    /// See [`LimitsSpec::handshake_timeout_seconds`].
    pub handshake_timeout: Duration,
    /// See [`LimitsSpec::keepalive_interval_seconds`].
    pub keepalive_interval: Duration,
    /// See [`LimitsSpec::keepalive_timeout_seconds`].
    pub keepalive_timeout: Duration,
}

impl Default for TransportLimits {
    fn default() -> Self {
        LimitsSpec::default().transport()
    }
}

impl LimitsSpec {
    /// Checks every value.
    ///
    /// # Errors
    /// [`LimitsError`] for the first value out of range.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let at_least_one = |key, v: usize| {
            if v == 0 {
                Err(LimitsError {
                    key,
                    reason: "must be at least 1, got 0".into(),
                })
            } else {
                Ok(())
            }
        };
        at_least_one("max_workers", self.max_workers)?;
        at_least_one("max_connections", self.max_connections)?;
        at_least_one("max_pending_connections", self.max_pending_connections)?;
        let seconds = [
            ("fold_dead_after_seconds", self.fold_dead_after_seconds),
            ("handshake_timeout_seconds", self.handshake_timeout_seconds),
            (
                "keepalive_interval_seconds",
                self.keepalive_interval_seconds,
            ),
            ("keepalive_timeout_seconds", self.keepalive_timeout_seconds),
        ];
        for (key, v) in seconds {
            // A day at most: larger values are typos, and Duration::from_secs_f64 must not panic.
            if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
                return Err(LimitsError {
                    key,
                    reason: format!("must be a number of seconds in (0, 86400], got {v}"),
                });
            }
        }
        Ok(())
    }

    /// The transport's part (call after [`Self::validate`]).
    #[must_use]
    pub fn transport(&self) -> TransportLimits {
        TransportLimits {
            max_connections: self.max_connections,
            max_pending_connections: self.max_pending_connections,
            handshake_timeout: Duration::from_secs_f64(self.handshake_timeout_seconds),
            keepalive_interval: Duration::from_secs_f64(self.keepalive_interval_seconds),
            keepalive_timeout: Duration::from_secs_f64(self.keepalive_timeout_seconds),
        }
    }

    /// How long after its death a dead worker's record is folded.
    #[must_use]
    pub fn fold_dead_after(&self) -> Duration {
        Duration::from_secs_f64(self.fold_dead_after_seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_values_are_named() {
        LimitsSpec::default().validate().unwrap();
        let zero = LimitsSpec {
            max_workers: 0,
            ..LimitsSpec::default()
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "limits.max_workers: must be at least 1, got 0"
        );
        let nan = LimitsSpec {
            handshake_timeout_seconds: f64::NAN,
            ..LimitsSpec::default()
        };
        assert_eq!(
            nan.validate().unwrap_err().to_string(),
            "limits.handshake_timeout_seconds: must be a number of seconds in (0, 86400], got NaN"
        );
        let huge = LimitsSpec {
            keepalive_timeout_seconds: 1e300,
            ..LimitsSpec::default()
        };
        assert!(huge.validate().is_err());
    }
}
