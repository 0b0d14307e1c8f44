//! Wiring: one validator = simplex engine + application actor over five p2p channels.

use crate::app::{self, Actor, Mailbox};
use crate::shared::Shared;
use commonware_consensus::{
    simplex::{
        Config as SimplexConfig, Engine, Floor, ForwardPolicy, SkipBudget, SkipPolicy,
        elector::RoundRobin, scheme::ed25519::Scheme,
    },
    types::{Epoch, ViewDelta},
};
use commonware_cryptography::{Sha256, Signer};
use commonware_p2p::{Blocker, Receiver, Sender};
use commonware_parallel::Sequential;
use commonware_runtime::{
    Clock, Handle, Metrics, Network, Spawner, Storage, buffer::paged::CacheRef,
};
use commonware_utils::{NZDuration, NZU16, NZUsize, ordered::Set};
use plexus_types::{PrivateKey, PublicKey};
use rand_core::CryptoRng;
use std::time::Duration;

/// Namespace of consensus votes (domain separation from transactions and p2p). The engine
/// signs under [`chain_namespace`]`(CONSENSUS_NAMESPACE, genesis)`, so a vote from one chain
/// never verifies on another, even where the same validator keys serve both.
pub const CONSENSUS_NAMESPACE: &[u8] = b"_PLEXUS_CONSENSUS_V1";

/// `base` followed by the genesis digest: the namespace of everything a validator signs for
/// one chain (consensus votes, p2p handshakes). Two chains that differ in any byte of their
/// genesis (chain id, params, accounts, models) share no valid signature.
pub fn chain_namespace(base: &[u8], genesis: &plexus_types::Digest) -> Vec<u8> {
    let mut namespace = Vec::with_capacity(base.len() + 32);
    namespace.extend_from_slice(base);
    namespace.extend_from_slice(genesis.as_ref());
    namespace
}

/// The p2p channels one validator needs: (sender, receiver) pairs.
pub struct Channels<S, R> {
    pub votes: (S, R),
    pub certificates: (S, R),
    pub resolver: (S, R),
    pub blocks: (S, R),
    pub requests: (S, R),
    pub txs: (S, R),
}

/// Consensus timing. `leader_timeout` must comfortably exceed the block time.
#[derive(Clone, Debug)]
pub struct Timing {
    pub block_time: Duration,
    pub leader_timeout: Duration,
    pub certification_timeout: Duration,
}

impl Timing {
    pub fn for_block_time(block_time: Duration) -> Self {
        let leader_timeout = (block_time * 4).max(Duration::from_secs(1));
        Self {
            block_time,
            leader_timeout,
            certification_timeout: leader_timeout * 2,
        }
    }
}

/// Start a validator on `context`: open storage, replay, start the application and simplex.
/// Returns the application's mailbox (for the RPC) and the engine's handle.
#[allow(clippy::too_many_arguments)]
pub async fn start_validator<E, S, R, B>(
    context: E,
    key: PrivateKey,
    validators: Set<PublicKey>,
    shared: Shared,
    timing: Timing,
    max_block_txs: usize,
    partition_prefix: String,
    blocker: B,
    channels: Channels<S, R>,
) -> (Mailbox, Handle<()>, Handle<()>)
where
    E: Clock + Spawner + Storage + Metrics + Network + CryptoRng + commonware_storage::Context,
    S: Sender<PublicKey = PublicKey>,
    R: Receiver<PublicKey = PublicKey>,
    B: Blocker<PublicKey = PublicKey>,
{
    let (outbox, outgoing) = crate::gossip::outbox();
    let genesis = {
        let mut state = shared.lock();
        state.gossip = Some(outbox);
        state.genesis_digest
    };
    // Detached: it ends with the network's channels.
    let _gossip = crate::gossip::start(
        context.child("gossip"),
        shared.clone(),
        outgoing,
        channels.txs,
    );
    let (actor, mailbox) = Actor::init(
        context.child("application"),
        app::Config {
            block_time: timing.block_time,
            max_block_txs,
            partition_prefix: partition_prefix.clone(),
        },
        shared,
    )
    .await;
    let app_handle = actor.start(channels.blocks, channels.requests);

    let me = key.public_key();
    let namespace = chain_namespace(CONSENSUS_NAMESPACE, &genesis);
    let scheme = Scheme::signer(&namespace, validators, key)
        .unwrap_or_else(|| panic!("{me} is not in the validator set"));
    let engine = Engine::new(
        context.child("consensus"),
        SimplexConfig {
            scheme,
            elector: RoundRobin::<Sha256>::default(),
            blocker,
            automaton: mailbox.clone(),
            relay: mailbox.clone(),
            reporter: mailbox.clone(),
            strategy: Sequential,
            partition: format!("{partition_prefix}-simplex"),
            mailbox_size: NZUsize!(1024),
            epoch: Epoch::zero(),
            floor: Floor::Genesis(genesis),
            leader_timeout: timing.leader_timeout,
            certification_timeout: timing.certification_timeout,
            timeout_retry: Duration::from_secs(10),
            fetch_timeout: NZDuration!(Duration::from_secs(1)),
            fetch_retry_delay: Duration::from_millis(100),
            view_retention: ViewDelta::new(16),
            skip: SkipPolicy::Enabled {
                timeout: (timing.certification_timeout * 2).max(Duration::from_secs(12)),
                budget: SkipBudget::Participants,
            },
            replay_buffer: NZUsize!(1 << 20),
            write_buffer: NZUsize!(1 << 20),
            page_cache: CacheRef::new(NZU16!(4096), NZUsize!(64)),
            forward: ForwardPolicy::SilentVoters,
            track_historical_votes: false,
        },
    );
    let engine_handle = engine.start(channels.votes, channels.certificates, channels.resolver);
    (mailbox, app_handle, engine_handle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_consensus::{
        simplex::types::{Notarize, Proposal},
        types::{Round, View},
    };
    use plexus_types::{key_from_seed, sha256};

    #[test]
    fn a_vote_for_one_genesis_does_not_verify_under_another() {
        let keys: Vec<PrivateKey> = (0..4).map(|i| key_from_seed(700 + i)).collect();
        let validators = Set::from_iter_dedup(keys.iter().map(|k| k.public_key()));
        let (ours, theirs) = (sha256(&[b"genesis a"]), sha256(&[b"genesis b"]));
        let scheme = |genesis, key: &PrivateKey| {
            Scheme::signer(
                &chain_namespace(CONSENSUS_NAMESPACE, genesis),
                validators.clone(),
                key.clone(),
            )
            .unwrap()
        };
        let proposal = Proposal::new(
            Round::new(Epoch::zero(), View::new(1)),
            View::new(0),
            sha256(&[b"block"]),
        );
        let vote = Notarize::sign(&scheme(&theirs, &keys[0]), proposal).unwrap();
        let mut rng = commonware_utils::test_rng();
        // The same key, the same proposal: valid on its own chain, invalid on ours.
        assert!(vote.verify(&mut rng, &scheme(&theirs, &keys[1]), &Sequential));
        assert!(!vote.verify(&mut rng, &scheme(&ours, &keys[1]), &Sequential));
    }
}
