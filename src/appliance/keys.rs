//! Key files: the appliance identity (ML-DSA-65), aggregators' public keys, shards' ML-KEM-768
//! keys and the persisted self-signed TLS certificate.
//!
//! Formats (raw bytes, no header):
//!
//! | file | content |
//! |---|---|
//! | `NAME.mldsa65.sk` | the 32-byte FIPS 204 key-generation seed ξ (both halves derive from it) |
//! | `NAME.mldsa65.pk` | the 1952-byte ML-DSA-65 verifying key |
//! | `NAME.mlkem768.dk` | the 2400-byte ML-KEM-768 decapsulation key |
//! | `NAME.mlkem768.ek` | the 1184-byte ML-KEM-768 encapsulation key |
//! | `tls.cert.der`, `tls.key.der` | the appliance's certificate (DER) and PKCS#8 key |
//!
//! Secret files are created with mode 0600 and never overwritten.
//!
//! Every ML-KEM-768 key has a [`KeyId`] (the first 8 bytes of SHA3-256 of its encapsulation
//! key): a shard may have several active keys while they rotate ([`ShardKeys`]), and sealed
//! transactions of format version 2 name the key they were sealed to.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crypto::dsa::{self, mldsa65};
use crypto::kem::mlkem768;
pub use crypto::seal::KeyId;
use node_lite::tls::Identity;

use super::Error;

/// File name of the generated appliance identity under the data dir.
pub const IDENTITY_FILE: &str = "identity.mldsa65.sk";
/// File name of the identity's public half under the data dir.
pub const IDENTITY_PUBLIC_FILE: &str = "identity.mldsa65.pk";
/// File name of the TLS certificate under the data dir.
pub const TLS_CERT_FILE: &str = "tls.cert.der";
/// File name of the TLS private key under the data dir.
pub const TLS_KEY_FILE: &str = "tls.key.der";

fn key_error(path: &Path, detail: impl std::fmt::Display) -> Error {
    Error::KeyFile {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Reads a whole key file.
///
/// # Errors
/// [`Error::KeyFile`] if it cannot be read.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| key_error(path, e))
}

/// Writes `bytes` to a new file with mode `mode` (0600 for secrets); refuses to overwrite.
///
/// # Errors
/// [`Error::KeyFile`] if the file exists or cannot be written.
pub fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| key_error(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| key_error(path, e))
}

/// An ML-DSA-65 key pair from a seed file.
///
/// # Errors
/// [`Error::KeyFile`] if the file is unreadable or not 32 bytes.
pub fn load_dsa_seed(path: &Path) -> Result<mldsa65::KeyPair, Error> {
    let bytes = zeroize::Zeroizing::new(read_key_file(path)?);
    let seed: [u8; dsa::KEYGEN_SEED_LEN] = bytes.as_slice().try_into().map_err(|_| {
        key_error(
            path,
            format!(
                "{} bytes, an ML-DSA-65 secret key file holds the {}-byte seed; create one with \
                 `epa keys generate`",
                bytes.len(),
                dsa::KEYGEN_SEED_LEN
            ),
        )
    })?;
    let seed = zeroize::Zeroizing::new(seed);
    Ok(mldsa65::KeyPair::from_seed(&seed))
}

/// An ML-DSA-65 verifying key file.
///
/// # Errors
/// [`Error::KeyFile`] if unreadable or not a verifying key.
pub fn load_dsa_public(path: &Path) -> Result<mldsa65::VerifyingKey, Error> {
    mldsa65::VerifyingKey::from_bytes(&read_key_file(path)?).map_err(|e| key_error(path, e))
}

/// An ML-KEM-768 decapsulation key file.
///
/// # Errors
/// [`Error::KeyFile`] if unreadable or not a decapsulation key.
pub fn load_kem_secret(path: &Path) -> Result<mlkem768::DecapsulationKey, Error> {
    let bytes = zeroize::Zeroizing::new(read_key_file(path)?);
    mlkem768::DecapsulationKey::from_bytes(&bytes).map_err(|e| key_error(path, e))
}

/// An ML-KEM-768 encapsulation key file.
///
/// # Errors
/// [`Error::KeyFile`] if unreadable or not an encapsulation key.
pub fn load_kem_public(path: &Path) -> Result<mlkem768::EncapsulationKey, Error> {
    mlkem768::EncapsulationKey::from_bytes(&read_key_file(path)?).map_err(|e| key_error(path, e))
}

/// Refuses a secret key file the group or others may read (any of the mode bits 0o077).
///
/// # Errors
/// [`Error::KeyFile`] naming the mode and the `chmod 600` that fixes it, or if the file's
/// metadata cannot be read.
pub fn require_private(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| key_error(path, e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(
            path,
            format!(
                "mode {mode:04o} lets the group or others read this secret key, so the \
                 appliance refuses to use it; run `chmod 600 {}` (and make it owned by the \
                 user the appliance runs as)",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// The secret key files a configuration names or implies that exist now: the identity
/// (configured, or generated under the data dir), the TLS private key, every shard's ML-KEM
/// decapsulation key.
pub fn secret_files(cfg: &firmware_config::Config) -> Vec<PathBuf> {
    let data_dir = &cfg.appliance.data_dir;
    let mut out = vec![
        cfg.appliance
            .identity_key
            .clone()
            .unwrap_or_else(|| data_dir.join(IDENTITY_FILE)),
        cfg.tls
            .key
            .clone()
            .unwrap_or_else(|| data_dir.join(TLS_KEY_FILE)),
    ];
    for s in &cfg.shards {
        out.push(s.kem_key.clone());
        out.extend(s.kem_keys.iter().cloned());
    }
    out.retain(|p| p.exists());
    out
}

/// [`require_private`] on every file of [`secret_files`]: `epa run` starts only when all
/// pass.
///
/// # Errors
/// The first [`Error::KeyFile`].
pub fn require_private_secrets(cfg: &firmware_config::Config) -> Result<(), Error> {
    secret_files(cfg)
        .iter()
        .try_for_each(|p| require_private(p))
}

/// The paths [`generate_keys`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedKeys {
    /// ML-DSA-65 seed (secret).
    pub dsa_secret: PathBuf,
    /// ML-DSA-65 verifying key.
    pub dsa_public: PathBuf,
    /// ML-KEM-768 decapsulation key (secret).
    pub kem_secret: PathBuf,
    /// ML-KEM-768 encapsulation key.
    pub kem_public: PathBuf,
    /// The ML-KEM-768 key's id (what version 2 transactions sealed to it carry).
    pub kem_key_id: KeyId,
}

/// Generates an ML-DSA-65 and an ML-KEM-768 key pair named `name` under `dir` (created if
/// absent) from OS randomness. Secret files get mode 0600, public ones 0644.
///
/// # Errors
/// [`Error::KeyFile`] if a file exists or cannot be written; [`Error::Crypto`] if randomness
/// is unavailable.
pub fn generate_keys(dir: &Path, name: &str) -> Result<GeneratedKeys, Error> {
    std::fs::create_dir_all(dir).map_err(|e| key_error(dir, e))?;
    let mut rng = rand::rngs::OsRng;
    let mut seed = zeroize::Zeroizing::new([0u8; dsa::KEYGEN_SEED_LEN]);
    rand::RngCore::try_fill_bytes(&mut rng, &mut seed[..])
        .map_err(|_| crypto::Error::RandomnessUnavailable)?;
    let dsa_pair = mldsa65::KeyPair::from_seed(&seed);
    let kem_pair = mlkem768::KeyPair::generate(&mut rng)?;
    let out = GeneratedKeys {
        dsa_secret: dir.join(format!("{name}.mldsa65.sk")),
        dsa_public: dir.join(format!("{name}.mldsa65.pk")),
        kem_secret: dir.join(format!("{name}.mlkem768.dk")),
        kem_public: dir.join(format!("{name}.mlkem768.ek")),
        kem_key_id: KeyId::of(&kem_pair.encapsulation_key),
    };
    write_new_file(&out.dsa_secret, &seed[..], 0o600)?;
    write_new_file(&out.dsa_public, dsa_pair.verifying_key.as_bytes(), 0o644)?;
    write_new_file(
        &out.kem_secret,
        kem_pair.decapsulation_key.as_bytes(),
        0o600,
    )?;
    write_new_file(
        &out.kem_public,
        kem_pair.encapsulation_key.as_bytes(),
        0o644,
    )?;
    Ok(out)
}

/// The active ML-KEM-768 keys of one shard: the primary key (it opens transactions of format
/// version 1, which name no key) and every key by its [`KeyId`] (the primary included).
#[derive(Clone)]
pub struct ShardKeys {
    primary: KeyId,
    by_id: std::collections::BTreeMap<KeyId, std::sync::Arc<mlkem768::DecapsulationKey>>,
}

impl std::fmt::Debug for ShardKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardKeys")
            .field("primary", &self.primary.to_string())
            .field(
                "active",
                &self.ids().map(|i| i.to_string()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ShardKeys {
    /// One active key.
    pub fn new(primary: mlkem768::DecapsulationKey) -> Self {
        let id = KeyId::of_decapsulation_key(&primary);
        Self {
            primary: id,
            by_id: [(id, std::sync::Arc::new(primary))].into(),
        }
    }

    /// The primary key and `more` active keys.
    ///
    /// # Errors
    /// [`Error::Config`] if two of the keys are the same key (same id).
    pub fn with_more(
        primary: mlkem768::DecapsulationKey,
        more: impl IntoIterator<Item = mlkem768::DecapsulationKey>,
    ) -> Result<Self, Error> {
        let mut keys = Self::new(primary);
        for dk in more {
            let id = KeyId::of_decapsulation_key(&dk);
            if keys.by_id.insert(id, std::sync::Arc::new(dk)).is_some() {
                return Err(Error::Config(format!(
                    "ML-KEM key {id} is listed twice for one shard; list each key file once"
                )));
            }
        }
        Ok(keys)
    }

    /// The id of the primary key.
    pub fn primary_id(&self) -> KeyId {
        self.primary
    }

    /// The primary key.
    pub fn primary(&self) -> &std::sync::Arc<mlkem768::DecapsulationKey> {
        self.by_id
            .get(&self.primary)
            .expect("the primary key is always in the map (inserted by new, never removed)")
    }

    /// The active key with id `id`.
    pub fn get(&self, id: &KeyId) -> Option<&std::sync::Arc<mlkem768::DecapsulationKey>> {
        self.by_id.get(id)
    }

    /// The ids of every active key, ascending.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.by_id.keys().copied()
    }
}

/// Loads the appliance identity from `configured`, or from `data_dir/identity.mldsa65.sk`,
/// generating it there (with its public half) when absent.
///
/// # Errors
/// [`Error::KeyFile`] on unreadable or malformed files.
pub fn load_or_create_identity(
    data_dir: &Path,
    configured: Option<&Path>,
) -> Result<mldsa65::KeyPair, Error> {
    if let Some(path) = configured {
        return load_dsa_seed(path);
    }
    let path = data_dir.join(IDENTITY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data_dir).map_err(|e| key_error(data_dir, e))?;
        let mut seed = zeroize::Zeroizing::new([0u8; dsa::KEYGEN_SEED_LEN]);
        rand::RngCore::try_fill_bytes(&mut rand::rngs::OsRng, &mut seed[..])
            .map_err(|_| crypto::Error::RandomnessUnavailable)?;
        let pair = mldsa65::KeyPair::from_seed(&seed);
        write_new_file(&path, &seed[..], 0o600)?;
        write_new_file(
            &data_dir.join(IDENTITY_PUBLIC_FILE),
            pair.verifying_key.as_bytes(),
            0o644,
        )?;
    }
    load_dsa_seed(&path)
}

/// Loads the TLS identity persisted under `data_dir`, or creates and persists a fresh
/// self-signed one: clients pin its fingerprint, so it must survive restarts.
///
/// # Errors
/// [`Error::KeyFile`] on unreadable files; [`Error::Node`] if generation fails.
pub fn load_or_create_tls(data_dir: &Path) -> Result<Identity, Error> {
    let cert = data_dir.join(TLS_CERT_FILE);
    let key = data_dir.join(TLS_KEY_FILE);
    if cert.exists() && key.exists() {
        return Ok(Identity::from_der(
            read_key_file(&cert)?,
            read_key_file(&key)?,
        ));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| key_error(data_dir, e))?;
    let identity = Identity::generate()?;
    // Key first: a crash in between leaves no certificate, so the pair is regenerated.
    let _ = std::fs::remove_file(&key);
    write_new_file(&key, identity.key_der(), 0o600)?;
    write_new_file(&cert, identity.cert_der(), 0o644)?;
    Ok(identity)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_keys_load_back_with_private_permissions() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keys = generate_keys(dir.path(), "agg").expect("fresh directory");
        let pair = load_dsa_seed(&keys.dsa_secret).expect("seed file");
        assert_eq!(
            load_dsa_public(&keys.dsa_public).expect("public file"),
            pair.verifying_key
        );
        let dk = load_kem_secret(&keys.kem_secret).expect("dk file");
        assert_eq!(
            load_kem_public(&keys.kem_public).expect("ek file"),
            dk.encapsulation_key()
        );
        for secret in [&keys.dsa_secret, &keys.kem_secret] {
            let mode = std::fs::metadata(secret)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
        }
        // Never overwritten.
        assert!(matches!(
            generate_keys(dir.path(), "agg"),
            Err(Error::KeyFile { .. })
        ));
        // A wrong-sized seed is a typed error.
        assert!(matches!(
            load_dsa_seed(&keys.dsa_public),
            Err(Error::KeyFile { .. })
        ));
    }

    #[test]
    fn readable_secrets_are_refused_with_the_chmod_fix() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let keys = generate_keys(dir.path(), "s").expect("fresh directory");
        require_private(&keys.kem_secret).expect("0600 passes");
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&keys.kem_secret, std::fs::Permissions::from_mode(mode))
                .expect("chmod");
            let err = require_private(&keys.kem_secret).expect_err("readable secret");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("mode {mode:04o}"))
                    && msg.contains(&format!("chmod 600 {}", keys.kem_secret.display())),
                "{msg}"
            );
        }
        std::fs::set_permissions(&keys.kem_secret, std::fs::Permissions::from_mode(0o400))
            .expect("chmod");
        require_private(&keys.kem_secret).expect("0400 passes");
    }

    #[test]
    fn identity_and_tls_persist_across_loads() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let a = load_or_create_identity(dir.path(), None).expect("created");
        let b = load_or_create_identity(dir.path(), None).expect("loaded");
        assert_eq!(a.verifying_key, b.verifying_key);
        let t1 = load_or_create_tls(dir.path()).expect("created");
        let t2 = load_or_create_tls(dir.path()).expect("loaded");
        assert_eq!(t1.fingerprint(), t2.fingerprint());
    }
}
