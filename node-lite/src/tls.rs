//! TLS 1.3 for the QUIC transport: the appliance's self-signed identity, its SHA-256
//! fingerprint, and a client-side verifier that accepts exactly the pinned fingerprint.
//!
//! The crypto provider is rustls's aws-lc-rs provider; with it rustls offers the hybrid
//! post-quantum key exchange `X25519MLKEM768` first. Only TLS 1.3 is enabled, and the ALPN
//! protocol is [`ALPN`].

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::Error;

/// The ALPN protocol id of the EPA wire, version 1.
pub const ALPN: &[u8] = b"epa/1";
/// The server name the appliance certificate is issued for (clients send it as SNI).
pub const SERVER_NAME: &str = "epa-appliance";

/// The key-exchange groups both sides offer, most preferred first: the hybrid post-quantum
/// `X25519MLKEM768` (ML-KEM-768 combined with X25519), then classical X25519 for peers whose
/// TLS stack has no ML-KEM yet.
pub fn kx_groups() -> Vec<&'static dyn rustls::crypto::SupportedKxGroup> {
    use rustls::crypto::aws_lc_rs::kx_group;
    vec![kx_group::X25519MLKEM768, kx_group::X25519]
}

/// The name rustls gives the preferred key-exchange group (`X25519MLKEM768`).
pub const PREFERRED_KX_GROUP: rustls::NamedGroup = rustls::NamedGroup::X25519MLKEM768;

/// The rustls crypto provider used on both sides (aws-lc-rs), with [`kx_groups`] as its
/// key-exchange groups so the hybrid post-quantum group is always offered and preferred.
pub fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = kx_groups();
    Arc::new(provider)
}

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(cert_der: &[u8]) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Self(out)
    }

    /// Parses 64 hex digits (colons allowed between bytes).
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let clean: String = s.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&clean).map_err(|_| Error::BadFingerprint(s.to_owned()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::BadFingerprint(s.to_owned()))?;
        Ok(Self(arr))
    }

    /// Lower-case hex, 64 digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The appliance's TLS identity: a self-signed certificate and its PKCS#8 private key.
pub struct Identity {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl core::fmt::Debug for Identity {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Identity({})", self.fingerprint())
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        // Best-effort wipe of the private key bytes.
        self.key_der.iter_mut().for_each(|b| *b = 0);
    }
}

impl Identity {
    /// Generates a fresh self-signed certificate for [`SERVER_NAME`] (ECDSA P-256).
    pub fn generate() -> Result<Self, Error> {
        let ck = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .map_err(|e| Error::Certificate(e.to_string()))?;
        Ok(Self {
            cert_der: ck.cert.der().to_vec(),
            key_der: ck.signing_key.serialize_der(),
        })
    }

    /// An identity from a stored DER certificate and PKCS#8 DER key. The pair is checked when
    /// a server configuration is built from it.
    pub fn from_der(cert_der: Vec<u8>, key_der: Vec<u8>) -> Self {
        Self { cert_der, key_der }
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The private key, PKCS#8 DER. Store it only in protected files.
    pub fn key_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The SHA-256 fingerprint clients pin.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.cert_der)
    }

    /// A TLS 1.3 rustls server configuration with ALPN [`ALPN`].
    pub fn server_config(&self) -> Result<rustls::ServerConfig, Error> {
        let cert = CertificateDer::from(self.cert_der.clone());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        Ok(cfg)
    }
}

/// A server-certificate verifier that accepts exactly one certificate, by SHA-256
/// fingerprint, and records what it saw so a mismatch becomes
/// [`Error::FingerprintMismatch`].
#[derive(Debug)]
pub struct PinnedVerifier {
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
    seen: Mutex<Option<Fingerprint>>,
}

impl PinnedVerifier {
    /// A verifier pinned to `fingerprint`.
    pub fn new(fingerprint: Fingerprint) -> Self {
        Self {
            pinned: fingerprint,
            algorithms: provider().signature_verification_algorithms,
            seen: Mutex::new(None),
        }
    }

    /// The pinned fingerprint.
    pub fn pinned(&self) -> Fingerprint {
        self.pinned
    }

    /// The fingerprint of the last certificate presented, if any.
    pub fn last_seen(&self) -> Option<Fingerprint> {
        // A poisoned lock only means another thread panicked mid-store; the value is a Copy.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found = Fingerprint::of(end_entity.as_ref());
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(found);
        if found == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Only TLS 1.3 is enabled; a TLS 1.2 handshake never reaches this.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A TLS 1.3 rustls client configuration that trusts only `verifier`'s pinned certificate.
pub fn client_config(verifier: Arc<PinnedVerifier>) -> Result<rustls::ClientConfig, Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(cfg)
}
