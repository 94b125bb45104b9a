//! A checkout: the order written before anything else, its saga started (or found running, or
//! started again after an outage), and the order as it stands when the saga ends or the deadline
//! comes.

use super::participants::Participants;
use super::saga::Saga;
use crate::domain::{policy, Order};
use crate::storage::{orders, Opened, StorageError};
use shared::client::CallContext;
use shared::contract::order::CheckoutRequest;
use shared::idempotency::IdempotencyContext;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

pub enum Checkout {
    /// The order as it stood when its saga ended or the deadline came.
    Order(Order),
    /// The key was used before for another request.
    KeyReused,
}

/// What a retry of a key finds.
enum Resumed {
    /// The order runs: its driver, when this checkout started one.
    Running(Uuid, Option<JoinHandle<Result<Order, StorageError>>>),
    /// The order is finished for good.
    Finished(Order),
}

/// How the wait for a saga ended.
enum Waited {
    Ended(Order),
    /// The deadline came first; the saga goes on.
    Deadline,
    /// The driver task died (a panic); the recovery worker resumes the order after its lease.
    Crashed,
    /// The driver stopped on a storage error; the recovery worker resumes the order after its
    /// lease.
    Stopped(StorageError),
}

impl<P: Participants> Saga<P> {
    /// Checks out a cart with its key: writes the order (or finds the one the key made), drives it
    /// — a new order, an orphaned one, or a new attempt of one that failed because stock or payment
    /// could not be reached — and returns it as it stands when it ends or at `deadline`.
    pub async fn checkout(
        self: &Arc<Self>,
        request: CheckoutRequest,
        idem: &IdempotencyContext,
        context: CallContext,
        deadline: Instant,
    ) -> Result<Checkout, StorageError> {
        let customer = request.customer_id.map(|c| c.into_inner());
        let opened = self
            .writes
            .open(request.items.merged(), customer, idem, &context)
            .await?;
        let (id, driver) = match opened {
            Opened::New(order) => (order.id, Some(self.spawn_new(order, context))),
            Opened::KeyReused => return Ok(Checkout::KeyReused),
            Opened::Existing(order) => match self.resume(order, context).await? {
                Resumed::Running(id, driver) => (id, driver),
                Resumed::Finished(order) => return Ok(Checkout::Order(order)),
            },
        };
        let waited = match driver {
            Some(driver) => wait(driver, deadline).await,
            None => self.wait_for_terminal(id, deadline).await?,
        };
        match waited {
            Waited::Ended(order) => return Ok(Checkout::Order(order)),
            Waited::Deadline => {}
            Waited::Crashed => {
                tracing::error!(order_id = %id, "the saga's driver crashed; recovery will resume the order");
            }
            Waited::Stopped(e @ StorageError::Unavailable(_)) => return Err(e),
            Waited::Stopped(e) => {
                tracing::warn!(order_id = %id, error = %e, "the saga stopped; recovery will resume the order");
            }
        }
        let order = orders::get(self.pool(), id)
            .await?
            .ok_or(StorageError::NotFound("order"))?;
        Ok(Checkout::Order(order))
    }

    /// A retry of a key whose order exists.
    async fn resume(
        self: &Arc<Self>,
        order: Order,
        context: CallContext,
    ) -> Result<Resumed, StorageError> {
        let id = order.id;
        if order.status.is_terminal() {
            // Failed only because stock or payment could not be reached: a new attempt.
            let Some(restart) = policy::restart(&order) else {
                return Ok(Resumed::Finished(order));
            };
            return Ok(match self.writes.transition(&order, &restart).await? {
                Some(restarted) => {
                    tracing::info!(order_id = %id, attempt = restarted.attempt, "a retry of the checkout starts a new attempt");
                    Resumed::Running(id, Some(self.spawn_new(restarted, context)))
                }
                // Another retry started it first: wait for that one.
                None => Resumed::Running(id, None),
            });
        }
        // Still running: drive it here if its driver is gone (its lease ran out).
        let orphaned = orders::claim(self.pool(), id, self.lease).await?;
        Ok(Resumed::Running(id, orphaned.then(|| self.spawn(id))))
    }

    /// Waits, up to `deadline`, for an order another driver drives to be terminal.
    async fn wait_for_terminal(&self, id: Uuid, deadline: Instant) -> Result<Waited, StorageError> {
        while Instant::now() < deadline {
            if orders::status(self.pool(), id)
                .await?
                .is_some_and(|s| s.is_terminal())
            {
                return Ok(match orders::get(self.pool(), id).await? {
                    Some(order) => Waited::Ended(order),
                    None => Waited::Deadline,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(Waited::Deadline)
    }
}

/// Waits, up to `deadline`, for a driver this checkout started.
async fn wait(driver: JoinHandle<Result<Order, StorageError>>, deadline: Instant) -> Waited {
    match tokio::time::timeout_at(deadline, driver).await {
        Ok(Ok(Ok(order))) => Waited::Ended(order),
        Ok(Ok(Err(e))) => Waited::Stopped(e),
        Ok(Err(_)) => Waited::Crashed,
        Err(_) => Waited::Deadline,
    }
}
