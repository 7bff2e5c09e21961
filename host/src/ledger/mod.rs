//! The ledger: what every call cost, durably on record.

pub mod cost;
pub mod record;
pub mod report;
pub mod store;

pub use cost::{Cost, Prices};
pub use record::{CallRecord, FeedbackRecord, Nanos, TaskRecord};
pub use store::{
    BudgetScope, CallFilter, Health, Ledger, LedgerError, Refusal, Reservation, ReserveError,
    Spend, Window,
};
