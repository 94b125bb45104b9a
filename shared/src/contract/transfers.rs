//! payment's money movements out of available balances: transfers between recipients, and
//! payouts out of the platform. Both are two-phase — the money is held when the request is
//! accepted (202), and a worker settles it later.

use super::values::{ActiveCurrency, Amount, Currency, Limit, Offset, Reference};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

crate::text_enum! {
    /// A transfer's state: `pending` (its amount held on the source) until the worker posts it,
    /// or a cancel releases the hold. Each moves once.
    pub enum TransferStatus {
        Pending = "pending",
        Posted = "posted",
        Canceled = "canceled",
    }
}

/// `POST /transfers`: moves available money from one recipient to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewTransfer {
    pub from_recipient_id: Uuid,
    pub to_recipient_id: Uuid,
    pub amount: Amount,
    #[serde(deserialize_with = "Currency::deserialize_active")]
    #[schema(value_type = ActiveCurrency)]
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    pub transfer_id: Uuid,
    pub from_recipient_id: Uuid,
    pub to_recipient_id: Uuid,
    pub amount: i64,
    pub currency: Currency,
    pub reference: Option<String>,
    pub status: TransferStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /transfers`: a page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransferList {
    pub transfers: Vec<Transfer>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `GET /transfers?recipientId=&status=&limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct TransfersQuery {
    /// Transfers from or to the recipient.
    #[param(rename = "recipientId")]
    pub recipient_id: Option<Uuid>,
    pub status: Option<TransferStatus>,
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

crate::text_enum! {
    /// A payout's state: `pending` (its amount held) until the worker has the payout provider send
    /// it — `paid` — or the provider refuses it — `failed`, the hold released.
    pub enum PayoutStatus {
        Pending = "pending",
        Paid = "paid",
        Failed = "failed",
    }
}

/// `POST /payouts`: sends a recipient's available money out of the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewPayout {
    pub recipient_id: Uuid,
    pub amount: Amount,
    #[serde(deserialize_with = "Currency::deserialize_active")]
    #[schema(value_type = ActiveCurrency)]
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    pub payout_id: Uuid,
    pub recipient_id: Uuid,
    pub amount: i64,
    pub currency: Currency,
    pub status: PayoutStatus,
    /// Why the provider refused it, for a `failed` payout (the provider's own code).
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /payouts`: a page, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PayoutList {
    pub payouts: Vec<Payout>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// `GET /payouts?recipientId=&status=&limit=&offset=`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct PayoutsQuery {
    #[param(rename = "recipientId")]
    pub recipient_id: Option<Uuid>,
    pub status: Option<PayoutStatus>,
    pub limit: Option<Limit>,
    pub offset: Option<Offset>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_new_transfer_is_parsed_whole_or_not_at_all() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t: NewTransfer = serde_json::from_value(json!({
            "fromRecipientId": a, "toRecipientId": b, "amount": 500, "currency": "USD"
        }))
        .unwrap();
        assert_eq!((t.amount.get(), t.reference), (500, None));
        for bad in [
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 0, "currency": "USD"}),
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5, "currency": "usd"}),
            json!({"fromRecipientId": "x", "toRecipientId": b, "amount": 5, "currency": "USD"}),
            json!({"toRecipientId": b, "amount": 5, "currency": "USD"}),
            json!({"fromRecipientId": a, "toRecipientId": b, "amount": 5, "currency": "USD", "x": 1}),
        ] {
            assert!(
                serde_json::from_value::<NewTransfer>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
