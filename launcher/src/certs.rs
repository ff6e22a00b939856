//! `downpour certs`: a private CA and the certificates a job needs, made with rcgen, so
//! that users and tests can turn TLS on without other tools (none are committed).
//!
//! Files written to the output directory (keys readable by the owner only):
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem`, `ca.key` | the CA: clients trust `ca.pem` (`--tls-ca`); servers requiring client certificates trust it too (`--tls-client-ca`) |
//! | `server.pem`, `server.key` | the servers' certificate, valid for every `--hosts` name or IP address (`--tls-cert`, `--tls-key` on servers) |
//! | `client.pem`, `client.key` | a client certificate for mutual TLS (`--tls-cert`, `--tls-key` on clients) |

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// No host to put in the server certificate.
    #[error("--hosts needs at least one name or IP address the servers are reached at")]
    NoHosts,
    /// A host that cannot be a certificate name.
    #[error("cannot make a certificate for host {host:?}: {source}")]
    Host {
        /// The host given.
        host: String,
        /// Why rcgen refused it.
        #[source]
        source: rcgen::Error,
    },
    /// Signing failed.
    #[error("making the certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The files [`make_certs`] wrote.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate.
    pub ca_cert: PathBuf,
    /// The CA's key (keep it to sign more; not needed to run).
    pub ca_key: PathBuf,
    /// The servers' certificate.
    pub server_cert: PathBuf,
    /// The servers' key.
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

/// Makes a CA, a server certificate for `hosts` and a client certificate, in `out`
/// (created if needed).
///
/// # Errors
/// [`CertsError`] for no or bad hosts, or a file that cannot be written.
pub fn make_certs(out: &Path, hosts: &[String]) -> Result<CertFiles, CertsError> {
    if hosts.is_empty() {
        return Err(CertsError::NoHosts);
    }
    for host in hosts {
        CertificateParams::new(vec![host.clone()]).map_err(|source| CertsError::Host {
            host: host.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(out).map_err(|source| CertsError::Io {
        path: out.to_path_buf(),
        source,
    })?;

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "downpour CA");
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    let mut server_params = CertificateParams::new(hosts.to_vec())?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "downpour server");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server_cert = server_params.signed_by(&server_key, &issuer)?;

    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "downpour client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate()?;
    let client_cert = client_params.signed_by(&client_key, &issuer)?;

    let files = CertFiles {
        ca_cert: out.join("ca.pem"),
        ca_key: out.join("ca.key"),
        server_cert: out.join("server.pem"),
        server_key: out.join("server.key"),
        client_cert: out.join("client.pem"),
        client_key: out.join("client.key"),
    };
    write(&files.ca_cert, &ca_cert.pem(), false)?;
    write(&files.ca_key, &ca_key.serialize_pem(), true)?;
    write(&files.server_cert, &server_cert.pem(), false)?;
    write(&files.server_key, &server_key.serialize_pem(), true)?;
    write(&files.client_cert, &client_cert.pem(), false)?;
    write(&files.client_key, &client_key.serialize_pem(), true)?;
    Ok(files)
}

/// Writes `text` to `path`; a `secret` file is readable by its owner only (on Unix).
fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertsError> {
    let io = |source| CertsError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_pem_files_and_refuses_missing_or_bad_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let files = make_certs(dir.path(), &["127.0.0.1".into(), "server".into()]).unwrap();
        for p in [&files.ca_cert, &files.server_cert, &files.client_cert] {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(
                text.starts_with("-----BEGIN CERTIFICATE-----"),
                "{}",
                p.display()
            );
        }
        let key = std::fs::read_to_string(&files.server_key).unwrap();
        assert!(key.contains("PRIVATE KEY"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.client_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            make_certs(dir.path(), &[]),
            Err(CertsError::NoHosts)
        ));
        assert!(matches!(
            make_certs(dir.path(), &["hôte".into()]),
            Err(CertsError::Host { .. })
        ));
    }
}
