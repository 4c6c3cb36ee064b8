//! Fault and latency injection (OWNED BY THE WS WORK).
use crate::Sim;

#[derive(Default)]
pub struct Faults {}

pub fn layer(app: axum::Router<Sim>, sim: Sim) -> axum::Router<Sim> {
    let _ = sim;
    app
}
