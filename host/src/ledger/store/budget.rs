//! Budgets: reserve a call's worst case against every cap of its scopes,
//! settle to the real cost with the call's row.
//!
//! A reservation counts against the current day and month of each scope
//! until it is settled, released, or it expires (`hold`, 15 minutes by
//! default, refreshed by nothing: a crashed daemon's holds stop counting
//! then). Settled spend is kept per scope and window in `budget_spend`,
//! updated in the transaction that writes the call row.

use std::collections::HashMap;

use serde::Serialize;
use tokio::sync::oneshot;

use super::LedgerError;
use super::window::Window;
use crate::ledger::record::Nanos;

/// A scope's caps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetScope {
    /// `client:NAME` or `label:KEY=VALUE`.
    pub key: String,
    /// Most nano-USD per UTC day.
    pub daily_cap: Option<Nanos>,
    /// Most nano-USD per UTC calendar month.
    pub monthly_cap: Option<Nanos>,
}

/// Why a reservation was refused: the first cap it would pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The scope's key.
    pub scope: String,
    /// The cap's window.
    pub window: Window,
    /// The cap.
    pub cap: Nanos,
    /// Settled in the window.
    pub spent: Nanos,
    /// Held by other reservations.
    pub reserved: Nanos,
    /// When the window (and so the cap) resets, Unix milliseconds.
    pub resets_at_ms: i64,
}

/// Why `reserve` gave no reservation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReserveError {
    /// A cap would be passed.
    #[error("budget {} exceeded: {} window cap {} nano-USD, {} spent, {} reserved", .0.scope, .0.window.as_str(), .0.cap, .0.spent, .0.reserved)]
    Refused(Refusal),
    /// The store could not be asked (budgets then hold by refusing).
    #[error(transparent)]
    Store(LedgerError),
}

/// A held amount; give it to `record` (settle) or `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub(crate) id: i64,
    pub(crate) scopes: Vec<String>,
    pub(crate) amount: Nanos,
    pub(crate) expires_ms: i64,
    /// What was left under each capped scope's tightest cap once this was
    /// held.
    pub(crate) headroom: Vec<(String, Nanos)>,
}

impl Reservation {
    /// A reservation of nothing in no scope (a call no budget covers).
    pub fn none() -> Reservation {
        Reservation {
            id: 0,
            scopes: Vec::new(),
            amount: 0,
            expires_ms: 0,
            headroom: Vec::new(),
        }
    }

    /// The amount held.
    pub fn amount(&self) -> Nanos {
        self.amount
    }

    /// The scopes it holds in.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// When it stops counting, Unix milliseconds.
    pub fn expires_ms(&self) -> i64 {
        self.expires_ms
    }
}

/// A scope's money in its current windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spend {
    /// Settled today (UTC).
    pub day_spent: Nanos,
    /// Settled this month (UTC).
    pub month_spent: Nanos,
    /// Held by live reservations (they count against both windows).
    pub reserved: Nanos,
    /// When the day resets.
    pub day_resets_at_ms: i64,
    /// When the month resets.
    pub month_resets_at_ms: i64,
}

/// Checks one scope's caps: `Err` with the first cap that `amount` would
/// pass on top of what is spent and reserved; `Ok` with what is left under
/// the tightest cap once `amount` is held (None: the scope has no cap).
pub(crate) fn check(
    scope: &BudgetScope,
    now_ms: i64,
    day_spent: Nanos,
    month_spent: Nanos,
    reserved: Nanos,
    amount: Nanos,
) -> Result<Option<Nanos>, Refusal> {
    let mut headroom: Option<Nanos> = None;
    for (window, cap, spent) in [
        (Window::Day, scope.daily_cap, day_spent),
        (Window::Month, scope.monthly_cap, month_spent),
    ] {
        if let Some(cap) = cap {
            // What is spent and held now, for the "budget near its cap"
            // alert; every call's reservation refreshes it.
            let used = spent.saturating_add(reserved) as f64 / cap.max(1) as f64;
            crate::metrics::budget_used(&scope.key, window.as_str(), used);
        }
        if let Some(cap) = cap
            && spent.saturating_add(reserved).saturating_add(amount) > cap
        {
            return Err(Refusal {
                scope: scope.key.clone(),
                window,
                cap,
                spent,
                reserved,
                resets_at_ms: window.next_start(now_ms),
            });
        }
        if let Some(cap) = cap {
            let left = cap - spent.saturating_add(reserved).saturating_add(amount);
            headroom = Some(headroom.map_or(left, |h| h.min(left)));
        }
    }
    Ok(headroom)
}

/// A fresh reservation id, unique across replicas.
pub(crate) fn new_reservation_id() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Never expected; the time still makes a clash unlikely.
        bytes = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64))
        .to_le_bytes();
    }
    (u64::from_le_bytes(bytes) >> 1).max(1) as i64
}

/// A budget operation for the SQLite writer.
pub(crate) enum BudgetOp {
    Reserve {
        scopes: Vec<BudgetScope>,
        amount: Nanos,
        now_ms: i64,
        expires_ms: i64,
        reply: oneshot::Sender<Result<Reservation, ReserveError>>,
    },
    Release(Reservation),
    Spent {
        scope: String,
        now_ms: i64,
        reply: oneshot::Sender<Result<Spend, LedgerError>>,
    },
}

/// Budgets kept by the SQLite writer: settled spend cached from the file
/// (the writer is its only writer, so the cache stays exact), and the open
/// reservations in memory (one daemon per SQLite file; replicas share
/// budgets through PostgreSQL).
#[derive(Default)]
pub(crate) struct MemoryBudgets {
    spend: HashMap<(String, Window, i64), Nanos>,
    held: HashMap<String, Vec<(i64, Nanos, i64)>>,
}

/// Most cached spend entries before the cache is dropped and reloaded.
const MAX_CACHED: usize = 10_000;

impl MemoryBudgets {
    fn spent(
        &mut self,
        scope: &str,
        window: Window,
        now_ms: i64,
        load: &mut dyn FnMut(&str, Window, i64) -> Result<Nanos, LedgerError>,
    ) -> Result<Nanos, LedgerError> {
        let start = window.start(now_ms);
        if let Some(n) = self.spend.get(&(scope.to_string(), window, start)) {
            return Ok(*n);
        }
        let n = load(scope, window, start)?;
        if self.spend.len() >= MAX_CACHED {
            self.spend.clear();
        }
        self.spend.insert((scope.to_string(), window, start), n);
        Ok(n)
    }

    fn reserved(&mut self, scope: &str, now_ms: i64) -> Nanos {
        match self.held.get_mut(scope) {
            Some(held) => {
                held.retain(|&(_, _, expires)| expires > now_ms);
                held.iter().map(|&(_, amount, _)| amount).sum()
            }
            None => 0,
        }
    }

    /// Reserves `amount` in every scope, or refuses.
    pub(crate) fn reserve(
        &mut self,
        scopes: &[BudgetScope],
        amount: Nanos,
        now_ms: i64,
        expires_ms: i64,
        load: &mut dyn FnMut(&str, Window, i64) -> Result<Nanos, LedgerError>,
    ) -> Result<Reservation, ReserveError> {
        let mut headroom = Vec::new();
        for scope in scopes {
            if scope.daily_cap.is_none() && scope.monthly_cap.is_none() {
                continue;
            }
            let day = self
                .spent(&scope.key, Window::Day, now_ms, load)
                .map_err(ReserveError::Store)?;
            let month = self
                .spent(&scope.key, Window::Month, now_ms, load)
                .map_err(ReserveError::Store)?;
            let reserved = self.reserved(&scope.key, now_ms);
            if let Some(left) =
                check(scope, now_ms, day, month, reserved, amount).map_err(ReserveError::Refused)?
            {
                headroom.push((scope.key.clone(), left));
            }
        }
        let reservation = Reservation {
            id: new_reservation_id(),
            scopes: scopes.iter().map(|s| s.key.clone()).collect(),
            amount,
            expires_ms,
            headroom,
        };
        for key in &reservation.scopes {
            self.held
                .entry(key.clone())
                .or_default()
                .push((reservation.id, amount, expires_ms));
        }
        Ok(reservation)
    }

    /// Drops a reservation.
    pub(crate) fn release(&mut self, reservation: &Reservation) {
        for key in &reservation.scopes {
            if let Some(held) = self.held.get_mut(key) {
                held.retain(|&(id, _, _)| id != reservation.id);
                if held.is_empty() {
                    self.held.remove(key);
                }
            }
        }
    }

    /// After a commit that settled `reservation` with `cost` at `at_ms`:
    /// the reservation goes, the cached spend grows.
    pub(crate) fn settled(&mut self, reservation: &Reservation, cost: Nanos, at_ms: i64) {
        self.release(reservation);
        for key in &reservation.scopes {
            for window in [Window::Day, Window::Month] {
                if let Some(n) = self
                    .spend
                    .get_mut(&(key.clone(), window, window.start(at_ms)))
                {
                    *n += cost;
                }
            }
        }
    }

    /// A scope's spend now.
    pub(crate) fn spend(
        &mut self,
        scope: &str,
        now_ms: i64,
        load: &mut dyn FnMut(&str, Window, i64) -> Result<Nanos, LedgerError>,
    ) -> Result<Spend, LedgerError> {
        Ok(Spend {
            day_spent: self.spent(scope, Window::Day, now_ms, load)?,
            month_spent: self.spent(scope, Window::Month, now_ms, load)?,
            reserved: self.reserved(scope, now_ms),
            day_resets_at_ms: Window::Day.next_start(now_ms),
            month_resets_at_ms: Window::Month.next_start(now_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(daily: Option<Nanos>, monthly: Option<Nanos>) -> BudgetScope {
        BudgetScope {
            key: "client:a".into(),
            daily_cap: daily,
            monthly_cap: monthly,
        }
    }

    #[test]
    fn a_cap_is_passed_only_past_it() {
        let s = scope(Some(100), Some(1000));
        assert!(check(&s, 0, 50, 50, 25, 25).is_ok());
        let r = check(&s, 0, 50, 50, 25, 26).unwrap_err();
        assert_eq!(
            (r.window, r.cap, r.spent, r.reserved),
            (Window::Day, 100, 50, 25)
        );
        assert_eq!(r.resets_at_ms, 86_400_000);
        let r = check(&s, 0, 0, 990, 0, 11).unwrap_err();
        assert_eq!(r.window, Window::Month);
        assert!(check(&scope(None, None), 0, i64::MAX, i64::MAX, 1, 1).is_ok());
    }

    #[test]
    fn memory_reservations_hold_expire_and_settle() {
        let mut b = MemoryBudgets::default();
        let mut load = |_: &str, _: Window, _: i64| Ok(0);
        let s = [scope(Some(100), None)];
        let r1 = b.reserve(&s, 60, 0, 1_000, &mut load).unwrap();
        assert!(matches!(
            b.reserve(&s, 60, 10, 1_010, &mut load),
            Err(ReserveError::Refused(_))
        ));
        // Expired: no longer counts.
        let r2 = b.reserve(&s, 60, 1_000, 2_000, &mut load).unwrap();
        b.release(&r1);
        // Cached spend grows on settle; the hold goes.
        b.settled(&r2, 30, 1_000);
        let spend = b.spend("client:a", 1_500, &mut load).unwrap();
        assert_eq!((spend.day_spent, spend.reserved), (30, 0));
        assert!(b.reserve(&s, 70, 1_500, 3_000, &mut load).is_ok());
        assert!(b.reserve(&s, 1, 1_500, 3_000, &mut load).is_err());
    }
}
