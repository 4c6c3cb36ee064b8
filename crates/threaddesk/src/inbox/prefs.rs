//! Done / snooze marks ⇄ Mattermost preferences, so they survive a reinstall of ThreadDesk.
//!
//! One preference per mark: category [`DONE_CATEGORY`] or [`SNOOZE_CATEGORY`] (≤ 32 chars, the
//! server's limit), name = the item key's string form (`t_<id>` / `c_<id>`, 28 chars, the server
//! allows 32), value = the time in ms as a decimal string (≤ 2000 chars). Undo = delete the
//! preference. Decoding ignores anything it does not understand and never panics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ItemKey, Marks, Millis};

/// Preference category of done marks (value = done time, ms).
pub const DONE_CATEGORY: &str = "threaddesk_done";
/// Preference category of snooze marks (value = snoozed-until time, ms).
pub const SNOOZE_CATEGORY: &str = "threaddesk_snooze";

/// Mattermost limits (`server/public/model/preference.go`).
const MAX_CATEGORY: usize = 32;
const MAX_NAME: usize = 32;

/// A Mattermost `Preference` (`{user_id, category, name, value}`), as sent and received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preference {
    pub user_id: String,
    pub category: String,
    pub name: String,
    pub value: String,
}

/// Which mark a preference carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Done,
    Snooze,
}

impl MarkKind {
    /// The preference category.
    #[must_use]
    pub fn category(self) -> &'static str {
        match self {
            Self::Done => DONE_CATEGORY,
            Self::Snooze => SNOOZE_CATEGORY,
        }
    }
}

/// The preference that records one mark (`PUT /users/{u}/preferences` to set it,
/// `POST …/preferences/delete` with the same category + name to undo it).
#[must_use]
pub fn mark_preference(user_id: &str, key: &ItemKey, kind: MarkKind, at: Millis) -> Preference {
    Preference {
        user_id: user_id.to_owned(),
        category: kind.category().to_owned(),
        name: key.to_string(),
        value: at.to_string(),
    }
}

/// All marks as preferences (done first, then snooze, in key order).
#[must_use]
pub fn marks_to_preferences(user_id: &str, marks: &BTreeMap<ItemKey, Marks>) -> Vec<Preference> {
    let mut out = Vec::new();
    for (key, m) in marks {
        if let Some(at) = m.done_at {
            out.push(mark_preference(user_id, key, MarkKind::Done, at));
        }
    }
    for (key, m) in marks {
        if let Some(at) = m.snoozed_until {
            out.push(mark_preference(user_id, key, MarkKind::Snooze, at));
        }
    }
    out
}

fn parse_ms(value: &str) -> Option<Millis> {
    // Only plain positive decimal ms; anything else (garbage, negative, huge) is ignored.
    if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<Millis>().ok().filter(|v| *v > 0)
}

/// Decodes the marks from a user's preferences. Other categories, bad names and bad values are
/// ignored; if the same mark appears twice the later time wins.
#[must_use]
pub fn preferences_to_marks(prefs: &[Preference]) -> BTreeMap<ItemKey, Marks> {
    let mut out: BTreeMap<ItemKey, Marks> = BTreeMap::new();
    for p in prefs {
        let kind = match p.category.as_str() {
            DONE_CATEGORY => MarkKind::Done,
            SNOOZE_CATEGORY => MarkKind::Snooze,
            _ => continue,
        };
        let (Ok(key), Some(at)) = (ItemKey::parse(&p.name), parse_ms(&p.value)) else {
            continue;
        };
        let m = out.entry(key).or_default();
        let slot = match kind {
            MarkKind::Done => &mut m.done_at,
            MarkKind::Snooze => &mut m.snoozed_until,
        };
        *slot = Some(slot.map_or(at, |old| old.max(at)));
    }
    out
}

const _: () = assert!(DONE_CATEGORY.len() <= MAX_CATEGORY && SNOOZE_CATEGORY.len() <= MAX_CATEGORY);
const _: () = assert!("t_".len() + 26 <= MAX_NAME);
