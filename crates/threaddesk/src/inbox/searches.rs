//! Saved searches: a view of the queue with a text filter (`q`, and the view and team it was
//! made in), kept like done and snooze marks as one Mattermost preference each, so they follow
//! the user to other devices and survive a reinstall.
//!
//! Preference: category [`SEARCH_CATEGORY`], name = [`SavedSearch::name_for`] (a hash of the
//! view, team and text: saving the same search twice is one preference), value = JSON
//! `{"label", "q", "filter", "team"}` (Mattermost allows 2,000 characters; ours are ≤ ≈ 400).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::is_valid_id;

/// Preference category of saved searches (≤ 32 characters, like Mattermost requires).
pub const SEARCH_CATEGORY: &str = "threaddesk_search";
/// Longest text a saved search holds (the queue's text filter limit).
pub const MAX_Q_CHARS: usize = 200;
/// Longest label.
pub const MAX_LABEL_CHARS: usize = 60;
/// Saved searches one user may keep (the sidebar lists them all).
pub const MAX_SAVED: usize = 50;
/// Views a search can be saved in (the queue's filters).
pub const VIEWS: &[&str] = &["all", "mentions", "direct", "threads", "snoozed", "done"];

const _: () = assert!(SEARCH_CATEGORY.len() <= 32);

/// One saved search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSearch {
    /// The preference name (26 characters of `[0-9a-f]`, from the view, team and text).
    #[serde(skip)]
    pub name: String,
    pub label: String,
    pub q: String,
    /// One of [`VIEWS`].
    pub filter: String,
    /// A team id, or `""` for every team.
    #[serde(default)]
    pub team: String,
}

/// Why a search cannot be saved (said to the user as it is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSearch {
    #[error("there is no text to search for")]
    Empty,
    #[error("the text or label holds control characters (line breaks, tabs, …)")]
    Control,
    #[error("the text is limited to {MAX_Q_CHARS} characters")]
    TooLong,
    #[error("the label is limited to {MAX_LABEL_CHARS} characters")]
    LabelTooLong,
    #[error("unknown view; use all, mentions, direct, threads, snoozed or done")]
    View,
    #[error("team must be a Mattermost team id")]
    Team,
}

impl SavedSearch {
    /// A search to save: `q` trimmed and required; the label defaults to `q`.
    ///
    /// # Errors
    /// [`BadSearch`] for what the user gave.
    pub fn new(label: &str, q: &str, filter: &str, team: &str) -> Result<Self, BadSearch> {
        let q = q.trim();
        let label = match label.trim() {
            "" => q,
            l => l,
        };
        let filter = if filter.is_empty() { "all" } else { filter };
        if q.is_empty() {
            return Err(BadSearch::Empty);
        }
        if q.chars().chain(label.chars()).any(char::is_control) {
            return Err(BadSearch::Control);
        }
        if q.chars().count() > MAX_Q_CHARS {
            return Err(BadSearch::TooLong);
        }
        if label.chars().count() > MAX_LABEL_CHARS {
            return Err(BadSearch::LabelTooLong);
        }
        if !VIEWS.contains(&filter) {
            return Err(BadSearch::View);
        }
        if !team.is_empty() && !is_valid_id(team) {
            return Err(BadSearch::Team);
        }
        Ok(Self {
            name: Self::name_for(q, filter, team),
            label: label.to_owned(),
            q: q.to_owned(),
            filter: filter.to_owned(),
            team: team.to_owned(),
        })
    }

    /// The preference name of a search: the same view, team and text give the same name.
    #[must_use]
    pub fn name_for(q: &str, filter: &str, team: &str) -> String {
        let digest = Sha256::digest(format!("{filter}\0{team}\0{}", q.trim()).as_bytes());
        digest
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .take(26)
            .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
            .collect()
    }

    /// The preference value.
    #[must_use]
    pub fn to_value(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A saved search from its preference; `None` for a value this version cannot read or
    /// that does not belong to its name (another client's edit): it is left alone.
    #[must_use]
    pub fn from_preference(name: &str, value: &str) -> Option<Self> {
        let s: Self = serde_json::from_str(value).ok()?;
        let checked = Self::new(&s.label, &s.q, &s.filter, &s.team).ok()?;
        (checked.name == name).then_some(checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_search_round_trips_through_its_preference() {
        let s = SavedSearch::new("", "  deploy* from:bob ", "done", "").unwrap();
        assert_eq!(s.label, "deploy* from:bob");
        assert_eq!(s.name.len(), 26);
        assert!(s.name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            SavedSearch::from_preference(&s.name, &s.to_value()),
            Some(s.clone())
        );
        // Same view, team and text: same preference, whatever the label.
        let relabelled = SavedSearch::new("Deploys", "deploy* from:bob", "done", "").unwrap();
        assert_eq!(relabelled.name, s.name);
        // Another view is another search.
        assert_ne!(
            SavedSearch::new("", "deploy* from:bob", "all", "")
                .unwrap()
                .name,
            s.name
        );
        // A value under another name, or unreadable, is not taken.
        assert_eq!(SavedSearch::from_preference("x", &s.to_value()), None);
        assert_eq!(SavedSearch::from_preference(&s.name, "{"), None);
        assert_eq!(SavedSearch::from_preference(&s.name, "null"), None);
    }

    #[test]
    fn what_cannot_be_saved_says_why() {
        let team = "t".repeat(26);
        assert!(SavedSearch::new("", "x", "all", &team).is_ok());
        assert_eq!(SavedSearch::new("", "  ", "all", ""), Err(BadSearch::Empty));
        assert_eq!(
            SavedSearch::new("", &"x".repeat(201), "all", ""),
            Err(BadSearch::TooLong)
        );
        assert_eq!(
            SavedSearch::new(&"l".repeat(61), "x", "all", ""),
            Err(BadSearch::LabelTooLong)
        );
        assert_eq!(SavedSearch::new("", "x", "inbox", ""), Err(BadSearch::View));
        assert_eq!(SavedSearch::new("", "x", "all", "T"), Err(BadSearch::Team));
        assert_eq!(
            SavedSearch::new("", "a\u{0}b", "all", ""),
            Err(BadSearch::Control)
        );
        assert_eq!(
            SavedSearch::new("a\nb", "x", "all", ""),
            Err(BadSearch::Control)
        );
    }

    proptest! {
        /// Whatever is given: no panic; what is accepted fits Mattermost's preference limits
        /// and reads back the same.
        #[test]
        fn accepted_searches_fit_a_preference(label in "\\PC{0,80}", q in "\\PC{0,220}", f in "[a-z]{0,8}") {
            if let Ok(s) = SavedSearch::new(&label, &q, &f, "") {
                prop_assert!(s.to_value().chars().count() <= 2000);
                prop_assert!(s.name.len() <= 32);
                prop_assert_eq!(SavedSearch::from_preference(&s.name, &s.to_value()), Some(s));
            }
        }
    }
}
