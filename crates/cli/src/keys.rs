//! Key files: one ed25519 private key per file, 64 hex characters, mode 0600.

use anyhow::{Context, Result, bail};
use plexus_types::{Address, PrivateKey, Signer, generate_key, parse_private_key, private_key_hex};
use std::path::{Path, PathBuf};

/// Where named keys live: `$PLEXUS_HOME/keys` or `~/.plexus/keys`.
pub fn keys_dir() -> PathBuf {
    if let Ok(home) = std::env::var("PLEXUS_HOME") {
        return PathBuf::from(home).join("keys");
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| ".".into());
    PathBuf::from(home).join(".plexus").join("keys")
}

pub fn address_of(key: &PrivateKey) -> Address {
    Address::from(&key.public_key())
}

/// Write a new key file; refuses to overwrite.
pub fn write_key(path: &Path, key: &PrivateKey) -> Result<()> {
    if path.exists() {
        bail!(
            "{} already exists; refusing to overwrite a key",
            path.display()
        );
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, format!("{}\n", private_key_hex(key)))
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Load a key from a file path, or by name from the keys directory.
pub fn load_key(name_or_path: &str) -> Result<PrivateKey> {
    let path = resolve(name_or_path);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read key {} (give a key file path, or a name created with `plexus keys new NAME`)",
            path.display()
        )
    })?;
    parse_private_key(&text).with_context(|| format!("{} is not a key file", path.display()))
}

fn resolve(name_or_path: &str) -> PathBuf {
    let path = PathBuf::from(name_or_path);
    if path.exists() || name_or_path.contains('/') || name_or_path.ends_with(".key") {
        return path;
    }
    keys_dir().join(format!("{name_or_path}.key"))
}

/// A new random key.
pub fn new_key() -> PrivateKey {
    generate_key()
}

/// Parse an address, or read one from a key file or key name.
pub fn parse_address_or_key(s: &str) -> Result<Address> {
    if let Ok(address) = s.parse::<Address>() {
        return Ok(address);
    }
    match load_key(s) {
        Ok(key) => Ok(address_of(&key)),
        Err(_) => {
            bail!("{s:?} is neither an address (64 hex characters) nor a key file or key name")
        }
    }
}

/// Every key in the keys directory: (name, address, path).
pub fn list_keys(dir: &Path) -> Result<Vec<(String, Address, PathBuf)>> {
    let mut keys = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(keys);
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("key") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if let Ok(key) = load_key(&path.display().to_string()) {
            keys.push((name, address_of(&key), path));
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}
