//! The organisation in memory (OWNED BY THE REST/STATE WORK).
#[derive(Default)]
pub struct State {}
