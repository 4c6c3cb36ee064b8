//! The sync engine: Mattermost → store, kept live; user actions → outbox → Mattermost.
//!
//! - [`planner`]: pure decisions of which reads a sync needs (table- and property-tested).
//! - [`ratelimit`]: the instance-wide request budget shared fairly by all users.
//! - [`outbox`]: pure delivery rules of the outbox (retry, reconcile by marker, fail visibly).

pub mod outbox;
pub mod planner;
pub mod ratelimit;
