//! Parsing of WebSocket frames (research §6.2, §6.5).
//!
//! Many `data` values are **string JSON** (a JSON document inside a string, trap 22); they are
//! decoded here into typed values. Unknown events become [`Event::Other`]; a known event whose
//! data does not have the expected shape becomes [`Event::Malformed`] (never a panic, never an
//! error for the connection).

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::de::{null_default, string_json, string_json_default};
use crate::error::describe_json_error;
use crate::models::{
    Channel, ChannelMember, Emoji, Post, Preference, Reaction, ThreadResponse, User,
};

/// Routing information of an event. `team_id` of thread events is the team of the REST call,
/// or `""` for DM/GM replies; never use it to file DM threads (trap 32).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Broadcast {
    #[serde(deserialize_with = "null_default")]
    pub omit_users: HashMap<String, bool>,
    #[serde(deserialize_with = "null_default")]
    pub user_id: String,
    #[serde(deserialize_with = "null_default")]
    pub channel_id: String,
    #[serde(deserialize_with = "null_default")]
    pub team_id: String,
    #[serde(deserialize_with = "null_default")]
    pub connection_id: String,
    #[serde(deserialize_with = "null_default")]
    pub omit_connection_id: String,
}

/// An event with its routing and sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct WsEvent {
    /// Per-connection event number (`hello` is 0). `None` if the server sent none.
    pub seq: Option<i64>,
    pub broadcast: Broadcast,
    pub event: Event,
}

/// The answer to a client action (`{status, seq_reply, data?, error?}`); responses carry no
/// `seq` and do not advance the event sequence (trap 31).
#[derive(Debug, Clone, PartialEq)]
pub struct WsResponse {
    /// `OK` or `FAIL`.
    pub status: String,
    pub seq_reply: i64,
    pub data: serde_json::Value,
    /// `AppError` id when `status` is `FAIL`.
    pub error_id: Option<String>,
}

impl WsResponse {
    /// `status == "OK"`.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.status == "OK"
    }
}

/// A parsed text frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Event(Box<WsEvent>),
    Response(WsResponse),
}

/// Why a frame could not be parsed (never quotes the frame).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unparsable WebSocket frame: {0}")]
pub struct FrameError(pub String);

/// `posted` data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Posted {
    #[serde(deserialize_with = "string_json")]
    pub post: Post,
    /// `O`, `P`, `D` or `G`.
    pub channel_type: String,
    pub channel_display_name: String,
    pub channel_name: String,
    /// `@user` or a webhook's override name.
    pub sender_name: String,
    /// `""` for DM/GM.
    pub team_id: String,
    pub set_online: bool,
    /// Only the receiving user's id, present only if this user is mentioned (trap 23).
    #[serde(deserialize_with = "string_json_default")]
    pub mentions: Vec<String>,
    /// Only the receiving user's id, present only if this user follows the thread.
    #[serde(deserialize_with = "string_json_default")]
    pub followers: Vec<String>,
    pub should_ack: bool,
}

/// `post_edited` / `post_deleted` data (for a delete, the post as it was *before*, trap 33).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PostChanged {
    #[serde(deserialize_with = "string_json")]
    pub post: Post,
    /// `post_deleted` to admins only.
    pub delete_by: Option<String>,
}

/// `thread_updated` data.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ThreadUpdated {
    #[serde(deserialize_with = "string_json")]
    pub thread: ThreadResponse,
    pub previous_unread_mentions: Option<i64>,
    pub previous_unread_replies: Option<i64>,
}

/// `thread_read_changed` data. One thread: `thread_id` and counts; mark-all: no data;
/// channel view by a non-CRT client: only `timestamp` (research §6.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ThreadReadChanged {
    pub thread_id: Option<String>,
    pub timestamp: Option<i64>,
    pub unread_mentions: Option<i64>,
    pub unread_replies: Option<i64>,
    pub previous_unread_mentions: Option<i64>,
    pub previous_unread_replies: Option<i64>,
    pub channel_id: Option<String>,
}

/// `thread_follow_changed` data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ThreadFollowChanged {
    pub thread_id: String,
    pub state: bool,
    pub reply_count: i64,
}

/// `post_unread` data: the member's new **read** counts (trap 8); team and channel are in
/// the broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PostUnread {
    pub post_id: String,
    pub msg_count: i64,
    pub msg_count_root: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
    pub last_viewed_at: i64,
}

/// `user_removed` data: to the channel `user_id` + `remover_id`; to the removed user
/// `channel_id` + `remover_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct UserRemoved {
    pub user_id: Option<String>,
    pub channel_id: Option<String>,
    pub remover_id: Option<String>,
}

/// A typed WebSocket event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// First event of a new connection (`seq` 0). A resumed connection gets none (trap 29).
    Hello {
        connection_id: String,
        server_version: String,
        server_hostname: String,
    },
    Posted(Box<Posted>),
    PostEdited(Box<PostChanged>),
    PostDeleted(Box<PostChanged>),
    ReactionAdded(Reaction),
    ReactionRemoved(Reaction),
    /// Channel id → `last_viewed_at`. Sent even for one channel, and only for channels that
    /// had unreads (there is no `channel_viewed`, trap 24).
    MultipleChannelsViewed {
        channel_times: HashMap<String, i64>,
    },
    ThreadUpdated(Box<ThreadUpdated>),
    ThreadReadChanged(ThreadReadChanged),
    ThreadFollowChanged(ThreadFollowChanged),
    PreferencesChanged(Vec<Preference>),
    PreferencesDeleted(Vec<Preference>),
    ChannelUpdated(Box<Channel>),
    ChannelMemberUpdated(Box<ChannelMember>),
    /// `user_id` added to a channel (`broadcast.channel_id`); `team_id` is the channel's.
    UserAdded {
        user_id: String,
        team_id: String,
    },
    UserRemoved(UserRemoved),
    /// A DM channel (`broadcast.channel_id`) was created.
    DirectAdded {
        creator_id: String,
        teammate_id: String,
    },
    /// A GM channel (`broadcast.channel_id`) was created.
    GroupAdded {
        teammate_ids: Vec<String>,
    },
    PostUnread(PostUnread),
    /// A channel the user can see was created.
    ChannelCreated {
        channel_id: String,
        team_id: String,
    },
    /// A channel was archived.
    ChannelDeleted {
        channel_id: String,
        delete_at: i64,
    },
    /// An archived channel was restored.
    ChannelRestored {
        channel_id: String,
    },
    /// `user_id` joined `team_id`.
    AddedToTeam {
        team_id: String,
        user_id: String,
    },
    /// `user_id` left (or was removed from) `team_id`.
    LeaveTeam {
        team_id: String,
        user_id: String,
    },
    /// A user's profile changed (the data is a plain object, not string JSON).
    UserUpdated(Box<User>),
    /// The receiving user's own status changed (others' statuses are never pushed, trap 26).
    StatusChange {
        user_id: String,
        status: String,
    },
    /// Somebody is typing in `broadcast.channel_id` (`parent_id` = thread root or `""`).
    Typing {
        user_id: String,
        parent_id: String,
    },
    /// A custom emoji was added.
    EmojiAdded(Emoji),
    /// A known event whose data did not have the expected shape. `reason` never quotes data.
    Malformed {
        event: String,
        reason: String,
    },
    /// Any other event (ignored by most consumers).
    Other {
        event: String,
        data: serde_json::Value,
    },
}

impl Event {
    /// The wire name of the event.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Posted(_) => "posted",
            Self::PostEdited(_) => "post_edited",
            Self::PostDeleted(_) => "post_deleted",
            Self::ReactionAdded(_) => "reaction_added",
            Self::ReactionRemoved(_) => "reaction_removed",
            Self::MultipleChannelsViewed { .. } => "multiple_channels_viewed",
            Self::ThreadUpdated(_) => "thread_updated",
            Self::ThreadReadChanged(_) => "thread_read_changed",
            Self::ThreadFollowChanged(_) => "thread_follow_changed",
            Self::PreferencesChanged(_) => "preferences_changed",
            Self::PreferencesDeleted(_) => "preferences_deleted",
            Self::ChannelUpdated(_) => "channel_updated",
            Self::ChannelMemberUpdated(_) => "channel_member_updated",
            Self::UserAdded { .. } => "user_added",
            Self::UserRemoved(_) => "user_removed",
            Self::DirectAdded { .. } => "direct_added",
            Self::GroupAdded { .. } => "group_added",
            Self::PostUnread(_) => "post_unread",
            Self::ChannelCreated { .. } => "channel_created",
            Self::ChannelDeleted { .. } => "channel_deleted",
            Self::ChannelRestored { .. } => "channel_restored",
            Self::AddedToTeam { .. } => "added_to_team",
            Self::LeaveTeam { .. } => "leave_team",
            Self::UserUpdated(_) => "user_updated",
            Self::StatusChange { .. } => "status_change",
            Self::Typing { .. } => "typing",
            Self::EmojiAdded(_) => "emoji_added",
            Self::Malformed { event, .. } | Self::Other { event, .. } => event,
        }
    }

    /// Decode the `data` of event `name`.
    #[must_use]
    pub fn from_data(name: &str, data: serde_json::Value) -> Self {
        match Self::try_from_data(name, data) {
            Ok(e) => e,
            Err(e) => Self::Malformed {
                event: name.to_owned(),
                reason: describe_json_error(&e),
            },
        }
    }

    fn try_from_data(name: &str, data: serde_json::Value) -> Result<Self, serde_json::Error> {
        fn de<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, serde_json::Error> {
            // `data` may be missing or null for events without data.
            let v = if v.is_null() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                v
            };
            serde_json::from_value(v)
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct HelloData {
            connection_id: String,
            server_version: String,
            server_hostname: String,
        }
        #[derive(Deserialize, Default)]
        struct ReactionData {
            #[serde(deserialize_with = "string_json")]
            reaction: Reaction,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct ChannelTimes {
            #[serde(deserialize_with = "null_default")]
            channel_times: HashMap<String, i64>,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Prefs {
            #[serde(deserialize_with = "string_json_default")]
            preferences: Vec<Preference>,
        }
        #[derive(Deserialize, Default)]
        struct ChannelData {
            #[serde(deserialize_with = "string_json")]
            channel: Channel,
        }
        #[derive(Deserialize, Default)]
        struct MemberData {
            #[serde(rename = "channelMember", deserialize_with = "string_json")]
            member: ChannelMember,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct UserAdded {
            user_id: String,
            team_id: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct DirectAdded {
            creator_id: String,
            teammate_id: String,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct Ids {
            channel_id: String,
            team_id: String,
            user_id: String,
            delete_at: i64,
            status: String,
            parent_id: String,
        }
        #[derive(Deserialize, Default)]
        struct UserData {
            #[serde(deserialize_with = "string_json")]
            user: User,
        }
        #[derive(Deserialize, Default)]
        struct EmojiData {
            #[serde(deserialize_with = "string_json")]
            emoji: Emoji,
        }
        #[derive(Deserialize, Default)]
        #[serde(default)]
        struct GroupAdded {
            #[serde(deserialize_with = "string_json_default")]
            teammate_ids: Vec<String>,
        }

        Ok(match name {
            "hello" => {
                let h: HelloData = de(data)?;
                Self::Hello {
                    connection_id: h.connection_id,
                    server_version: h.server_version,
                    server_hostname: h.server_hostname,
                }
            }
            "posted" => Self::Posted(Box::new(de(data)?)),
            "post_edited" => Self::PostEdited(Box::new(de(data)?)),
            "post_deleted" => Self::PostDeleted(Box::new(de(data)?)),
            "reaction_added" => Self::ReactionAdded(de::<ReactionData>(data)?.reaction),
            "reaction_removed" => Self::ReactionRemoved(de::<ReactionData>(data)?.reaction),
            "multiple_channels_viewed" => Self::MultipleChannelsViewed {
                channel_times: de::<ChannelTimes>(data)?.channel_times,
            },
            "thread_updated" => Self::ThreadUpdated(Box::new(de(data)?)),
            "thread_read_changed" => Self::ThreadReadChanged(de(data)?),
            "thread_follow_changed" => Self::ThreadFollowChanged(de(data)?),
            "preferences_changed" => Self::PreferencesChanged(de::<Prefs>(data)?.preferences),
            "preferences_deleted" => Self::PreferencesDeleted(de::<Prefs>(data)?.preferences),
            "channel_updated" => Self::ChannelUpdated(Box::new(de::<ChannelData>(data)?.channel)),
            "channel_member_updated" => {
                Self::ChannelMemberUpdated(Box::new(de::<MemberData>(data)?.member))
            }
            "user_added" => {
                let u: UserAdded = de(data)?;
                Self::UserAdded {
                    user_id: u.user_id,
                    team_id: u.team_id,
                }
            }
            "user_removed" => Self::UserRemoved(de(data)?),
            "direct_added" => {
                let d: DirectAdded = de(data)?;
                Self::DirectAdded {
                    creator_id: d.creator_id,
                    teammate_id: d.teammate_id,
                }
            }
            "group_added" => Self::GroupAdded {
                teammate_ids: de::<GroupAdded>(data)?.teammate_ids,
            },
            "post_unread" => Self::PostUnread(de(data)?),
            "channel_created" => {
                let d: Ids = de(data)?;
                Self::ChannelCreated {
                    channel_id: d.channel_id,
                    team_id: d.team_id,
                }
            }
            "channel_deleted" => {
                let d: Ids = de(data)?;
                Self::ChannelDeleted {
                    channel_id: d.channel_id,
                    delete_at: d.delete_at,
                }
            }
            "channel_restored" => Self::ChannelRestored {
                channel_id: de::<Ids>(data)?.channel_id,
            },
            "added_to_team" => {
                let d: Ids = de(data)?;
                Self::AddedToTeam {
                    team_id: d.team_id,
                    user_id: d.user_id,
                }
            }
            "leave_team" => {
                let d: Ids = de(data)?;
                Self::LeaveTeam {
                    team_id: d.team_id,
                    user_id: d.user_id,
                }
            }
            "user_updated" => Self::UserUpdated(Box::new(de::<UserData>(data)?.user)),
            "status_change" => {
                let d: Ids = de(data)?;
                Self::StatusChange {
                    user_id: d.user_id,
                    status: d.status,
                }
            }
            "typing" => {
                let d: Ids = de(data)?;
                Self::Typing {
                    user_id: d.user_id,
                    parent_id: d.parent_id,
                }
            }
            "emoji_added" => Self::EmojiAdded(de::<EmojiData>(data)?.emoji),
            other => Self::Other {
                event: other.to_owned(),
                data,
            },
        })
    }
}

/// The raw envelope: either an event or a response.
#[derive(Deserialize)]
struct RawFrame {
    event: Option<String>,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    broadcast: Option<serde_json::Value>,
    seq: Option<serde_json::Value>,
    status: Option<String>,
    seq_reply: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

fn as_i64(v: Option<&serde_json::Value>) -> Option<i64> {
    v.and_then(serde_json::Value::as_i64)
}

/// Parse one text frame.
pub fn parse_frame(text: &str) -> Result<Frame, FrameError> {
    let raw: RawFrame =
        serde_json::from_str(text).map_err(|e| FrameError(describe_json_error(&e)))?;
    if let Some(event) = raw.event {
        // A broadcast that cannot be read is replaced by an empty one rather than losing the
        // event.
        let broadcast = raw
            .broadcast
            .and_then(|b| serde_json::from_value(b).ok())
            .unwrap_or_default();
        return Ok(Frame::Event(Box::new(WsEvent {
            seq: as_i64(raw.seq.as_ref()),
            broadcast,
            event: Event::from_data(&event, raw.data),
        })));
    }
    if let Some(status) = raw.status {
        let error_id = raw
            .error
            .as_ref()
            .and_then(|e| e.get("id"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        return Ok(Frame::Response(WsResponse {
            status,
            seq_reply: as_i64(raw.seq_reply.as_ref()).unwrap_or(0),
            data: raw.data,
            error_id,
        }));
    }
    Err(FrameError("neither an event nor a response".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> WsEvent {
        match parse_frame(text).unwrap() {
            Frame::Event(e) => *e,
            Frame::Response(r) => panic!("expected an event, got {r:?}"),
        }
    }

    #[test]
    fn hello() {
        let e = event(
            r#"{"event": "hello", "data": {"connection_id": "c0nn", "server_hostname": "h", "server_version": "11.2.0.1.abc.false"}, "broadcast": {"omit_users": null, "user_id": "u1", "channel_id": "", "team_id": "", "connection_id": "", "omit_connection_id": ""}, "seq": 0}"#,
        );
        assert_eq!(e.seq, Some(0));
        assert_eq!(e.broadcast.user_id, "u1");
        assert_eq!(
            e.event,
            Event::Hello {
                connection_id: "c0nn".into(),
                server_version: "11.2.0.1.abc.false".into(),
                server_hostname: "h".into()
            }
        );
    }

    #[test]
    fn posted_with_string_post_mentions_and_followers() {
        let post = serde_json::json!({
            "id": "p1", "create_at": 10, "update_at": 10, "user_id": "u2", "channel_id": "c1",
            "root_id": "r1", "message": "hello @u1", "type": "", "props": {}, "hashtags": "",
            "metadata": {}, "reply_count": 1, "participants": null
        })
        .to_string();
        let frame = serde_json::json!({
            "event": "posted",
            "data": {
                "channel_display_name": "Town", "channel_name": "town", "channel_type": "O",
                "mentions": "[\"u1\"]", "followers": "[\"u1\"]", "post": post,
                "sender_name": "@bob", "set_online": true, "team_id": "t1"
            },
            "broadcast": {"omit_users": null, "user_id": "", "channel_id": "c1", "team_id": ""},
            "seq": 7
        })
        .to_string();
        let e = event(&frame);
        assert_eq!(e.seq, Some(7));
        assert_eq!(e.broadcast.channel_id, "c1");
        let Event::Posted(p) = e.event else {
            panic!("not posted")
        };
        assert_eq!(p.post.id, "p1");
        assert_eq!(p.post.message.as_str(), "hello @u1");
        assert_eq!(p.post.root_id, "r1");
        assert_eq!(p.mentions, ["u1"]);
        assert_eq!(p.followers, ["u1"]);
        assert_eq!(p.team_id, "t1");
        assert!(!format!("{p:?}").contains("hello @u1"));
    }

    #[test]
    fn posted_without_mentions() {
        let frame = r#"{"event":"posted","data":{"post":"{\"id\":\"p\",\"message\":\"x\"}","channel_type":"D"},"broadcast":{},"seq":1}"#;
        let Event::Posted(p) = event(frame).event else {
            panic!()
        };
        assert!(p.mentions.is_empty() && p.followers.is_empty());
    }

    #[test]
    fn thread_updated_string_thread() {
        let thread = r#"{"id":"r1","reply_count":2,"last_reply_at":20,"last_viewed_at":0,"participants":[{"id":"u2"}],"post":{"id":"r1","channel_id":"c1","message":""},"unread_replies":2,"unread_mentions":1,"is_urgent":true,"delete_at":0}"#;
        let frame = serde_json::json!({
            "event": "thread_updated",
            "data": {"thread": thread, "previous_unread_mentions": 0, "previous_unread_replies": 1},
            "broadcast": {"user_id": "u1", "team_id": ""},
            "seq": 3
        })
        .to_string();
        let Event::ThreadUpdated(t) = event(&frame).event else {
            panic!()
        };
        assert_eq!(t.thread.id, "r1");
        assert_eq!(t.thread.unread_mentions, 1);
        assert!(t.thread.is_urgent);
        assert_eq!(t.previous_unread_replies, Some(1));
    }

    #[test]
    fn other_small_events() {
        let e = event(
            r#"{"event":"multiple_channels_viewed","data":{"channel_times":{"c1":123}},"broadcast":{"user_id":"u"},"seq":2}"#,
        );
        assert_eq!(
            e.event,
            Event::MultipleChannelsViewed {
                channel_times: [("c1".to_owned(), 123)].into()
            }
        );
        let e = event(r#"{"event":"thread_read_changed","data":{},"broadcast":{},"seq":4}"#);
        assert_eq!(
            e.event,
            Event::ThreadReadChanged(ThreadReadChanged::default())
        );
        let e = event(r#"{"event":"thread_read_changed","broadcast":{},"seq":4}"#);
        assert_eq!(
            e.event,
            Event::ThreadReadChanged(ThreadReadChanged::default())
        );
        let e = event(
            r#"{"event":"thread_follow_changed","data":{"thread_id":"r","state":true,"reply_count":3},"seq":5}"#,
        );
        assert_eq!(
            e.event,
            Event::ThreadFollowChanged(ThreadFollowChanged {
                thread_id: "r".into(),
                state: true,
                reply_count: 3
            })
        );
        let e = event(
            r#"{"event":"preferences_changed","data":{"preferences":"[{\"user_id\":\"u\",\"category\":\"flagged_post\",\"name\":\"p\",\"value\":\"true\"}]"},"seq":6}"#,
        );
        let Event::PreferencesChanged(p) = e.event else {
            panic!()
        };
        assert_eq!(p[0].category, "flagged_post");
        let e = event(
            r#"{"event":"reaction_added","data":{"reaction":"{\"user_id\":\"u\",\"post_id\":\"p\",\"emoji_name\":\"smile\",\"create_at\":1}"},"seq":8}"#,
        );
        assert!(matches!(e.event, Event::ReactionAdded(r) if r.emoji_name == "smile"));
        let e = event(
            r#"{"event":"channel_member_updated","data":{"channelMember":"{\"channel_id\":\"c\",\"user_id\":\"u\",\"msg_count\":4}"},"seq":9}"#,
        );
        assert!(matches!(e.event, Event::ChannelMemberUpdated(m) if m.msg_count == 4));
        let e = event(
            r#"{"event":"group_added","data":{"teammate_ids":"[\"a\",\"b\"]"},"broadcast":{"channel_id":"g"},"seq":10}"#,
        );
        assert_eq!(
            e.event,
            Event::GroupAdded {
                teammate_ids: vec!["a".into(), "b".into()]
            }
        );
        let e = event(
            r#"{"event":"post_unread","data":{"msg_count":3,"msg_count_root":2,"mention_count":0,"mention_count_root":0,"urgent_mention_count":0,"last_viewed_at":99,"post_id":"p"},"broadcast":{"channel_id":"c","team_id":"t","user_id":"u"},"seq":11}"#,
        );
        assert!(matches!(e.event, Event::PostUnread(u) if u.last_viewed_at == 99));
    }

    #[test]
    fn unknown_and_malformed_events() {
        let e = event(r#"{"event":"typing","data":{"user_id":"u"},"broadcast":{},"seq":12}"#);
        assert!(matches!(e.event, Event::Typing { ref user_id, .. } if user_id == "u"));
        let e = event(r#"{"event":"custom_plugin_event","data":{"x":1},"seq":12}"#);
        assert!(
            matches!(e.event, Event::Other { ref event, ref data } if event == "custom_plugin_event" && data["x"] == 1)
        );
        let e = event(
            r#"{"event":"user_updated","data":{"user":{"id":"u","username":"bob","props":null}},"seq":14}"#,
        );
        assert!(matches!(e.event, Event::UserUpdated(ref u) if u.username == "bob"));
        let e = event(
            r#"{"event":"channel_deleted","data":{"channel_id":"c","delete_at":5},"seq":15}"#,
        );
        assert_eq!(
            e.event,
            Event::ChannelDeleted {
                channel_id: "c".into(),
                delete_at: 5
            }
        );
        let e = event(r#"{"event":"leave_team","data":{"team_id":"t","user_id":"u"},"seq":16}"#);
        assert_eq!(e.event.name(), "leave_team");
        let e = event(r#"{"event":"posted","data":{"post":"{not json secret"},"seq":13}"#);
        let Event::Malformed { event, reason } = e.event else {
            panic!()
        };
        assert_eq!(event, "posted");
        assert!(!reason.contains("secret"), "{reason}");
    }

    #[test]
    fn responses() {
        let f = parse_frame(
            r#"{"status": "OK", "seq_reply": 2, "data": {"text": "pong", "version": "11.2.0", "server_time": 1, "node_id": ""}}"#,
        )
        .unwrap();
        let Frame::Response(r) = f else { panic!() };
        assert!(r.is_ok());
        assert_eq!(r.seq_reply, 2);
        assert_eq!(r.data["text"], "pong");
        let f = parse_frame(
            r#"{"status":"FAIL","seq_reply":3,"error":{"id":"api.web_socket_router.bad_action.app_error","message":"x"}}"#,
        )
        .unwrap();
        let Frame::Response(r) = f else { panic!() };
        assert_eq!(
            r.error_id.as_deref(),
            Some("api.web_socket_router.bad_action.app_error")
        );
        assert!(parse_frame("[]").is_err());
        assert!(parse_frame("{}").is_err());
        assert!(parse_frame("not json").is_err());
    }

    #[test]
    fn huge_and_deeply_nested_frames_decode_or_fail_without_panic() {
        // A 16 MiB message (the transport's limit) decodes.
        let body = "x".repeat(16 << 20);
        let post = serde_json::json!({"id": "p", "channel_id": "c", "message": body});
        let frame =
            serde_json::json!({"event": "posted", "data": {"post": post.to_string()}, "seq": 1});
        let e = event(&frame.to_string());
        assert!(
            matches!(e.event, Event::Posted(ref p) if p.post.message.as_str().len() == 16 << 20)
        );
        // Nesting far past serde_json's recursion limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(parse_frame(&deep).is_err());
        let deep_data = format!(
            r#"{{"event":"posted","seq":1,"data":{}1{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_frame(&deep_data).is_err());
        let deep_post = format!(
            r#"{{"event":"posted","seq":1,"data":{{"post":"{}{}"}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            parse_frame(&deep_post).map(|f| match f {
                Frame::Event(e) => e.event.name().to_owned(),
                Frame::Response(_) => String::new(),
            }),
            Ok(ref n) if n == "posted"
        ));
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        fn arb_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)),
                ".{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::hash_map(
                        prop_oneof![
                            Just("post".to_owned()),
                            Just("thread".to_owned()),
                            Just("mentions".to_owned()),
                            Just("channel_times".to_owned()),
                            Just("reaction".to_owned()),
                            Just("preferences".to_owned()),
                            Just("channelMember".to_owned()),
                            Just("user".to_owned()),
                            Just("emoji".to_owned()),
                            "[a-z_]{1,8}"
                        ],
                        inner,
                        0..4
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        const NAMES: &[&str] = &[
            "hello",
            "posted",
            "post_edited",
            "post_deleted",
            "reaction_added",
            "reaction_removed",
            "multiple_channels_viewed",
            "thread_updated",
            "thread_read_changed",
            "thread_follow_changed",
            "preferences_changed",
            "preferences_deleted",
            "channel_updated",
            "channel_member_updated",
            "user_added",
            "user_removed",
            "direct_added",
            "group_added",
            "post_unread",
            "typing",
            "channel_created",
            "channel_deleted",
            "channel_restored",
            "added_to_team",
            "leave_team",
            "user_updated",
            "status_change",
            "emoji_added",
            "other_event",
        ];

        proptest! {
            #[test]
            fn never_panics_on_strings(s in ".*") {
                let _ = parse_frame(&s);
            }

            #[test]
            fn never_panics_on_events(
                name in prop::sample::select(NAMES),
                data in arb_json(),
                seq in arb_json(),
                broadcast in arb_json(),
                stringify in any::<bool>(),
            ) {
                // Also try every value as string JSON, like the server sends.
                let data = if stringify {
                    match data {
                        serde_json::Value::Object(m) => serde_json::Value::Object(
                            m.into_iter().map(|(k, v)| (k, serde_json::Value::String(v.to_string()))).collect()),
                        other => other,
                    }
                } else { data };
                let frame = serde_json::json!({"event": name, "data": data, "seq": seq, "broadcast": broadcast});
                let parsed = parse_frame(&frame.to_string());
                prop_assert!(parsed.is_ok());
            }

            /// Events this client does not know are kept as `Other` (the consumer ignores them),
            /// whatever their data.
            #[test]
            fn unknown_events_are_other(name in "[a-z_]{1,24}", data in arb_json()) {
                prop_assume!(!NAMES.contains(&name.as_str()) || name == "other_event");
                let frame = serde_json::json!({"event": name, "data": data, "seq": 1});
                let Ok(Frame::Event(ev)) = parse_frame(&frame.to_string()) else {
                    return Err(TestCaseError::fail("not an event"));
                };
                prop_assert!(
                    matches!(&ev.event, Event::Other { event, .. } if *event == name),
                    "{:?}",
                    ev.event
                );
            }

            /// A known event whose payload field has the wrong type is `Malformed` (an error
            /// the consumer counts), never a panic and never a half-filled event.
            #[test]
            fn wrong_field_types_are_malformed(
                (name, field) in prop::sample::select(vec![
                    ("posted", "post"),
                    ("post_edited", "post"),
                    ("post_deleted", "post"),
                    ("reaction_added", "reaction"),
                    ("reaction_removed", "reaction"),
                    ("channel_updated", "channel"),
                    ("channel_member_updated", "channelMember"),
                    ("user_updated", "user"),
                    ("emoji_added", "emoji"),
                ]),
                wrong in prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    any::<bool>().prop_map(serde_json::Value::from),
                    Just(serde_json::json!([1, 2])),
                    "[^{\\[\"]{1,12}".prop_map(serde_json::Value::from),
                ],
            ) {
                let frame = serde_json::json!({"event": name, "data": {field: wrong}, "seq": 2});
                let Ok(Frame::Event(ev)) = parse_frame(&frame.to_string()) else {
                    return Err(TestCaseError::fail("not an event"));
                };
                prop_assert!(
                    matches!(&ev.event, Event::Malformed { event, .. } if event == name),
                    "{} with {}: {:?}",
                    name,
                    frame,
                    ev.event
                );
            }

            #[test]
            fn never_panics_on_responses(status in ".{0,4}", seq in arb_json(), data in arb_json(), err in arb_json()) {
                let frame = serde_json::json!({"status": status, "seq_reply": seq, "data": data, "error": err});
                prop_assert!(parse_frame(&frame.to_string()).is_ok());
            }
        }
    }
}
