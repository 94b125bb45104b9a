//! The ledger's decisions, as pure functions: what a capture allocates and credits, what a refund
//! takes back and from which account, what a release moves, and what legs do to balances. The
//! storage writes what these return; nothing here does I/O.

use super::rules;
use super::split::{self, Allocated, ReversalError};
use chrono::{DateTime, Utc};
use shared::contract::ledger::{Account, AccountRef, Leg};
use shared::contract::payment::ChargeLine;
use shared::contract::splits::{Share, PLATFORM};
use uuid::Uuid;

/// The version of a product's rule in force when a payment was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInForce {
    pub id: Uuid,
    pub product_id: i64,
    pub effective_from: DateTime<Utc>,
    pub effective_to: Option<DateTime<Utc>>,
    pub shares: Vec<Share>,
}

impl RuleInForce {
    /// Whether this is the rule of `product` at `at`.
    pub fn applies(&self, product: i64, at: DateTime<Utc>) -> bool {
        self.product_id == product
            && self.effective_from <= at
            && self.effective_to.is_none_or(|to| at < to)
    }
}

/// One allocation a capture makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAllocation {
    pub product_id: Option<i64>,
    pub recipient_id: Uuid,
    /// `None` for the platform's default.
    pub split_rule_id: Option<Uuid>,
    pub amount: i64,
}

/// Something a capture could not do as a rule says (counted in `split_anomalies_total{type}`);
/// the money then goes where the description says, so that the capture still sums exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// Fixed shares asked for more than the line had; each got what was left.
    FixedShareCapped,
    /// The rule could not place the whole line (it cannot happen to a rule accepted by
    /// `rules::check`): the line went to the platform.
    RuleCannotTakeAll,
    /// The lines did not sum to the payment (refused at `/charge`, so it cannot happen): the
    /// whole payment went to the platform.
    LinesDoNotSum,
}

impl Anomaly {
    pub fn as_str(self) -> &'static str {
        match self {
            Anomaly::FixedShareCapped => "fixed_share_capped",
            Anomaly::RuleCannotTakeAll => "rule_cannot_take_all",
            Anomaly::LinesDoNotSum => "lines_do_not_sum",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    /// Zero amounts are left out; they sum to the payment's amount.
    pub allocations: Vec<NewAllocation>,
    pub anomalies: Vec<Anomaly>,
}

impl Capture {
    /// The capture entry's legs: the processor's money to each recipient's `pending`, one leg per
    /// recipient (in the order they first appear).
    pub fn legs(&self) -> Vec<Leg> {
        let mut per_recipient: Vec<(Uuid, i64)> = Vec::new();
        for a in &self.allocations {
            match per_recipient.iter_mut().find(|(r, _)| *r == a.recipient_id) {
                Some((_, sum)) => *sum += a.amount,
                None => per_recipient.push((a.recipient_id, a.amount)),
            }
        }
        per_recipient
            .into_iter()
            .map(|(recipient, amount)| Leg {
                debit: system(Account::Processor),
                credit: of(recipient, Account::Pending),
                amount,
            })
            .collect()
    }
}

fn system(account: Account) -> AccountRef {
    AccountRef {
        account,
        recipient_id: None,
    }
}

fn of(recipient: Uuid, account: Account) -> AccountRef {
    AccountRef {
        account,
        recipient_id: Some(recipient),
    }
}

fn to_platform(product_id: Option<i64>, amount: i64) -> NewAllocation {
    NewAllocation {
        product_id,
        recipient_id: PLATFORM,
        split_rule_id: None,
        amount,
    }
}

/// Splits a succeeded payment of `amount`: each line by the rule `rule_of` its product gives (the
/// one in force when the payment was made), a line without one — and a payment without lines —
/// wholly to the platform.
pub fn capture<'r>(
    amount: i64,
    lines: Option<&[ChargeLine]>,
    rule_of: impl Fn(i64) -> Option<&'r RuleInForce>,
) -> Capture {
    let mut capture = Capture {
        allocations: Vec::new(),
        anomalies: Vec::new(),
    };
    let lines = match lines {
        Some(lines)
            if lines
                .iter()
                .map(|l| i128::from(l.amount.get()))
                .sum::<i128>()
                == i128::from(amount) =>
        {
            lines
        }
        Some(_) => {
            capture.anomalies.push(Anomaly::LinesDoNotSum);
            capture.allocations.push(to_platform(None, amount));
            return capture;
        }
        None => {
            capture.allocations.push(to_platform(None, amount));
            return capture;
        }
    };
    for line in lines {
        let product = line.product_id.get();
        let Some(rule) = rule_of(product) else {
            capture
                .allocations
                .push(to_platform(Some(product), line.amount.get()));
            continue;
        };
        match split::split_line(
            line.amount.get(),
            line.quantity.get(),
            &rules::kinds(&rule.shares),
        ) {
            Ok(split) => {
                if split.capped {
                    capture.anomalies.push(Anomaly::FixedShareCapped);
                }
                for (share, amount) in rule.shares.iter().zip(split.amounts) {
                    if amount > 0 {
                        capture.allocations.push(NewAllocation {
                            product_id: Some(product),
                            recipient_id: share.recipient_id(),
                            split_rule_id: Some(rule.id),
                            amount,
                        });
                    }
                }
            }
            Err(_) => {
                capture.anomalies.push(Anomaly::RuleCannotTakeAll);
                capture
                    .allocations
                    .push(to_platform(Some(product), line.amount.get()));
            }
        }
    }
    capture
}

/// An allocation as a refund or a release finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub recipient_id: Uuid,
    pub amount: i64,
    pub reversed: i64,
    /// Its unreversed rest moved to `available` already.
    pub released: bool,
}

/// What a refund does: the amount it takes back from each allocation (in order), and the refund
/// entry's legs — from each recipient's `pending` while the allocation is unreleased, else from
/// `available`, to the processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    pub reversed: Vec<i64>,
    pub legs: Vec<Leg>,
}

/// The reversal of a refund of `refund` from a payment of `payment_amount` of which `refunded`
/// was refunded before (the arithmetic is [`split::reverse`]).
pub fn reversal(
    allocations: &[Held],
    payment_amount: i64,
    refunded: i64,
    refund: i64,
) -> Result<Reversal, ReversalError> {
    let allocated: Vec<Allocated> = allocations
        .iter()
        .map(|a| Allocated {
            amount: a.amount,
            reversed: a.reversed,
        })
        .collect();
    let reversed = split::reverse(&allocated, payment_amount, refunded, refund)?;
    let mut legs: Vec<Leg> = Vec::new();
    for (a, amount) in allocations.iter().zip(&reversed) {
        if *amount == 0 {
            continue;
        }
        let from = of(
            a.recipient_id,
            if a.released {
                Account::Available
            } else {
                Account::Pending
            },
        );
        match legs.iter_mut().find(|l| l.debit == from) {
            Some(leg) => leg.amount += amount,
            None => legs.push(Leg {
                debit: from,
                credit: system(Account::Processor),
                amount: *amount,
            }),
        }
    }
    Ok(Reversal { reversed, legs })
}

/// The release entry's legs for a payment's unreleased allocations: each recipient's unreversed
/// rest from `pending` to `available` (none when refunds took everything back).
pub fn release(allocations: &[Held]) -> Vec<Leg> {
    let mut legs: Vec<Leg> = Vec::new();
    for a in allocations.iter().filter(|a| !a.released) {
        let rest = a.amount - a.reversed;
        if rest <= 0 {
            continue;
        }
        match legs
            .iter_mut()
            .find(|l| l.debit.recipient_id == Some(a.recipient_id))
        {
            Some(leg) => leg.amount += rest,
            None => legs.push(Leg {
                debit: of(a.recipient_id, Account::Pending),
                credit: of(a.recipient_id, Account::Available),
                amount: rest,
            }),
        }
    }
    legs
}

/// The legs of a posted transfer: `amount` from the source's `available` to the destination's.
pub fn transfer(from: Uuid, to: Uuid, amount: i64) -> Vec<Leg> {
    vec![Leg {
        debit: AccountRef {
            account: Account::Available,
            recipient_id: Some(from),
        },
        credit: AccountRef {
            account: Account::Available,
            recipient_id: Some(to),
        },
        amount,
    }]
}

/// The legs of a paid payout: `amount` from the recipient's `available` out to `payouts`.
pub fn payout(recipient: Uuid, amount: i64) -> Vec<Leg> {
    vec![Leg {
        debit: AccountRef {
            account: Account::Available,
            recipient_id: Some(recipient),
        },
        credit: AccountRef {
            account: Account::Payouts,
            recipient_id: None,
        },
        amount,
    }]
}

/// A sum of money that does not fit in 64 bits: a broken batch, never a real one (amounts are at
/// most 10¹² minor units, and a batch sums at most a few hundred of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a balance change overflows 64 bits")]
pub struct Overflow;

/// What legs do to recipients' balances: `(recipient, pending change, available change)`, one per
/// recipient, sorted by recipient (the order balance rows are locked in, so that writers never
/// deadlock). Summed with checked arithmetic.
pub fn balance_changes(legs: &[Leg]) -> Result<Vec<(Uuid, i64, i64)>, Overflow> {
    let mut changes: Vec<(Uuid, i64, i64)> = Vec::new();
    let mut add = |account: &AccountRef, amount: i64| -> Result<(), Overflow> {
        let Some(recipient) = account.recipient_id else {
            return Ok(());
        };
        let i = match changes.iter().position(|(r, _, _)| *r == recipient) {
            Some(i) => i,
            None => {
                changes.push((recipient, 0, 0));
                changes.len() - 1
            }
        };
        let total = match account.account {
            Account::Pending => &mut changes[i].1,
            Account::Available => &mut changes[i].2,
            Account::Processor | Account::Payouts => return Ok(()),
        };
        *total = total.checked_add(amount).ok_or(Overflow)?;
        Ok(())
    };
    for leg in legs {
        add(&leg.debit, leg.amount.checked_neg().ok_or(Overflow)?)?;
        add(&leg.credit, leg.amount)?;
    }
    changes.retain(|(_, pending, available)| *pending != 0 || *available != 0);
    changes.sort_by_key(|(r, _, _)| *r);
    Ok(changes)
}

/// `changes` with a change of nothing for each recipient of `also` that has none, sorted by
/// recipient: a writer that also touches other balance rows of the currency afterwards (lowering
/// the holds of transfers and payouts) has every one of them locked by the one statement that
/// changes balances, in the one order — a recipient whose changes net to zero (A→B and B→C in one
/// batch) included, so that it is not locked later, out of order.
pub fn locking_also(
    mut changes: Vec<(Uuid, i64, i64)>,
    also: impl IntoIterator<Item = Uuid>,
) -> Vec<(Uuid, i64, i64)> {
    for recipient in also {
        if !changes.iter().any(|(r, _, _)| *r == recipient) {
            changes.push((recipient, 0, 0));
        }
    }
    changes.sort_by_key(|(r, _, _)| *r);
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::contract::values::{Amount, BasisPoints, ItemId, Units};

    fn line(product: i64, quantity: i64, amount: i64) -> ChargeLine {
        ChargeLine {
            product_id: ItemId::new(product).unwrap(),
            quantity: Units::new(quantity).unwrap(),
            amount: Amount::new(amount).unwrap(),
        }
    }

    fn r(n: u128) -> Uuid {
        Uuid::from_u128(1000 + n)
    }

    fn rule(product: i64, shares: Vec<Share>) -> RuleInForce {
        RuleInForce {
            id: Uuid::from_u128(product as u128),
            product_id: product,
            effective_from: DateTime::UNIX_EPOCH,
            effective_to: None,
            shares,
        }
    }

    fn pct(n: u128, bp: i64) -> Share {
        Share::Percentage {
            recipient_id: r(n),
            basis_points: BasisPoints::new(bp).unwrap(),
        }
    }

    proptest::proptest! {
        /// Whatever the lines and rules (at the contract's extremes: 10¹² per line, 10⁶ units,
        /// fixed shares of 10¹² per unit), a capture allocates exactly the payment, in positive
        /// amounts, the same way every time, and its legs credit exactly that.
        #[test]
        fn a_capture_allocates_exactly_the_payment(
            lines in proptest::collection::vec(
                (1i64..=4, 1i64..=1_000_000, 1i64..=1_000_000_000_000), 1..=50),
            fixed in proptest::collection::vec(1i64..=1_000_000_000_000, 0..3),
            // At most 10000 basis points beside the remainder, as `rules::check` requires.
            bps in proptest::collection::vec(1i64..=2500, 0..4),
        ) {
            let amount: i64 = lines.iter().map(|l| l.2).sum();
            let lines: Vec<ChargeLine> = lines.iter().map(|&(p, q, a)| line(p, q, a)).collect();
            let mut shares: Vec<Share> = fixed
                .iter()
                .enumerate()
                .map(|(i, &a)| Share::Fixed { recipient_id: r(i as u128), amount: Amount::new(a).unwrap() })
                .collect();
            shares.extend(bps.iter().enumerate().map(|(i, &b)| pct(10 + i as u128, b)));
            shares.push(Share::Remainder { recipient_id: PLATFORM });
            // Products 1 and 2 have the rule, 3 and 4 none.
            let rules = [rule(1, shares.clone()), rule(2, shares)];
            let find = |p: i64| rules.iter().find(|r| r.product_id == p);
            let c = capture(amount, Some(&lines), find);
            proptest::prop_assert_eq!(c.allocations.iter().map(|a| a.amount).sum::<i64>(), amount);
            proptest::prop_assert!(c.allocations.iter().all(|a| a.amount > 0));
            proptest::prop_assert_eq!(c.legs().iter().map(|l| l.amount).sum::<i64>(), amount);
            proptest::prop_assert_eq!(capture(amount, Some(&lines), find), c);
        }
    }

    #[test]
    fn lines_split_by_their_rule_and_the_rest_to_the_platform() {
        let rules = [rule(1, vec![pct(1, 3333), pct(2, 3333), pct(3, 3334)])];
        let find = |p: i64| rules.iter().find(|r| r.product_id == p);
        let c = capture(1100, Some(&[line(1, 1, 1000), line(2, 1, 100)]), find);
        let got: Vec<(Option<i64>, Uuid, i64)> = c
            .allocations
            .iter()
            .map(|a| (a.product_id, a.recipient_id, a.amount))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1), r(1), 333),
                (Some(1), r(2), 333),
                (Some(1), r(3), 334),
                (Some(2), PLATFORM, 100)
            ]
        );
        assert!(c.anomalies.is_empty());
        assert_eq!(c.allocations[3].split_rule_id, None);
        let legs = c.legs();
        assert_eq!(legs.len(), 4);
        assert!(legs.iter().all(|l| l.debit.account == Account::Processor));
        assert_eq!(legs.iter().map(|l| l.amount).sum::<i64>(), 1100);
    }

    #[test]
    fn without_lines_everything_goes_to_the_platform() {
        let c = capture(500, None, |_| None);
        assert_eq!(c.allocations, [to_platform(None, 500)]);
        let c = capture(500, Some(&[line(1, 1, 400)]), |_| None);
        assert_eq!(c.allocations, [to_platform(None, 500)]);
        assert_eq!(c.anomalies, [Anomaly::LinesDoNotSum]);
    }

    #[test]
    fn zero_shares_are_not_kept_and_capped_fixed_shares_are_anomalies() {
        let shares = vec![
            Share::Fixed {
                recipient_id: r(1),
                amount: Amount::new(40).unwrap(),
            },
            Share::Remainder { recipient_id: r(2) },
        ];
        let rules = [rule(7, shares)];
        let c = capture(100, Some(&[line(7, 3, 100)]), |p| {
            rules.iter().find(|r| r.product_id == p)
        });
        assert_eq!(c.allocations.len(), 1);
        assert_eq!(
            (c.allocations[0].recipient_id, c.allocations[0].amount),
            (r(1), 100)
        );
        assert_eq!(c.anomalies, [Anomaly::FixedShareCapped]);
    }

    #[test]
    fn refunds_take_from_pending_until_released_then_from_available() {
        let held = [
            Held {
                recipient_id: r(1),
                amount: 600,
                reversed: 0,
                released: true,
            },
            Held {
                recipient_id: r(2),
                amount: 400,
                reversed: 0,
                released: false,
            },
        ];
        let rev = reversal(&held, 1000, 0, 500).unwrap();
        assert_eq!(rev.reversed, [300, 200]);
        assert_eq!(rev.legs[0].debit, of(r(1), Account::Available));
        assert_eq!(rev.legs[1].debit, of(r(2), Account::Pending));
        assert_eq!(
            balance_changes(&rev.legs).unwrap(),
            [(r(1), 0, -300), (r(2), -200, 0)]
        );
    }

    #[test]
    fn a_release_moves_the_unreversed_rest() {
        let held = [
            Held {
                recipient_id: r(1),
                amount: 600,
                reversed: 600,
                released: false,
            },
            Held {
                recipient_id: r(2),
                amount: 400,
                reversed: 100,
                released: false,
            },
            Held {
                recipient_id: r(2),
                amount: 50,
                reversed: 0,
                released: false,
            },
        ];
        let legs = release(&held);
        assert_eq!(legs.len(), 1);
        assert_eq!(legs[0].amount, 350);
        assert_eq!(balance_changes(&legs).unwrap(), [(r(2), -350, 350)]);
    }

    #[test]
    fn a_recipient_whose_transfers_net_to_zero_is_still_locked_in_order() {
        // A→B and B→C in one batch: B's changes net to zero, but its hold is lowered.
        let legs: Vec<Leg> = [transfer(r(1), r(2), 100), transfer(r(2), r(3), 100)].concat();
        let changes = balance_changes(&legs).unwrap();
        assert_eq!(changes, [(r(1), 0, -100), (r(3), 0, 100)]);
        assert_eq!(
            locking_also(changes, [r(1), r(2)]),
            [(r(1), 0, -100), (r(2), 0, 0), (r(3), 0, 100)]
        );
        assert_eq!(
            locking_also(vec![(r(3), 0, 5)], [r(2), r(1), r(2)]),
            [(r(1), 0, 0), (r(2), 0, 0), (r(3), 0, 5)]
        );
    }

    #[test]
    fn balance_changes_that_overflow_are_refused() {
        let legs: Vec<Leg> = [transfer(r(1), r(2), i64::MAX), transfer(r(3), r(2), 1)].concat();
        assert_eq!(balance_changes(&legs), Err(Overflow));
        assert!(balance_changes(&transfer(r(1), r(2), i64::MAX)).is_ok());
    }
}
