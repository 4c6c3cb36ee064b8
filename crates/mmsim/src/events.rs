//! WebSocket events and the hub that delivers them (OWNED BY THE WS WORK; the REST/state code
//! only builds [`Delivery`] values and calls [`Hub::publish`]).
//!
//! The publisher resolves recipients (channel/team members, one user) at publish time, because
//! only the state knows memberships; the hub numbers events per connection and keeps the
//! 128-event dead queue for resumption.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::{Map, Value};

/// `broadcast` of the event envelope, exactly as the real server serializes it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Broadcast {
    pub omit_users: Option<BTreeMap<String, bool>>,
    pub user_id: String,
    pub channel_id: String,
    pub team_id: String,
    pub connection_id: String,
    pub omit_connection_id: String,
}

/// One event as the server sends it (`seq` is added per connection by the hub).
#[derive(Clone, Debug)]
pub struct WsEvent {
    pub event: String,
    pub data: Map<String, Value>,
    pub broadcast: Broadcast,
}

/// An event plus who receives it.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub event: WsEvent,
    /// User ids whose connections receive the event (`omit_users` already removed).
    pub recipients: Vec<String>,
    /// Extra `data` fields for one recipient only, e.g. `mentions` / `followers` on `posted`
    /// (the real server adds them per connection and they name only that user).
    pub per_user_data: HashMap<String, Map<String, Value>>,
}

/// The hub: connection registry, per-connection sequence numbers, dead queues, resumption.
pub struct Hub {
    // Implemented by the WebSocket work.
}

impl Hub {
    #[must_use]
    pub fn new() -> Self {
        Self {}
    }

    /// Deliver to every live (or resumable) connection of the recipients.
    pub fn publish(&self, delivery: Delivery) {
        let _ = delivery;
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}
