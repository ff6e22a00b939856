//! Who may call the server at all: the bearer-token check, applied to every RPC of the
//! service as one tower layer ([`Authenticated`]), before any handler runs.
//!
//! Every call carries `authorization: Bearer <token>`. The job's token allows every RPC;
//! the optional read-only token allows only [`READ_ONLY_METHODS`] (status, the health
//! check built on it, and export). Tokens are compared in constant time
//! ([`downpour_core::token::Token::matches`]). Without a job token the server is open
//! (the launcher warns at start-up).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;

use downpour_core::token::Token;

/// The RPCs the read-only token may call (their HTTP/2 paths).
pub const READ_ONLY_METHODS: [&str; 2] = [
    "/downpour.v1.ParameterServer/Status",
    "/downpour.v1.ParameterServer/GetParameters",
];

/// A token configuration the server refuses to start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    /// A read-only token with no job token would leave every other RPC open.
    #[error(
        "a read-only token needs a job token too (--token-file or DOWNPOUR_TOKEN): \
         without one every RPC is open anyway"
    )]
    ReadWithoutFull,
    /// The same token for both would make the read-only one all-powerful.
    #[error("the read-only token is the job token: give it a different value")]
    SameTokens,
}

/// What a caller's token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every RPC.
    Full,
    /// Only [`READ_ONLY_METHODS`].
    ReadOnly,
}

/// The server's tokens.
///
/// Invariant: `read` is set only with `full`, and differs from it.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    /// The job's token: every RPC. `None`: the server is open to anyone who reaches it.
    full: Option<Token>,
    /// The read-only token: status and export only.
    read: Option<Token>,
}

impl Tokens {
    /// No authentication: every call is let through.
    #[must_use]
    pub fn open() -> Self {
        Self::default()
    }

    /// The job token `full` and, optionally, a read-only token.
    ///
    /// # Errors
    /// [`TokensError`] for a read-only token without a job token, or equal to it.
    pub fn new(full: Option<Token>, read: Option<Token>) -> Result<Self, TokensError> {
        match (&full, &read) {
            (None, Some(_)) => Err(TokensError::ReadWithoutFull),
            (Some(f), Some(r)) if f == r => Err(TokensError::SameTokens),
            _ => Ok(Self { full, read }),
        }
    }

    /// Whether calls must carry a token.
    #[must_use]
    pub fn required(&self) -> bool {
        self.full.is_some()
    }

    /// Decides a call to `method` (its HTTP/2 path) carrying `authorization` (the header's
    /// value, if any).
    ///
    /// # Errors
    /// `UNAUTHENTICATED` for a missing, malformed or unknown token; `PERMISSION_DENIED`
    /// for the read-only token on an RPC that is not read-only.
    pub fn check(&self, method: &str, authorization: Option<&[u8]>) -> Result<Access, Status> {
        let Some(full) = &self.full else {
            return Ok(Access::Full);
        };
        let presented = authorization.and_then(bearer).ok_or_else(|| {
            Status::unauthenticated(
                "unauthenticated: this server needs `authorization: Bearer <token>` \
                     (give clients --token-file or DOWNPOUR_TOKEN)",
            )
        })?;
        // Both comparisons always run, so timing tells nothing about which one matched.
        let is_full = full.matches(presented);
        let is_read = self.read.as_ref().is_some_and(|r| r.matches(presented));
        match (is_full, is_read) {
            (true, _) => Ok(Access::Full),
            (false, true) if READ_ONLY_METHODS.contains(&method) => Ok(Access::ReadOnly),
            (false, true) => Err(Status::permission_denied(format!(
                "the read-only token may call only Status and GetParameters, not {}",
                method.rsplit('/').next().unwrap_or(method)
            ))),
            (false, false) => Err(Status::unauthenticated("unauthenticated: wrong token")),
        }
    }
}

/// The token of an `authorization` value `Bearer <token>` (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

/// A service that lets a call through only when [`Tokens::check`] does; otherwise it
/// answers with the refusal at once, without the inner service (or the core) seeing it.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    /// The service behind the check.
    inner: S,
    /// What calls are checked against; shared by every clone.
    tokens: Arc<Tokens>,
}

impl<S> Authenticated<S> {
    /// `inner`, behind the check of `tokens`.
    #[must_use]
    pub fn new(inner: S, tokens: Tokens) -> Self {
        Self {
            inner,
            tokens: Arc::new(tokens),
        }
    }
}

impl<S> Service<http::Request<Body>> for Authenticated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(http::HeaderValue::as_bytes);
        match self.tokens.check(request.uri().path(), authorization) {
            Ok(_) => {
                let future = self.inner.call(request);
                Box::pin(future)
            }
            Err(status) => {
                tracing::warn!(method = request.uri().path(), code = ?status.code(), "call refused");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "/downpour.v1.ParameterServer/Status";
    const PUSH: &str = "/downpour.v1.ParameterServer/Exchange";

    fn tokens() -> Tokens {
        Tokens::new(
            Some(Token::parse("job-token").unwrap()),
            Some(Token::parse("read-token").unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn the_job_token_opens_everything_and_the_read_token_only_reads() {
        let t = tokens();
        assert_eq!(
            t.check(PUSH, Some(b"Bearer job-token")).unwrap(),
            Access::Full
        );
        assert_eq!(
            t.check(STATUS, Some(b"bearer job-token")).unwrap(),
            Access::Full
        );
        assert_eq!(
            t.check(STATUS, Some(b"Bearer read-token")).unwrap(),
            Access::ReadOnly
        );
        let denied = t.check(PUSH, Some(b"Bearer read-token")).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(
            denied.message().contains("Exchange"),
            "{}",
            denied.message()
        );
    }

    #[test]
    fn missing_malformed_or_wrong_tokens_are_unauthenticated() {
        let t = tokens();
        for header in [
            None,
            Some(&b"job-token"[..]),
            Some(b"Basic job-token"),
            Some(b"Bearer job-token "),
            Some(b"Bearer job-tokeN"),
            Some(b"Bearer "),
            Some(b""),
        ] {
            let refused = t.check(STATUS, header).unwrap_err();
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{header:?}");
            assert!(refused.message().contains("unauthenticated"));
        }
    }

    #[test]
    fn an_open_server_lets_everything_through_and_bad_configurations_are_refused() {
        assert_eq!(Tokens::open().check(PUSH, None).unwrap(), Access::Full);
        assert!(!Tokens::open().required());
        assert_eq!(
            Tokens::new(None, Some(Token::parse("r").unwrap())).unwrap_err(),
            TokensError::ReadWithoutFull
        );
        let same = Token::parse("same").unwrap();
        assert_eq!(
            Tokens::new(Some(same.clone()), Some(same)).unwrap_err(),
            TokensError::SameTokens
        );
    }
}
