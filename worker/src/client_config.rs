//! Everything a client needs to reach a server, in one place: the address, the token and
//! the TLS settings. Every client (the worker and its shard connections, `export`,
//! `health`, the launcher's status polls, the bench's gRPC runs) connects through
//! [`ClientConfig`]; the binaries fill it from `--token-file`/`DOWNPOUR_TOKEN` and the
//! `--tls-*` flags.

use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use downpour_core::token::Token;

/// How to reach one server.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port`, or a URI (`http://host:port`, `https://host:port`).
    pub address: String,
    /// Sent as `authorization: Bearer <token>` on every call, when set.
    pub token: Option<Token>,
    /// TLS (and, with an identity, mutual TLS); plaintext when `None`.
    pub tls: Option<ClientTls>,
}

/// A client's TLS settings.
#[derive(Clone)]
pub struct ClientTls {
    /// The CA certificate(s) the server's certificate must chain to, PEM.
    pub ca_pem: Vec<u8>,
    /// The name the server's certificate must hold; the host of the address when `None`.
    pub domain: Option<String>,
    /// The client's certificate and key, PEM, for a server that requires client certificates.
    pub identity: Option<ClientIdentity>,
}

/// A client certificate and its private key, PEM.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: Vec<u8>,
    /// The private key, PEM.
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_pem_bytes", &self.cert_pem.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca_pem_bytes", &self.ca_pem.len())
            .field("domain", &self.domain)
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientConfig {
    /// Plaintext, no token, to `address`.
    #[must_use]
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            token: None,
            tls: None,
        }
    }

    /// The same token and TLS settings, to another address (another shard of the job).
    #[must_use]
    pub fn with_address(&self, address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            ..self.clone()
        }
    }

    /// The URI to connect to: the address's scheme forced to `https` with TLS and
    /// defaulting to `http` without.
    #[must_use]
    pub fn uri(&self) -> String {
        let rest = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, rest)| rest);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{rest}")
    }

    /// The host part of the address (no scheme, port or brackets): the TLS name expected
    /// unless [`ClientTls::domain`] says otherwise.
    #[must_use]
    pub fn host(&self) -> &str {
        let rest = self
            .address
            .split_once("://")
            .map_or(self.address.as_str(), |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some(v6) = authority.strip_prefix('[') {
            return v6.split(']').next().unwrap_or(v6);
        }
        authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host)
    }

    /// Tonic's TLS settings, when TLS is on.
    #[must_use]
    pub fn tls_config(&self) -> Option<ClientTlsConfig> {
        let tls = self.tls.as_ref()?;
        let domain = tls
            .domain
            .clone()
            .unwrap_or_else(|| self.host().to_string());
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&tls.ca_pem))
            .domain_name(domain);
        if let Some(id) = &tls.identity {
            config = config.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        Some(config)
    }

    /// The `authorization` value to send, when there is a token.
    ///
    /// # Errors
    /// A message when the token cannot travel in a header (a [`Token`] always can).
    pub fn authorization(&self) -> Result<Option<AsciiMetadataValue>, String> {
        self.token
            .as_ref()
            .map(|t| {
                format!("Bearer {}", t.expose())
                    .parse::<AsciiMetadataValue>()
                    .map(|mut v| {
                        v.set_sensitive(true);
                        v
                    })
                    .map_err(|e| format!("the token cannot be sent in a header: {e}"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls() -> ClientTls {
        ClientTls {
            ca_pem: Vec::new(),
            domain: None,
            identity: None,
        }
    }

    #[test]
    fn the_scheme_follows_tls_and_the_host_is_the_default_name() {
        let plain = ClientConfig::new("10.0.0.1:50051");
        assert_eq!(plain.uri(), "http://10.0.0.1:50051");
        assert_eq!(plain.host(), "10.0.0.1");
        let secure = ClientConfig {
            tls: Some(tls()),
            ..ClientConfig::new("http://server:50051")
        };
        assert_eq!(secure.uri(), "https://server:50051");
        assert_eq!(secure.host(), "server");
        assert_eq!(secure.with_address("[::1]:7").host(), "::1");
        assert_eq!(secure.with_address("[::1]:7").uri(), "https://[::1]:7");
        assert_eq!(ClientConfig::new("localhost").host(), "localhost");
    }

    #[test]
    fn the_token_travels_as_a_bearer_header() {
        let mut config = ClientConfig::new("a:1");
        assert_eq!(config.authorization().unwrap(), None);
        config.token = Some(Token::parse("abc").unwrap());
        let value = config.authorization().unwrap().unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer abc");
        assert!(value.is_sensitive());
        // Another shard's config keeps the token.
        assert!(config.with_address("b:2").token.is_some());
    }
}
