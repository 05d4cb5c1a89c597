//! Transactions: the plaintext inside a sealed transaction, and the rules that apply them to
//! a shard's sparse Merkle tree.
//!
//! Encoding (canonical, little-endian, strict length):
//!
//! ```text
//! Transfer: version u8 = 1 || tag u8 = 1 || from u64 || to u64 || amount u64 || nonce u64
//! Deposit:  version u8 = 1 || tag u8 = 2 || to u64 || amount u64
//! ```
//!
//! Account state: the SMT leaf at key `account & (2^depth - 1)` is the word
//! `[balance, nonce, 0, 0]` (an absent leaf is balance 0, nonce 0). A transfer needs
//! `nonce == sender nonce` and `amount <= sender balance`, moves `amount` and bumps the sender's
//! nonce; a deposit (funds bridged in, vouched for by the aggregator's batch signature) credits
//! `to`. Balances stay at most [`MAX_BALANCE`] so every value is a canonical field element.
//! Invalid transactions are skipped deterministically and counted by [`Invalid`] reason.

use std::collections::HashMap;

use crypto::encoding::{Reader, Writer};
use crypto::smt::{NodeStore, Smt, Word};
use winter_math::StarkField;
use winter_math::fields::f64::BaseElement;

/// Version byte of the transaction encoding.
pub const TX_VERSION: u8 = 1;
/// Encoded length of a transfer.
pub const TRANSFER_LEN: usize = 2 + 4 * 8;
/// Encoded length of a deposit.
pub const DEPOSIT_LEN: usize = 2 + 2 * 8;
/// The largest balance an account may hold (keeps every leaf element canonical).
pub const MAX_BALANCE: u64 = 1 << 62;

const TAG_TRANSFER: u8 = 1;
const TAG_DEPOSIT: u8 = 2;

/// A plaintext transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// Moves `amount` from `from` to `to`; `nonce` must be the sender's current nonce.
    Transfer {
        /// Sending account.
        from: u64,
        /// Receiving account.
        to: u64,
        /// Amount moved.
        amount: u64,
        /// The sender's nonce before this transaction.
        nonce: u64,
    },
    /// Credits `amount` to `to` (funds bridged in by the aggregator).
    Deposit {
        /// Receiving account.
        to: u64,
        /// Amount credited.
        amount: u64,
    },
}

impl Tx {
    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(TRANSFER_LEN);
        w.put_u8(TX_VERSION);
        match *self {
            Tx::Transfer {
                from,
                to,
                amount,
                nonce,
            } => w
                .put_u8(TAG_TRANSFER)
                .put_u64(from)
                .put_u64(to)
                .put_u64(amount)
                .put_u64(nonce),
            Tx::Deposit { to, amount } => w.put_u8(TAG_DEPOSIT).put_u64(to).put_u64(amount),
        };
        w.into_bytes()
    }

    /// Parses the canonical encoding strictly (version, tag, exact length).
    ///
    /// # Errors
    /// [`Invalid::Encoding`] for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Invalid> {
        let bad = |_| Invalid::Encoding;
        let mut r = Reader::new(bytes);
        if r.u8("tx version").map_err(bad)? != TX_VERSION {
            return Err(Invalid::Encoding);
        }
        let tx = match r.u8("tx tag").map_err(bad)? {
            TAG_TRANSFER => Tx::Transfer {
                from: r.u64("tx from").map_err(bad)?,
                to: r.u64("tx to").map_err(bad)?,
                amount: r.u64("tx amount").map_err(bad)?,
                nonce: r.u64("tx nonce").map_err(bad)?,
            },
            TAG_DEPOSIT => Tx::Deposit {
                to: r.u64("tx to").map_err(bad)?,
                amount: r.u64("tx amount").map_err(bad)?,
            },
            _ => return Err(Invalid::Encoding),
        };
        r.finish("transaction").map_err(bad)?;
        Ok(tx)
    }
}

/// Why a transaction was skipped. Stable codes (they are stored in stage outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Invalid {
    /// The sealed transaction does not parse.
    Malformed = 1,
    /// The AEAD did not open (wrong key, shard, batch, or tampered bytes).
    Open = 2,
    /// The plaintext is not a canonical transaction.
    Encoding = 3,
    /// The sender's balance is below the amount.
    InsufficientBalance = 4,
    /// The nonce is not the sender's current nonce.
    WrongNonce = 5,
    /// Sender and receiver are the same account (same leaf).
    SameAccount = 6,
    /// A balance would exceed [`MAX_BALANCE`] or a nonce would overflow.
    Overflow = 7,
    /// The account leaf holds a value that is not an account (never written by these rules).
    CorruptAccount = 8,
    /// The transaction names an ML-KEM key (format version 2) that is not active for its
    /// shard: retired, or never configured.
    UnknownKey = 9,
}

impl Invalid {
    /// Every reason, in code order.
    pub const ALL: [Invalid; 9] = [
        Invalid::Malformed,
        Invalid::Open,
        Invalid::Encoding,
        Invalid::InsufficientBalance,
        Invalid::WrongNonce,
        Invalid::SameAccount,
        Invalid::Overflow,
        Invalid::CorruptAccount,
        Invalid::UnknownKey,
    ];

    /// The stored code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Parses a stored code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::Open => "open_failed",
            Invalid::Encoding => "bad_encoding",
            Invalid::InsufficientBalance => "insufficient_balance",
            Invalid::WrongNonce => "wrong_nonce",
            Invalid::SameAccount => "same_account",
            Invalid::Overflow => "overflow",
            Invalid::CorruptAccount => "corrupt_account",
            Invalid::UnknownKey => "unknown_key",
        }
    }
}

/// An account's state: the leaf word `[balance, nonce, 0, 0]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    /// Balance.
    pub balance: u64,
    /// Number of transfers sent.
    pub nonce: u64,
}

impl Account {
    /// The leaf word.
    pub fn to_word(self) -> Word {
        [
            BaseElement::new(self.balance),
            BaseElement::new(self.nonce),
            BaseElement::new(0),
            BaseElement::new(0),
        ]
    }

    /// Reads a leaf word; `None` if it is not of the account shape.
    pub fn from_word(word: &Word) -> Option<Self> {
        let [b, n, z0, z1] = word.map(|e| e.as_int());
        (z0 == 0 && z1 == 0 && b <= MAX_BALANCE && n < BaseElement::MODULUS).then_some(Self {
            balance: b,
            nonce: n,
        })
    }
}

/// The SMT key of `account` in a tree of `depth` (1..=64).
pub fn account_key(account: u64, depth: u8) -> u64 {
    if depth >= 64 {
        account
    } else {
        account & ((1u64 << depth) - 1)
    }
}

/// What applying a batch's transactions produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The leaf writes, in order (two per transfer, one per deposit).
    pub updates: Vec<(u64, Word)>,
    /// Transactions applied.
    pub valid: u32,
    /// Skipped transactions by reason.
    pub invalid: Vec<(Invalid, u32)>,
}

impl Applied {
    /// Total skipped transactions.
    pub fn invalid_total(&self) -> u32 {
        self.invalid.iter().map(|(_, n)| n).sum()
    }

    fn skip(&mut self, reason: Invalid) {
        match self.invalid.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => {
                self.invalid.push((reason, 1));
                self.invalid.sort_unstable();
            }
        }
    }
}

/// Applies `txs` in order to the accounts of `tree` (read only: the caller writes
/// [`Applied::updates`] with `update_batch`). Entries that are already `Err` (failed to open or
/// parse) are counted and skipped. Deterministic in the tree's state and `txs`.
///
/// # Errors
/// The store's error if a leaf cannot be read.
pub fn apply<S: NodeStore>(
    tree: &Smt<S>,
    txs: &[Result<Tx, Invalid>],
) -> Result<Applied, crypto::Error> {
    let depth = tree.depth();
    let mut out = Applied::default();
    let mut cache: HashMap<u64, Option<Account>> = HashMap::new();
    let read = |cache: &mut HashMap<u64, Option<Account>>,
                key: u64|
     -> Result<Option<Account>, crypto::Error> {
        if let Some(a) = cache.get(&key) {
            return Ok(*a);
        }
        let a = Account::from_word(&tree.get(key)?);
        cache.insert(key, a);
        Ok(a)
    };
    let mut pending: Vec<(u64, Account)> = Vec::new();
    for tx in txs {
        let tx = match tx {
            Ok(tx) => *tx,
            Err(reason) => {
                out.skip(*reason);
                continue;
            }
        };
        pending.clear();
        let verdict = match tx {
            Tx::Transfer {
                from,
                to,
                amount,
                nonce,
            } => {
                let (kf, kt) = (account_key(from, depth), account_key(to, depth));
                match (read(&mut cache, kf)?, read(&mut cache, kt)?) {
                    _ if kf == kt => Err(Invalid::SameAccount),
                    (None, _) | (_, None) => Err(Invalid::CorruptAccount),
                    (Some(s), Some(r)) => {
                        if s.nonce != nonce {
                            Err(Invalid::WrongNonce)
                        } else if s.balance < amount {
                            Err(Invalid::InsufficientBalance)
                        } else {
                            match (r.balance.checked_add(amount), s.nonce.checked_add(1)) {
                                (Some(b), Some(n)) if b <= MAX_BALANCE && n < (1 << 63) => {
                                    pending.push((
                                        kf,
                                        Account {
                                            balance: s.balance - amount,
                                            nonce: n,
                                        },
                                    ));
                                    pending.push((
                                        kt,
                                        Account {
                                            balance: b,
                                            nonce: r.nonce,
                                        },
                                    ));
                                    Ok(())
                                }
                                _ => Err(Invalid::Overflow),
                            }
                        }
                    }
                }
            }
            Tx::Deposit { to, amount } => {
                let kt = account_key(to, depth);
                match read(&mut cache, kt)? {
                    None => Err(Invalid::CorruptAccount),
                    Some(r) => match r.balance.checked_add(amount) {
                        Some(b) if b <= MAX_BALANCE => {
                            pending.push((
                                kt,
                                Account {
                                    balance: b,
                                    nonce: r.nonce,
                                },
                            ));
                            Ok(())
                        }
                        _ => Err(Invalid::Overflow),
                    },
                }
            }
        };
        match verdict {
            Ok(()) => {
                out.valid += 1;
                for &(key, account) in &pending {
                    cache.insert(key, Some(account));
                    out.updates.push((key, account.to_word()));
                }
            }
            Err(reason) => out.skip(reason),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto::smt::MemStore;
    use proptest::prelude::*;

    fn arb_tx() -> impl Strategy<Value = Tx> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(from, to, amount, nonce)| Tx::Transfer {
                    from,
                    to,
                    amount,
                    nonce
                }
            ),
            (any::<u64>(), any::<u64>()).prop_map(|(to, amount)| Tx::Deposit { to, amount }),
        ]
    }

    proptest! {
        #[test]
        fn encoding_round_trips(tx in arb_tx()) {
            let bytes = tx.to_bytes();
            prop_assert_eq!(bytes.len(), match tx { Tx::Transfer { .. } => TRANSFER_LEN, Tx::Deposit { .. } => DEPOSIT_LEN });
            prop_assert_eq!(Tx::from_bytes(&bytes), Ok(tx));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(tx) = Tx::from_bytes(&bytes) {
                prop_assert_eq!(tx.to_bytes(), bytes);
            }
        }

        /// The rules against a plain map model, on random transaction streams.
        #[test]
        fn apply_matches_a_map_model(ops in proptest::collection::vec((0u64..6, 0u64..6, 0u64..300, 0u64..4, any::<bool>()), 1..40)) {
            let depth = 8;
            let tree = Smt::new(depth, MemStore::new()).expect("depth 8 is valid");
            let txs: Vec<Result<Tx, Invalid>> = ops.iter().map(|&(a, b, amount, nonce, dep)| Ok(if dep {
                Tx::Deposit { to: a + 256, amount }
            } else {
                Tx::Transfer { from: a, to: b + 512, amount, nonce }
            })).collect();
            let applied = apply(&tree, &txs).expect("memory store reads cannot fail");
            let mut model: HashMap<u64, (u64, u64)> = HashMap::new();
            let mut valid = 0;
            let mut expected_updates = Vec::new();
            for &(a, b, amount, nonce, dep) in &ops {
                if dep {
                    let e = model.entry(a).or_default();
                    e.0 += amount;
                    valid += 1;
                    expected_updates.push((a, e.0, e.1));
                } else if a != b {
                    let s = model.get(&a).copied().unwrap_or_default();
                    if s.1 == nonce && s.0 >= amount {
                        model.insert(a, (s.0 - amount, s.1 + 1));
                        let r = model.entry(b).or_default();
                        r.0 += amount;
                        let r = *r;
                        valid += 1;
                        expected_updates.push((a, s.0 - amount, s.1 + 1));
                        expected_updates.push((b, r.0, r.1));
                    }
                }
            }
            prop_assert_eq!(applied.valid, valid);
            prop_assert_eq!(applied.invalid_total() as usize, ops.len() - valid as usize);
            let got: Vec<(u64, u64, u64)> = applied.updates.iter().map(|(k, w)| {
                let a = Account::from_word(w).expect("written words are accounts");
                (*k, a.balance, a.nonce)
            }).collect();
            prop_assert_eq!(got, expected_updates);
        }
    }

    #[test]
    fn skips_each_invalid_kind_and_counts_it() {
        let depth = 8;
        let mut tree = Smt::new(depth, MemStore::new()).expect("depth 8 is valid");
        tree.insert(
            1,
            Account {
                balance: 100,
                nonce: 3,
            }
            .to_word(),
        )
        .expect("key 1 fits depth 8");
        tree.insert(
            9,
            [
                BaseElement::new(1),
                BaseElement::new(0),
                BaseElement::new(5),
                BaseElement::new(0),
            ],
        )
        .expect("key 9 fits depth 8");
        let txs = vec![
            Err(Invalid::Open),
            Ok(Tx::Transfer {
                from: 1,
                to: 2,
                amount: 101,
                nonce: 3,
            }),
            Ok(Tx::Transfer {
                from: 1,
                to: 2,
                amount: 10,
                nonce: 2,
            }),
            Ok(Tx::Transfer {
                from: 1,
                to: 257,
                amount: 10,
                nonce: 3,
            }),
            Ok(Tx::Deposit {
                to: 2,
                amount: MAX_BALANCE + 1,
            }),
            Ok(Tx::Deposit { to: 9, amount: 1 }),
            Ok(Tx::Transfer {
                from: 1,
                to: 2,
                amount: 100,
                nonce: 3,
            }),
        ];
        let applied = apply(&tree, &txs).expect("memory store reads cannot fail");
        assert_eq!(applied.valid, 1);
        assert_eq!(
            applied.invalid,
            vec![
                (Invalid::Open, 1),
                (Invalid::InsufficientBalance, 1),
                (Invalid::WrongNonce, 1),
                (Invalid::SameAccount, 1),
                (Invalid::Overflow, 1),
                (Invalid::CorruptAccount, 1),
            ]
        );
        assert_eq!(
            applied.updates,
            vec![
                (
                    1,
                    Account {
                        balance: 0,
                        nonce: 4
                    }
                    .to_word()
                ),
                (
                    2,
                    Account {
                        balance: 100,
                        nonce: 0
                    }
                    .to_word()
                ),
            ]
        );
    }
}
