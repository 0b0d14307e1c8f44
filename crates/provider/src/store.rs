//! The restart-safe record of what this provider computed and committed.
//!
//! # Layout
//!
//! ```text
//! <data dir>/jobs/<job id hex>.json       one Record per job
//! <data dir>/checks/<job id hex>.json     one CheckRecord per job this provider verifies
//! <data dir>/outputs/<output hash hex>    the output bytes, content-addressed
//! ```
//!
//! Every file is written to `<name>.tmp`, synced, renamed into place, and then its directory
//! is synced, so after a crash a file is either absent or complete. Leftover `.tmp` files are
//! deleted on [`Store::open`].
//!
//! # Invariant
//!
//! [`Store::insert`] returns only once the outputs and records are durable, and the agent
//! submits a job's commit only after that. A record is never replaced. So after `kill -9`
//! the provider finds, for every job it may have committed, the salt and output hash it
//! committed to: it never commits a different result for the same job and can always
//! reveal what it committed. The same holds for the results it computes as a verifier
//! ([`Store::insert_checks`], before its `CommitCheck`), kept apart from its own jobs' records
//! because a job it once held may later be given to it to verify.
//!
//! Removal ([`Store::remove`], [`Store::remove_check`], once a job has left the chain state)
//! is not synced: a removal undone by a crash leaves a record of a finished job, which is
//! removed again.

use crate::error::{Error, Result};
use plexus_types::{Address, Digest, JobId, check_commitment, commitment, digest_hex, sha256};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// What the provider computed for one job: enough to commit and to reveal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub job: JobId,
    #[serde(with = "plexus_types::hex_digest")]
    pub output_hash: Digest,
    #[serde(with = "plexus_types::hex_digest")]
    pub salt: Digest,
    pub output_size: u32,
    pub units: u32,
    /// On-chain hash of the model that ran the job.
    #[serde(with = "plexus_types::hex_digest")]
    pub model: Digest,
}

impl Record {
    /// The commitment this record commits to.
    pub fn commitment(&self) -> Digest {
        commitment(&self.job, &self.output_hash, &self.salt)
    }
}

/// What this provider computed as a verifier of another provider's job: enough to commit its
/// check and to reveal it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub job: JobId,
    #[serde(with = "plexus_types::hex_digest")]
    pub output_hash: Digest,
    #[serde(with = "plexus_types::hex_digest")]
    pub salt: Digest,
    pub output_size: u32,
    /// On-chain hash of the model that re-ran the job.
    #[serde(with = "plexus_types::hex_digest")]
    pub model: Digest,
}

impl CheckRecord {
    /// The check commitment of `verifier` (this provider) to this record.
    pub fn commitment(&self, verifier: &Address) -> Digest {
        check_commitment(&self.job, verifier, &self.output_hash, &self.salt)
    }
}

/// What the store needs of a record kept in a file per job.
trait Entry: Clone + Serialize + DeserializeOwned {
    fn job(&self) -> JobId;
    fn output_hash(&self) -> Digest;
    fn output_size(&self) -> u32;
}

impl Entry for Record {
    fn job(&self) -> JobId {
        self.job
    }
    fn output_hash(&self) -> Digest {
        self.output_hash
    }
    fn output_size(&self) -> u32 {
        self.output_size
    }
}

impl Entry for CheckRecord {
    fn job(&self) -> JobId {
        self.job
    }
    fn output_hash(&self) -> Digest {
        self.output_hash
    }
    fn output_size(&self) -> u32 {
        self.output_size
    }
}

/// Read access to the stored outputs, by hash. Cheap to clone; needs no lock, because an
/// output file never changes once it is in place.
#[derive(Clone, Debug)]
pub struct Outputs {
    dir: PathBuf,
}

impl Outputs {
    fn path(&self, hash: &Digest) -> PathBuf {
        self.dir.join(digest_hex(hash))
    }

    /// The output with this hash, if stored.
    pub fn get(&self, hash: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(hash);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

/// The records, loaded in memory, and their files.
#[derive(Debug)]
pub struct Store {
    jobs_dir: PathBuf,
    checks_dir: PathBuf,
    outputs: Outputs,
    records: BTreeMap<JobId, Record>,
    checks: BTreeMap<JobId, CheckRecord>,
}

impl Store {
    /// Open (creating if needed) the store under `data_dir` and load every record.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let jobs_dir = data_dir.join("jobs");
        let checks_dir = data_dir.join("checks");
        let outputs_dir = data_dir.join("outputs");
        for dir in [&jobs_dir, &checks_dir, &outputs_dir] {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            remove_temp_files(dir)?;
        }
        let store = Self {
            records: read_records(&jobs_dir)?,
            checks: read_records(&checks_dir)?,
            jobs_dir,
            checks_dir,
            outputs: Outputs { dir: outputs_dir },
        };
        let hashes = store.records.values().map(|r| (r.job, r.output_hash));
        for (job, hash) in hashes.chain(store.checks.values().map(|r| (r.job, r.output_hash))) {
            if !store.outputs.path(&hash).is_file() {
                tracing::warn!(
                    job = %job,
                    output = %digest_hex(&hash),
                    "the output of a recorded job is missing; it can still be revealed but not served"
                );
            }
        }
        Ok(store)
    }

    pub fn get(&self, job: &JobId) -> Option<&Record> {
        self.records.get(job)
    }

    /// Every record, in job id order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A handle to read outputs without this store.
    pub fn outputs(&self) -> Outputs {
        self.outputs.clone()
    }

    /// Store outputs and their records durably; returns once all of them are on disk.
    ///
    /// Refuses (writing nothing) if a job already has a record, if a job appears twice, or
    /// if an output does not match its record's hash and size.
    pub fn insert(&mut self, items: &[(Record, Vec<u8>)]) -> Result<()> {
        insert_durably(&self.outputs, &self.jobs_dir, &mut self.records, items)
    }

    /// This provider's result as a verifier of `job`, if recorded.
    pub fn get_check(&self, job: &JobId) -> Option<&CheckRecord> {
        self.checks.get(job)
    }

    /// Every check record, in job id order.
    pub fn check_records(&self) -> impl Iterator<Item = &CheckRecord> {
        self.checks.values()
    }

    /// [`Store::insert`] for the results of checks: durable before the `CommitCheck` is sent,
    /// never replaced, refused as a whole on a duplicate or an output that does not match.
    pub fn insert_checks(&mut self, items: &[(CheckRecord, Vec<u8>)]) -> Result<()> {
        insert_durably(&self.outputs, &self.checks_dir, &mut self.checks, items)
    }

    /// Forget a job: delete its record, and its output unless another record shares it.
    /// Returns whether there was a record.
    pub fn remove(&mut self, job: &JobId) -> Result<bool> {
        let Some(record) = self.records.remove(job) else {
            return Ok(false);
        };
        remove_file(&self.jobs_dir.join(format!("{job}.json")))?;
        self.remove_output_unless_shared(&record.output_hash)?;
        Ok(true)
    }

    /// [`Store::remove`] for a check record.
    pub fn remove_check(&mut self, job: &JobId) -> Result<bool> {
        let Some(record) = self.checks.remove(job) else {
            return Ok(false);
        };
        remove_file(&self.checks_dir.join(format!("{job}.json")))?;
        self.remove_output_unless_shared(&record.output_hash)?;
        Ok(true)
    }

    fn remove_output_unless_shared(&self, hash: &Digest) -> Result<()> {
        let shared = self.records.values().any(|r| r.output_hash == *hash)
            || self.checks.values().any(|r| r.output_hash == *hash);
        if !shared {
            remove_file(&self.outputs.path(hash))?;
        }
        Ok(())
    }
}

/// Write `items`' outputs, then their records (one file per job under `dir`), all synced,
/// then add the records to `map`. Writes nothing if a job is in `map` already or twice in
/// `items`, or if an output does not match its record's hash and size.
fn insert_durably<R: Entry>(
    outputs: &Outputs,
    dir: &Path,
    map: &mut BTreeMap<JobId, R>,
    items: &[(R, Vec<u8>)],
) -> Result<()> {
    let mut jobs = BTreeSet::new();
    for (record, output) in items {
        if map.contains_key(&record.job()) || !jobs.insert(record.job()) {
            return Err(Error::RecordExists(record.job()));
        }
        if sha256(&[output]) != record.output_hash()
            || u32::try_from(output.len()).ok() != Some(record.output_size())
        {
            return Err(Error::OutputMismatch(record.job()));
        }
    }
    if items.is_empty() {
        return Ok(());
    }
    for (record, output) in items {
        let path = outputs.path(&record.output_hash());
        // Content-addressed: a file already in place holds exactly these bytes.
        if !path.is_file() {
            write_synced(&path, output)?;
        }
    }
    sync_dir(&outputs.dir)?;
    for (record, _) in items {
        let bytes = serde_json::to_vec_pretty(record).expect("records serialize");
        write_synced(&dir.join(format!("{}.json", record.job())), &bytes)?;
    }
    sync_dir(dir)?;
    for (record, _) in items {
        map.insert(record.job(), record.clone());
    }
    Ok(())
}

/// Every record file (`*.json`) under `dir`.
fn read_records<R: Entry>(dir: &Path) -> Result<BTreeMap<JobId, R>> {
    let mut records = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let record: R = read_record(&path)?;
        records.insert(record.job(), record);
    }
    Ok(records)
}

fn read_record<R: Entry>(path: &Path) -> Result<R> {
    let corrupt = |reason: String| Error::CorruptRecord {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let record: R = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let expected = format!("{}.json", record.job());
    if path.file_name().and_then(|n| n.to_str()) != Some(expected.as_str()) {
        return Err(corrupt(format!(
            "it holds job {}, so it should be named {expected}",
            record.job()
        )));
    }
    Ok(record)
}

/// Write `bytes` to `path` atomically: temp file, fsync, rename. The caller syncs the
/// directory.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn remove_temp_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "tmp") {
            remove_file(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let dir = std::env::temp_dir().join(format!(
                "plexus-provider-{name}-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn item(job: u8, output: &[u8]) -> (Record, Vec<u8>) {
        let record = Record {
            job: JobId::from_bytes([job; 32]),
            output_hash: sha256(&[output]),
            salt: sha256(&[&[job]]),
            output_size: output.len() as u32,
            units: 7,
            model: sha256(&[b"model"]),
        };
        (record, output.to_vec())
    }

    #[test]
    fn records_survive_reopen() {
        let dir = TempDir::new("reopen");
        let (a, b) = (item(1, b"first"), item(2, b"second"));
        {
            let mut store = Store::open(&dir.0).unwrap();
            assert!(store.is_empty());
            store.insert(&[a.clone(), b.clone()]).unwrap();
            assert_eq!(store.len(), 2);
        }
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.get(&a.0.job), Some(&a.0));
        assert_eq!(store.get(&b.0.job), Some(&b.0));
        assert_eq!(
            store.records().map(|r| r.job).collect::<Vec<_>>(),
            vec![a.0.job, b.0.job]
        );
        let outputs = store.outputs();
        assert_eq!(outputs.get(&a.0.output_hash).unwrap().unwrap(), b"first");
        assert_eq!(outputs.get(&sha256(&[b"nothing"])).unwrap(), None);
        // The record commits to what it says.
        assert_eq!(
            a.0.commitment(),
            commitment(&a.0.job, &a.0.output_hash, &a.0.salt)
        );
    }

    #[test]
    fn a_record_is_never_replaced() {
        let dir = TempDir::new("replace");
        let mut store = Store::open(&dir.0).unwrap();
        let original = item(1, b"first");
        store.insert(std::slice::from_ref(&original)).unwrap();
        let mut other = item(1, b"different");
        other.0.salt = sha256(&[b"other salt"]);
        assert!(matches!(
            store.insert(&[item(3, b"x"), other]),
            Err(Error::RecordExists(_))
        ));
        // Nothing of the refused batch was written.
        assert!(store.get(&JobId::from_bytes([3; 32])).is_none());
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.get(&original.0.job), Some(&original.0));
        assert!(store.get(&JobId::from_bytes([3; 32])).is_none());
        // Twice in one batch is refused too.
        let mut store = store;
        assert!(matches!(
            store.insert(&[item(4, b"x"), item(4, b"x")]),
            Err(Error::RecordExists(_))
        ));
    }

    #[test]
    fn outputs_must_match_records() {
        let dir = TempDir::new("mismatch");
        let mut store = Store::open(&dir.0).unwrap();
        let (record, _) = item(1, b"first");
        assert!(matches!(
            store.insert(&[(record.clone(), b"tampered".to_vec())]),
            Err(Error::OutputMismatch(_))
        ));
        let mut wrong_size = item(2, b"abc");
        wrong_size.0.output_size = 4;
        assert!(matches!(
            store.insert(&[wrong_size]),
            Err(Error::OutputMismatch(_))
        ));
        assert!(store.is_empty());
    }

    #[test]
    fn remove_keeps_shared_outputs() {
        let dir = TempDir::new("remove");
        let mut store = Store::open(&dir.0).unwrap();
        // Two jobs with the same output (same input, same model).
        let (a, b, c) = (item(1, b"same"), item(2, b"same"), item(3, b"own"));
        store.insert(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let outputs = store.outputs();
        assert!(store.remove(&a.0.job).unwrap());
        assert!(!store.remove(&a.0.job).unwrap());
        assert!(outputs.get(&b.0.output_hash).unwrap().is_some());
        assert!(store.remove(&b.0.job).unwrap());
        assert!(outputs.get(&b.0.output_hash).unwrap().is_none());
        assert!(store.remove(&c.0.job).unwrap());
        assert!(outputs.get(&c.0.output_hash).unwrap().is_none());
        let store = Store::open(&dir.0).unwrap();
        assert!(store.is_empty());
    }

    #[test]
    fn check_records_are_kept_apart_from_job_records_and_survive_reopen() {
        let dir = TempDir::new("checks");
        let verifier = Address::from_bytes([7; 32]);
        // The same job as an own job (an earlier attempt) and as a check, same output.
        let (own, output) = item(1, b"same");
        let check = CheckRecord {
            job: own.job,
            output_hash: own.output_hash,
            salt: sha256(&[b"check salt"]),
            output_size: own.output_size,
            model: own.model,
        };
        {
            let mut store = Store::open(&dir.0).unwrap();
            store.insert(&[(own.clone(), output.clone())]).unwrap();
            store
                .insert_checks(&[(check.clone(), output.clone())])
                .unwrap();
            // Never replaced, and outputs must match.
            let mut other = check.clone();
            other.salt = sha256(&[b"other"]);
            assert!(matches!(
                store.insert_checks(&[(other, output.clone())]),
                Err(Error::RecordExists(_))
            ));
            let (tampered, _) = item(2, b"x");
            let tampered = CheckRecord {
                job: tampered.job,
                output_hash: tampered.output_hash,
                salt: tampered.salt,
                output_size: tampered.output_size,
                model: tampered.model,
            };
            assert!(matches!(
                store.insert_checks(&[(tampered, b"y".to_vec())]),
                Err(Error::OutputMismatch(_))
            ));
        }
        let mut store = Store::open(&dir.0).unwrap();
        assert_eq!(store.get(&own.job), Some(&own));
        assert_eq!(store.get_check(&own.job), Some(&check));
        assert_eq!(store.check_records().count(), 1);
        assert_eq!(
            check.commitment(&verifier),
            check_commitment(&check.job, &verifier, &check.output_hash, &check.salt)
        );
        // The shared output stays until neither record needs it.
        let outputs = store.outputs();
        assert!(store.remove(&own.job).unwrap());
        assert!(outputs.get(&check.output_hash).unwrap().is_some());
        assert!(store.remove_check(&own.job).unwrap());
        assert!(!store.remove_check(&own.job).unwrap());
        assert!(outputs.get(&check.output_hash).unwrap().is_none());
        assert_eq!(Store::open(&dir.0).unwrap().check_records().count(), 0);
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned_and_corruption_is_reported() {
        let dir = TempDir::new("crash");
        let a = item(1, b"first");
        Store::open(&dir.0)
            .unwrap()
            .insert(std::slice::from_ref(&a))
            .unwrap();
        // A crash between writing a temp file and renaming it leaves only the temp file.
        let half = dir
            .0
            .join("jobs")
            .join(format!("{}.json.tmp", JobId::from_bytes([2; 32])));
        fs::write(&half, b"{\"job\":").unwrap();
        let out_tmp = dir.0.join("outputs").join("abc.tmp");
        fs::write(&out_tmp, b"partial").unwrap();
        let store = Store::open(&dir.0).unwrap();
        assert_eq!(store.len(), 1);
        assert!(!half.exists() && !out_tmp.exists());
        drop(store);

        // A record file that does not parse stops the provider rather than being ignored.
        let bad = dir
            .0
            .join("jobs")
            .join(format!("{}.json", JobId::from_bytes([5; 32])));
        fs::write(&bad, b"not json").unwrap();
        assert!(matches!(
            Store::open(&dir.0),
            Err(Error::CorruptRecord { .. })
        ));
        // So does one under another job's name.
        let bytes = serde_json::to_vec(&a.0).unwrap();
        fs::write(&bad, bytes).unwrap();
        assert!(matches!(
            Store::open(&dir.0),
            Err(Error::CorruptRecord { .. })
        ));
    }
}
