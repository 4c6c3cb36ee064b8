//! Mattermost wire models → store rows. Pure; no message text is logged or inspected here
//! except by [`mentions_user`], which only answers yes/no.

use mattermost::models as mm;

use crate::store;

/// Preferences → the done / snooze marks they hold (other categories are ignored).
#[must_use]
pub fn marks(
    prefs: &[mm::Preference],
) -> std::collections::BTreeMap<crate::inbox::ItemKey, crate::inbox::Marks> {
    let prefs: Vec<crate::inbox::Preference> = prefs
        .iter()
        .map(|p| crate::inbox::Preference {
            user_id: p.user_id.clone(),
            category: p.category.clone(),
            name: p.name.clone(),
            value: p.value.clone(),
        })
        .collect();
    crate::inbox::preferences_to_marks(&prefs)
}

/// `User` → profile row.
#[must_use]
pub fn profile(u: &mm::User) -> store::Profile {
    store::Profile {
        user_id: u.id.clone(),
        username: u.username.clone(),
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        nickname: u.nickname.clone(),
        update_at: u.update_at,
        delete_at: u.delete_at,
    }
}

/// `Team` → team row.
#[must_use]
pub fn team(t: &mm::Team) -> store::Team {
    store::Team {
        team_id: t.id.clone(),
        name: t.name.clone(),
        display_name: t.display_name.clone(),
        update_at: t.update_at,
        delete_at: t.delete_at,
    }
}

/// `Channel` → channel row.
#[must_use]
pub fn channel(c: &mm::Channel) -> store::Channel {
    store::Channel {
        channel_id: c.id.clone(),
        team_id: c.team_id.clone(),
        channel_type: c.channel_type.as_str().to_owned(),
        name: c.name.clone(),
        display_name: c.display_name.clone(),
        total_msg_count: c.total_msg_count,
        total_msg_count_root: c.total_msg_count_root,
        last_post_at: c.last_post_at,
        last_root_post_at: c.last_root_post_at,
        update_at: c.update_at,
        delete_at: c.delete_at,
    }
}

/// `ChannelMember` → membership row (`msg_count*` are messages READ).
#[must_use]
pub fn membership(m: &mm::ChannelMember) -> store::Membership {
    store::Membership {
        channel_id: m.channel_id.clone(),
        msg_count: m.msg_count,
        mention_count: m.mention_count,
        msg_count_root: m.msg_count_root,
        mention_count_root: m.mention_count_root,
        urgent_mention_count: m.urgent_mention_count,
        last_viewed_at: m.last_viewed_at,
        last_update_at: m.last_update_at,
    }
}

/// `ThreadResponse` → thread row. `team_id` is the DM/GM-aware team: `""` when the root's
/// channel is a DM/GM (never the team of the REST URL, trap 32); `channel_team` maps a channel
/// to its team.
#[must_use]
pub fn thread(
    t: &mm::ThreadResponse,
    following: bool,
    channel_team: impl Fn(&str) -> Option<String>,
) -> Option<store::Thread> {
    let root = t.post.as_ref()?;
    let participants: Vec<&str> = t.participants.iter().map(|u| u.id.as_str()).collect();
    Some(store::Thread {
        root_id: t.id.clone(),
        channel_id: root.channel_id.clone(),
        team_id: channel_team(&root.channel_id).unwrap_or_default(),
        reply_count: t.reply_count,
        last_reply_at: t.last_reply_at,
        last_viewed_at: t.last_viewed_at,
        unread_replies: t.unread_replies,
        unread_mentions: t.unread_mentions,
        is_urgent: t.is_urgent,
        following,
        delete_at: t.delete_at,
        participants: store::JsonText::new(
            serde_json::to_string(&participants).unwrap_or_else(|_| "[]".into()),
        ),
    })
}

fn json_or(v: Result<String, serde_json::Error>, fallback: &str) -> store::JsonText {
    store::JsonText::new(v.unwrap_or_else(|_| fallback.to_owned()))
}

/// `Post` → post row (reactions taken from the metadata).
#[must_use]
pub fn post(p: &mm::Post) -> store::Post {
    let reactions = p
        .metadata
        .as_ref()
        .map(|m| m.reactions.clone())
        .unwrap_or_default();
    let metadata = p.metadata.as_ref().map_or_else(
        || store::JsonText::new("{}"),
        |m| {
            // Reactions live in their own column; keep priority/acks/files in metadata.
            let mut m = m.clone();
            m.reactions.clear();
            json_or(serde_json::to_string(&m), "{}")
        },
    );
    store::Post {
        post_id: p.id.clone(),
        channel_id: p.channel_id.clone(),
        root_id: p.root_id.clone(),
        user_id: p.user_id.clone(),
        post_type: p.post_type.clone(),
        create_at: p.create_at,
        update_at: p.update_at,
        edit_at: p.edit_at,
        delete_at: p.delete_at,
        message: store::MessageText::new(p.message.as_str()),
        props: json_or(serde_json::to_string(&p.props), "{}"),
        file_ids: json_or(serde_json::to_string(&p.file_ids), "[]"),
        reactions: json_or(serde_json::to_string(&reactions), "[]"),
        metadata,
    }
}

/// Does this root post mention the user (`@username`, `@channel`, `@all`, `@here`)? Used only to
/// find root mentions that have no thread yet; the answer is a bool, the text is never logged.
#[must_use]
pub fn mentions_user(p: &mm::Post, username: &str) -> bool {
    if username.is_empty() {
        return false;
    }
    let text = p.message.as_str().to_lowercase();
    let me = format!("@{}", username.to_lowercase());
    let word_end = |rest: &str| {
        rest.chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
            || rest.starts_with(". ")
            || rest == "."
    };
    let hit = |needle: &str| {
        text.match_indices(needle)
            .any(|(i, _)| word_end(&text[i + needle.len()..]))
    };
    hit(&me) || hit("@channel") || hit("@all") || hit("@here")
}

/// The other member of a DM from its name (`<id>__<id>`, sorted); the user for a self-DM.
#[must_use]
pub fn dm_partner(channel_name: &str, me: &str) -> Option<String> {
    let (a, b) = channel_name.split_once("__")?;
    Some(if a == me { b } else { a }.to_owned())
}

/// The marker carried by a post's props, if it is one of ours.
#[must_use]
pub fn outbox_marker(p: &mm::Post) -> Option<&str> {
    marker_in(&p.props.0)
}

/// The outbox marker among a post's props (`props.threaddesk_outbox_id`), if any.
#[must_use]
pub fn marker_in(props: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
    props
        .get(super::outbox::MARKER_PROP)
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_with(text: &str) -> mm::Post {
        mm::Post {
            message: mattermost::MessageText::new(text),
            ..mm::Post::default()
        }
    }

    #[test]
    fn mention_detection() {
        assert!(mentions_user(&post_with("hi @alice, look"), "alice"));
        assert!(mentions_user(&post_with("@Alice"), "alice"));
        assert!(mentions_user(&post_with("ping @here"), "alice"));
        assert!(!mentions_user(&post_with("hi @alice2"), "alice"));
        assert!(!mentions_user(&post_with("hi alice"), "alice"));
        assert!(mentions_user(&post_with("thanks @alice."), "alice"));
        assert!(!mentions_user(&post_with("x"), ""));
    }

    #[test]
    fn dm_partner_from_name() {
        assert_eq!(dm_partner("aaa__bbb", "aaa").as_deref(), Some("bbb"));
        assert_eq!(dm_partner("aaa__bbb", "bbb").as_deref(), Some("aaa"));
        assert_eq!(dm_partner("aaa__aaa", "aaa").as_deref(), Some("aaa"));
        assert_eq!(dm_partner("hash", "aaa"), None);
    }
}
