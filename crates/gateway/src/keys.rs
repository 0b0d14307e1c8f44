//! API keys: each is bound to an on-chain account that pays for the jobs its requests post,
//! with an optional spending limit.
//!
//! Keys live in `keys.json` in the gateway's directory. Only the sha256 of a secret is stored;
//! the secret (`sk-plexus-` and 64 hex digits) is shown once, when the key is created. An
//! entry names the account's key file, which the gateway reads to sign the account's
//! transactions.
//!
//! Spending counts what the account pays through the key: each job's price (units times unit
//! price, known once the provider commits) plus its transaction fee. While a request is in
//! flight, the most it can cost (its escrow plus fees) is reserved against the limit, so
//! concurrent requests cannot overshoot it together. A request that fails after posting
//! counts its whole reservation as spent (the jobs may still be charged).
//!
//! The file is rewritten atomically (temporary file, rename) whenever spending changes, and
//! re-read when another process (`plexus gateway keys create`) changed it.

use crate::error::ApiError;
use plexus_types::{Address, Amount, PrivateKey, Signer as _, digest_hex, sha256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "sk-plexus-";
/// The file holding the keys, in the gateway's directory.
pub const KEYS_FILE: &str = "keys.json";

/// One API key as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    /// Public identifier (`key-` and 12 hex digits of the secret's hash).
    pub id: String,
    pub name: String,
    /// sha256 of the secret, hex.
    pub hash: String,
    /// The account that pays.
    pub account: Address,
    /// Its key file (absolute path).
    pub key_file: PathBuf,
    /// Most the key may spend in total, in base units; `None`: no limit.
    pub limit: Option<Amount>,
    pub spent: Amount,
    #[serde(default)]
    pub revoked: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KeysFile {
    pub keys: Vec<KeyEntry>,
}

/// Errors managing keys (the CLI side).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("{0}")]
    Invalid(String),
}

fn read_file(path: &Path) -> Result<KeysFile, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| KeyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
        Err(e) => Err(KeyError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn write_file(path: &Path, file: &KeysFile) -> Result<(), KeyError> {
    let write = |e: std::io::Error| KeyError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(file).expect("keys serialize");
    std::fs::write(&tmp, text).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn hash_secret(secret: &str) -> String {
    digest_hex(&sha256(&[secret.as_bytes()]))
}

/// Read an account key file (64 hex digits, as `plexus keys new` writes).
pub fn load_account_key(path: &Path) -> Result<PrivateKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| KeyError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    plexus_types::parse_private_key(text.trim()).map_err(|e| {
        KeyError::Invalid(format!(
            "{} is not an account key file: {e}",
            path.display()
        ))
    })
}

/// Create a key for the account whose key file is `key_file`; returns the entry and the
/// secret (shown only now).
pub fn create(
    dir: &Path,
    key_file: &Path,
    name: &str,
    limit: Option<Amount>,
) -> Result<(KeyEntry, String), KeyError> {
    let key_file = key_file.canonicalize().map_err(|e| KeyError::Read {
        path: key_file.to_path_buf(),
        reason: e.to_string(),
    })?;
    let account = Address::from(&load_account_key(&key_file)?.public_key());
    let secret = format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let hash = hash_secret(&secret);
    let entry = KeyEntry {
        id: format!("key-{}", &hash[..12]),
        name: name.to_string(),
        hash,
        account,
        key_file,
        limit,
        spent: Amount::ZERO,
        revoked: false,
    };
    let path = dir.join(KEYS_FILE);
    let mut file = read_file(&path)?;
    file.keys.push(entry.clone());
    write_file(&path, &file)?;
    Ok((entry, secret))
}

/// The keys in `dir`.
pub fn list(dir: &Path) -> Result<Vec<KeyEntry>, KeyError> {
    Ok(read_file(&dir.join(KEYS_FILE))?.keys)
}

/// Revoke the key with this id; requests with it get 401 from then on.
pub fn revoke(dir: &Path, id: &str) -> Result<KeyEntry, KeyError> {
    let path = dir.join(KEYS_FILE);
    let mut file = read_file(&path)?;
    let entry = file
        .keys
        .iter_mut()
        .find(|k| k.id == id)
        .ok_or_else(|| KeyError::Invalid(format!("no key {id} in {}", path.display())))?;
    entry.revoked = true;
    let entry = entry.clone();
    write_file(&path, &file)?;
    Ok(entry)
}

/// An authenticated caller.
#[derive(Clone)]
pub struct Caller {
    pub key_id: String,
    pub account: Address,
    pub signer: PrivateKey,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("key_id", &self.key_id)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

struct Inner {
    file: KeysFile,
    mtime: Option<SystemTime>,
    /// Per key id: the amount reserved by requests in flight.
    reserved: BTreeMap<String, Amount>,
    /// Account keys already read, by key file.
    signers: BTreeMap<PathBuf, PrivateKey>,
}

/// The gateway's view of `keys.json`.
#[derive(Clone)]
pub struct Keys {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("path", &self.path).finish()
    }
}

impl Keys {
    /// Open `dir/keys.json` (an absent file is no keys yet).
    pub fn open(dir: &Path) -> Result<Self, KeyError> {
        let path = dir.join(KEYS_FILE);
        let file = read_file(&path)?;
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                file,
                mtime: mtime(&path),
                reserved: BTreeMap::new(),
                signers: BTreeMap::new(),
            })),
            path,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Re-read the file if another process changed it, keeping our spending (it only grows).
    fn refresh(&self, inner: &mut Inner) {
        let now = mtime(&self.path);
        if now == inner.mtime {
            return;
        }
        match read_file(&self.path) {
            Ok(mut fresh) => {
                for entry in &mut fresh.keys {
                    if let Some(ours) = inner.file.keys.iter().find(|k| k.id == entry.id) {
                        entry.spent = entry.spent.max(ours.spent);
                    }
                }
                inner.file = fresh;
                inner.mtime = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot re-read the API keys; keeping the old ones")
            }
        }
    }

    fn persist(&self, inner: &mut Inner) {
        self.refresh(inner);
        if let Err(e) = write_file(&self.path, &inner.file) {
            tracing::error!(error = %e, "cannot save API key spending");
        }
        inner.mtime = mtime(&self.path);
    }

    /// The caller holding `secret`, or 401.
    pub fn authenticate(&self, secret: &str) -> Result<Caller, ApiError> {
        let hash = hash_secret(secret.trim());
        let mut inner = self.lock();
        self.refresh(&mut inner);
        let entry = inner
            .file
            .keys
            .iter()
            .find(|k| k.hash == hash)
            .cloned()
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "Incorrect API key provided. Create one with `plexus gateway keys create --account KEYFILE`.",
                )
            })?;
        if entry.revoked {
            return Err(ApiError::unauthorized(format!(
                "The API key {} was revoked.",
                entry.id
            )));
        }
        let signer = match inner.signers.get(&entry.key_file) {
            Some(key) => key.clone(),
            None => {
                let key = load_account_key(&entry.key_file).map_err(|e| {
                    tracing::error!(key = %entry.id, error = %e, "cannot load the account key of an API key");
                    ApiError::internal()
                })?;
                if Address::from(&key.public_key()) != entry.account {
                    tracing::error!(key = %entry.id, "the key file no longer holds the key's account");
                    return Err(ApiError::internal());
                }
                inner.signers.insert(entry.key_file.clone(), key.clone());
                key
            }
        };
        Ok(Caller {
            key_id: entry.id,
            account: entry.account,
            signer,
        })
    }

    /// Reserve `amount` against the key's limit (429 when it would pass it).
    pub fn reserve(&self, key_id: &str, amount: Amount) -> Result<Reservation, ApiError> {
        let mut inner = self.lock();
        self.refresh(&mut inner);
        let Some(entry) = inner.file.keys.iter().find(|k| k.id == key_id).cloned() else {
            return Err(ApiError::unauthorized("The API key was removed."));
        };
        let reserved = inner.reserved.get(key_id).copied().unwrap_or(Amount::ZERO);
        if let Some(limit) = entry.limit {
            let total = entry
                .spent
                .checked_add(reserved)
                .and_then(|t| t.checked_add(amount));
            if total.is_none_or(|t| t > limit) {
                return Err(ApiError::over_limit(format!(
                    "This request may cost up to {amount} and key {key_id} has spent {} (with {reserved} reserved by requests in flight) of its limit of {limit}. Raise the limit or use another key.",
                    entry.spent
                )));
            }
        }
        let reserved = reserved
            .checked_add(amount)
            .ok_or_else(|| ApiError::invalid("input", "the request's cost overflows"))?;
        inner.reserved.insert(key_id.to_string(), reserved);
        Ok(Reservation {
            keys: self.clone(),
            key_id: key_id.to_string(),
            amount,
            posted: false,
            done: false,
        })
    }

    fn release(&self, key_id: &str, reserved: Amount, spent: Amount) {
        let mut inner = self.lock();
        if let Some(r) = inner.reserved.get_mut(key_id) {
            *r = r.checked_sub(reserved).unwrap_or(Amount::ZERO);
        }
        if spent.is_zero() {
            return;
        }
        if let Some(entry) = inner.file.keys.iter_mut().find(|k| k.id == key_id) {
            entry.spent = entry.spent.checked_add(spent).unwrap_or(Amount::MAX);
        }
        self.persist(&mut inner);
    }

    /// A key's entry as it stands now (spending included).
    pub fn entry(&self, key_id: &str) -> Option<KeyEntry> {
        self.lock()
            .file
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .cloned()
    }
}

/// Money held against a key's limit while a request is in flight. Finish it with what the
/// request cost; dropped unfinished, it counts as fully spent once jobs were posted (they
/// may still be charged), and as nothing before.
#[derive(Debug)]
pub struct Reservation {
    keys: Keys,
    key_id: String,
    amount: Amount,
    posted: bool,
    done: bool,
}

impl Reservation {
    /// Jobs were posted: from now on an unfinished reservation counts as spent.
    pub fn posted(&mut self) {
        self.posted = true;
    }

    /// The request cost `spent` (at most the reservation).
    pub fn finish(mut self, spent: Amount) {
        self.done = true;
        self.keys
            .release(&self.key_id, self.amount, spent.min(self.amount));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let spent = if self.posted {
                self.amount
            } else {
                Amount::ZERO
            };
            self.keys.release(&self.key_id, self.amount, spent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "plexus-gateway-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn account_file(dir: &Path) -> PathBuf {
        let key = plexus_types::key_from_seed(7);
        let path = dir.join("alice.key");
        std::fs::write(&path, plexus_types::private_key_hex(&key)).unwrap();
        path
    }

    #[test]
    fn create_authenticate_limit_and_revoke() {
        let dir = temp_dir("keys");
        let key_file = account_file(&dir);
        let (entry, secret) = create(&dir, &key_file, "test", Some(Amount::new(1000))).unwrap();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_eq!(secret.len(), SECRET_PREFIX.len() + 64);
        let text = std::fs::read_to_string(dir.join(KEYS_FILE)).unwrap();
        assert!(!text.contains(&secret), "the secret is never stored");

        let keys = Keys::open(&dir).unwrap();
        let caller = keys.authenticate(&secret).unwrap();
        assert_eq!(caller.account, entry.account);
        assert_eq!(caller.key_id, entry.id);
        let e = keys.authenticate("sk-plexus-wrong").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::UNAUTHORIZED);

        // Reservations count against the limit together.
        let mut a = keys.reserve(&entry.id, Amount::new(600)).unwrap();
        let e = keys.reserve(&entry.id, Amount::new(500)).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        a.posted();
        a.finish(Amount::new(300));
        assert_eq!(keys.entry(&entry.id).unwrap().spent, Amount::new(300));
        // Dropped before posting: nothing spent; after posting: all of it.
        drop(keys.reserve(&entry.id, Amount::new(700)).unwrap());
        assert_eq!(keys.entry(&entry.id).unwrap().spent, Amount::new(300));
        let mut b = keys.reserve(&entry.id, Amount::new(200)).unwrap();
        b.posted();
        drop(b);
        assert_eq!(keys.entry(&entry.id).unwrap().spent, Amount::new(500));
        // Spending survives a restart.
        let reopened = Keys::open(&dir).unwrap();
        assert_eq!(reopened.entry(&entry.id).unwrap().spent, Amount::new(500));

        // A key created by another process is seen without a restart; revoking works too.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (other, other_secret) = create(&dir, &key_file, "other", None).unwrap();
        assert_eq!(keys.authenticate(&other_secret).unwrap().key_id, other.id);
        revoke(&dir, &other.id).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let e = keys.authenticate(&other_secret).unwrap_err();
        assert!(e.message.contains("revoked"), "{e}");
        // The first key's spending was kept through the re-reads.
        assert_eq!(keys.entry(&entry.id).unwrap().spent, Amount::new(500));
        std::fs::remove_dir_all(&dir).ok();
    }
}
