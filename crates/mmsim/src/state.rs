//! The organisation in memory (OWNED BY THE REST/STATE WORK).
use std::collections::HashMap;

#[derive(Default)]
pub struct State {
    /// Session token (session, PAT or OAuth access token) → user id.
    pub tokens: HashMap<String, String>,
}

impl State {
    /// The user a session / personal access / OAuth access token belongs to.
    #[must_use]
    pub fn user_for_token(&self, token: &str) -> Option<String> {
        self.tokens.get(token).cloned()
    }
}
