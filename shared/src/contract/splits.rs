//! payment's marketplace API: recipients, the split rules that share each sold line among them,
//! the allocations of a captured payment, and partial refunds. payment's routes write these bodies;
//! callers (the saga, operators, tests) read them and build the requests.

use super::values::{Amount, BasisPoints, Currency, Instant, Invalid, ItemId, RecipientName};
use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder};
use utoipa::openapi::schema::{SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr, Schema};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

/// The platform itself, as a recipient: present from the first start.
pub const PLATFORM: Uuid = Uuid::from_u128(1);

/// Where a recipient's payouts go: an object the platform keeps as it is given and never reads,
/// never logs (its `Debug` shows nothing of it).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PayoutDestination(pub serde_json::Map<String, serde_json::Value>);

impl std::fmt::Debug for PayoutDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayoutDestination(..)")
    }
}

impl PartialSchema for PayoutDestination {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some(
                "Where the recipient's payouts go (an account, a wallet...): any object, kept as given, never logged.",
            ))
            .into()
    }
}

impl ToSchema for PayoutDestination {}

/// `POST /recipients` (admin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRecipient {
    pub name: RecipientName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payout_destination: Option<PayoutDestination>,
}

/// Who receives a part of sales: a seller, a partner, the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    pub recipient_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A recipient's money in one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub currency: Currency,
    /// Credited by captures, not released yet.
    pub pending: i64,
    /// Released; negative when refunds took back more than was left (the recipient owes it).
    pub available: i64,
    /// The part of `available` reserved by transfers and payouts in progress.
    pub held: i64,
}

/// `GET /recipients/{id}/balances`: one balance per currency the recipient was ever credited or
/// debited in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Balances {
    pub recipient_id: Uuid,
    pub balances: Vec<Balance>,
}

/// The most shares a rule has.
pub const MAX_SHARES: usize = 20;

/// One part of a split rule: what a recipient gets of each sold line. Written
/// `{"recipientId","type":"percentage","basisPoints"}`, `{"recipientId","type":"fixed","amount"}`
/// or `{"recipientId","type":"remainder"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
#[serde(try_from = "ShareForm")]
pub enum Share {
    /// `basisPoints` of what the fixed shares leave of the line.
    Percentage {
        recipient_id: Uuid,
        basis_points: BasisPoints,
    },
    /// `amount` minor units per unit sold (in the line's currency), capped by what is left.
    Fixed { recipient_id: Uuid, amount: Amount },
    /// What the percentage shares leave.
    Remainder { recipient_id: Uuid },
}

crate::text_enum! {
    /// The kinds of share.
    pub enum ShareType {
        Percentage = "percentage",
        Fixed = "fixed",
        Remainder = "remainder",
    }
}

/// A share as written: one flat object, read field by field (so that each value is parsed as
/// where it stands alone — an internally tagged enum would buffer it and refuse `2.0` for 2),
/// then checked to carry exactly the value of its type.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ShareForm {
    recipient_id: Uuid,
    #[serde(rename = "type")]
    kind: ShareType,
    #[serde(default)]
    basis_points: Option<BasisPoints>,
    #[serde(default)]
    amount: Option<Amount>,
}

impl TryFrom<ShareForm> for Share {
    type Error = Invalid;
    fn try_from(form: ShareForm) -> Result<Self, Invalid> {
        let recipient_id = form.recipient_id;
        match (form.kind, form.basis_points, form.amount) {
            (ShareType::Percentage, Some(basis_points), None) => Ok(Share::Percentage {
                recipient_id,
                basis_points,
            }),
            (ShareType::Fixed, None, Some(amount)) => Ok(Share::Fixed {
                recipient_id,
                amount,
            }),
            (ShareType::Remainder, None, None) => Ok(Share::Remainder { recipient_id }),
            (ShareType::Percentage, None, _) => {
                Err(Invalid("a percentage share needs basisPoints".into()))
            }
            (ShareType::Fixed, _, None) => Err(Invalid("a fixed share needs amount".into())),
            (kind, _, _) => Err(Invalid(format!(
                "a {kind} share takes {}",
                match kind {
                    ShareType::Percentage => "basisPoints and no amount",
                    ShareType::Fixed => "amount and no basisPoints",
                    ShareType::Remainder => "neither basisPoints nor amount",
                }
            ))),
        }
    }
}

impl Share {
    pub fn recipient_id(&self) -> Uuid {
        match self {
            Share::Percentage { recipient_id, .. }
            | Share::Fixed { recipient_id, .. }
            | Share::Remainder { recipient_id } => *recipient_id,
        }
    }
}

fn uuid_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

impl PartialSchema for Share {
    fn schema() -> RefOr<Schema> {
        let variant = |kind: &str, value: Option<(&str, RefOr<Schema>)>, description: &str| {
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .property("recipientId", uuid_schema())
                .required("recipientId")
                .property(
                    "type",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([kind])),
                )
                .required("type")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)));
            if let Some((name, schema)) = value {
                object = object.property(name, schema).required(name);
            }
            object.build()
        };
        OneOfBuilder::new()
            .item(variant(
                "percentage",
                Some(("basisPoints", BasisPoints::schema())),
                "basisPoints (1 to 10000) of what the fixed shares leave of the line",
            ))
            .item(variant(
                "fixed",
                Some(("amount", Amount::schema())),
                "amount minor units per unit sold, capped by what is left of the line",
            ))
            .item(variant(
                "remainder",
                None,
                "what the percentage shares leave",
            ))
            .into()
    }
}

impl ToSchema for Share {}

/// A rule's shares: 1 to 20. (That they make a valid rule — distinct recipients, at most one
/// remainder, basis points summing right — is payment's to decide, answered 422.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Shares(Vec<Share>);

impl Shares {
    pub fn new(shares: Vec<Share>) -> Result<Self, Invalid> {
        if shares.is_empty() {
            Err(Invalid("must contain at least one share".into()))
        } else if shares.len() > MAX_SHARES {
            Err(Invalid(format!("must contain at most {MAX_SHARES} shares")))
        } else {
            Ok(Shares(shares))
        }
    }

    pub fn get(&self) -> &[Share] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Shares {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Shares::new(Vec::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl PartialSchema for Shares {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Share::schema())
            .min_items(Some(1))
            .max_items(Some(MAX_SHARES))
            .into()
    }
}

impl ToSchema for Shares {}

/// `POST /split-rules` (admin): a new version of a product's rule, in force from `effectiveFrom`
/// (now when not given) until the next version's. A start less than 5 s in the past starts when
/// the rule is written; one further back is refused. Starts are stored to the microsecond.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewSplitRule {
    /// The product (a stock item) whose sales the rule shares.
    pub product_id: ItemId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<Instant>,
    pub shares: Shares,
}

/// A version of a product's split rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitRule {
    pub split_rule_id: Uuid,
    pub product_id: i64,
    /// 1, 2, 3... per product.
    pub version: i32,
    pub effective_from: DateTime<Utc>,
    /// When the next version took over; null while this one is the latest.
    pub effective_to: Option<DateTime<Utc>>,
    pub shares: Vec<Share>,
    pub created_at: DateTime<Utc>,
}

/// `GET /split-rules`: newest version first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SplitRules {
    pub split_rules: Vec<SplitRule>,
}

/// `GET /split-rules?productId=&at=`: a product's rules, or with `at` only the one in force then.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SplitRulesQuery {
    #[param(rename = "productId")]
    pub product_id: ItemId,
    pub at: Option<Instant>,
}

/// One allocation of a captured payment: what a recipient got of a line (or of the whole payment,
/// for the platform's default), and how much of it refunds took back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The line's product; null for a charge without lines.
    pub product_id: Option<i64>,
    pub recipient_id: Uuid,
    /// The rule that gave it; null for the platform's default (no rule in force, or no lines).
    pub split_rule_id: Option<Uuid>,
    pub amount: i64,
    pub reversed: i64,
}

/// `GET /payments/{id}/splits`: empty until the payment succeeded, then summing to its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Splits {
    pub payment_id: Uuid,
    pub currency: Currency,
    pub allocations: Vec<Allocation>,
}

/// `POST /payments/{id}/refunds`: gives back part of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewRefund {
    pub amount: Amount,
}

/// A refund of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    pub refund_id: Uuid,
    pub payment_id: Uuid,
    pub amount: i64,
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shares_are_tagged_by_type() {
        let r = Uuid::new_v4();
        let shares: Shares = serde_json::from_value(json!([
            {"recipientId": r, "type": "percentage", "basisPoints": 2500},
            {"recipientId": r, "type": "fixed", "amount": 10.0},
            {"recipientId": r, "type": "remainder"}
        ]))
        .unwrap();
        assert_eq!(
            shares.get()[0],
            Share::Percentage {
                recipient_id: r,
                basis_points: BasisPoints::new(2500).unwrap()
            }
        );
        assert_eq!(
            serde_json::to_value(shares.get()[2]).unwrap(),
            json!({"type": "remainder", "recipientId": r})
        );
        for bad in [
            json!([]),
            json!([{"recipientId": r, "type": "percentage", "basisPoints": 0}]),
            json!([{"recipientId": r, "type": "percentage", "basisPoints": 10001}]),
            json!([{"recipientId": r, "type": "remainder", "amount": 1}]),
            json!([{"recipientId": r, "type": "share"}]),
            json!([{"recipientId": r}]),
            json!([{"recipientId": r, "type": "percentage"}]),
            json!([{"recipientId": r, "type": "fixed", "basisPoints": 5, "amount": 5}]),
        ] {
            assert!(
                serde_json::from_value::<Shares>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        let many: Vec<_> = (0..21)
            .map(|_| json!({"recipientId": Uuid::new_v4(), "type": "remainder"}))
            .collect();
        let e = serde_json::from_value::<Shares>(json!(many)).unwrap_err();
        assert!(e.to_string().contains("at most 20"), "{e}");
    }

    #[test]
    fn the_platform_is_recipient_one() {
        assert_eq!(PLATFORM.to_string(), "00000000-0000-0000-0000-000000000001");
        assert_eq!(
            format!("{:?}", PayoutDestination(serde_json::Map::new())),
            "PayoutDestination(..)"
        );
    }
}
