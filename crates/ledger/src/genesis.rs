use crate::encode::Encoder;
use plexus_types::{Address, Amount, Digest};

/// Domain separation for [`Genesis::digest`].
const GENESIS_NAMESPACE: &[u8] = b"_PLEXUS_GENESIS_V1";

/// Protocol parameters, fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// The smallest fee a transaction may carry.
    pub min_fee: Amount,
    /// Blocks between an unbond and the height at which its stake can be withdrawn.
    pub unbonding_delay: u64,
}

/// One account at genesis: its spendable balance and its bonded stake.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: Amount,
    #[serde(default)]
    pub stake: Amount,
}

/// Everything the chain starts from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Genesis {
    pub chain_id: String,
    pub params: Params,
    pub accounts: Vec<GenesisAccount>,
}

impl Genesis {
    /// SHA-256 of the genesis' canonical binary encoding (see the crate docs, "Genesis
    /// digest"). Accounts are hashed in the order listed, so the digest names this exact
    /// document.
    pub fn digest(&self) -> Digest {
        let mut enc = Encoder::new(GENESIS_NAMESPACE);
        enc.bytes(self.chain_id.as_bytes());
        enc.amount(self.params.min_fee);
        enc.u64(self.params.unbonding_delay);
        enc.count(self.accounts.len());
        for account in &self.accounts {
            enc.address(&account.address);
            enc.amount(account.balance);
            enc.amount(account.stake);
        }
        enc.finish()
    }
}
