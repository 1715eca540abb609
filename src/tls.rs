//! TLS for the collector and the agent (rustls): files, server and client configurations, and who a client
//! certificate names.
//!
//! - The collector serves TLS with its own certificate and asks every client for a certificate from
//!   `client-ca`. A client without one may still connect (the query API accepts a bearer token instead);
//!   ingest requires one, and the identity it names ([`CertIdentity`]) must cover every report's host.
//! - The server configuration is re-read on SIGHUP ([`ServerTls::reload`]): new connections get the new
//!   certificate and CA, connections already up keep their session, so healthy streams are not dropped.
//! - The agent verifies the collector's certificate against `ca` (by DNS name, or by IP address when it
//!   dials an address) and presents its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use crate::problems::Problems;

/// `[collector.tls]`: the collector's certificate and the CA that signs agents (and operators' tools).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CollectorTls {
    /// PEM certificate chain of the collector.
    pub cert: PathBuf,
    /// PEM private key of the collector.
    pub key: PathBuf,
    /// PEM CA certificate(s) that sign client certificates.
    pub client_ca: PathBuf,
}

/// `[agent.tls]`: the agent's certificate and the CA that signs collectors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AgentTls {
    /// PEM certificate chain of the agent (its DNS SAN or SPIFFE URI names the host).
    pub cert: PathBuf,
    /// PEM private key of the agent.
    pub key: PathBuf,
    /// PEM CA certificate(s) that sign collector certificates.
    pub ca: PathBuf,
}

fn check_file(p: &mut Problems, key: &str, path: &Path) {
    if !path.is_absolute() {
        p.push(key, format!("{}: must be an absolute path", path.display()));
    }
}

impl CollectorTls {
    /// Collects what is wrong with this section (the files themselves are read when the collector starts).
    pub fn validate(&self, p: &mut Problems) {
        check_file(p, "cert", &self.cert);
        check_file(p, "key", &self.key);
        check_file(p, "client-ca", &self.client_ca);
    }
}

impl AgentTls {
    /// Collects what is wrong with this section.
    pub fn validate(&self, p: &mut Problems) {
        check_file(p, "cert", &self.cert);
        check_file(p, "key", &self.key);
        check_file(p, "ca", &self.ca);
    }
}

/// Why TLS material could not be used, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{}: {what}", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was missing or wrong.
        what: String,
    },
    /// rustls refused the material.
    #[error("{0}")]
    Rustls(String),
}

/// Every certificate in a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("not PEM certificates: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no CERTIFICATE in the file".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        what: format!("no usable private key: {e}"),
    })
}

/// The raw PEM bytes of a file (tonic's client configuration takes PEM).
pub fn read_pem(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The crypto provider of every TLS configuration hvprobe builds (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls server configuration from the collector's files: its certificate, and client certificates
/// from `client-ca` verified when presented (optional at the handshake; each service decides).
pub fn server_config(tls: &CollectorTls, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, TlsError> {
    let certs = load_certs(&tls.cert)?;
    let key = load_key(&tls.key)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in load_certs(&tls.client_ca)? {
        roots.add(ca).map_err(|e| TlsError::Pem {
            path: tls.client_ca.clone(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::Rustls(format!("client-ca: {e}")))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Rustls(format!("{}: {e}", tls.cert.display())))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A server configuration that can be swapped (SIGHUP) while connections are up.
#[derive(Clone)]
pub struct ServerTls {
    files: CollectorTls,
    alpn: Vec<Vec<u8>>,
    current: Arc<RwLock<Arc<rustls::ServerConfig>>>,
}

impl ServerTls {
    /// Loads the files.
    pub fn load(files: &CollectorTls, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let cfg = server_config(files, alpn)?;
        Ok(ServerTls {
            files: files.clone(),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            current: Arc::new(RwLock::new(Arc::new(cfg))),
        })
    }

    /// Re-reads the files; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let alpn: Vec<&[u8]> = self.alpn.iter().map(Vec::as_slice).collect();
        let cfg = server_config(&self.files, &alpn)?;
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(cfg);
        Ok(())
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let cfg = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(cfg)
    }
}

/// Who a client certificate names: host ids by DNS SAN, and (AZ, host) pairs by SPIFFE URI SAN
/// `spiffe://<trust domain>/az/<az>/host/<host-id>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertIdentity {
    /// DNS SANs.
    pub dns: Vec<String>,
    /// SPIFFE ids as (AZ, host).
    pub spiffe: Vec<(String, String)>,
}

impl CertIdentity {
    /// The SANs of a DER certificate (empty when it cannot be parsed: it names nobody).
    pub fn of(cert: &CertificateDer<'_>) -> CertIdentity {
        let mut id = CertIdentity::default();
        let Ok((_, x509)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
            return id;
        };
        let Ok(Some(san)) = x509.subject_alternative_name() else {
            return id;
        };
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => id.dns.push((*d).to_owned()),
                x509_parser::extensions::GeneralName::URI(u) => {
                    if let Some(pair) = parse_spiffe(u) {
                        id.spiffe.push(pair);
                    }
                }
                _ => {}
            }
        }
        id
    }

    /// Whether the certificate may report for `host_id` in `az`.
    pub fn allows(&self, host_id: &str, az: &str) -> bool {
        self.dns.iter().any(|d| d == host_id)
            || self.spiffe.iter().any(|(a, h)| h == host_id && a == az)
    }

    /// A stable key for "the same certificate identity" (a reconnecting agent).
    pub fn key(&self) -> String {
        let mut parts: Vec<String> = self.dns.iter().map(|d| format!("dns:{d}")).collect();
        parts.extend(self.spiffe.iter().map(|(a, h)| format!("spiffe:{a}/{h}")));
        parts.sort();
        parts.join(",")
    }

    /// The names, for messages.
    pub fn describe(&self) -> String {
        if self.dns.is_empty() && self.spiffe.is_empty() {
            return "no DNS or SPIFFE name".into();
        }
        self.key()
    }
}

/// `spiffe://<domain>/az/<az>/host/<host>` -> `(az, host)`.
fn parse_spiffe(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("spiffe://")?;
    let (_domain, path) = rest.split_once('/')?;
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["az", az, "host", host] if !az.is_empty() && !host.is_empty() => {
            Some(((*az).to_owned(), (*host).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_ids() {
        assert_eq!(
            parse_spiffe("spiffe://fleet.example/az/az1/host/hv-7"),
            Some(("az1".into(), "hv-7".into()))
        );
        assert_eq!(parse_spiffe("spiffe://fleet.example/host/hv-7"), None);
        assert_eq!(parse_spiffe("https://fleet.example/az/az1/host/hv-7"), None);
        let id = CertIdentity {
            dns: vec!["hv-1".into()],
            spiffe: vec![("az2".into(), "hv-7".into())],
        };
        assert!(id.allows("hv-1", "anything"));
        assert!(id.allows("hv-7", "az2"));
        assert!(!id.allows("hv-7", "az1"), "the AZ must match a SPIFFE id");
        assert!(!id.allows("hv-2", "az1"));
    }

    #[test]
    fn names_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["hv-1".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://fleet.example/az/az1/host/hv-9"
                .try_into()
                .unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = CertIdentity::of(cert.der());
        assert_eq!(id.dns, ["hv-1"]);
        assert_eq!(id.spiffe, [("az1".to_owned(), "hv-9".to_owned())]);
    }
}
