//! The saga's calls to stock and payment. Each step is sent with a key derived from the order
//! (`{orderId}:reserve`, ...), so a repeated step is the same request and the participant replays.

use crate::domain::Order;
use serde_json::json;
use shared::http_client::{CallContext, Reply, ServiceClient, Unavailable};
use uuid::Uuid;

#[derive(Clone)]
pub struct Participants {
    pub stock: ServiceClient,
    pub payment: ServiceClient,
}

pub type Answer = Result<Reply, Unavailable>;

impl Participants {
    pub async fn reserve(&self, order: &Order, context: &CallContext) -> Answer {
        let items: Vec<_> = order
            .items
            .iter()
            .map(|l| json!({"itemId": l.item_id, "quantity": l.quantity}))
            .collect();
        let body = json!({"orderId": order.order_id, "items": items});
        self.stock
            .post("/reserve", &key(order.order_id, "reserve"), &body, context)
            .await
    }

    pub async fn charge(&self, order: &Order, context: &CallContext) -> Answer {
        let mut body = json!({
            "orderId": order.order_id,
            "amount": order.total_amount,
            "currency": order.currency,
            "reference": format!("order {}", order.order_id),
        });
        if let Some(customer) = &order.customer_id {
            body["customerId"] = json!(customer);
        }
        self.payment
            .post("/charge", &key(order.order_id, "charge"), &body, context)
            .await
    }

    pub async fn complete(&self, order_id: Uuid, context: &CallContext) -> Answer {
        self.stock
            .post(
                "/complete",
                &key(order_id, "complete"),
                &json!({"orderId": order_id}),
                context,
            )
            .await
    }

    pub async fn refund(&self, order_id: Uuid, context: &CallContext) -> Answer {
        self.payment
            .post(
                "/refund",
                &key(order_id, "refund"),
                &json!({"orderId": order_id}),
                context,
            )
            .await
    }

    pub async fn release(&self, order_id: Uuid, context: &CallContext) -> Answer {
        self.stock
            .post(
                "/release",
                &key(order_id, "release"),
                &json!({"orderId": order_id}),
                context,
            )
            .await
    }
}

fn key(order_id: Uuid, step: &str) -> String {
    format!("{order_id}:{step}")
}
