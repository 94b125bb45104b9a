//! The contract round trip: what stock and payment really answer parses as the types the saga
//! reads — every answer the saga acts on, success and refusal, read exactly as the saga's client
//! reads it (`shared::client::Reply::read`).

use serde::de::DeserializeOwned;
use serde_json::json;
use shared::client::{Answer, Reply};
use shared::contract::order::{Order, OrderStatus};
use shared::contract::payment::{Payment, PaymentStatus, Refunded};
use shared::contract::problem::{ProblemBody, ProblemCode};
use shared::contract::stock::{Released, Reservation, ReservationStatus};
use tests::{new_order_id, Answer as Http, Stack};

/// An answer read as the saga reads it.
fn read<T: DeserializeOwned>(a: &Http) -> Answer<T> {
    let status = reqwest::StatusCode::from_u16(a.status).unwrap();
    Reply::<T>::read(status, a.text.as_bytes(), 1).answer
}

#[track_caller]
fn done<T: DeserializeOwned + std::fmt::Debug>(a: &Http) -> T {
    match read::<T>(a) {
        Answer::Done(value) => value,
        other => panic!(
            "not a {}: {other:?} from {}",
            std::any::type_name::<T>(),
            a.text
        ),
    }
}

#[track_caller]
fn refused(a: &Http, status: u16, code: ProblemCode) -> ProblemBody {
    match read::<serde_json::Value>(a) {
        Answer::Refused(problem) => {
            assert_eq!((problem.status, problem.code), (status, code), "{}", a.text);
            assert_eq!(a.status, status);
            *problem
        }
        other => panic!("not a refusal: {other:?} from {}", a.text),
    }
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where each test works on items of its own.
mod black_box {
    use super::*;

    #[tokio::test]
    async fn stock_answers_parse_as_the_sagas_types() {
        let s = Stack::start().await;
        let mug = s.create_item(1000, "USD", 10).await;
        let shirt = s.create_item(2500, "USD", 50).await;
        let stickers = s.create_item(300, "USD", 200).await;
        let notebook = s.create_item(1500, "EUR", 30).await;
        let order = new_order_id();
        let reserved: Reservation = done(
            &s.call(
                "/stock/reserve",
                &json!({"orderId": order, "items": [{"itemId": mug, "quantity": 2}, {"itemId": stickers, "quantity": 1}]}),
            )
            .await,
        );
        assert_eq!(reserved.status, ReservationStatus::Reserved);
        assert_eq!((reserved.total_amount, reserved.items.len()), (2300, 2));
        let completed: Reservation =
            done(&s.call("/stock/complete", &json!({"orderId": order})).await);
        assert_eq!(completed.status, ReservationStatus::Completed);
        let p = refused(
            &s.call("/stock/release", &json!({"orderId": order})).await,
            409,
            ProblemCode::ReservationCompleted,
        );
        assert_eq!(p.context.reservation_id, Some(reserved.reservation_id));

        // A release before any reserve leaves a tombstone, which refuses the late reserve.
        let late = new_order_id();
        match done::<Released>(&s.call("/stock/release", &json!({"orderId": late})).await) {
            Released::Tombstone(t) => assert_eq!(t.order_id, late),
            other => panic!("{other:?}"),
        }
        refused(
            &s.call(
                "/stock/reserve",
                &json!({"orderId": late, "itemId": mug, "quantity": 1}),
            )
            .await,
            409,
            ProblemCode::ReservationCanceled,
        );
        let released = new_order_id();
        s.call(
            "/stock/reserve",
            &json!({"orderId": released, "itemId": shirt, "quantity": 1}),
        )
        .await;
        match done::<Released>(
            &s.call("/stock/release", &json!({"orderId": released}))
                .await,
        ) {
            Released::Reservation(r) => assert_eq!(r.status, ReservationStatus::Canceled),
            other => panic!("{other:?}"),
        }
        refused(
            &s.call("/stock/complete", &json!({"orderId": released}))
                .await,
            409,
            ProblemCode::ReservationCanceled,
        );

        // The business refusals of a reserve, with what they are about.
        let p = refused(
            &s.call(
                "/stock/reserve",
                &json!({"orderId": new_order_id(), "itemId": mug, "quantity": 1000}),
            )
            .await,
            409,
            ProblemCode::InsufficientStock,
        );
        assert_eq!(
            (p.context.item_id, p.context.requested),
            (Some(mug), Some(1000))
        );
        let p = refused(
            &s.call(
                "/stock/reserve",
                &json!({"orderId": new_order_id(), "itemId": 424242, "quantity": 1}),
            )
            .await,
            422,
            ProblemCode::ItemNotFound,
        );
        assert_eq!(p.context.item_id, Some(424242));
        refused(
            &s.call(
                "/stock/reserve",
                &json!({"orderId": new_order_id(), "items": [{"itemId": mug, "quantity": 1}, {"itemId": notebook, "quantity": 1}]}),
            )
            .await,
            422,
            ProblemCode::MixedCurrency,
        );
    }

    #[tokio::test]
    async fn payment_answers_parse_as_the_sagas_types() {
        let s = Stack::start().await;
        let order = new_order_id();
        let charged: Payment = done(
            &s.call(
                "/payment/charge",
                &json!({"orderId": order, "amount": 2500, "currency": "USD", "customerId": "c-1"}),
            )
            .await,
        );
        assert_eq!(charged.status, PaymentStatus::Succeeded);
        let declined: Payment = done(
            &s.call(
                "/payment/charge",
                &json!({"orderId": new_order_id(), "amount": 500_000, "currency": "USD"}),
            )
            .await,
        );
        assert_eq!(declined.status, PaymentStatus::Failed);
        assert!(declined.failure_code.is_some());
        let p = refused(
            &s.call(
                "/payment/charge",
                &json!({"orderId": order, "amount": 2500, "currency": "USD"}),
            )
            .await,
            409,
            ProblemCode::PaymentExists,
        );
        assert_eq!(p.context.payment_id, Some(charged.payment_id));
        match done::<Refunded>(&s.call("/payment/refund", &json!({"orderId": order})).await) {
            Refunded::Payment(p) => assert_eq!(p.status, PaymentStatus::Refunded),
            other => panic!("{other:?}"),
        }
        let late = new_order_id();
        match done::<Refunded>(&s.call("/payment/refund", &json!({"orderId": late})).await) {
            Refunded::Tombstone(t) => assert_eq!(t.order_id, late),
            other => panic!("{other:?}"),
        }
        refused(
            &s.call(
                "/payment/charge",
                &json!({"orderId": late, "amount": 100, "currency": "USD"}),
            )
            .await,
            409,
            ProblemCode::OrderCanceled,
        );
    }

    #[tokio::test]
    async fn order_answers_parse_as_the_contracts_types() {
        let s = Stack::start().await;
        let item = s.create_item(1000, "USD", 10).await;
        let completed: Order = done(&s.checkout(json!({"itemId": item, "quantity": 1})).await);
        assert_eq!(completed.status, OrderStatus::Completed);
        let fetched: Order = done(
            &s.get(&format!("/order/orders/{}", completed.order_id), None)
                .await,
        );
        assert_eq!(fetched, completed);
        let p = refused(
            &s.checkout(json!({"itemId": item, "quantity": 1000})).await,
            409,
            ProblemCode::InsufficientStock,
        );
        assert_eq!(p.context.order_status, Some(OrderStatus::Failed));
    }
}
