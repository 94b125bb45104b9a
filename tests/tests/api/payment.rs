//! The payment service (docs/api.md, "payment"): every row, with its effect on stored state.

use serde_json::{json, Value};
use tests::{new_key, new_order_id, service_token, Options, Part, Stack};

async fn charge(s: &Stack, order: &str, amount: i64) -> tests::Answer {
    s.call(
        "/payment/charge",
        &json!({"orderId": order, "amount": amount, "currency": "USD"}),
    )
    .await
}

async fn payment(s: &Stack, id: &Value) -> Value {
    let a = s
        .get(
            &format!("/payment/payments/{}", id.as_str().unwrap()),
            Some(service_token()),
        )
        .await;
    a.expect(200, None);
    a.json
}

#[tokio::test]
async fn retries_succeed_when_the_processor_approves() {
    let s = Stack::start_with(Options::default().env("PAYMENT_RETRY_SUCCESS_PROBABILITY", 1)).await;
    let failed = charge(&s, &new_order_id(), 150_000).await;
    let id = failed.json["paymentId"].as_str().unwrap().to_string();
    let r = s
        .call(&format!("/payment/payments/{id}/retry"), &json!({}))
        .await;
    r.expect(200, None);
    assert_eq!(
        (r.json["status"].as_str(), r.json["retries"].as_i64()),
        (Some("succeeded"), Some(1))
    );
    assert_eq!(r.json["failureCode"], Value::Null);
    s.call(&format!("/payment/payments/{id}/retry"), &json!({}))
        .await
        .expect(409, Some("payment_not_retryable"));
    // The body is optional.
    let a = s
        .send(
            s.client
                .post(s.url(&format!("/payment/payments/{id}/retry")))
                .bearer_auth(service_token())
                .header("Idempotency-Key", new_key()),
        )
        .await;
    a.expect(409, Some("payment_not_retryable"));
    s.call(
        "/payment/payments/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e/retry",
        &json!({}),
    )
    .await
    .expect(404, Some("payment_not_found"));
}

#[tokio::test]
async fn three_failed_retries_exhaust_a_payment() {
    let s = Stack::start_with(Options::default().env("PAYMENT_RETRY_SUCCESS_PROBABILITY", 0)).await;
    let failed = charge(&s, &new_order_id(), 150_000).await;
    let id = failed.json["paymentId"].as_str().unwrap().to_string();
    let path = format!("/payment/payments/{id}/retry");
    for n in 1..=2 {
        let r = s.call(&path, &json!({})).await;
        r.expect(200, None);
        assert_eq!(
            (r.json["status"].as_str(), r.json["retries"].as_i64()),
            (Some("failed"), Some(n))
        );
    }
    let r = s.call(&path, &json!({})).await;
    r.expect(200, None);
    assert_eq!(
        (r.json["status"].as_str(), r.json["retries"].as_i64()),
        (Some("exhausted"), Some(3))
    );
    let r = s.call(&path, &json!({})).await;
    r.expect(409, Some("payment_not_retryable"));
    assert_eq!(r.json["paymentStatus"], "exhausted");
    // Nothing was taken, so a refund changes nothing.
    let refund = s.call("/payment/refund", &json!({"paymentId": id})).await;
    refund.expect(200, None);
    assert_eq!(
        (
            refund.json["status"].as_str(),
            refund.json["retries"].as_i64()
        ),
        (Some("exhausted"), Some(3))
    );
}

#[tokio::test]
async fn injected_faults_answer_503_before_doing_anything() {
    let s = Stack::start_with(Options::default().env("PAYMENT_FAULT_RATE", 1)).await;
    let a = charge(&s, &new_order_id(), 100).await;
    a.expect(503, Some("service_unavailable"));
    assert_eq!(a.header("retry-after"), Some("1"));
    s.get("/payment/health/ready", None).await.expect(200, None);
    let db = s.db(Part::Payment).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(n, 0);

    // Restarted without faults, the same request goes through.
    s.stop(Part::Payment).await;
    s.start_part(Part::Payment, &[("PAYMENT_FAULT_RATE", "0")])
        .await;
    charge(&s, &new_order_id(), 100).await.expect(201, None);
}

/// These speak only HTTP to nginx, so they also run against a stack the suite did not start
/// (`TEST_STACK_URL`): one shared and in use, where each test finds its own payments among the
/// others'.
/// A payment stored before currencies were checked against ISO 4217 (its `QQQ` allowed by the
/// column's CHECK then, as now) still reads, alone and in the list: only what clients send is held
/// to the list.
#[tokio::test]
async fn a_payment_stored_in_a_currency_that_is_not_one_still_reads() {
    let s = Stack::start().await;
    let db = s.db(Part::Payment).await;
    let order = new_order_id();
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO payments (id, order_id, amount, currency, status, failure_code,
                               idempotency_key, request_hash)
         VALUES (gen_random_uuid(), $1, 900, 'QQQ', 'failed', 'amount_above_limit', $2, 'old')
         RETURNING id",
    )
    .bind(&order)
    .bind(new_key())
    .fetch_one(&db)
    .await
    .unwrap();
    let one = payment(&s, &json!(id.to_string())).await;
    assert_eq!(
        (one["currency"].as_str(), one["amount"].as_i64()),
        (Some("QQQ"), Some(900))
    );
    let page = s
        .get(
            &format!("/payment/payments?orderId={order}"),
            Some(service_token()),
        )
        .await;
    page.expect(200, None);
    assert_eq!(page.json["payments"][0]["currency"], "QQQ", "{}", page.text);
}

mod black_box {
    use super::*;

    /// The payments listed for an order.
    async fn payments_of_order(s: &Stack, order: &str) -> Vec<Value> {
        let a = s
            .get(
                &format!("/payment/payments?orderId={order}"),
                Some(service_token()),
            )
            .await;
        a.expect(200, None);
        a.json["payments"].as_array().cloned().unwrap()
    }

    /// The ids of a page of payments.
    fn ids_of(page: &tests::Answer) -> Vec<Value> {
        page.json["payments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["paymentId"].clone())
            .collect()
    }

    #[tokio::test]
    async fn charges_succeed_or_are_declined_as_created_payments() {
        let s = Stack::start().await;
        let order = new_order_id();
        let ok = s
            .call("/payment/charge", &json!({"orderId": order, "customerId": "cust-1", "amount": 1999, "currency": "EUR", "reference": "cart 7"}))
            .await;
        ok.expect(201, None);
        for field in ["paymentId", "createdAt", "updatedAt"] {
            assert!(ok.json[field].is_string(), "{field}");
        }
        assert_eq!(ok.json["orderId"], order.as_str());
        assert_eq!(ok.json["customerId"], "cust-1");
        assert_eq!(
            (ok.json["amount"].as_i64(), ok.json["currency"].as_str()),
            (Some(1999), Some("EUR"))
        );
        assert_eq!(ok.json["status"], "succeeded");
        assert_eq!(ok.json["failureCode"], Value::Null);
        assert_eq!(ok.json["retries"], 0);
        assert_eq!(
            payment(&s, &ok.json["paymentId"]).await["status"],
            "succeeded"
        );

        // Above PAYMENT_DECLINE_ABOVE (100000): declined, but a payment all the same.
        let declined = charge(&s, &new_order_id(), 100_001).await;
        declined.expect(201, None);
        assert_eq!(declined.json["status"], "failed");
        assert_eq!(declined.json["failureCode"], "amount_above_limit");

        // Without an order.
        s.call("/payment/charge", &json!({"amount": 5, "currency": "USD"}))
            .await
            .expect(201, None);

        // One payment per order (and attempt).
        let again = charge(&s, &order, 1999).await;
        again.expect(409, Some("payment_exists"));
        assert_eq!(again.json["paymentId"], ok.json["paymentId"]);
        assert_eq!(payments_of_order(&s, &order).await.len(), 1);
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments WHERE order_id = $1")
                .bind(&order)
                .fetch_one(&db)
                .await
                .unwrap();
            assert_eq!(n, 1);
        }
    }

    #[tokio::test]
    async fn refunds_give_back_once_and_only_what_was_taken() {
        let s = Stack::start().await;
        let order = new_order_id();
        let paid = charge(&s, &order, 700).await;
        let id = paid.json["paymentId"].clone();

        let r = s.call("/payment/refund", &json!({"paymentId": id})).await;
        r.expect(200, None);
        assert_eq!(r.json["status"], "refunded");
        let again = s.call("/payment/refund", &json!({"orderId": order})).await;
        again.expect(200, None);
        assert_eq!(again.json["status"], "refunded");
        assert_eq!(payment(&s, &id).await["status"], "refunded");
        // A charge for a refunded order is refused.
        charge(&s, &order, 700)
            .await
            .expect(409, Some("order_canceled"));

        let declined = charge(&s, &new_order_id(), 200_000).await;
        let r = s
            .call(
                "/payment/refund",
                &json!({"paymentId": declined.json["paymentId"]}),
            )
            .await;
        r.expect(200, None);
        assert_eq!(
            r.json["status"], "failed",
            "nothing was taken, nothing is given back"
        );

        s.call(
            "/payment/refund",
            &json!({"paymentId": "6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e"}),
        )
        .await
        .expect(404, Some("payment_not_found"));
        s.call("/payment/refund", &json!({"paymentId": "not-a-uuid"}))
            .await
            .expect(400, Some("validation_error"));
    }

    /// A failed payment whose order was compensated (`/refund` answered for it, by order or by
    /// payment) is never charged afterwards: a retry is 409 `payment_not_retryable`, and the
    /// payment stays as it was. One not compensated is still retried.
    #[tokio::test]
    async fn a_failed_payment_is_not_retried_once_refund_answered_for_it() {
        let s = Stack::start().await;
        let retry = |id: Value| {
            let s = &s;
            async move {
                s.call(
                    &format!("/payment/payments/{}/retry", id.as_str().unwrap()),
                    &json!({}),
                )
                .await
            }
        };
        for by_order in [true, false] {
            let order = new_order_id();
            let declined = charge(&s, &order, 200_000).await;
            declined.expect(201, None);
            assert_eq!(declined.json["status"], "failed");
            let id = declined.json["paymentId"].clone();
            let target = if by_order {
                json!({"orderId": order})
            } else {
                json!({"paymentId": id})
            };
            let r = s.call("/payment/refund", &target).await;
            r.expect(200, None);
            assert_eq!(r.json["status"], "failed");
            let r = retry(id.clone()).await;
            r.expect(409, Some("payment_not_retryable"));
            assert_eq!(r.json["paymentId"], id);
            assert_eq!(r.json["paymentStatus"], "failed");
            assert!(
                r.json["detail"].as_str().unwrap().contains("compensated"),
                "{}",
                r.text
            );
            let after = payment(&s, &id).await;
            assert_eq!(
                (after["status"].as_str(), after["retries"].as_i64()),
                (Some("failed"), Some(0)),
                "by order: {by_order}"
            );
        }
        // Not compensated: the processor is asked again.
        let declined = charge(&s, &new_order_id(), 200_000).await;
        let id = declined.json["paymentId"].clone();
        let r = retry(id.clone()).await;
        r.expect(200, None);
        assert_eq!(r.json["retries"], 1);
    }

    /// A charge is in an active ISO 4217 currency: any other three letters, fund, test and
    /// precious-metal codes, withdrawn codes and lower case are refused naming the field, and no
    /// payment is made.
    #[tokio::test]
    async fn charges_are_only_in_active_iso_4217_currencies() {
        let s = Stack::start().await;
        for currency in ["QQQ", "XTS", "XXX", "BOV", "XAU", "HRK", "usd"] {
            let order = new_order_id();
            let a = s
                .call(
                    "/payment/charge",
                    &json!({"orderId": order, "amount": 500, "currency": currency}),
                )
                .await;
            a.expect(400, Some("validation_error"));
            let detail = a.json["detail"].as_str().unwrap_or("");
            assert!(
                detail.starts_with("currency: ") && detail.contains(currency),
                "the detail names the field and the value: {}",
                a.text
            );
            assert_eq!(
                payments_of_order(&s, &order).await,
                Vec::<Value>::new(),
                "nothing written"
            );
        }
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
                .fetch_one(&db)
                .await
                .unwrap();
            assert_eq!(n, 0, "nothing written");
        }
        let a = s
            .call(
                "/payment/charge",
                &json!({"orderId": new_order_id(), "amount": 500, "currency": "XCG"}),
            )
            .await;
        a.expect(201, None);
        assert_eq!(a.json["currency"], "XCG");
    }

    async fn charge_attempt(s: &Stack, order: &str, attempt: i64, amount: i64) -> tests::Answer {
        s.call(
            "/payment/charge",
            &json!({"orderId": order, "attempt": attempt, "amount": amount, "currency": "USD"}),
        )
        .await
    }

    /// One payment per order and attempt: an order's second attempt is charged under the order's
    /// id, a lookup by the order's id finds every attempt's payment, and a tombstone refuses only
    /// the attempt it was left for.
    #[tokio::test]
    async fn one_payment_per_order_and_attempt_each_with_its_own_tombstone() {
        let s = Stack::start().await;
        let order = new_order_id();
        let first = charge(&s, &order, 1999).await;
        first.expect(201, None);
        assert_eq!(
            (&first.json["orderId"], &first.json["attempt"]),
            (&json!(order), &json!(1)),
            "without attempt, the first: {}",
            first.text
        );
        let second = charge_attempt(&s, &order, 2, 1999).await;
        second.expect(201, None);
        assert_eq!(
            (&second.json["orderId"], &second.json["attempt"]),
            (&json!(order), &json!(2)),
            "{}",
            second.text
        );
        // One per order and attempt, whatever the key.
        let again = charge_attempt(&s, &order, 2, 1999).await;
        again.expect(409, Some("payment_exists"));
        assert_eq!(again.json["paymentId"], second.json["paymentId"]);
        assert!(
            again.json["detail"]
                .as_str()
                .unwrap()
                .contains("(attempt 2)"),
            "{}",
            again.text
        );
        let again = charge_attempt(&s, &order, 1, 1999).await;
        again.expect(409, Some("payment_exists"));
        assert_eq!(again.json["paymentId"], first.json["paymentId"]);
        // Found by the order's id, every attempt's, newest first.
        let found = payments_of_order(&s, &order).await;
        let found: Vec<(&Value, &Value)> = found
            .iter()
            .map(|p| (&p["paymentId"], &p["attempt"]))
            .collect();
        assert_eq!(
            found,
            [
                (&second.json["paymentId"], &json!(2)),
                (&first.json["paymentId"], &json!(1))
            ]
        );

        // A refund of attempt 2 before its charge leaves a tombstone for attempt 2 only.
        let other = new_order_id();
        let r = s
            .call("/payment/refund", &json!({"orderId": other, "attempt": 2}))
            .await;
        r.expect(200, None);
        assert_eq!(
            r.json,
            json!({"orderId": other, "attempt": 2, "status": "canceled"})
        );
        charge_attempt(&s, &other, 2, 100)
            .await
            .expect(409, Some("order_canceled"));
        let one = charge(&s, &other, 100).await;
        one.expect(201, None);
        assert_eq!(one.json["attempt"], 1);
        let refunded = s.call("/payment/refund", &json!({"orderId": other})).await;
        refunded.expect(200, None);
        assert_eq!(refunded.json["paymentId"], one.json["paymentId"]);
        assert_eq!(refunded.json["status"], "refunded");
        charge_attempt(&s, &other, 3, 100).await.expect(201, None);

        // An attempt is a whole number from 1, and only an order's.
        for bad in [
            json!({"orderId": order, "attempt": 0, "amount": 5, "currency": "USD"}),
            json!({"orderId": order, "attempt": "2", "amount": 5, "currency": "USD"}),
            json!({"orderId": order, "attempt": 1.5, "amount": 5, "currency": "USD"}),
            json!({"attempt": 2, "amount": 5, "currency": "USD"}),
        ] {
            let a = s.call("/payment/charge", &bad).await;
            a.expect(400, Some("validation_error"));
            let detail = a.json["detail"].as_str().unwrap_or_default();
            assert!(detail.starts_with("attempt"), "{bad}: {detail}");
        }
        let a = s
            .call("/payment/refund", &json!({"orderId": order, "attempt": 0}))
            .await;
        a.expect(400, Some("validation_error"));
        assert!(a.json["detail"].as_str().unwrap().starts_with("attempt"));
    }

    #[tokio::test]
    async fn a_refund_before_its_charge_leaves_a_tombstone() {
        let s = Stack::start().await;
        let order = new_order_id();
        let r = s.call("/payment/refund", &json!({"orderId": order})).await;
        r.expect(200, None);
        assert_eq!(r.json, json!({"orderId": order, "status": "canceled"}));
        charge(&s, &order, 100)
            .await
            .expect(409, Some("order_canceled"));
        assert_eq!(
            payments_of_order(&s, &order).await,
            Vec::<Value>::new(),
            "no hanging charge"
        );
        if s.is_own() {
            let db = s.db(Part::Payment).await;
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
                .fetch_one(&db)
                .await
                .unwrap();
            assert_eq!(n, 0, "no hanging charge");
        }
    }

    #[tokio::test]
    async fn payments_are_listed_newest_first_with_filters() {
        let s = Stack::start().await;
        let order = new_order_id();
        let mut ids = vec![];
        for amount in [100, 200_000, 300] {
            let a = charge(&s, &new_order_id(), amount).await;
            ids.push(a.json["paymentId"].clone());
        }
        let last = charge(&s, &order, 50).await;
        last.expect(201, None);
        let all = s.get("/payment/payments", Some(service_token())).await;
        all.expect(200, None);
        assert_eq!(
            (all.json["limit"].as_i64(), all.json["offset"].as_i64()),
            (Some(100), Some(0))
        );
        if s.is_own() {
            assert_eq!(all.json["total"].as_i64(), Some(4));
            assert_eq!(all.json["payments"][1]["paymentId"], ids[2], "newest first");
        } else {
            assert!(all.json["total"].as_i64().unwrap() >= 4, "{}", all.text);
        }
        // Newest first, whatever others charged meanwhile.
        let newest = s
            .get("/payment/payments?limit=1000", Some(service_token()))
            .await;
        newest.expect(200, None);
        let newest = ids_of(&newest);
        let at = |id: &Value| {
            newest
                .iter()
                .position(|p| p == id)
                .unwrap_or_else(|| panic!("{id} is among the newest payments"))
        };
        let positions = [&last.json["paymentId"], &ids[2], &ids[1], &ids[0]].map(at);
        assert!(positions.is_sorted(), "newest first: {positions:?}");

        let failed = s
            .get("/payment/payments?status=failed", Some(service_token()))
            .await;
        failed.expect(200, None);
        if s.is_own() {
            assert_eq!(failed.json["total"], 1);
            assert_eq!(failed.json["payments"][0]["paymentId"], ids[1]);
        }
        let failed = s
            .get(
                "/payment/payments?status=failed&limit=1000",
                Some(service_token()),
            )
            .await;
        assert!(
            failed.json["payments"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["status"] == "failed"),
            "{}",
            failed.text
        );
        let failed = ids_of(&failed);
        assert!(failed.contains(&ids[1]));
        for other in [&ids[0], &ids[2], &last.json["paymentId"]] {
            assert!(!failed.contains(other), "{other} did not fail");
        }
        let by_order = payments_of_order(&s, &order).await;
        assert_eq!(by_order.len(), 1);
        assert_eq!(by_order[0]["amount"], 50);
        let page = s
            .get("/payment/payments?limit=2&offset=2", Some(service_token()))
            .await;
        page.expect(200, None);
        assert_eq!(
            (page.json["limit"].as_i64(), page.json["offset"].as_i64()),
            (Some(2), Some(2))
        );
        assert_eq!(page.json["payments"].as_array().unwrap().len(), 2);
        if s.is_own() {
            assert_eq!(page.json["payments"][1]["paymentId"], ids[0]);
            assert_eq!(page.json["total"], 4);
        } else {
            // Others charge meanwhile: the page is the third and fourth of the first four when
            // nothing was charged between asking for the one and for the other.
            let first_four = || s.get("/payment/payments?limit=4", Some(service_token()));
            let mut compared = false;
            for _ in 0..100 {
                let before = first_four().await;
                let page = s
                    .get("/payment/payments?limit=2&offset=2", Some(service_token()))
                    .await;
                let after = first_four().await;
                let (before_ids, after_ids) = (ids_of(&before), ids_of(&after));
                if before_ids == after_ids && before.json["total"] == after.json["total"] {
                    assert_eq!(ids_of(&page), before_ids[2..4], "{}", page.text);
                    assert_eq!(page.json["total"], before.json["total"]);
                    compared = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            assert!(
                compared,
                "payments were charged all the time: no page to compare"
            );
        }

        for bad in [
            "limit=0",
            "limit=1001",
            "offset=-1",
            "status=canceled",
            "limit=x",
        ] {
            s.get(&format!("/payment/payments?{bad}"), Some(service_token()))
                .await
                .expect(400, Some("validation_error"));
        }
        s.get(
            "/payment/payments/6f1c1f5e-8d4e-4a5b-9a43-2f0a6f1f0b7e",
            Some(service_token()),
        )
        .await
        .expect(404, Some("payment_not_found"));
    }
}
