//! Deterministic organisations (OWNED BY THE REST/STATE WORK).
use crate::state::State;

pub const DEMO_USERNAME: &str = "alice";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    Demo,
    Large,
}

#[must_use]
pub fn generate(seed: u64, size: Size) -> State {
    let _ = (seed, size);
    State::default()
}
