//! TCP connect and TLS handshake probes, every outcome classified with W3C Network Error Logging names
//! (`tcp.refused`, `tcp.timed_out`, `tcp.address_unreachable`, `tcp.reset`, `tls.cert.date_invalid`, ...).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A failed connect or handshake: the NEL class and what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// `tcp.refused`, `tls.cert.name_invalid`, ...
    pub class: &'static str,
    /// The error as the OS or TLS stack said it.
    pub detail: String,
}

/// Classifies a connect error.
pub fn classify_io(e: &io::Error) -> ConnectFailure {
    use nix::libc;
    let class = match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => "tcp.refused",
        (io::ErrorKind::ConnectionReset, _) => "tcp.reset",
        (io::ErrorKind::ConnectionAborted, _) => "tcp.aborted",
        (io::ErrorKind::TimedOut, _) => "tcp.timed_out",
        (io::ErrorKind::UnexpectedEof, _) => "tcp.closed",
        (_, Some(libc::EHOSTUNREACH | libc::ENETUNREACH)) => "tcp.address_unreachable",
        (_, Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)) => "tcp.address_invalid",
        _ => "tcp.failed",
    };
    let detail = match e.raw_os_error() {
        Some(libc::ENETUNREACH) => "network unreachable (no route)".to_owned(),
        Some(libc::EHOSTUNREACH) => "host unreachable".to_owned(),
        Some(libc::EPERM | libc::EACCES) => format!("{e} (this host's firewall?)"),
        _ => e.to_string(),
    };
    ConnectFailure { class, detail }
}

/// Classifies a TLS handshake error (a rustls error inside the I/O error, or the connection's fate).
pub fn classify_tls(e: &io::Error) -> ConnectFailure {
    use rustls::{AlertDescription, CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) else {
        let mut f = classify_io(e);
        if f.class == "tcp.failed" {
            f.class = "tls.failed";
        }
        return f;
    };
    let class = match tls {
        Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                "tls.cert.name_invalid"
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => "tls.cert.date_invalid",
            CertificateError::UnknownIssuer => "tls.cert.authority_invalid",
            CertificateError::Revoked => "tls.cert.revoked",
            _ => "tls.cert.invalid",
        },
        Error::PeerIncompatible(_) => "tls.version_or_cipher_mismatch",
        Error::AlertReceived(
            AlertDescription::HandshakeFailure
            | AlertDescription::ProtocolVersion
            | AlertDescription::InsufficientSecurity,
        ) => "tls.version_or_cipher_mismatch",
        Error::AlertReceived(AlertDescription::CertificateRequired) => "tls.bad_client_auth_cert",
        Error::AlertReceived(_) | Error::InvalidMessage(_) | Error::PeerMisbehaved(_) => {
            "tls.protocol.error"
        }
        _ => "tls.failed",
    };
    ConnectFailure {
        class,
        detail: tls.to_string(),
    }
}

/// One connect (and handshake): how long it took, or why it failed.
pub async fn probe(
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
) -> Result<Duration, ConnectFailure> {
    let start = Instant::now();
    let deadline = start + timeout;
    let timed_out = |during: &str| ConnectFailure {
        class: "tcp.timed_out",
        detail: format!(
            "no answer {during} within {}",
            crate::util::fmt_duration(timeout)
        ),
    };
    let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
        Err(_) => return Err(timed_out("to the connect")),
        Ok(Err(e)) => return Err(classify_io(&e)),
        Ok(Ok(s)) => s,
    };
    let connected = start.elapsed();
    let Some((cfg, name)) = tls else {
        return Ok(connected);
    };
    let connector = tokio_rustls::TlsConnector::from(cfg);
    match tokio::time::timeout_at(deadline, connector.connect(name, stream)).await {
        Err(_) => Err(timed_out("during the TLS handshake")),
        Ok(Err(e)) => Err(classify_tls(&e)),
        Ok(Ok(_)) => Ok(start.elapsed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_get_their_nel_names() {
        let of = |errno| classify_io(&io::Error::from_raw_os_error(errno)).class;
        assert_eq!(of(nix::libc::ECONNREFUSED), "tcp.refused");
        assert_eq!(of(nix::libc::ECONNRESET), "tcp.reset");
        assert_eq!(of(nix::libc::ETIMEDOUT), "tcp.timed_out");
        assert_eq!(of(nix::libc::EHOSTUNREACH), "tcp.address_unreachable");
        assert_eq!(of(nix::libc::ENETUNREACH), "tcp.address_unreachable");
        assert_eq!(of(nix::libc::EADDRNOTAVAIL), "tcp.address_invalid");
        assert_eq!(of(nix::libc::EPERM), "tcp.failed");
        assert_eq!(
            classify_io(&io::Error::from_raw_os_error(nix::libc::ENETUNREACH)).detail,
            "network unreachable (no route)"
        );
    }

    #[test]
    fn certificate_errors_get_their_nel_names() {
        let of = |e: rustls::Error| classify_tls(&io::Error::new(io::ErrorKind::InvalidData, e)).class;
        use rustls::CertificateError as C;
        assert_eq!(of(rustls::Error::InvalidCertificate(C::Expired)), "tls.cert.date_invalid");
        assert_eq!(
            of(rustls::Error::InvalidCertificate(C::UnknownIssuer)),
            "tls.cert.authority_invalid"
        );
        assert_eq!(
            of(rustls::Error::InvalidCertificate(C::NotValidForName)),
            "tls.cert.name_invalid"
        );
        assert_eq!(
            of(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure)),
            "tls.version_or_cipher_mismatch"
        );
        assert_eq!(
            classify_tls(&io::Error::from(io::ErrorKind::UnexpectedEof)).class,
            "tcp.closed"
        );
    }
}
