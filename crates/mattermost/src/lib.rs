//! A typed async client for the Mattermost REST API v4 and WebSocket.
//!
//! Written from the official OpenAPI description (`spec/mattermost-openapi/`) and from the
//! server-code facts in `shared/research/mattermost-api.md` (cited as "research §…" and
//! "trap N" for its §0 list). It knows nothing about any particular application.
//!
//! - [`Client`]: REST calls, built once per server ([`Client::builder`]); per-user clients
//!   share its connection pool ([`Client::with_token`]). Every request goes to the configured
//!   origin only (egress guard), carries `Authorization: Bearer`, never stores cookies
//!   (traps 1–2), and reports failures as [`Error`].
//! - [`models`]: wire types; post text is a [`MessageText`] whose `Debug` prints only its
//!   length, tokens are [`Secret`]s whose `Debug` is redacted.
//! - [`ws`]: the WebSocket client with resume, `seq` tracking and resync signals.
//! - [`oauth`]: Mattermost as an OAuth 2.0 provider (authorize URL with PKCE, token endpoint).
//! - [`RequestGate`]: hook for a rate limiter shared by many clients.

mod api;
mod client;
mod de;
mod error;
pub mod models;
pub mod oauth;
mod secret;
pub mod ws;

pub use api::{
    ChannelPostsQuery, ChannelsForUserQuery, Conditional, MAX_BATCH, MAX_PER_PAGE, MAX_USER_IDS,
    NewPost, PostPatch, PostThreadQuery, ThreadDirection, UserThreadsQuery,
};
pub use client::{Client, ClientBuilder, RequestGate, USER_AGENT};
pub use error::{Error, Result};
pub use models::ME;
pub use secret::{MessageText, Secret};
