//! The security flags of every subcommand, and reading what they name: tokens (a file,
//! or an environment variable; the file wins), the servers' session key, and TLS
//! certificates. Every file error names the file.
//!
//! Tokens travel in the environment, never in argv (`ps` shows argv to every user).

use std::path::{Path, PathBuf};

use clap::Args;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use downpour_core::token::{Token, TokenError};
use downpour_server::auth::{Tokens, TokensError};
use downpour_server::session::{SessionKey, SessionKeyError};
use downpour_worker::{ClientConfig, ClientIdentity, ClientTls};

/// The environment variable holding the job's token.
pub const TOKEN_ENV: &str = "DOWNPOUR_TOKEN";
/// The environment variable holding the read-only token.
pub const READ_TOKEN_ENV: &str = "DOWNPOUR_READ_TOKEN";
/// The environment variable holding the servers' session key (64 hex digits).
pub const SESSION_KEY_ENV: &str = "DOWNPOUR_SESSION_KEY";

/// Every environment variable the security flags read: a child process that must not
/// inherit the launcher's settings has them removed, then gets its own.
pub const SECURITY_ENV: [&str; 13] = [
    TOKEN_ENV,
    READ_TOKEN_ENV,
    SESSION_KEY_ENV,
    "DOWNPOUR_TOKEN_FILE",
    "DOWNPOUR_READ_TOKEN_FILE",
    "DOWNPOUR_SESSION_KEY_FILE",
    "DOWNPOUR_TLS_CA",
    "DOWNPOUR_TLS_DOMAIN",
    "DOWNPOUR_TLS_CLIENT_CERT",
    "DOWNPOUR_TLS_CLIENT_KEY",
    "DOWNPOUR_TLS_CERT",
    "DOWNPOUR_TLS_KEY",
    "DOWNPOUR_TLS_CLIENT_CA",
];

/// Why the security settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read.
    #[error("reading {what} {path}: {source}")]
    Read {
        /// What the file is (`--token-file`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A token is unusable.
    #[error("{what} from {source_name}: {error}")]
    Token {
        /// Which token.
        what: &'static str,
        /// Where it came from (a file or the variable).
        source_name: String,
        /// What is wrong.
        error: TokenError,
    },
    /// The session key is unusable.
    #[error("session key from {source_name}: {error}")]
    SessionKey {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        error: SessionKeyError,
    },
    /// The tokens do not go together.
    #[error(transparent)]
    Tokens(#[from] TokensError),
    /// A TLS flag is missing its partner.
    #[error("{0}")]
    Tls(String),
}

/// Reads a secret from `file` when given, else from the environment variable `env`;
/// `None` when neither is set.
///
/// # Errors
/// [`CredentialError::Read`] naming the file.
fn read_secret(
    what: &'static str,
    file: Option<&Path>,
    env: &str,
) -> Result<Option<(String, String)>, CredentialError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })?;
        return Ok(Some((text, path.display().to_string())));
    }
    Ok(std::env::var(env).ok().map(|v| (v, format!("${env}"))))
}

/// The token in `file` when given (it wins), else in the variable `env`; `None` when
/// neither is set.
///
/// # Errors
/// [`CredentialError::Read`] naming the file, or [`CredentialError::Token`] for an empty
/// or unprintable token, naming where it came from.
pub fn load_token(
    what: &'static str,
    file: Option<&Path>,
    env: &str,
) -> Result<Option<Token>, CredentialError> {
    read_secret(what, file, env)?
        .map(|(text, source_name)| {
            Token::parse(&text).map_err(|error| CredentialError::Token {
                what,
                source_name,
                error,
            })
        })
        .transpose()
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, CredentialError> {
    std::fs::read(path).map_err(|source| CredentialError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// How a client authenticates and encrypts: the flags of `worker`, `health`, `export`.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientSecurityArgs {
    /// File holding the job's token (or a read-only token, for health and export). Without
    /// it, the token is read from DOWNPOUR_TOKEN, if set.
    #[arg(long, value_name = "FILE", env = "DOWNPOUR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Connect with TLS, trusting this CA certificate (PEM), e.g. `ca.pem` of `downpour certs`.
    #[arg(long, value_name = "PEM", env = "DOWNPOUR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must hold [default: the host of the address].
    #[arg(
        long,
        value_name = "NAME",
        env = "DOWNPOUR_TLS_DOMAIN",
        requires = "tls_ca"
    )]
    pub tls_domain: Option<String>,
    /// Client certificate (PEM), for servers that require one (mutual TLS); with --tls-key.
    #[arg(
        long = "tls-cert",
        value_name = "PEM",
        env = "DOWNPOUR_TLS_CLIENT_CERT",
        requires = "tls_ca"
    )]
    pub tls_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(
        long = "tls-key",
        value_name = "PEM",
        env = "DOWNPOUR_TLS_CLIENT_KEY",
        requires = "tls_ca"
    )]
    pub tls_client_key: Option<PathBuf>,
}

impl ClientSecurityArgs {
    /// Everything a client needs to reach `address`, files read.
    ///
    /// # Errors
    /// [`CredentialError`] naming the unreadable file or the bad token.
    pub fn config(&self, address: &str) -> Result<ClientConfig, CredentialError> {
        let token = load_token("--token-file", self.token_file.as_deref(), TOKEN_ENV)?;
        let tls = match &self.tls_ca {
            None => None,
            Some(ca) => {
                let identity = match (&self.tls_client_cert, &self.tls_client_key) {
                    (Some(cert), Some(key)) => Some(ClientIdentity {
                        cert_pem: read_file("--tls-cert", cert)?,
                        key_pem: read_file("--tls-key", key)?,
                    }),
                    (None, None) => None,
                    _ => {
                        return Err(CredentialError::Tls(
                            "--tls-cert and --tls-key go together (the client certificate and its key)"
                                .into(),
                        ));
                    }
                };
                Some(ClientTls {
                    ca_pem: read_file("--tls-ca", ca)?,
                    domain: self.tls_domain.clone(),
                    identity,
                })
            }
        };
        Ok(ClientConfig {
            address: address.to_string(),
            token,
            tls,
        })
    }
}

/// How a server authenticates callers and encrypts: the flags of `server`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServerSecurityArgs {
    /// File holding the job's token: every call must carry it. Without it, the token is read
    /// from DOWNPOUR_TOKEN; with neither, the server is open to anyone who reaches it.
    #[arg(long, value_name = "FILE", env = "DOWNPOUR_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding a read-only token, accepted for Status and GetParameters only (health
    /// checks, export). Without it, DOWNPOUR_READ_TOKEN, if set.
    #[arg(long, value_name = "FILE", env = "DOWNPOUR_READ_TOKEN_FILE")]
    pub read_token_file: Option<PathBuf>,
    /// File holding the servers' session key (64 hex digits), the same for every shard of
    /// the job, so that shards 1.. can check the session secrets shard 0 issues. Without
    /// it, DOWNPOUR_SESSION_KEY; with neither, shard 0 makes a random one (kept in its
    /// checkpoints) and shards 1.. check no session secrets.
    #[arg(long, value_name = "FILE", env = "DOWNPOUR_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,
    /// Serve TLS with this certificate (PEM); with --tls-key.
    #[arg(
        long,
        value_name = "PEM",
        env = "DOWNPOUR_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(
        long,
        value_name = "PEM",
        env = "DOWNPOUR_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(
        long,
        value_name = "PEM",
        env = "DOWNPOUR_TLS_CLIENT_CA",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
}

/// A server's security settings, files read.
#[derive(Debug)]
pub struct ServerSecurity {
    /// The tokens calls are checked against.
    pub tokens: Tokens,
    /// The job's session key, when given.
    pub session_key: Option<SessionKey>,
    /// TLS, when on.
    pub tls: Option<ServerTlsConfig>,
}

impl ServerSecurityArgs {
    /// Reads the files the flags name.
    ///
    /// # Errors
    /// [`CredentialError`] naming the unreadable file, the bad token or key.
    pub fn load(&self) -> Result<ServerSecurity, CredentialError> {
        let full = load_token("--token-file", self.token_file.as_deref(), TOKEN_ENV)?;
        let read = load_token(
            "--read-token-file",
            self.read_token_file.as_deref(),
            READ_TOKEN_ENV,
        )?;
        let tokens = Tokens::new(full, read)?;
        let session_key = read_secret(
            "--session-key-file",
            self.session_key_file.as_deref(),
            SESSION_KEY_ENV,
        )?
        .map(|(text, source_name)| {
            SessionKey::from_hex(&text)
                .map_err(|error| CredentialError::SessionKey { source_name, error })
        })
        .transpose()?;
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                let identity = Identity::from_pem(
                    read_file("--tls-cert", cert)?,
                    read_file("--tls-key", key)?,
                );
                let mut tls = ServerTlsConfig::new().identity(identity);
                if let Some(ca) = &self.tls_client_ca {
                    tls = tls
                        .client_ca_root(Certificate::from_pem(read_file("--tls-client-ca", ca)?));
                }
                Some(tls)
            }
            (None, None) => None,
            _ => {
                return Err(CredentialError::Tls(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        Ok(ServerSecurity {
            tokens,
            session_key,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variable name no other test or user sets.
    const ENV: &str = "DOWNPOUR_TEST_TOKEN_CREDENTIALS";

    #[test]
    fn the_file_wins_over_the_variable_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        // SAFETY: only this test reads or writes this variable.
        unsafe { std::env::set_var(ENV, "from-env") };
        let t = load_token("--token-file", Some(&file), ENV)
            .unwrap()
            .unwrap();
        assert_eq!(t.expose(), "from-file");
        let t = load_token("--token-file", None, ENV).unwrap().unwrap();
        assert_eq!(t.expose(), "from-env");
        // SAFETY: as above.
        unsafe { std::env::set_var(ENV, "  ") };
        let err = load_token("--token-file", None, ENV).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("--token-file from ${ENV}: the token is empty")
        );
        // SAFETY: as above.
        unsafe { std::env::remove_var(ENV) };
        assert!(load_token("--token-file", None, ENV).unwrap().is_none());
    }

    #[test]
    fn an_empty_or_missing_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let err = load_token("--token-file", Some(&empty), ENV).unwrap_err();
        assert!(
            err.to_string().contains(&empty.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("empty"), "{err}");
        let missing = dir.path().join("missing");
        let err = load_token("--token-file", Some(&missing), ENV).unwrap_err();
        assert!(matches!(err, CredentialError::Read { .. }));
        assert!(
            err.to_string().contains(&missing.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_bad_session_key_is_refused_naming_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "not hex").unwrap();
        let args = ServerSecurityArgs {
            session_key_file: Some(file.clone()),
            ..ServerSecurityArgs::default()
        };
        let err = args.load().unwrap_err();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("64 hex digits"), "{err}");
    }
}
