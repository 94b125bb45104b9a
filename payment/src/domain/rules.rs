//! What makes a list of shares a split rule — a pure check, answered 422 `split_shares_invalid`
//! with the reason — and the shares as the split arithmetic takes them.

use super::split::ShareKind;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use shared::contract::splits::Share;

/// Basis points in a whole: 10000 is 100 %.
pub const WHOLE: i64 = 10_000;

/// Why shares do not make a rule, naming the share at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SharesInvalid(pub String);

/// Recipients distinct, at most one `remainder`; without a `remainder` the basis points sum to
/// exactly 10000 (so that every line is placed whole), with one to at most 10000.
pub fn check(shares: &[Share]) -> Result<(), SharesInvalid> {
    let mut remainder = None;
    let mut basis_points = 0i64;
    for (i, share) in shares.iter().enumerate() {
        let recipient = share.recipient_id();
        if let Some(first) = shares[..i]
            .iter()
            .position(|s| s.recipient_id() == recipient)
        {
            return Err(SharesInvalid(format!(
                "shares[{i}]: recipient {recipient} already has shares[{first}]; each recipient appears once"
            )));
        }
        match share {
            Share::Remainder { .. } if remainder.is_some() => {
                return Err(SharesInvalid(format!(
                    "shares[{i}]: a rule has at most one remainder share"
                )))
            }
            Share::Remainder { .. } => remainder = Some(i),
            Share::Percentage {
                basis_points: b, ..
            } => basis_points += b.get(),
            Share::Fixed { .. } => {}
        }
    }
    match remainder {
        None if basis_points != WHOLE => Err(SharesInvalid(format!(
            "shares: the basis points sum to {basis_points}; without a remainder share they must sum to exactly {WHOLE}"
        ))),
        Some(_) if basis_points > WHOLE => Err(SharesInvalid(format!(
            "shares: the basis points sum to {basis_points}, more than {WHOLE}"
        ))),
        _ => Ok(()),
    }
}

/// The shares as the arithmetic takes them, in the rule's order.
pub fn kinds(shares: &[Share]) -> Vec<ShareKind> {
    shares
        .iter()
        .map(|share| match share {
            Share::Percentage { basis_points, .. } => ShareKind::Percentage {
                basis_points: basis_points.get(),
            },
            Share::Fixed { amount, .. } => ShareKind::Fixed {
                per_unit: amount.get(),
            },
            Share::Remainder { .. } => ShareKind::Remainder,
        })
        .collect()
}

/// Why a new version cannot start when asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misplaced {
    /// More than the clock slack before now.
    InPast { now: DateTime<Utc> },
    /// Not after the start of the product's latest version.
    NotAfterLatest { latest_from: DateTime<Utc> },
}

/// When a new version of a product's rule starts: `requested`, or `now` when not given, at the
/// precision the database stores (whole microseconds, truncated as the driver sends it), so that
/// what is compared here is what is stored.
///
/// A start in the past is refused beyond `slack` (the clock differences between machines); within
/// it, the rule starts `now`, the moment it is written: payments made in those seconds were split
/// already, by the rule then in force, and a rule never changes how a payment already made is
/// split. A start not later than the product's latest version's is refused too (versions follow
/// each other; the new one ends the latest).
pub fn place(
    now: DateTime<Utc>,
    requested: Option<DateTime<Utc>>,
    latest_from: Option<DateTime<Utc>>,
    slack: TimeDelta,
) -> Result<DateTime<Utc>, Misplaced> {
    let now = stored(now);
    let from = requested.map_or(now, stored);
    if from < now - slack {
        return Err(Misplaced::InPast { now });
    }
    let from = from.max(now);
    match latest_from {
        Some(latest_from) if from <= latest_from => Err(Misplaced::NotAfterLatest { latest_from }),
        _ => Ok(from),
    }
}

/// An instant as PostgreSQL stores it: whole microseconds (the driver truncates the rest).
pub fn stored(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::contract::values::{Amount, BasisPoints};
    use uuid::Uuid;

    fn pct(r: u128, bp: i64) -> Share {
        Share::Percentage {
            recipient_id: Uuid::from_u128(r),
            basis_points: BasisPoints::new(bp).unwrap(),
        }
    }
    fn fixed(r: u128, amount: i64) -> Share {
        Share::Fixed {
            recipient_id: Uuid::from_u128(r),
            amount: Amount::new(amount).unwrap(),
        }
    }
    fn rest(r: u128) -> Share {
        Share::Remainder {
            recipient_id: Uuid::from_u128(r),
        }
    }

    #[test]
    fn valid_rules() {
        for shares in [
            vec![pct(1, 10_000)],
            vec![pct(1, 3333), pct(2, 3333), pct(3, 3334)],
            vec![fixed(1, 50), pct(2, 1000), rest(3)],
            vec![rest(1)],
            vec![fixed(1, 50), rest(2)],
            vec![pct(1, 10_000), rest(2)],
        ] {
            assert_eq!(check(&shares), Ok(()), "{shares:?}");
        }
    }

    #[test]
    fn new_versions_start_now_or_later_and_after_the_latest() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let slack = TimeDelta::seconds(5);
        let at = |s: i64| now + TimeDelta::seconds(s);
        assert_eq!(place(now, None, None, slack), Ok(now));
        // Within the slack: moved to the moment the rule is written.
        assert_eq!(place(now, Some(at(-5)), None, slack), Ok(now));
        assert_eq!(place(now, Some(at(-1)), Some(at(-100)), slack), Ok(now));
        assert_eq!(
            place(now, Some(at(-6)), None, slack),
            Err(Misplaced::InPast { now })
        );
        assert_eq!(place(now, Some(at(60)), Some(at(-100)), slack), Ok(at(60)));
        assert_eq!(
            place(now, None, Some(at(60)), slack),
            Err(Misplaced::NotAfterLatest {
                latest_from: at(60)
            })
        );
        assert_eq!(
            place(now, Some(at(60)), Some(at(60)), slack),
            Err(Misplaced::NotAfterLatest {
                latest_from: at(60)
            })
        );
        // A start moved to now is still compared with the latest version's.
        assert_eq!(
            place(now, Some(at(-2)), Some(now), slack),
            Err(Misplaced::NotAfterLatest { latest_from: now })
        );
    }

    #[test]
    fn starts_are_compared_at_the_stored_precision() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let slack = TimeDelta::seconds(5);
        let latest = now + TimeDelta::days(1);
        let below_a_microsecond = latest + TimeDelta::nanoseconds(100);
        assert_eq!(
            place(now, Some(below_a_microsecond), Some(latest), slack),
            Err(Misplaced::NotAfterLatest {
                latest_from: latest
            })
        );
        let next = latest + TimeDelta::nanoseconds(1_500);
        assert_eq!(
            place(now, Some(next), Some(latest), slack),
            Ok(latest + TimeDelta::microseconds(1))
        );
        let now_with_nanos = now + TimeDelta::nanoseconds(999);
        assert_eq!(place(now_with_nanos, None, None, slack), Ok(now));
    }

    #[test]
    fn invalid_rules_say_why() {
        for (shares, why) in [
            (vec![pct(1, 5000), pct(1, 5000)], "shares[1]: recipient"),
            (
                vec![rest(1), rest(2)],
                "shares[1]: a rule has at most one remainder",
            ),
            (
                vec![pct(1, 5000), pct(2, 4999)],
                "sum to 9999; without a remainder",
            ),
            (vec![fixed(1, 5)], "sum to 0; without a remainder"),
            (
                vec![pct(1, 6000), pct(2, 5000), rest(3)],
                "sum to 11000, more than",
            ),
        ] {
            let e = check(&shares).unwrap_err();
            assert!(e.0.contains(why), "{e} / {why}");
        }
    }
}
