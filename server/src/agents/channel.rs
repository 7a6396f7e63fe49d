//! The agent channel's transport, authenticated at both ends: agents dial the
//! coordinator over `wss://` on its own agent listener (`--agent-listen`), and accept
//! only the coordinator whose certificate has the SHA-256 pin they were given
//! (`--coordinator-pin sha256:…`); the coordinator accepts only agents that show the
//! run's secret or the pool token (`hub`, `pool`), with wrong ones throttled per
//! address like the access token. A fake coordinator (another address, a DNS or
//! network takeover) cannot finish the TLS handshake, so it never sees a token and
//! never sends an agent a plan.
//!
//! - [`Identity`]: the coordinator's key and self-signed certificate, kept beside the
//!   database (`<database>.agent-tls.pem`, mode 0600) so the pin survives restarts
//!   (standing pool agents keep theirs); headless runs make one in memory.
//! - [`serve`]: the TLS accept loop (handshake and header timeouts, a connection cap)
//!   in front of the hub's router.
//! - [`connector`]: an agent's TLS client that checks the pin (and the handshake
//!   signatures, so only the holder of the key passes).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Agent connections served at once (each agent holds one).
const MAX_AGENT_CONNECTIONS: usize = 1024;
/// Time for a TLS handshake and for a request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The coordinator's TLS identity and its pin.
pub struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    /// `sha256:` and the certificate's SHA-256 in hex: what agents are given.
    pub pin: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("pin", &self.pin).finish()
    }
}

/// The pin of a certificate (its DER bytes).
pub fn pin_of(cert: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert)))
}

/// Reads `sha256:HEX` (64 hex digits, any case; `:` between bytes allowed, as
/// `openssl x509 -fingerprint` prints them).
pub fn parse_pin(text: &str) -> Result<[u8; 32], String> {
    let hex_part = text
        .trim()
        .strip_prefix("sha256:")
        .or_else(|| text.trim().strip_prefix("SHA256:"))
        .ok_or_else(|| format!("`{text}` is not a pin like sha256:3f9a…(64 hex digits)"))?
        .replace(':', "");
    let bytes = hex::decode(&hex_part).map_err(|_| format!("`{text}`: not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("`{text}`: a SHA-256 pin has 64 hex digits"))
}

impl Identity {
    /// A new key and self-signed certificate.
    pub fn generate() -> Result<Identity, String> {
        let made = rcgen::generate_simple_self_signed(vec!["socketswarm-coordinator".into()])
            .map_err(|e| format!("could not make the agent channel's certificate: {e}"))?;
        let cert = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
            .map_err(|e| format!("could not read the agent channel's key: {e}"))?;
        Ok(Identity {
            pin: pin_of(&cert),
            cert,
            key,
        })
    }

    /// The identity kept in `path` (PEM: the certificate, then the key), made and saved
    /// there (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> Result<Identity, String> {
        match std::fs::read(path) {
            Ok(pem) => {
                let cert = CertificateDer::from_pem_slice(&pem)
                    .map_err(|e| format!("{}: no certificate ({e})", path.display()))?;
                let key = PrivateKeyDer::from_pem_slice(&pem)
                    .map_err(|e| format!("{}: no private key ({e})", path.display()))?;
                Ok(Identity {
                    pin: pin_of(&cert),
                    cert,
                    key,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let made =
                    rcgen::generate_simple_self_signed(vec!["socketswarm-coordinator".into()])
                        .map_err(|e| {
                            format!("could not make the agent channel's certificate: {e}")
                        })?;
                let pem = format!("{}{}", made.cert.pem(), made.signing_key.serialize_pem());
                write_private(path, pem.as_bytes())?;
                Self::load_or_create(path)
            }
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// A TLS acceptor with this identity (what the agent listener serves with).
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        Ok(tokio_rustls::TlsAcceptor::from(self.server_config()?))
    }

    fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|e| format!("the agent channel's certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// Writes `bytes` to a new file only its owner may read.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Serves `app` (the hub's routes) over TLS on `listener` until `shutdown`. Every
/// request knows its TCP peer (wrong tokens are throttled per address).
pub fn serve(
    listener: TcpListener,
    app: Router,
    identity: &Identity,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let acceptor = identity.acceptor()?;
    let slots = Arc::new(Semaphore::new(MAX_AGENT_CONNECTIONS));
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!("agent listener: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let (acceptor, builder, shutdown) =
                (acceptor.clone(), builder.clone(), shutdown.clone());
            let app = app
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer)));
            tokio::spawn(async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "agent TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let conn = builder.serve_connection_with_upgrades(
                    TokioIo::new(tls),
                    TowerToHyperService::new(app),
                );
                let mut conn = std::pin::pin!(conn);
                let _ = tokio::select! {
                    ended = conn.as_mut() => ended,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
            });
        }
    });
    Ok(())
}

/// Checks the coordinator's certificate against a pin (and the handshake signatures
/// with its key). Names are not checked: the pin says who it is, wherever it is.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if crate::secret::same(&got, &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the coordinator's certificate has pin {}, not the pin this agent was given",
                pin_of(end_entity.as_ref())
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An agent's TLS client for a coordinator with `pin`.
pub fn connector(pin: &[u8; 32]) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: *pin,
            provider,
        }))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The address agents on this machine dial for a listener bound to `addr`.
pub fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(a) if a.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("wss://{}", SocketAddr::new(ip, addr.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_read_as_printed() {
        let id = Identity::generate().unwrap();
        let bytes = parse_pin(&id.pin).unwrap();
        assert_eq!(pin_of(&id.cert), id.pin);
        let colons: String = hex::encode_upper(bytes)
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_pin(&format!("SHA256:{colons}")).unwrap(), bytes);
        assert!(parse_pin("sha256:abc").is_err());
        assert!(parse_pin("md5:00").is_err());
    }

    #[test]
    fn an_identity_is_kept_and_read_back_with_its_pin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent-tls.pem");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.pin, b.pin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by others: {mode:o}");
        }
    }
}
