use super::{
    Config, MAX_CLOCK_SKEW_MS, RETRY,
    ingress::{ConsensusContext, Mailbox, Message},
};
use crate::shared::Shared;
use commonware_codec::Encode;
use commonware_consensus::simplex::Plan;
use commonware_p2p::{Receiver, Recipients, Sender};
use commonware_runtime::{Clock, Metrics, Spawner, Storage, buffer::paged::CacheRef};
use commonware_storage::journal::contiguous::{
    Contiguous as _,
    variable::{Config as JournalConfig, Journal},
};
use commonware_utils::{NZU16, NZU64, NZUsize, channel::mpsc, channel::oneshot};
use plexus_types::{Block, BlockHeader, Digest, Height, PublicKey, TxHash, digest_hex, limits};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// How many executed blocks stay in memory (parents of new proposals, answers to peers).
const RECENT_BLOCKS: u64 = 256;

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn journal_config(partition: String) -> JournalConfig<()> {
    JournalConfig {
        partition,
        items_per_section: NZU64!(4096),
        compression: None,
        codec_config: (),
        page_cache: CacheRef::new(NZU16!(4096), NZUsize!(64)),
        write_buffer: NZUsize!(1 << 20),
        replay_buffer: NZUsize!(1 << 20),
    }
}

struct PendingProposal {
    context: ConsensusContext,
    reply: oneshot::Sender<Digest>,
}

struct PendingVerify {
    context: ConsensusContext,
    digest: Digest,
    reply: oneshot::Sender<bool>,
}

/// Summary of a block we know: enough to build on it or check a child.
#[derive(Clone, Copy)]
struct Known {
    height: Height,
    timestamp_ms: u64,
}

pub struct Actor<E: Clock + Spawner + Storage + Metrics> {
    context: E,
    config: Config,
    shared: Shared,
    mailbox: mpsc::UnboundedReceiver<Message>,

    /// Bodies of blocks not yet executed (proposed, received or requested), by digest.
    blocks: HashMap<Digest, Block>,
    /// Recently executed blocks (oldest first), for parents and peer requests.
    recent: VecDeque<(Digest, Block)>,
    /// Every executed block: digest -> height.
    executed: HashMap<Digest, Height>,
    genesis: Digest,
    head: (Digest, Known),
    /// Highest finalized digest not yet executed (bodies missing).
    finalize_target: Option<Digest>,
    missing: BTreeSet<Digest>,
    /// Missing digests already requested at least once (new ones are requested at once).
    requested: BTreeSet<Digest>,
    proposals: Vec<PendingProposal>,
    verifies: Vec<PendingVerify>,
    /// When this node proposed each pending block (for finality latency).
    proposed_at: HashMap<Digest, SystemTime>,

    finalized: Option<Journal<E, Block>>,
    seen: Option<Journal<E, Block>>,
    /// (position in `seen`, height) of each persisted pending body.
    seen_index: VecDeque<(u64, Height)>,
}

impl<E> Actor<E>
where
    E: Clock + Spawner + Storage + Metrics + commonware_storage::Context,
{
    /// Open storage and replay the finalized journal into the ledger in `shared`.
    pub async fn init(context: E, config: Config, shared: Shared) -> (Self, Mailbox) {
        let (sender, mailbox) = mpsc::unbounded_channel();
        let finalized = Journal::<E, Block>::init(
            context.child("finalized"),
            journal_config(format!("{}-finalized", config.partition_prefix)),
        )
        .await
        .expect("open finalized block journal");
        let seen = Journal::<E, Block>::init(
            context.child("seen"),
            journal_config(format!("{}-seen", config.partition_prefix)),
        )
        .await
        .expect("open pending block journal");

        let genesis = shared.lock().genesis_digest;
        let mut actor = Self {
            context,
            config,
            shared,
            mailbox,
            blocks: HashMap::new(),
            recent: VecDeque::new(),
            executed: HashMap::new(),
            genesis,
            head: (
                genesis,
                Known {
                    height: Height::new(0),
                    timestamp_ms: 0,
                },
            ),
            finalize_target: None,
            missing: BTreeSet::new(),
            requested: BTreeSet::new(),
            proposals: Vec::new(),
            verifies: Vec::new(),
            proposed_at: HashMap::new(),
            finalized: None,
            seen: None,
            seen_index: VecDeque::new(),
        };
        actor.executed.insert(genesis, Height::new(0));

        // Replay finalized blocks: the journal is the source of truth for the ledger.
        let bounds = finalized.bounds();
        for position in bounds.clone() {
            let block = finalized
                .read(position)
                .await
                .expect("read finalized block");
            actor.apply_executed(block);
        }
        if !bounds.is_empty() {
            info!(
                height = actor.head.1.height.get(),
                "replayed finalized blocks"
            );
        }
        // Reload bodies we voted for but had not executed.
        for position in seen.bounds() {
            let block = seen.read(position).await.expect("read pending block");
            if block.height() > actor.head.1.height {
                actor.seen_index.push_back((position, block.height()));
                actor.blocks.insert(block.digest(), block);
            }
        }
        actor.finalized = Some(finalized);
        actor.seen = Some(seen);
        (actor, Mailbox::new(sender))
    }

    /// Run until the node stops.
    pub fn start<BS, BR, RS, RR>(
        self,
        blocks: (BS, BR),
        requests: (RS, RR),
    ) -> commonware_runtime::Handle<()>
    where
        BS: Sender<PublicKey = PublicKey>,
        BR: Receiver<PublicKey = PublicKey>,
        RS: Sender<PublicKey = PublicKey>,
        RR: Receiver<PublicKey = PublicKey>,
    {
        let context = self.context.child("run");
        context.spawn(move |_| self.run(blocks, requests))
    }

    async fn run<BS, BR, RS, RR>(
        mut self,
        (mut block_tx, mut block_rx): (BS, BR),
        (mut req_tx, mut req_rx): (RS, RR),
    ) where
        BS: Sender<PublicKey = PublicKey>,
        BR: Receiver<PublicKey = PublicKey>,
        RS: Sender<PublicKey = PublicKey>,
        RR: Receiver<PublicKey = PublicKey>,
    {
        let mut next_retry = self.context.current() + RETRY;
        loop {
            let wake = self.next_wake().map_or(next_retry, |w| w.min(next_retry));
            let sleep = self.context.sleep_until(wake);
            commonware_macros::select! {
                message = self.mailbox.recv() => {
                    let Some(message) = message else { break };
                    self.handle(message, &mut block_tx).await;
                },
                received = block_rx.recv() => {
                    let Ok((from, bytes)) = received else { break };
                    self.on_block(from, bytes.as_ref()).await;
                },
                received = req_rx.recv() => {
                    let Ok((from, bytes)) = received else { break };
                    self.on_request(from, bytes.as_ref(), &mut block_tx).await;
                },
                _ = sleep => {},
            }
            self.build_due_proposals().await;
            let now = self.context.current();
            let fresh = self.missing.difference(&self.requested).next().is_some();
            if now >= next_retry || fresh {
                next_retry = now + RETRY;
                self.request_missing(&mut req_tx);
                self.verifies.retain(|v| !v.reply.is_closed());
            }
        }
        debug!("application stopped");
    }

    async fn handle(
        &mut self,
        message: Message,
        block_tx: &mut impl Sender<PublicKey = PublicKey>,
    ) {
        match message {
            Message::Propose { context, reply } => {
                self.proposals.push(PendingProposal { context, reply });
            }
            Message::Verify {
                context,
                digest,
                reply,
            } => {
                self.verifies.push(PendingVerify {
                    context,
                    digest,
                    reply,
                });
                self.process_verifies().await;
            }
            Message::Broadcast { digest, plan } => {
                let recipients = match plan {
                    Plan::Propose { .. } => Recipients::All,
                    Plan::Forward { recipients, .. } => recipients,
                    Plan::Prepare { .. } => return,
                };
                if let Some(block) = self.body(&digest) {
                    block_tx.send(recipients, block.encode(), true);
                }
            }
            Message::Finalized { digest } => {
                if !self.executed.contains_key(&digest) {
                    self.finalize_target = Some(digest);
                    self.execute_finalized().await;
                }
            }
            Message::GetBlock { height, reply } => {
                let block = self.read_finalized(height).await;
                let _ = reply.send(block);
            }
        }
    }

    fn body(&self, digest: &Digest) -> Option<&Block> {
        self.blocks.get(digest).or_else(|| {
            self.recent
                .iter()
                .find(|(d, _)| d == digest)
                .map(|(_, b)| b)
        })
    }

    fn known(&self, digest: &Digest) -> Option<Known> {
        if *digest == self.genesis {
            return Some(Known {
                height: Height::new(0),
                timestamp_ms: 0,
            });
        }
        if *digest == self.head.0 {
            return Some(self.head.1);
        }
        self.body(digest).map(|b| Known {
            height: b.height(),
            timestamp_ms: b.header.timestamp_ms,
        })
    }

    async fn read_finalized(&self, height: Height) -> Option<Block> {
        let position = height.get().checked_sub(1)?;
        let journal = self.finalized.as_ref()?;
        if !journal.bounds().contains(&position) {
            return None;
        }
        journal.read(position).await.ok()
    }

    fn next_wake(&self) -> Option<SystemTime> {
        self.proposals
            .iter()
            .filter_map(|p| self.known(&p.context.parent.1))
            .map(|k| UNIX_EPOCH + Duration::from_millis(k.timestamp_ms) + self.config.block_time)
            .min()
    }

    /// Build every proposal whose parent is known and whose pacing deadline has passed.
    async fn build_due_proposals(&mut self) {
        self.proposals.retain(|p| !p.reply.is_closed());
        let now = self.context.current();
        let mut index = 0;
        while index < self.proposals.len() {
            let parent_digest = self.proposals[index].context.parent.1;
            let Some(parent) = self.known(&parent_digest) else {
                self.missing.insert(parent_digest);
                index += 1;
                continue;
            };
            let due =
                UNIX_EPOCH + Duration::from_millis(parent.timestamp_ms) + self.config.block_time;
            if now < due {
                index += 1;
                continue;
            }
            let proposal = self.proposals.swap_remove(index);
            let exclude = self.pending_ancestor_txs(parent_digest);
            let txs = self.shared.lock().mempool.select(
                self.config.max_block_txs.min(limits::MAX_BLOCK_TXS),
                &exclude,
            );
            let block = Block {
                header: BlockHeader {
                    parent: parent_digest,
                    height: Height::new(parent.height.get() + 1),
                    timestamp_ms: millis(now).max(parent.timestamp_ms + 1),
                },
                txs,
            };
            let digest = block.digest();
            self.persist_seen(&block).await;
            self.blocks.insert(digest, block);
            self.proposed_at.insert(digest, now);
            let _ = proposal.reply.send(digest);
        }
    }

    /// Hashes of transactions in blocks between `tip` and the last executed block.
    fn pending_ancestor_txs(&self, mut tip: Digest) -> HashSet<TxHash> {
        let mut hashes = HashSet::new();
        while let Some(block) = self.blocks.get(&tip) {
            hashes.extend(block.txs.iter().map(|t| t.hash()));
            tip = block.header.parent;
        }
        hashes
    }

    async fn persist_seen(&mut self, block: &Block) {
        let journal = self.seen.take().expect("pending journal present");
        let (journal, position) = journal.append(block).await.expect("append pending block");
        let journal = journal.sync().await.expect("sync pending block");
        self.seen = Some(journal);
        self.seen_index.push_back((position, block.height()));
    }

    async fn process_verifies(&mut self) {
        let mut index = 0;
        while index < self.verifies.len() {
            match self.check(&self.verifies[index].context, &self.verifies[index].digest) {
                None => index += 1,
                Some(valid) => {
                    let pending = self.verifies.swap_remove(index);
                    if valid {
                        if let Some(block) = self.blocks.get(&pending.digest).cloned() {
                            self.persist_seen(&block).await;
                        }
                    } else {
                        warn!(digest = %digest_hex(&pending.digest), "rejected invalid block");
                    }
                    let _ = pending.reply.send(valid);
                }
            }
        }
    }

    /// `None` while the body or its parent is missing; otherwise the verdict.
    fn check(&self, context: &ConsensusContext, digest: &Digest) -> Option<bool> {
        let block = self.body(digest)?;
        if block.header.parent != context.parent.1 {
            return Some(false);
        }
        let parent = self.known(&block.header.parent)?;
        if block.height().get() != parent.height.get() + 1 {
            return Some(false);
        }
        if block.header.timestamp_ms <= parent.timestamp_ms {
            return Some(false);
        }
        if block.header.timestamp_ms > millis(self.context.current()) + MAX_CLOCK_SKEW_MS {
            return None; // from the future: wait rather than reject a node with a fast clock
        }
        if block.txs.len() > self.config.max_block_txs {
            return Some(false);
        }
        // Signatures this node verified before (at admission, or in another proposal) are not
        // checked again; the rest are, outside the lock, and remembered.
        let mut hashes = HashSet::with_capacity(block.txs.len());
        let mut unchecked = Vec::new();
        {
            let state = self.shared.lock();
            let chain_id = state.ledger.chain_id();
            for tx in &block.txs {
                let hash = tx.hash();
                if tx.tx.chain_id != chain_id || !hashes.insert(hash) {
                    return Some(false);
                }
                if !state.verified.contains(&hash) {
                    unchecked.push((hash, tx));
                }
            }
        }
        if !unchecked.iter().all(|(_, tx)| tx.verify_signature()) {
            return Some(false);
        }
        let mut state = self.shared.lock();
        for (hash, _) in unchecked {
            state.verified.insert(hash);
        }
        Some(true)
    }

    async fn on_block(&mut self, from: PublicKey, bytes: &[u8]) {
        let block = match Block::decode_bounded(bytes) {
            Ok(block) => block,
            Err(e) => {
                warn!(peer = %from, error = %e, "undecodable block");
                return;
            }
        };
        let digest = block.digest();
        if self.executed.contains_key(&digest) || block.height() <= self.head.1.height {
            return;
        }
        self.missing.remove(&digest);
        if !self.executed.contains_key(&block.header.parent)
            && self.known(&block.header.parent).is_none()
        {
            self.missing.insert(block.header.parent);
        }
        self.blocks.insert(digest, block);
        self.process_verifies().await;
        if self.finalize_target.is_some() {
            self.execute_finalized().await;
        }
    }

    async fn on_request(
        &mut self,
        from: PublicKey,
        bytes: &[u8],
        block_tx: &mut impl Sender<PublicKey = PublicKey>,
    ) {
        let Ok(digest) = <[u8; 32]>::try_from(bytes) else {
            return;
        };
        let digest = Digest(digest);
        let block = match self.body(&digest) {
            Some(block) => Some(block.clone()),
            None => match self.executed.get(&digest) {
                Some(height) => self.read_finalized(*height).await,
                None => None,
            },
        };
        if let Some(block) = block {
            block_tx.send(Recipients::One(from), block.encode(), false);
        }
    }

    fn request_missing(&mut self, req_tx: &mut impl Sender<PublicKey = PublicKey>) {
        self.missing
            .retain(|d| !self.executed.contains_key(d) && !self.blocks.contains_key(d));
        self.requested.retain(|d| self.missing.contains(d));
        for digest in self.missing.iter().take(64) {
            req_tx.send(Recipients::All, digest.as_ref().to_vec(), false);
            self.requested.insert(*digest);
        }
    }

    /// Execute the finalized chain up to `finalize_target`, as far as bodies allow.
    async fn execute_finalized(&mut self) {
        let Some(target) = self.finalize_target else {
            return;
        };
        let mut chain = Vec::new();
        let mut cursor = target;
        while cursor != self.head.0 {
            let Some(block) = self.blocks.get(&cursor) else {
                self.missing.insert(cursor);
                return;
            };
            if block.height() <= self.head.1.height {
                // A finalized chain that does not pass through our head: consensus safety
                // was violated or our storage is corrupt. Never execute it.
                panic!(
                    "finalized block {} at height {} does not extend executed head {} at height {}",
                    digest_hex(&cursor),
                    block.height(),
                    digest_hex(&self.head.0),
                    self.head.1.height
                );
            }
            chain.push(cursor);
            cursor = block.header.parent;
        }
        self.finalize_target = None;
        let now = self.context.current();
        for digest in chain.into_iter().rev() {
            let block = self.blocks.remove(&digest).expect("body checked above");
            let journal = self.finalized.take().expect("finalized journal present");
            let (journal, _) = journal
                .append(&block)
                .await
                .expect("append finalized block");
            let journal = journal.sync().await.expect("sync finalized block");
            self.finalized = Some(journal);
            if let Some(at) = self.proposed_at.remove(&digest) {
                let ms = now.duration_since(at).unwrap_or_default().as_millis() as u64;
                self.shared.lock().latencies.record(ms);
            }
            self.apply_executed(block);
        }
        self.prune().await;
    }

    /// Apply a durable finalized block to the ledger and indexes.
    fn apply_executed(&mut self, block: Block) {
        let digest = block.digest();
        let outcome =
            self.shared.lock().execute(&block).unwrap_or_else(|e| {
                panic!("ledger rejected finalized block {}: {e}", block.height())
            });
        debug!(
            height = outcome.height.get(),
            txs = block.txs.len(),
            "executed block"
        );
        self.head = (
            digest,
            Known {
                height: block.height(),
                timestamp_ms: block.header.timestamp_ms,
            },
        );
        self.executed.insert(digest, block.height());
        self.recent.push_back((digest, block));
        while self.recent.len() as u64 > RECENT_BLOCKS {
            self.recent.pop_front();
        }
    }

    /// Forget pending bodies at or below the executed height, and their journal sections.
    async fn prune(&mut self) {
        let head = self.head.1.height;
        self.blocks.retain(|_, b| b.height() > head);
        self.proposed_at.retain(|d, _| self.blocks.contains_key(d));
        while self.seen_index.front().is_some_and(|(_, h)| *h <= head) {
            self.seen_index.pop_front();
        }
        let journal = self.seen.take().expect("pending journal present");
        let position = self
            .seen_index
            .front()
            .map_or(journal.size(), |(position, _)| *position);
        let (journal, _) = journal
            .prune(position)
            .await
            .expect("prune pending journal");
        self.seen = Some(journal);
    }
}
