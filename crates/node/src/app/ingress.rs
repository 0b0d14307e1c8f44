//! The application's mailbox: what consensus and the RPC ask of it.

use commonware_actor::Feedback;
use commonware_consensus::{
    Automaton, CertifiableAutomaton, Relay, Reporter,
    simplex::{Plan, scheme::ed25519, types::Activity, types::Context},
};
use commonware_utils::channel::{mpsc, oneshot};
use plexus_types::{Block, Digest, Height, PublicKey};

pub type ConsensusContext = Context<Digest, PublicKey>;

pub enum Message {
    Propose {
        context: ConsensusContext,
        reply: oneshot::Sender<Digest>,
    },
    Verify {
        context: ConsensusContext,
        digest: Digest,
        reply: oneshot::Sender<bool>,
    },
    Broadcast {
        digest: Digest,
        plan: Plan<PublicKey>,
    },
    Finalized {
        digest: Digest,
    },
    /// A finalized block by height (served from the journal).
    GetBlock {
        height: Height,
        reply: oneshot::Sender<Option<Block>>,
    },
}

/// Cheap handle to the application actor. Consensus holds it as its automaton, relay and
/// reporter; the RPC holds it to read blocks.
#[derive(Clone)]
pub struct Mailbox {
    sender: mpsc::UnboundedSender<Message>,
}

impl Mailbox {
    pub(crate) fn new(sender: mpsc::UnboundedSender<Message>) -> Self {
        Self { sender }
    }

    /// Fetch a finalized block by height; `None` if it does not exist (yet) or the node stops.
    pub async fn block(&self, height: Height) -> Option<Block> {
        let (reply, rx) = oneshot::channel();
        self.sender.send(Message::GetBlock { height, reply }).ok()?;
        rx.await.ok().flatten()
    }
}

impl Automaton for Mailbox {
    type Context = ConsensusContext;
    type Digest = Digest;

    async fn propose(&mut self, context: Self::Context) -> oneshot::Receiver<Digest> {
        let (reply, rx) = oneshot::channel();
        let _ = self.sender.send(Message::Propose { context, reply });
        rx
    }

    async fn verify(&mut self, context: Self::Context, digest: Digest) -> oneshot::Receiver<bool> {
        let (reply, rx) = oneshot::channel();
        let _ = self.sender.send(Message::Verify {
            context,
            digest,
            reply,
        });
        rx
    }
}

impl CertifiableAutomaton for Mailbox {}

impl Relay for Mailbox {
    type Digest = Digest;
    type PublicKey = PublicKey;
    type Plan = Plan<PublicKey>;

    fn broadcast(&mut self, digest: Digest, plan: Plan<PublicKey>) -> Feedback {
        match self.sender.send(Message::Broadcast { digest, plan }) {
            Ok(()) => Feedback::Ok,
            Err(_) => Feedback::Closed,
        }
    }
}

impl Reporter for Mailbox {
    type Activity = Activity<ed25519::Scheme, Digest>;

    fn report(&mut self, activity: Self::Activity) -> Feedback {
        // Only finalizations matter to execution; conflicting votes are handled (and their
        // senders blocked) by the engine itself.
        if let Activity::Finalization(finalization) = activity {
            let digest = finalization.proposal.payload;
            if self.sender.send(Message::Finalized { digest }).is_err() {
                return Feedback::Closed;
            }
        }
        Feedback::Ok
    }
}
