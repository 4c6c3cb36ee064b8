//! REST routes under `/api/v4` (OWNED BY THE REST/STATE WORK).
use crate::Sim;

pub fn routes() -> axum::Router<Sim> {
    axum::Router::new()
}
