//! `/api/v4/websocket` (OWNED BY THE WS WORK).
use crate::Sim;

pub fn routes() -> axum::Router<Sim> {
    axum::Router::new()
}
