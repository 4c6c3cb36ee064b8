//! Mattermost as an OAuth 2.0 provider (OWNED BY THE REST/STATE WORK).
use crate::Sim;

pub fn routes() -> axum::Router<Sim> {
    axum::Router::new()
}
