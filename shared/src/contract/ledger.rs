//! payment's ledger API: the journal of every money movement (entries of legs, each moving a
//! positive amount from a debit account to a credit account) and the trial balance computed from
//! it.

use super::values::{Currency, Limit, Offset};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

crate::text_enum! {
    /// What moved the money of an entry.
    pub enum EntryKind {
        /// A payment succeeded: the processor's money to the recipients' `pending`.
        Capture = "capture",
        /// A refund took money back from recipients to the processor.
        Refund = "refund",
        /// A captured payment's hold ended: `pending` to `available`.
        Release = "release",
        Transfer = "transfer",
        Payout = "payout",
        PayoutReturn = "payout_return",
    }
}

crate::text_enum! {
    /// An account of the ledger: a recipient's `pending` or `available` (per currency), or the
    /// system's `processor` (money received from the processor) or `payouts` (money sent out).
    pub enum Account {
        Pending = "pending",
        Available = "available",
        Processor = "processor",
        Payouts = "payouts",
    }
}

impl Account {
    /// Whether the account belongs to a recipient (and names it).
    pub fn is_recipients(self) -> bool {
        matches!(self, Account::Pending | Account::Available)
    }
}

/// An account of a leg: `recipientId` null for the system's accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountRef {
    pub account: Account,
    pub recipient_id: Option<Uuid>,
}

/// A positive amount moved from `debit` to `credit`, in the entry's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leg {
    pub debit: AccountRef,
    pub credit: AccountRef,
    pub amount: i64,
}

/// A journal entry: one movement of money, in legs. Ids it is not about are null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub entry_id: Uuid,
    pub kind: EntryKind,
    pub currency: Currency,
    pub at: DateTime<Utc>,
    pub payment_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub payout_id: Option<Uuid>,
    pub legs: Vec<Leg>,
}

/// `GET /ledger/entries`: a page of entries, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryList {
    pub entries: Vec<Entry>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `GET /ledger/entries?recipientId=&paymentId=&kind=&limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct EntriesQuery {
    /// Entries with a leg on one of the recipient's accounts.
    #[param(rename = "recipientId")]
    pub recipient_id: Option<Uuid>,
    #[param(rename = "paymentId")]
    pub payment_id: Option<Uuid>,
    pub kind: Option<EntryKind>,
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

/// The ledger's figures in one currency, computed from the legs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyTotals {
    pub currency: Currency,
    /// The amounts of every leg, counted on the debit side, and on the credit side: equal.
    pub debits: i64,
    pub credits: i64,
    /// Money received from the processor and not given back (debits − credits of `processor`).
    pub processor: i64,
    /// Money sent out (credits − debits of `payouts`).
    pub payouts: i64,
    /// Credits − debits of every recipient's `pending`, and of every recipient's `available`.
    pub recipients_pending: i64,
    pub recipients_available: i64,
}

/// `GET /ledger/trial-balance` (admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrialBalance {
    /// Debits equal credits in every currency, and every stored balance is what its legs give.
    pub consistent: bool,
    pub currencies: Vec<CurrencyTotals>,
}
