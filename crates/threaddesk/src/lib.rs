//! ThreadDesk: one keyboard-driven queue of every followed thread and DM/GM of a Mattermost user.
//!
//! Flow: Mattermost → [`mattermost`] client → [`sync`] → [`store`] (SQLite cache) → [`inbox`]
//! (pure rules) → [`web`] (pages, JSON API, live stream). See `ARCHITECTURE.md`.

pub mod account;
pub mod app;
pub mod config;
pub mod inbox;
pub mod privacy;
pub mod store;
pub mod sync;
pub mod web;
