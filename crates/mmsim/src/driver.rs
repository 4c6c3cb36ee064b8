//! Driver API: make other users act (OWNED BY THE REST/STATE WORK).
use crate::Sim;

pub fn admin_routes() -> axum::Router<Sim> {
    axum::Router::new()
}
