//! The money arithmetic of splits, as pure functions: how a sold line is shared among the shares of
//! its rule (at capture), and how much a refund takes back from each allocation (at refund). All in
//! integer minor units, with checked arithmetic (wide integers inside, so no input can wrap).
//!
//! **Splitting a line** (`split_line`): `fixed` shares first, in order, each `amount × quantity`
//! capped by what is left of the line; of the rest `B`, each `percentage` share gets
//! `⌊B × basisPoints / 10000⌋`; then the `remainder` share gets what is left of `B`, or, without
//! one, the units left over go one each to the percentage shares with the largest fractional parts,
//! ties to the earlier share. A line's allocations sum to its amount exactly, and every percentage
//! share is within one minor unit of exact: 1000 at 3333/3333/3334 is 333/333/334; 100 at
//! 3334/3333/3333 is 34/33/33.
//!
//! **Reversing** (`reverse`): after a refund that brings the payment's refunded total to `R'`, each
//! allocation `a` has reversed `⌊a × R' / P⌋` or one unit more — never less than before, never more
//! than the allocation — and the refund's reversals sum to its amount exactly. The targets are
//! cumulative but bounded below by what was reversed before: re-running the capture's rounding
//! (largest remainders) on cumulative totals could take back less from an allocation than before (a
//! negative reversal, the Alabama paradox), and choosing the extra units by largest remainder can
//! leave a later refund with no way to stay within one unit of every exact share. The extra units go
//! as Balinski and Young's quota method gives seats — to the largest `a / (reversed + 1)` among
//! those below their ceiling — which is both monotone and within one unit (the property tests check
//! both on hundreds of thousands of refund sequences). A full refund reverses everything exactly.

/// A share of a split rule, as the arithmetic needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    /// `basis_points` (1..=10000) of what the fixed shares leave.
    Percentage { basis_points: i64 },
    /// `per_unit` minor units for each unit sold, capped by what is left of the line.
    Fixed { per_unit: i64 },
    /// What the percentage shares leave.
    Remainder,
}

/// How a line was split: an amount per share (in the rule's order, zero included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineSplit {
    pub amounts: Vec<i64>,
    /// Fixed shares asked for more than the line had left, and got less (an anomaly to count).
    pub capped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("a line's amount or quantity is not positive")]
    NotPositive,
    /// The rule cannot place all of a line (no remainder share and basis points not summing to
    /// 10000): rules are refused at creation for this, so it means a broken rule.
    #[error("the rule's shares cannot take all of the line")]
    RuleCannotTakeAll,
}

/// Splits a line of `amount` minor units and `quantity` units by `shares` (see the module docs).
pub fn split_line(
    amount: i64,
    quantity: i64,
    shares: &[ShareKind],
) -> Result<LineSplit, SplitError> {
    if amount <= 0 || quantity <= 0 {
        return Err(SplitError::NotPositive);
    }
    let mut amounts = vec![0i128; shares.len()];
    let mut left = i128::from(amount);
    let mut capped = false;
    for (i, share) in shares.iter().enumerate() {
        if let ShareKind::Fixed { per_unit } = share {
            let wanted = i128::from(*per_unit) * i128::from(quantity);
            let given = wanted.clamp(0, left);
            capped |= wanted > left;
            amounts[i] = given;
            left -= given;
        }
    }
    let base = left;
    let mut fractions: Vec<(usize, i128)> = Vec::new();
    let mut to_percentages = 0i128;
    for (i, share) in shares.iter().enumerate() {
        if let ShareKind::Percentage { basis_points } = share {
            let exact = base * i128::from(*basis_points);
            amounts[i] = exact / 10_000;
            to_percentages += amounts[i];
            fractions.push((i, exact % 10_000));
        }
    }
    let mut leftover = base - to_percentages;
    match shares.iter().position(|s| *s == ShareKind::Remainder) {
        Some(remainder) => amounts[remainder] = leftover,
        None => {
            // Largest fractional part first; ties to the earlier share (a stable sort keeps order).
            fractions.sort_by_key(|f| std::cmp::Reverse(f.1));
            for (i, _) in &fractions {
                if leftover == 0 {
                    break;
                }
                amounts[*i] += 1;
                leftover -= 1;
            }
            if leftover != 0 {
                return Err(SplitError::RuleCannotTakeAll);
            }
        }
    }
    Ok(LineSplit {
        // Each amount is between 0 and the line's amount, an i64.
        amounts: amounts
            .into_iter()
            .map(|a| i64::try_from(a).unwrap_or(i64::MAX))
            .collect(),
        capped,
    })
}

/// One allocation as a reversal sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocated {
    pub amount: i64,
    /// Reversed so far.
    pub reversed: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReversalError {
    #[error("the refund is not positive or goes beyond the payment")]
    OutOfBounds,
    /// The allocations do not sum to the payment, or their reversals to what was refunded.
    #[error("the allocations disagree with the payment")]
    Inconsistent,
}

/// What a refund of `refund` takes back from each allocation of a payment of `payment_amount` of
/// which `refunded` was refunded before (see the module docs): one amount per allocation, in
/// order, each between 0 and what is left of it, summing to `refund`.
pub fn reverse(
    allocations: &[Allocated],
    payment_amount: i64,
    refunded: i64,
    refund: i64,
) -> Result<Vec<i64>, ReversalError> {
    let total: i128 = allocations.iter().map(|a| i128::from(a.amount)).sum();
    let reversed: i128 = allocations.iter().map(|a| i128::from(a.reversed)).sum();
    let (payment, before, refund) = (
        i128::from(payment_amount),
        i128::from(refunded),
        i128::from(refund),
    );
    if refund <= 0 || before < 0 || before + refund > payment {
        return Err(ReversalError::OutOfBounds);
    }
    if total != payment
        || reversed != before
        || allocations
            .iter()
            .any(|a| a.amount < 0 || a.reversed < 0 || a.reversed > a.amount)
    {
        return Err(ReversalError::Inconsistent);
    }
    let after = before + refund;
    // Each allocation's exact share of what is refunded after this refund, `a × R' / P`: at least
    // its floor, and never less than what it had reversed before; at most its ceiling.
    let mut targets = Vec::with_capacity(allocations.len());
    let mut ceilings = Vec::with_capacity(allocations.len());
    for a in allocations {
        let exact = i128::from(a.amount) * after;
        let floor = exact / payment;
        targets.push(floor.max(i128::from(a.reversed)));
        ceilings.push((floor + i128::from(exact % payment > 0)).min(i128::from(a.amount)));
    }
    let mut left = after - targets.iter().sum::<i128>();
    // The units beyond the floors go one at a time, among the allocations still below their
    // ceiling, to the one with the most per unit already reversed plus one (`a / (t + 1)`, as in
    // Balinski and Young's quota method, which keeps every share within one unit as the refunded
    // total grows), ties to the earlier allocation.
    while left > 0 {
        let next = (0..allocations.len())
            .filter(|&i| targets[i] < ceilings[i])
            .reduce(|best, i| {
                let (a_best, a_i) = (
                    i128::from(allocations[best].amount),
                    i128::from(allocations[i].amount),
                );
                if a_i * (targets[best] + 1) > a_best * (targets[i] + 1) {
                    i
                } else {
                    best
                }
            });
        let Some(i) = next else {
            return Err(ReversalError::Inconsistent);
        };
        targets[i] += 1;
        left -= 1;
    }
    if left < 0 {
        return Err(ReversalError::Inconsistent);
    }
    Ok(allocations
        .iter()
        .zip(targets)
        .map(|(a, target)| i64::try_from(target - i128::from(a.reversed)).unwrap_or(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ShareKind::*;

    fn pct(bp: i64) -> ShareKind {
        Percentage { basis_points: bp }
    }

    #[test]
    fn the_worked_examples() {
        let split = |amount, shares: &[ShareKind]| split_line(amount, 1, shares).unwrap().amounts;
        assert_eq!(
            split(1000, &[pct(3333), pct(3333), pct(3334)]),
            [333, 333, 334]
        );
        assert_eq!(split(100, &[pct(3334), pct(3333), pct(3333)]), [34, 33, 33]);
        // Ties go to the earlier share.
        assert_eq!(split(1, &[pct(5000), pct(5000)]), [1, 0]);
        // Fixed first (per unit), then percentages of the rest, then the remainder.
        assert_eq!(
            split_line(1000, 2, &[pct(1000), Fixed { per_unit: 100 }, Remainder])
                .unwrap()
                .amounts,
            [80, 200, 720]
        );
        // A fixed share is capped by what is left, and says so.
        let capped = split_line(150, 2, &[Fixed { per_unit: 100 }, Remainder]).unwrap();
        assert_eq!((capped.amounts, capped.capped), (vec![150, 0], true));
        assert_eq!(
            split_line(100, 1, &[pct(5000)]),
            Err(SplitError::RuleCannotTakeAll)
        );
    }

    #[test]
    fn reversals_follow_the_refunded_share() {
        let allocs = |pairs: &[(i64, i64)]| -> Vec<Allocated> {
            pairs
                .iter()
                .map(|&(amount, reversed)| Allocated { amount, reversed })
                .collect()
        };
        // 1000 split 333/333/334, refunded 100 then 900.
        let first = reverse(&allocs(&[(333, 0), (333, 0), (334, 0)]), 1000, 0, 100).unwrap();
        assert_eq!(first, [33, 33, 34]);
        let rest = reverse(&allocs(&[(333, 33), (333, 33), (334, 34)]), 1000, 100, 900).unwrap();
        assert_eq!(rest, [300, 300, 300]);
        assert_eq!(
            reverse(&allocs(&[(333, 0)]), 333, 0, 334),
            Err(ReversalError::OutOfBounds)
        );
        assert_eq!(
            reverse(&allocs(&[(333, 0)]), 334, 0, 1),
            Err(ReversalError::Inconsistent)
        );
    }

    fn shares() -> impl Strategy<Value = Vec<ShareKind>> {
        // 1..=20 shares: some fixed, percentages, and a remainder or basis points summing to 10000.
        (
            prop::collection::vec(1i64..=5_000, 0..4),
            prop::collection::vec(1i64..=10_000, 1..16),
            any::<bool>(),
        )
            .prop_map(|(fixed, mut weights, remainder)| {
                let mut shares: Vec<ShareKind> = fixed
                    .into_iter()
                    .map(|per_unit| Fixed { per_unit })
                    .collect();
                let sum: i64 = weights.iter().sum();
                if remainder {
                    // Basis points summing to at most 10000.
                    let scale = sum.max(10_000);
                    weights = weights
                        .iter()
                        .map(|w| (w * 10_000 / scale).max(1))
                        .collect();
                    while weights.iter().sum::<i64>() > 10_000 {
                        if let Some(w) = weights.iter_mut().find(|w| **w > 1) {
                            *w -= 1;
                        } else {
                            weights.pop();
                        }
                    }
                } else {
                    // Basis points summing to exactly 10000, each at least 1.
                    let mut bps: Vec<i64> =
                        weights.iter().map(|w| (w * 10_000 / sum).max(1)).collect();
                    while bps.iter().sum::<i64>() > 10_000 {
                        let max = bps
                            .iter()
                            .enumerate()
                            .max_by_key(|(_, b)| **b)
                            .map(|(i, _)| i)
                            .unwrap();
                        bps[max] -= 1;
                    }
                    let short = 10_000 - bps.iter().sum::<i64>();
                    bps[0] += short;
                    weights = bps;
                }
                shares.extend(weights.into_iter().map(pct));
                if remainder {
                    shares.push(Remainder);
                }
                shares
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(std::env::var("SPLIT_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(4000)))]

        #[test]
        fn a_line_is_split_exactly_and_fairly(
            amount in 1i64..=1_000_000_000_000,
            quantity in 1i64..=1_000_000,
            shares in shares(),
        ) {
            let split = split_line(amount, quantity, &shares).unwrap();
            prop_assert_eq!(split.amounts.iter().sum::<i64>(), amount);
            prop_assert!(split.amounts.iter().all(|a| *a >= 0));
            // Every percentage share is within one unit of its exact share of what fixed left.
            let fixed: i64 = shares.iter().zip(&split.amounts)
                .filter(|(s, _)| matches!(s, Fixed { .. })).map(|(_, a)| a).sum();
            let base = i128::from(amount - fixed);
            for (share, got) in shares.iter().zip(&split.amounts) {
                if let Percentage { basis_points } = share {
                    let exact = base * i128::from(*basis_points);
                    let got = i128::from(*got) * 10_000;
                    prop_assert!((got - exact).abs() < 10_000, "{got} vs {exact}");
                }
            }
            prop_assert_eq!(split_line(amount, quantity, &shares).unwrap(), split, "deterministic");
        }

        #[test]
        fn refunds_reverse_exactly_never_back_and_never_beyond(
            amounts in prop::collection::vec(prop_oneof![1i64..=10, 1i64..=1_000_000], 1..24),
            cuts in prop::collection::vec(prop_oneof![1u32..=3, 1u32..=100], 1..20),
        ) {
            let payment: i64 = amounts.iter().sum();
            let mut allocations: Vec<Allocated> =
                amounts.iter().map(|&amount| Allocated { amount, reversed: 0 }).collect();
            let mut refunded = 0i64;
            for cut in cuts {
                let left = payment - refunded;
                if left == 0 { break; }
                let refund = (left * i64::from(cut) / 100).max(1);
                let reversal = reverse(&allocations, payment, refunded, refund).unwrap();
                prop_assert_eq!(reversal.iter().sum::<i64>(), refund);
                refunded += refund;
                for (a, r) in allocations.iter_mut().zip(&reversal) {
                    prop_assert!(*r >= 0, "never negative");
                    a.reversed += r;
                    prop_assert!(a.reversed <= a.amount, "never beyond the allocation");
                    let exact = i128::from(a.amount) * i128::from(refunded);
                    let got = i128::from(a.reversed) * i128::from(payment);
                    prop_assert!((got - exact).abs() < i128::from(payment), "within one unit");
                }
                prop_assert_eq!(reverse(&allocations.iter().zip(&reversal).map(|(a, r)| Allocated { amount: a.amount, reversed: a.reversed - r }).collect::<Vec<_>>(), payment, refunded - refund, refund).unwrap(), reversal, "deterministic");
            }
            if refunded < payment {
                let rest = reverse(&allocations, payment, refunded, payment - refunded).unwrap();
                for (a, r) in allocations.iter().zip(&rest) {
                    prop_assert_eq!(a.reversed + r, a.amount, "a full refund reverses everything");
                }
            }
        }
    }
}
