//! Request counters per route and bytes served (OWNED BY THE WS WORK).
#[derive(Default)]
pub struct Metrics {}
