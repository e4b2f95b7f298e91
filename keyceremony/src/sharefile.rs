//! A custodian's secrets encrypted at rest under a passphrase (design 4.2 step 4).
//!
//! argon2id derives 64 bytes from the passphrase and a random salt: the first 32 are the
//! XChaCha20-Poly1305 key, the last 32 give a key-check value stored in the file, so a wrong passphrase
//! ([`ShareFileError::WrongPassphrase`]) is told apart from a modified file
//! ([`ShareFileError::Tampered`]). The check value lets an attacker test a guess no faster than the
//! AEAD itself would (one argon2 evaluation per guess). The file header (version, KDF parameters, salt,
//! key check) is the AEAD's associated data. The file is JSON, written atomically (temporary file,
//! fsync, rename) with 0600 permissions; the secrets are never written in the clear.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use blsttc::poly::Poly;
use blsttc::{SecretKey, SecretKeyShare};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::ceremony::{CeremonyError, Custodian, CustodianSecrets, DealerPolys};
use crate::election::{hex_32, ElectionParams, IdentityKey};
use crate::hash::{Hash32, Transcript};

/// The file's format marker.
pub const FORMAT: &str = "urna-custodian-secrets";
/// The current format version.
pub const VERSION: u32 = 1;
/// Salt length in bytes.
pub const SALT_LEN: usize = 16;
/// XChaCha20-Poly1305 nonce length in bytes.
pub const NONCE_LEN: usize = 24;
/// Largest argon2 memory cost accepted from a file (4 GiB), so a crafted file cannot exhaust memory.
pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest argon2 time cost accepted from a file.
pub const MAX_T_COST: u32 = 64;
/// Largest argon2 parallelism accepted from a file.
pub const MAX_P_COST: u32 = 16;

/// Why a share file could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareFileError {
    /// The passphrase does not open this file.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The passphrase is right but the encrypted contents were modified.
    #[error("the file has been modified: its contents fail authentication")]
    Tampered,
    /// Passphrases must not be empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The file is not a share file or is malformed.
    #[error("not a valid custodian secrets file: {0}")]
    Format(String),
    /// A format version this build does not read.
    #[error("unsupported secrets file version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    /// KDF parameters out of the accepted range.
    #[error("invalid key-derivation parameters: {0}")]
    Kdf(String),
    /// The file already exists (never silently overwritten by key generation).
    #[error("{0} already exists")]
    Exists(PathBuf),
    /// A filesystem error.
    #[error("{path}: {message}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

fn io_err(path: &Path, e: std::io::Error) -> ShareFileError {
    ShareFileError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// argon2id parameters, stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Parallelism.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane (above OWASP's argon2id minimums).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Very cheap parameters for tests only (never for real secrets).
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    fn argon2(&self) -> Result<Argon2<'static>, ShareFileError> {
        if self.m_cost_kib > MAX_M_COST_KIB || self.t_cost > MAX_T_COST || self.p_cost > MAX_P_COST {
            return Err(ShareFileError::Kdf(format!(
                "m={} KiB, t={}, p={} exceeds the limits (m <= {MAX_M_COST_KIB}, t <= {MAX_T_COST}, p <= \
                 {MAX_P_COST})",
                self.m_cost_kib, self.t_cost, self.p_cost
            )));
        }
        let params = Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(64))
            .map_err(|e| ShareFileError::Kdf(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// One election's secrets of a custodian.
#[derive(Clone)]
pub struct ElectionSecrets {
    /// The election id.
    pub election_id: String,
    /// The election's base hash Q.
    pub base_hash: Hash32,
    /// The custodian's 0-based index in that election.
    pub index: usize,
    /// The per-election transport key.
    pub transport: SecretKey,
    /// The dealt polynomials, kept until the ceremony ends (to answer complaints and derive).
    pub polys: Option<DealerPolys>,
    /// The derived shares, once the ceremony derived the keys.
    pub shares: Option<CustodianSecrets>,
    /// Steps this custodian has completed in this election, in order (`joined`, `dealt`, ...): public
    /// progress notes for `urna-ceremony status`, no secret.
    pub progress: Vec<String>,
}

impl fmt::Debug for ElectionSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ElectionSecrets")
            .field("election_id", &self.election_id)
            .field("index", &self.index)
            .field("transport_key", &IdentityKey(self.transport.public_key()))
            .field("has_polys", &self.polys.is_some())
            .field("has_shares", &self.shares.is_some())
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl ElectionSecrets {
    /// Captures a custodian's per-election secrets (transport key, dealt polynomials, derived shares)
    /// for storage in its file.
    pub fn from_custodian(
        params: &ElectionParams,
        custodian: &Custodian,
        shares: Option<&CustodianSecrets>,
    ) -> Self {
        ElectionSecrets {
            election_id: params.election_id.clone(),
            base_hash: params.base_hash(),
            index: custodian.index(),
            transport: custodian.transport_secret().clone(),
            polys: custodian.polys().cloned(),
            shares: shares.cloned(),
            progress: Vec::new(),
        }
    }

    /// Records that a step was completed (once; repeating a step keeps the first note).
    pub fn mark(&mut self, step: &str) {
        if !self.has(step) {
            self.progress.push(step.to_string());
        }
    }

    /// Whether a step was recorded.
    pub fn has(&self, step: &str) -> bool {
        self.progress.iter().any(|p| p == step)
    }

    /// Rebuilds the custodian's ceremony driver from stored secrets, checking that they belong to the
    /// election of `params` and that `identity` is the registered key.
    pub fn custodian(
        &self,
        identity: &SecretKey,
        params: &ElectionParams,
    ) -> Result<Custodian, CeremonyError> {
        if params.base_hash() != self.base_hash {
            return Err(CeremonyError::WrongElection);
        }
        let mut c = Custodian::with_transport(identity.clone(), self.transport.clone(), self.index, params)?;
        if let Some(p) = &self.polys {
            c.set_polys(p.clone());
        }
        Ok(c)
    }
}

/// Everything a custodian keeps secret: its identity key and its per-election secrets.
#[derive(Clone)]
pub struct CustodianFile {
    /// The long-term identity key (its public part is registered in elections).
    pub identity: SecretKey,
    /// Per-election secrets.
    pub elections: Vec<ElectionSecrets>,
}

impl fmt::Debug for CustodianFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustodianFile")
            .field("identity_key", &IdentityKey(self.identity.public_key()))
            .field("elections", &self.elections)
            .finish_non_exhaustive()
    }
}

impl CustodianFile {
    /// A file holding only a fresh identity key drawn from `rng`.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        CustodianFile {
            identity: rand::distributions::Distribution::sample(&rand::distributions::Standard, rng),
            elections: Vec::new(),
        }
    }

    /// The public identity key.
    pub fn identity_key(&self) -> IdentityKey {
        IdentityKey(self.identity.public_key())
    }
}

/// The plaintext inside the AEAD (hex strings, zeroized on drop).
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct PlainFile {
    identity: String,
    elections: Vec<PlainElection>,
}

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct PlainElection {
    election_id: String,
    base_hash: String,
    index: usize,
    transport: String,
    polys: Option<[String; 2]>,
    shares: Option<[String; 2]>,
    #[serde(default)]
    progress: Vec<String>,
}

fn sk_hex(sk: &SecretKey) -> String {
    let b = Zeroizing::new(sk.to_bytes());
    hex::encode(*b)
}

fn share_hex(sk: &SecretKeyShare) -> String {
    let b = Zeroizing::new(sk.to_bytes());
    hex::encode(*b)
}

fn bytes32(s: &str, what: &str) -> Result<Zeroizing<[u8; 32]>, ShareFileError> {
    let v = Zeroizing::new(hex::decode(s).map_err(|_| ShareFileError::Format(format!("{what}: bad hex")))?);
    let mut out = Zeroizing::new([0u8; 32]);
    if v.len() != 32 {
        return Err(ShareFileError::Format(format!("{what}: expected 32 bytes")));
    }
    out.copy_from_slice(&v);
    Ok(out)
}

fn sk_from(s: &str, what: &str) -> Result<SecretKey, ShareFileError> {
    SecretKey::from_bytes(*bytes32(s, what)?)
        .map_err(|_| ShareFileError::Format(format!("{what}: not a scalar")))
}

fn share_from(s: &str, what: &str) -> Result<SecretKeyShare, ShareFileError> {
    SecretKeyShare::from_bytes(*bytes32(s, what)?)
        .map_err(|_| ShareFileError::Format(format!("{what}: not a scalar")))
}

fn poly_from(s: &str) -> Result<Poly, ShareFileError> {
    let v = Zeroizing::new(hex::decode(s).map_err(|_| ShareFileError::Format("polynomial: bad hex".into()))?);
    if v.is_empty() || v.len() % 32 != 0 {
        return Err(ShareFileError::Format("polynomial: bad length".into()));
    }
    Poly::from_bytes(v.to_vec()).map_err(|_| ShareFileError::Format("polynomial: not scalars".into()))
}

impl CustodianFile {
    fn to_plain(&self) -> PlainFile {
        PlainFile {
            identity: sk_hex(&self.identity),
            elections: self
                .elections
                .iter()
                .map(|e| PlainElection {
                    election_id: e.election_id.clone(),
                    base_hash: hex::encode(e.base_hash),
                    index: e.index,
                    transport: sk_hex(&e.transport),
                    polys: e.polys.as_ref().map(|p| {
                        [
                            hex::encode(Zeroizing::new(p.encryption.to_bytes()).as_slice()),
                            hex::encode(Zeroizing::new(p.signing.to_bytes()).as_slice()),
                        ]
                    }),
                    shares: e
                        .shares
                        .as_ref()
                        .map(|s| [share_hex(&s.encryption_share), share_hex(&s.signing_share)]),
                    progress: e.progress.clone(),
                })
                .collect(),
        }
    }

    fn from_plain(p: &PlainFile) -> Result<Self, ShareFileError> {
        let mut elections = Vec::with_capacity(p.elections.len());
        for e in &p.elections {
            let base_hash: Hash32 = *bytes32(&e.base_hash, "base hash")?;
            elections.push(ElectionSecrets {
                election_id: e.election_id.clone(),
                base_hash,
                index: e.index,
                transport: sk_from(&e.transport, "transport key")?,
                polys: match &e.polys {
                    Some([a, b]) => Some(DealerPolys {
                        encryption: poly_from(a)?,
                        signing: poly_from(b)?,
                    }),
                    None => None,
                },
                shares: match &e.shares {
                    Some([a, b]) => Some(CustodianSecrets {
                        index: e.index,
                        encryption_share: share_from(a, "encryption share")?,
                        signing_share: share_from(b, "signing share")?,
                    }),
                    None => None,
                },
                progress: e.progress.clone(),
            });
        }
        Ok(CustodianFile {
            identity: sk_from(&p.identity, "identity key")?,
            elections,
        })
    }
}

/// The on-disk JSON form: header and ciphertext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// argon2id parameters.
    pub kdf: KdfParams,
    /// argon2 salt (hex).
    pub salt: String,
    /// Key-check value: `H("urna/v1/sharefile/check", second half of the argon2 output)` (hex).
    #[serde(with = "hex_32")]
    pub key_check: Hash32,
    /// XChaCha20-Poly1305 nonce (hex).
    pub nonce: String,
    /// Ciphertext with tag (hex).
    pub ciphertext: String,
}

fn header_aad(version: u32, kdf: &KdfParams, salt: &[u8], key_check: &Hash32) -> Vec<u8> {
    Transcript::new("urna/v1/sharefile/header")
        .str(FORMAT)
        .u64(version as u64)
        .u64(kdf.m_cost_kib as u64)
        .u64(kdf.t_cost as u64)
        .u64(kdf.p_cost as u64)
        .bytes(salt)
        .hash(key_check)
        .into_bytes()
}

/// Derives the AEAD key and the key-check value.
fn derive(
    passphrase: &[u8],
    salt: &[u8],
    kdf: &KdfParams,
) -> Result<(Zeroizing<[u8; 32]>, Hash32), ShareFileError> {
    let mut out = Zeroizing::new([0u8; 64]);
    kdf.argon2()?
        .hash_password_into(passphrase, salt, out.as_mut_slice())
        .map_err(|e| ShareFileError::Kdf(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&out[..32]);
    let check = crate::hash::h("urna/v1/sharefile/check", &[&out[32..]]);
    Ok((key, check))
}

/// Encrypts a custodian's secrets under a passphrase.
pub fn seal<R: RngCore + CryptoRng>(
    secrets: &CustodianFile,
    passphrase: &[u8],
    kdf: KdfParams,
    rng: &mut R,
) -> Result<SealedFile, ShareFileError> {
    if passphrase.is_empty() {
        return Err(ShareFileError::EmptyPassphrase);
    }
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let (key, key_check) = derive(passphrase, &salt, &kdf)?;
    let plain = secrets.to_plain();
    let json = Zeroizing::new(serde_json::to_vec(&plain).map_err(|e| ShareFileError::Format(e.to_string()))?);
    let aad = header_aad(VERSION, &kdf, &salt, &key_check);
    let cipher = XChaCha20Poly1305::new(key.as_slice().into());
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &json,
                aad: &aad,
            },
        )
        .map_err(|_| ShareFileError::Format("encryption failed".into()))?;
    Ok(SealedFile {
        format: FORMAT.into(),
        version: VERSION,
        kdf,
        salt: hex::encode(salt),
        key_check,
        nonce: hex::encode(nonce),
        ciphertext: hex::encode(ct),
    })
}

/// Decrypts a sealed file with a passphrase.
pub fn open(sealed: &SealedFile, passphrase: &[u8]) -> Result<CustodianFile, ShareFileError> {
    if sealed.format != FORMAT {
        return Err(ShareFileError::Format(format!(
            "format is {:?}, expected {FORMAT:?}",
            sealed.format
        )));
    }
    if sealed.version != VERSION {
        return Err(ShareFileError::UnsupportedVersion(sealed.version));
    }
    let salt = hex::decode(&sealed.salt).map_err(|_| ShareFileError::Format("salt: bad hex".into()))?;
    if salt.len() != SALT_LEN {
        return Err(ShareFileError::Format("salt: wrong length".into()));
    }
    let nonce = hex::decode(&sealed.nonce).map_err(|_| ShareFileError::Format("nonce: bad hex".into()))?;
    if nonce.len() != NONCE_LEN {
        return Err(ShareFileError::Format("nonce: wrong length".into()));
    }
    let ct =
        hex::decode(&sealed.ciphertext).map_err(|_| ShareFileError::Format("ciphertext: bad hex".into()))?;
    let (key, key_check) = derive(passphrase, &salt, &sealed.kdf)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        &key_check[..],
        &sealed.key_check[..],
    )) {
        return Err(ShareFileError::WrongPassphrase);
    }
    let aad = header_aad(sealed.version, &sealed.kdf, &salt, &sealed.key_check);
    let cipher = XChaCha20Poly1305::new(key.as_slice().into());
    let json = Zeroizing::new(
        cipher
            .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ct, aad: &aad })
            .map_err(|_| ShareFileError::Tampered)?,
    );
    let plain: PlainFile =
        serde_json::from_slice(&json).map_err(|e| ShareFileError::Format(e.to_string()))?;
    CustodianFile::from_plain(&plain)
}

/// Seals and writes atomically with 0600 permissions, replacing `path` if it exists.
pub fn write<R: RngCore + CryptoRng>(
    path: &Path,
    secrets: &CustodianFile,
    passphrase: &[u8],
    kdf: KdfParams,
    rng: &mut R,
) -> Result<(), ShareFileError> {
    let sealed = seal(secrets, passphrase, kdf, rng)?;
    let mut text = serde_json::to_vec_pretty(&sealed).map_err(|e| ShareFileError::Format(e.to_string()))?;
    text.push(b'\n');
    write_atomic(path, &text, rng)
}

/// Like [`write`] but refuses to replace an existing file.
pub fn create<R: RngCore + CryptoRng>(
    path: &Path,
    secrets: &CustodianFile,
    passphrase: &[u8],
    kdf: KdfParams,
    rng: &mut R,
) -> Result<(), ShareFileError> {
    if path.exists() {
        return Err(ShareFileError::Exists(path.to_path_buf()));
    }
    write(path, secrets, passphrase, kdf, rng)
}

/// Reads and decrypts a share file.
pub fn read(path: &Path, passphrase: &[u8]) -> Result<CustodianFile, ShareFileError> {
    let text = fs::read(path).map_err(|e| io_err(path, e))?;
    let sealed: SealedFile =
        serde_json::from_slice(&text).map_err(|e| ShareFileError::Format(e.to_string()))?;
    open(&sealed, passphrase)
}

fn write_atomic<R: RngCore>(path: &Path, bytes: &[u8], rng: &mut R) -> Result<(), ShareFileError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| ShareFileError::Format(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp-{:016x}", name.to_string_lossy(), rng.next_u64()));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
        // Make the rename durable; a directory that cannot be opened for sync is not an error.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn sample(rng: &mut ChaCha20Rng) -> CustodianFile {
        let mut f = CustodianFile::generate(rng);
        let mut a = blsttc::Fr::from(7u64);
        let mut b = blsttc::Fr::from(9u64);
        f.elections.push(ElectionSecrets {
            election_id: "e1".into(),
            base_hash: [3u8; 32],
            index: 2,
            transport: rand::distributions::Distribution::sample(&rand::distributions::Standard, rng),
            polys: Some(DealerPolys {
                encryption: Poly::random(2, rng),
                signing: Poly::random(2, rng),
            }),
            shares: Some(CustodianSecrets {
                index: 2,
                encryption_share: SecretKeyShare::from_mut(&mut a),
                signing_share: SecretKeyShare::from_mut(&mut b),
            }),
            progress: vec!["joined".into(), "dealt".into()],
        });
        f
    }

    fn same(a: &CustodianFile, b: &CustodianFile) -> bool {
        a.identity == b.identity
            && a.elections.len() == b.elections.len()
            && a.elections.iter().zip(&b.elections).all(|(x, y)| {
                x.election_id == y.election_id
                    && x.base_hash == y.base_hash
                    && x.index == y.index
                    && x.transport == y.transport
                    && x.shares == y.shares
                    && x.progress == y.progress
                    && x.polys
                        .as_ref()
                        .map(|p| (p.encryption.clone(), p.signing.clone()))
                        == y.polys
                            .as_ref()
                            .map(|p| (p.encryption.clone(), p.signing.clone()))
            })
    }

    #[test]
    fn roundtrip_wrong_passphrase_and_tampering() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let f = sample(&mut rng);
        let kdf = KdfParams::insecure_for_tests();
        let sealed = seal(&f, b"correct horse", kdf, &mut rng).unwrap();
        assert!(same(&open(&sealed, b"correct horse").unwrap(), &f));
        assert_eq!(
            open(&sealed, b"wrong").unwrap_err(),
            ShareFileError::WrongPassphrase
        );
        // A flipped ciphertext byte.
        let mut t = sealed.clone();
        let mut ct = hex::decode(&t.ciphertext).unwrap();
        ct[5] ^= 1;
        t.ciphertext = hex::encode(ct);
        assert_eq!(open(&t, b"correct horse").unwrap_err(), ShareFileError::Tampered);
        // A changed nonce.
        let mut t = sealed.clone();
        t.nonce = hex::encode([0u8; NONCE_LEN]);
        assert_eq!(open(&t, b"correct horse").unwrap_err(), ShareFileError::Tampered);
        // Changed KDF parameters give another key.
        let mut t = sealed.clone();
        t.kdf.t_cost = 2;
        assert_eq!(
            open(&t, b"correct horse").unwrap_err(),
            ShareFileError::WrongPassphrase
        );
        // Absurd parameters are refused before any work.
        let mut t = sealed.clone();
        t.kdf.m_cost_kib = u32::MAX;
        assert!(matches!(open(&t, b"correct horse"), Err(ShareFileError::Kdf(_))));
        let mut t = sealed;
        t.version = 9;
        assert_eq!(open(&t, b"x").unwrap_err(), ShareFileError::UnsupportedVersion(9));
        assert_eq!(
            seal(&f, b"", kdf, &mut rng).unwrap_err(),
            ShareFileError::EmptyPassphrase
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let f = sample(&mut rng);
        let dbg = format!("{f:?}");
        assert!(!dbg.contains(&hex::encode(f.identity.to_bytes())));
        assert!(!dbg.contains(&hex::encode(f.elections[0].transport.to_bytes())));
    }

    #[test]
    fn file_is_atomic_0600_and_never_clear() {
        use std::os::unix::fs::PermissionsExt;
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let f = sample(&mut rng);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custodian.json");
        let kdf = KdfParams::insecure_for_tests();
        create(&path, &f, b"pass", kdf, &mut rng).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&hex::encode(f.identity.to_bytes())));
        assert!(same(&read(&path, b"pass").unwrap(), &f));
        assert_eq!(read(&path, b"nope").unwrap_err(), ShareFileError::WrongPassphrase);
        assert_eq!(
            create(&path, &f, b"pass", kdf, &mut rng).unwrap_err(),
            ShareFileError::Exists(path.clone())
        );
        // Replacing keeps 0600 and leaves no temporary file behind.
        write(&path, &f, b"pass2", kdf, &mut rng).unwrap();
        assert!(same(&read(&path, b"pass2").unwrap(), &f));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A tampered file on disk.
        let mut sealed: SealedFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let last = sealed.ciphertext.pop().unwrap();
        sealed.ciphertext.push(if last == '0' { '1' } else { '0' });
        fs::write(&path, serde_json::to_vec(&sealed).unwrap()).unwrap();
        assert_eq!(read(&path, b"pass2").unwrap_err(), ShareFileError::Tampered);
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(read(&path, b"pass2"), Err(ShareFileError::Format(_))));
        assert!(matches!(
            read(&dir.path().join("missing"), b"pass2"),
            Err(ShareFileError::Io { .. })
        ));
    }
}
