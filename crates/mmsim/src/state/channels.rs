//! Teams, channels and channel memberships (research §3).

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};

use super::{ChannelRec, MemberRec, State, TeamRec, obj, string_json};
use crate::error::{ApiResult, AppError};
use crate::events::Broadcast;
use crate::model::{self, Id, StringMap};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelType {
    Open,
    Private,
    Direct,
    Group,
}

impl ChannelType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "O",
            Self::Private => "P",
            Self::Direct => "D",
            Self::Group => "G",
        }
    }

    #[must_use]
    pub fn is_direct(self) -> bool {
        matches!(self, Self::Direct | Self::Group)
    }
}

/// Default channel `notify_props` (`GetDefaultChannelNotifyProps`, research §3.1).
const DEFAULT_CHANNEL_NOTIFY_PROPS: [(&str, &str); 6] = [
    ("channel_auto_follow_threads", "off"),
    ("desktop", "default"),
    ("email", "default"),
    ("ignore_channel_mentions", "default"),
    ("mark_unread", "all"),
    ("push", "default"),
];

fn default_channel_notify_props() -> StringMap {
    DEFAULT_CHANNEL_NOTIFY_PROPS
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// DM name: both ids sorted, joined by `__` (research §3.1).
#[must_use]
pub fn dm_name(a: Id, b: Id) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{x}__{y}")
}

/// GM name: hex SHA-1 of the sorted ids concatenated (`GetGroupNameFromUserIds`).
#[must_use]
pub fn gm_name(ids: &[Id]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort();
    let mut hasher = Sha1::new();
    for id in &sorted {
        hasher.update(id.as_str().as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Counters of one unread computation.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadCounts {
    pub msg_count: i64,
    pub msg_count_root: i64,
    pub mention_count: i64,
    pub mention_count_root: i64,
    pub urgent_mention_count: i64,
}

impl State {
    pub fn team(&self, id: Id) -> ApiResult<&TeamRec> {
        self.teams.get(&id).ok_or_else(|| {
            AppError::not_found(
                "app.team.get.find.app_error",
                "Unable to find the existing team.",
            )
        })
    }

    #[must_use]
    pub fn team_json(&self, t: &TeamRec) -> model::Team {
        model::Team {
            id: t.id,
            create_at: t.create_at,
            update_at: t.create_at,
            delete_at: 0,
            display_name: t.display_name.clone(),
            name: t.name.clone(),
            description: t.description.clone(),
            email: String::new(),
            kind: "O".to_owned(),
            company_name: String::new(),
            allowed_domains: String::new(),
            invite_id: t.invite_id.into(),
            allow_open_invite: true,
            scheme_id: None,
            group_constrained: None,
            policy_id: None,
            cloud_limits_archived: false,
        }
    }

    #[must_use]
    pub fn is_team_member(&self, team: Id, user: Id) -> bool {
        self.team_members
            .get(&team)
            .is_some_and(|m| m.contains_key(&user))
    }

    pub fn add_team_member(&mut self, team: Id, user: Id, admin: bool) {
        let roles = if admin {
            "team_user team_admin"
        } else {
            "team_user"
        };
        self.team_members
            .entry(team)
            .or_default()
            .insert(user, roles.to_owned());
        let teams = self.user_teams.entry(user).or_default();
        if !teams.contains(&team) {
            teams.push(team);
        }
    }

    #[must_use]
    pub fn teams_for_user(&self, user: Id) -> Vec<model::Team> {
        let mut teams: Vec<_> = self
            .user_teams
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|t| self.teams.get(t))
            .map(|t| self.team_json(t))
            .collect();
        teams.sort_by(|a, b| a.display_name.cmp(&b.display_name));
        teams
    }

    #[must_use]
    pub fn team_members_for_user(&self, user: Id) -> Vec<model::TeamMember> {
        self.user_teams
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let roles = self.team_members.get(t)?.get(&user)?;
                Some(model::TeamMember {
                    team_id: *t,
                    user_id: user,
                    roles: roles.clone(),
                    delete_at: 0,
                    scheme_guest: false,
                    scheme_user: true,
                    scheme_admin: roles.contains("team_admin"),
                    explicit_roles: String::new(),
                })
            })
            .collect()
    }

    pub fn channel(&self, id: Id) -> ApiResult<&ChannelRec> {
        self.channels.get(&id).ok_or_else(|| {
            AppError::not_found(
                "app.channel.get.existing.app_error",
                "Unable to find the existing channel.",
            )
        })
    }

    #[must_use]
    pub fn is_member(&self, channel: Id, user: Id) -> bool {
        self.members.contains_key(&(channel, user))
    }

    /// The channel, if `user` may read it (member of it; public channels readable by team
    /// members). Unknown channel → 404, no permission → 403 (as the server's permission checks).
    pub fn readable_channel(&self, channel: Id, user: Id) -> ApiResult<&ChannelRec> {
        let ch = self.channel(channel).map_err(|_| AppError::permissions())?;
        let public_in_team = ch.kind == ChannelType::Open
            && ch.team_id.is_some_and(|t| self.is_team_member(t, user));
        if self.is_member(channel, user) || public_in_team {
            Ok(ch)
        } else {
            Err(AppError::permissions())
        }
    }

    #[must_use]
    pub fn channel_json(&self, c: &ChannelRec) -> model::Channel {
        model::Channel {
            id: c.id,
            create_at: c.create_at,
            update_at: c.update_at,
            delete_at: c.delete_at,
            team_id: c.team_id.map(String::from).unwrap_or_default(),
            kind: c.kind.as_str().to_owned(),
            display_name: c.display_name.clone(),
            name: c.name.clone(),
            header: c.header.clone(),
            purpose: c.purpose.clone(),
            last_post_at: c.last_post_at,
            total_msg_count: c.total_msg_count,
            extra_update_at: 0,
            creator_id: c.creator_id.map(String::from).unwrap_or_default(),
            scheme_id: None,
            props: None,
            group_constrained: None,
            shared: None,
            total_msg_count_root: c.total_msg_count_root,
            policy_id: None,
            last_root_post_at: c.last_root_post_at,
            policy_enforced: false,
            default_category_name: String::new(),
        }
    }

    fn member_notify_props(m: &MemberRec) -> StringMap {
        let mut props = default_channel_notify_props();
        if let Some(extra) = &m.notify_props {
            props.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        props
    }

    /// One channel notify prop of a member (override, else the default).
    #[must_use]
    pub fn notify_prop(&self, channel: Id, user: Id, key: &str) -> Option<String> {
        let m = self.members.get(&(channel, user))?;
        m.notify_props
            .as_ref()
            .and_then(|p| p.get(key).cloned())
            .or_else(|| {
                DEFAULT_CHANNEL_NOTIFY_PROPS
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            })
    }

    /// `ChannelMember` JSON; another user's membership has `last_viewed_at`/`last_update_at`
    /// −1 (`SanitizeForCurrentUser`).
    #[must_use]
    pub fn member_json(
        &self,
        channel: Id,
        user: Id,
        viewer: Id,
        with_team: bool,
    ) -> Option<model::ChannelMember> {
        let m = self.members.get(&(channel, user))?;
        let is_self = viewer == user;
        let team = if with_team {
            let t = self
                .channels
                .get(&channel)
                .and_then(|c| c.team_id)
                .and_then(|t| self.teams.get(&t));
            Some(model::MemberTeamData {
                team_display_name: t.map(|t| t.display_name.clone()).unwrap_or_default(),
                team_name: t.map(|t| t.name.clone()).unwrap_or_default(),
                team_update_at: t.map_or(0, |t| t.create_at),
            })
        } else {
            None
        };
        Some(model::ChannelMember {
            channel_id: channel,
            user_id: user,
            roles: "channel_user".to_owned(),
            last_viewed_at: if is_self { m.last_viewed_at } else { -1 },
            msg_count: m.msg_count,
            mention_count: m.mention_count,
            mention_count_root: m.mention_count_root,
            urgent_mention_count: m.urgent_mention_count,
            msg_count_root: m.msg_count_root,
            notify_props: Self::member_notify_props(m),
            last_update_at: if is_self { m.last_update_at } else { -1 },
            scheme_guest: false,
            scheme_user: true,
            scheme_admin: false,
            explicit_roles: String::new(),
            team,
        })
    }

    /// Channels of `user` (optionally of one team), always plus DMs/GMs, ordered by id.
    #[must_use]
    pub fn channels_for_user(
        &self,
        user: Id,
        team: Option<Id>,
        include_deleted: bool,
    ) -> Vec<&ChannelRec> {
        let mut list: Vec<&ChannelRec> = self
            .user_channels
            .get(&user)
            .into_iter()
            .flatten()
            .filter_map(|c| self.channels.get(c))
            .filter(|c| team.is_none() || c.team_id.is_none() || c.team_id == team)
            .filter(|c| include_deleted || c.delete_at == 0)
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }

    /// Insert a channel (seed, DM/GM creation).
    pub fn add_channel(&mut self, channel: ChannelRec) {
        if channel.kind.is_direct() {
            self.direct_names.insert(channel.name.clone(), channel.id);
        }
        self.channel_posts.entry(channel.id).or_default();
        self.channels.insert(channel.id, channel);
    }

    /// Add `user` to `channel` with everything read (no events; see [`Self::join_channel`]).
    pub fn add_member_quiet(&mut self, channel: Id, user: Id) {
        if self.is_member(channel, user) {
            return;
        }
        let (total, total_root) = self
            .channels
            .get(&channel)
            .map_or((0, 0), |c| (c.total_msg_count, c.total_msg_count_root));
        let now = self.now();
        self.members.insert(
            (channel, user),
            MemberRec {
                last_viewed_at: now,
                msg_count: total,
                msg_count_root: total_root,
                last_update_at: now,
                ..MemberRec::default()
            },
        );
        self.channel_members.entry(channel).or_default().push(user);
        self.user_channels.entry(user).or_default().push(channel);
    }

    /// Add a member and publish `user_added` (to the channel, omitting the new member, and a
    /// copy to the new member, research §6.5).
    pub fn join_channel(&mut self, channel: Id, user: Id) -> ApiResult<()> {
        let team_id = self
            .channel(channel)?
            .team_id
            .map(String::from)
            .unwrap_or_default();
        if self.is_member(channel, user) {
            return Ok(());
        }
        self.user(user)?;
        self.add_member_quiet(channel, user);
        let data = obj([
            ("user_id", json!(user.as_str())),
            ("team_id", json!(team_id)),
        ]);
        let others: Vec<Id> = self.channel_members[&channel]
            .iter()
            .copied()
            .filter(|u| *u != user)
            .collect();
        let broadcast = Broadcast {
            channel_id: channel.into(),
            omit_users: Some([(String::from(user), true)].into_iter().collect()),
            ..Broadcast::default()
        };
        self.emit(
            "user_added",
            data.clone(),
            broadcast,
            others,
            HashMap::new(),
        );
        self.emit_user("user_added", user, "", channel.as_str(), data);
        Ok(())
    }

    /// Remove a member and publish `user_removed` (to the channel and to the removed user).
    pub fn leave_channel(&mut self, channel: Id, user: Id, remover: Id) -> ApiResult<()> {
        self.channel(channel)?;
        if self.members.remove(&(channel, user)).is_none() {
            return Err(AppError::not_found(
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            ));
        }
        if let Some(list) = self.channel_members.get_mut(&channel) {
            list.retain(|u| *u != user);
        }
        if let Some(list) = self.user_channels.get_mut(&user) {
            list.retain(|c| *c != channel);
        }
        // Like the server's `removeChannelMembership`, which also runs
        // `Thread().DeleteMembershipsForChannel(user, channel)`: the user's thread memberships
        // in that channel go with the channel membership (no event for them).
        let posts = &self.posts;
        let in_channel = |r: &u32| {
            posts
                .get(*r as usize)
                .is_some_and(|p| p.channel_id == channel)
        };
        let roots: Vec<u32> = self
            .user_threads
            .get(&user)
            .into_iter()
            .flatten()
            .copied()
            .filter(|r| in_channel(r))
            .collect();
        for root in &roots {
            self.thread_members.remove(&(user, *root));
        }
        if let Some(list) = self.user_threads.get_mut(&user) {
            list.retain(|r| !roots.contains(r));
        }
        self.emit_channel(
            "user_removed",
            channel,
            obj([
                ("user_id", json!(user.as_str())),
                ("remover_id", json!(remover.as_str())),
            ]),
        );
        self.emit_user(
            "user_removed",
            user,
            "",
            "",
            obj([
                ("channel_id", json!(channel.as_str())),
                ("remover_id", json!(remover.as_str())),
            ]),
        );
        Ok(())
    }

    /// `POST /channels/direct` (research §3.1): existing or new DM; events `direct_added`.
    pub fn direct_channel(&mut self, a: Id, b: Id) -> ApiResult<Id> {
        self.user(a)?;
        self.user(b)?;
        let name = dm_name(a, b);
        if let Some(id) = self.direct_names.get(&name) {
            return Ok(*id);
        }
        let id = self.new_id();
        let now = self.now();
        self.add_channel(ChannelRec {
            id,
            team_id: None,
            kind: ChannelType::Direct,
            name,
            display_name: String::new(),
            header: String::new(),
            purpose: String::new(),
            creator_id: Some(a),
            create_at: now,
            update_at: now,
            delete_at: 0,
            last_post_at: now,
            last_root_post_at: now,
            total_msg_count: 0,
            total_msg_count_root: 0,
        });
        self.add_member_quiet(id, a);
        self.add_member_quiet(id, b);
        self.emit_channel(
            "direct_added",
            id,
            obj([
                ("creator_id", json!(a.as_str())),
                ("teammate_id", json!(b.as_str())),
            ]),
        );
        Ok(id)
    }

    /// `POST /channels/group`: 3–8 users including the creator; events `group_added`.
    pub fn group_channel(&mut self, creator: Id, ids: &[Id]) -> ApiResult<Id> {
        let mut all: Vec<Id> = ids.to_vec();
        if !all.contains(&creator) {
            all.push(creator);
        }
        all.sort();
        all.dedup();
        if !(3..=8).contains(&all.len()) {
            return Err(AppError::new(
                400,
                "api.channel.create_group.bad_size.app_error",
                "Group message channels must contain at least 3 and no more than 8 users.",
            ));
        }
        for u in &all {
            self.user(*u)?;
        }
        let name = gm_name(&all);
        if let Some(id) = self.direct_names.get(&name) {
            return Ok(*id);
        }
        let mut names: Vec<String> = all
            .iter()
            .filter_map(|u| self.users.get(u).map(|u| u.username.clone()))
            .collect();
        names.sort();
        let mut display_name = names.join(", ");
        truncate_bytes(&mut display_name, 64);
        let id = self.new_id();
        let now = self.now();
        self.add_channel(ChannelRec {
            id,
            team_id: None,
            kind: ChannelType::Group,
            name,
            display_name,
            header: String::new(),
            purpose: String::new(),
            creator_id: Some(creator),
            create_at: now,
            update_at: now,
            delete_at: 0,
            last_post_at: now,
            last_root_post_at: now,
            total_msg_count: 0,
            total_msg_count_root: 0,
        });
        for u in &all {
            self.add_member_quiet(id, *u);
        }
        let teammates: Vec<&str> = all.iter().map(Id::as_str).collect();
        let data = obj([("teammate_ids", string_json(&teammates))]);
        for u in all {
            self.emit_user("group_added", u, "", id.as_str(), data.clone());
        }
        Ok(id)
    }

    fn is_muted(&self, channel: Id, user: Id) -> bool {
        self.notify_prop(channel, user, "mark_unread").as_deref() == Some("mention")
    }

    /// `GET /users/{u}/channels/{c}/unread`: `msg_count` already *unread*, zero when muted
    /// (trap 8).
    pub fn channel_unread(&self, user: Id, channel: Id) -> ApiResult<model::ChannelUnread> {
        let ch = self.readable_channel(channel, user)?;
        let m = self.members.get(&(channel, user)).ok_or_else(|| {
            AppError::not_found(
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            )
        })?;
        let muted = self.is_muted(channel, user);
        let unread = |total: i64, read: i64| if muted { 0 } else { (total - read).max(0) };
        Ok(model::ChannelUnread {
            team_id: ch.team_id.map(String::from).unwrap_or_default(),
            channel_id: channel,
            msg_count: unread(ch.total_msg_count, m.msg_count),
            mention_count: m.mention_count,
            mention_count_root: m.mention_count_root,
            urgent_mention_count: m.urgent_mention_count,
            msg_count_root: unread(ch.total_msg_count_root, m.msg_count_root),
        })
    }

    /// Team unread counts (`model.TeamUnread`), with the team's thread counters when given
    /// (see [`State::thread_totals_by_team`]).
    #[must_use]
    pub fn team_unread(
        &self,
        user: Id,
        team: Id,
        threads: Option<super::threads::ThreadTotals>,
    ) -> model::TeamUnread {
        let mut out = model::TeamUnread {
            team_id: team,
            msg_count: 0,
            mention_count: 0,
            mention_count_root: 0,
            msg_count_root: 0,
            thread_count: None,
            thread_mention_count: None,
            thread_urgent_mention_count: None,
        };
        for ch in self.channels_for_user(user, Some(team), false) {
            if ch.team_id != Some(team) {
                continue;
            }
            let Some(m) = self.members.get(&(ch.id, user)) else {
                continue;
            };
            if !self.is_muted(ch.id, user) {
                out.msg_count += (ch.total_msg_count - m.msg_count).max(0);
                out.msg_count_root += (ch.total_msg_count_root - m.msg_count_root).max(0);
            }
            out.mention_count += m.mention_count;
            out.mention_count_root += m.mention_count_root;
        }
        if let Some(totals) = threads {
            out.thread_count = Some(totals.unread_threads);
            out.thread_mention_count = Some(totals.unread_mentions);
            out.thread_urgent_mention_count = Some(totals.unread_urgent_mentions);
        }
        out
    }

    /// Whether `user` has anything unread in `channel`.
    fn has_unreads(&self, channel: &ChannelRec, m: &MemberRec) -> bool {
        m.msg_count < channel.total_msg_count
            || m.msg_count_root < channel.total_msg_count_root
            || m.mention_count > 0
            || m.mention_count_root > 0
            || m.urgent_mention_count > 0
    }

    /// `MarkChannelsAsViewed` (research §3.2, traps 24-25): only channels with unreads are
    /// touched; `multiple_channels_viewed` is sent (never `channel_viewed`); without CRT support
    /// the followed threads of those channels are marked read too.
    pub fn view_channels(
        &mut self,
        user: Id,
        channels: &[Id],
        crt_supported: bool,
    ) -> Map<String, Value> {
        let now = self.now();
        let mut times = Map::new();
        for &cid in channels {
            let Some(ch) = self.channels.get(&cid) else {
                continue;
            };
            let (total, total_root) = (ch.total_msg_count, ch.total_msg_count_root);
            let Some(m) = self.members.get(&(cid, user)) else {
                continue;
            };
            if !self.has_unreads(ch, m) {
                continue;
            }
            if let Some(m) = self.members.get_mut(&(cid, user)) {
                m.last_viewed_at = now;
                m.msg_count = total;
                m.msg_count_root = total_root;
                m.mention_count = 0;
                m.mention_count_root = 0;
                m.urgent_mention_count = 0;
                m.last_update_at = now;
            }
            times.insert(cid.to_string(), json!(now));
            if !crt_supported {
                self.read_channel_threads(user, cid, now);
            }
        }
        if !times.is_empty() {
            let data = obj([("channel_times", Value::Object(times.clone()))]);
            self.emit_user("multiple_channels_viewed", user, "", "", data);
        }
        times
    }

    /// Mark every followed thread in `channel` read (non-CRT view, trap 25).
    fn read_channel_threads(&mut self, user: Id, channel: Id, now: i64) {
        let roots: Vec<u32> = self
            .user_threads
            .get(&user)
            .into_iter()
            .flatten()
            .copied()
            .filter(|r| {
                self.posts
                    .get(*r as usize)
                    .is_some_and(|p| p.channel_id == channel)
            })
            .collect();
        for root in roots {
            if let Some(tm) = self.thread_members.get_mut(&(user, root))
                && tm.following
            {
                tm.last_view_at = now;
                tm.unread_mentions = 0;
                tm.last_update_at = now;
            }
        }
        self.emit_user(
            "thread_read_changed",
            user,
            "",
            channel.as_str(),
            obj([("timestamp", json!(now))]),
        );
    }

    /// Posts of `channel` created before `ts`, counted (all posts, roots only).
    fn counts_before(&self, channel: Id, ts: i64) -> (i64, i64) {
        let mut all = 0;
        let mut roots = 0;
        for &i in self.channel_posts.get(&channel).into_iter().flatten() {
            let p = &self.posts[i as usize];
            if p.create_at < ts {
                all += 1;
                if p.root.is_none() {
                    roots += 1;
                }
            }
        }
        (all, roots)
    }

    /// Read counts of `user` in `channel` if everything up to `ts` (inclusive) was read.
    fn read_point_counts(&self, user: Id, channel: Id, ts: i64, crt_supported: bool) -> ReadCounts {
        let (read, read_root) = self.counts_before(channel, ts + 1);
        let mut counts = ReadCounts {
            msg_count: read,
            msg_count_root: read_root,
            ..ReadCounts::default()
        };
        for &i in self.channel_posts.get(&channel).into_iter().flatten() {
            let p = &self.posts[i as usize];
            if p.create_at <= ts || p.delete_at != 0 || p.user_id == user {
                continue;
            }
            if crt_supported && p.root.is_some() {
                continue;
            }
            if self.post_mentions(i).contains(&user) {
                counts.mention_count += 1;
                if p.root.is_none() {
                    counts.mention_count_root += 1;
                    if self.is_urgent(i) {
                        counts.urgent_mention_count += 1;
                    }
                }
            }
        }
        counts
    }

    /// Move `user`'s read point in `channel` to `ts` (no event).
    pub(crate) fn set_read_point(
        &mut self,
        user: Id,
        channel: Id,
        ts: i64,
        crt_supported: bool,
    ) -> ReadCounts {
        let counts = self.read_point_counts(user, channel, ts, crt_supported);
        let now = self.now();
        if let Some(m) = self.members.get_mut(&(channel, user)) {
            m.last_viewed_at = ts;
            m.msg_count = counts.msg_count;
            m.msg_count_root = counts.msg_count_root;
            m.mention_count = counts.mention_count;
            m.mention_count_root = counts.mention_count_root;
            m.urgent_mention_count = counts.urgent_mention_count;
            m.last_update_at = now;
        }
        counts
    }

    /// `POST /users/{u}/posts/{p}/set_unread` (research §3.2): `last_viewed_at` =
    /// post.create_at − 1, read counts recomputed, event `post_unread`.
    pub fn set_channel_unread(
        &mut self,
        user: Id,
        post: Id,
        crt_supported: bool,
    ) -> ApiResult<model::ChannelUnreadAt> {
        let idx = self.post_idx(post)?;
        let (channel, create_at) = {
            let p = &self.posts[idx as usize];
            (p.channel_id, p.create_at)
        };
        self.readable_channel(channel, user)?;
        if !self.is_member(channel, user) {
            return Err(AppError::permissions());
        }
        let ts = create_at - 1;
        let counts = self.set_read_point(user, channel, ts, crt_supported);
        let team_id = self.channels[&channel]
            .team_id
            .map(String::from)
            .unwrap_or_default();
        let data = obj([
            ("msg_count", json!(counts.msg_count)),
            ("msg_count_root", json!(counts.msg_count_root)),
            ("mention_count", json!(counts.mention_count)),
            ("mention_count_root", json!(counts.mention_count_root)),
            ("urgent_mention_count", json!(counts.urgent_mention_count)),
            ("last_viewed_at", json!(ts)),
            ("post_id", json!(post.as_str())),
        ]);
        self.emit_user("post_unread", user, &team_id, channel.as_str(), data);
        Ok(model::ChannelUnreadAt {
            team_id,
            user_id: user,
            channel_id: channel,
            msg_count: counts.msg_count,
            mention_count: counts.mention_count,
            mention_count_root: counts.mention_count_root,
            urgent_mention_count: counts.urgent_mention_count,
            msg_count_root: counts.msg_count_root,
            last_viewed_at: ts,
        })
    }

    /// `PUT /channels/{c}/members/{u}/notify_props` → event `channel_member_updated`.
    pub fn update_notify_props(
        &mut self,
        channel: Id,
        user: Id,
        props: StringMap,
    ) -> ApiResult<()> {
        self.channel(channel)?;
        let now = self.now();
        let m = self.members.get_mut(&(channel, user)).ok_or_else(|| {
            AppError::not_found(
                "app.channel.get_member.missing.app_error",
                "No channel member found for that user ID and channel ID.",
            )
        })?;
        m.notify_props.get_or_insert_default().extend(props);
        m.last_update_at = now;
        if let Some(member) = self.member_json(channel, user, user, false) {
            let data = obj([("channelMember", string_json(&member))]);
            self.emit_user("channel_member_updated", user, "", "", data);
        }
        Ok(())
    }

    /// Rename / re-describe a channel (driver) → event `channel_updated`.
    pub fn update_channel(
        &mut self,
        channel: Id,
        display_name: Option<String>,
        header: Option<String>,
        purpose: Option<String>,
    ) -> ApiResult<()> {
        let now = self.now();
        let ch = self.channels.get_mut(&channel).ok_or_else(|| {
            AppError::not_found(
                "app.channel.get.existing.app_error",
                "Unable to find the existing channel.",
            )
        })?;
        if let Some(v) = display_name {
            ch.display_name = v;
        }
        if let Some(v) = header {
            ch.header = v;
        }
        if let Some(v) = purpose {
            ch.purpose = v;
        }
        ch.update_at = now;
        let json = self.channel_json(&self.channels[&channel]);
        self.emit_channel(
            "channel_updated",
            channel,
            obj([("channel", string_json(&json))]),
        );
        Ok(())
    }
}

fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_and_gm_names_are_order_independent() {
        let a = Id::parse("aaaaaaaaaaaaaaaaaaaaaaaaaa").unwrap();
        let b = Id::parse("bbbbbbbbbbbbbbbbbbbbbbbbbb").unwrap();
        let c = Id::parse("cccccccccccccccccccccccccc").unwrap();
        assert_eq!(dm_name(b, a), format!("{a}__{b}"));
        assert_eq!(gm_name(&[c, a, b]), gm_name(&[a, b, c]));
        assert_eq!(gm_name(&[a, b, c]).len(), 40);
    }
}
