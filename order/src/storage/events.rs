//! How an event is stored: its `type` in a column, its own members as a JSON object beside it.
//! Read back, the two are joined into the contract's [`OrderEventRecord`]
//! (`jsonb_build_object('type', type, 'at', at) || data`), and an event of a type the contract
//! does not know is an error, never a default.
//!
//! [`OrderEventRecord`]: shared::contract::order::OrderEventRecord

use super::StorageError;
use serde_json::Value;
use shared::contract::order::OrderEvent;

/// `(type, members)` of an event, as stored.
pub fn encode(event: &OrderEvent) -> Result<(String, Value), StorageError> {
    let mut value = serde_json::to_value(event).map_err(|e| StorageError::Other(e.into()))?;
    let kind = value
        .as_object_mut()
        .and_then(|members| members.remove("type"))
        .and_then(|kind| kind.as_str().map(str::to_string))
        .ok_or_else(|| StorageError::other("an event serialized without its type"))?;
    Ok((kind, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::contract::order::{FailureCode, OrderEventRecord};

    #[test]
    fn an_event_is_stored_as_its_type_and_members_and_read_back_whole() {
        let event = OrderEvent::OrderFailed {
            failure_code: FailureCode::PaymentDeclined,
        };
        let (kind, data) = encode(&event).unwrap();
        assert_eq!(kind, "order_failed");
        assert_eq!(data, serde_json::json!({"failureCode": "payment_declined"}));
        let (kind, data) = encode(&OrderEvent::OrderCreated).unwrap();
        assert_eq!(
            (kind.as_str(), data),
            ("order_created", serde_json::json!({}))
        );
        // What the statements build from the two columns.
        let mut row =
            serde_json::json!({"type": "order_failed", "at": "2026-12-01T20:14:18.123456+00:00"});
        row.as_object_mut()
            .unwrap()
            .extend(encode(&event).unwrap().1.as_object().unwrap().clone());
        let record: OrderEventRecord = serde_json::from_value(row).unwrap();
        assert_eq!(record.event, event);
    }
}
