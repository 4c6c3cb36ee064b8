//! Users, sessions, personal access tokens, statuses and preferences (research §2, §7).

use std::collections::HashMap;

use super::{PatRec, SessionKind, SessionRec, State, StatusRec, UserRec, obj, string_json};
use crate::error::{ApiResult, AppError};
use crate::model::{self, Id, StringMap};

/// Web session length, `SessionLengthWebInHours` = 720 (research §2.3).
pub const WEB_SESSION_MS: i64 = 720 * 3600 * 1000;

/// Default user `notify_props` (`model.User.SetDefaultNotifications`).
fn default_user_notify_props(user: &UserRec) -> StringMap {
    [
        ("auto_responder_active", "false"),
        ("auto_responder_message", ""),
        ("channel", "true"),
        ("comments", "never"),
        ("desktop", "mention"),
        ("desktop_sound", "true"),
        ("desktop_threads", "all"),
        ("email", "true"),
        ("email_threads", "all"),
        ("first_name", "false"),
        ("mention_keys", ""),
        ("push", "mention"),
        ("push_status", "away"),
        ("push_threads", "all"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(std::iter::once((
        "mention_keys".to_owned(),
        format!("{},@{}", user.username, user.username),
    )))
    .collect()
}

impl State {
    pub fn user(&self, id: Id) -> ApiResult<&UserRec> {
        self.users.get(&id).ok_or_else(|| {
            AppError::not_found("app.user.missing_account.const", "Unable to find the user.")
        })
    }

    /// A user by username (or id).
    #[must_use]
    pub fn find_user(&self, name_or_id: &str) -> Option<Id> {
        let name = name_or_id.trim_start_matches('@');
        self.usernames
            .get(&name.to_lowercase())
            .copied()
            .or_else(|| Id::parse(name).filter(|id| self.users.contains_key(id)))
    }

    /// The `User` JSON as `viewer` sees it: self gets notify props and password update time,
    /// other users are sanitized (`ClearNonProfileFields`).
    #[must_use]
    pub fn user_json(&self, user: &UserRec, viewer: Option<Id>) -> model::User {
        let is_self = viewer == Some(user.id);
        let timezone: StringMap = [
            ("automaticTimezone", user.timezone.as_str()),
            ("manualTimezone", ""),
            ("useAutomaticTimezone", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        model::User {
            id: user.id.into(),
            create_at: user.create_at,
            update_at: user.update_at,
            delete_at: 0,
            username: user.username.clone(),
            auth_service: String::new(),
            email: user.email.clone(),
            email_verified: is_self,
            nickname: user.nickname.clone(),
            first_name: user.first_name.clone(),
            last_name: user.last_name.clone(),
            position: user.position.clone(),
            roles: user.roles.clone(),
            props: None,
            notify_props: is_self.then(|| default_user_notify_props(user)),
            last_password_update: if is_self { user.create_at } else { 0 },
            last_picture_update: user.last_picture_update,
            locale: "en".to_owned(),
            timezone: Some(timezone),
            last_activity_at: 0,
            is_bot: user.is_bot,
            disable_welcome_email: false,
        }
    }

    /// Create a session of `kind` for `user`; returns its token.
    pub fn create_session(&mut self, user_id: Id, kind: SessionKind, expires_at: i64) -> String {
        let token = self.new_id().to_string();
        let csrf = self.new_id().to_string();
        self.sessions.insert(
            token.clone(),
            SessionRec {
                user_id,
                kind,
                csrf,
                expires_at,
            },
        );
        token
    }

    /// `POST /users/login` (research §2.3): login id = username or email.
    pub fn login(&mut self, login_id: &str, password: &str) -> ApiResult<(Id, String)> {
        let lower = login_id.to_lowercase();
        let user = self
            .users
            .values()
            .find(|u| u.username == lower || u.email.to_lowercase() == lower)
            .filter(|u| !u.is_bot && u.password == password)
            .map(|u| u.id)
            .ok_or_else(|| {
                AppError::new(
                    401,
                    "api.user.login.invalid_credentials_email_username",
                    "Enter a valid email or username and/or password.",
                )
            })?;
        let expires = self.now() + WEB_SESSION_MS;
        let token = self.create_session(user, SessionKind::Web, expires);
        Ok((user, token))
    }

    /// `POST /users/logout`: revoke the session; for OAuth also its access data (research §2.3).
    pub fn logout(&mut self, token: &str) {
        if let Some(session) = self.sessions.remove(token)
            && matches!(session.kind, SessionKind::OAuth(_))
        {
            self.access_data.retain(|_, a| a.token != token);
        }
    }

    /// `POST /users/{u}/tokens` (research §2.2).
    pub fn create_pat(
        &mut self,
        user_id: Id,
        description: &str,
    ) -> ApiResult<model::UserAccessToken> {
        if !self.settings.enable_user_access_tokens {
            return Err(AppError::new(
                501,
                "app.user_access_token.disabled",
                "Personal access tokens are disabled on this server. Please contact your system administrator for details.",
            ));
        }
        if description.is_empty() || description.chars().count() > 255 {
            return Err(AppError::new(
                400,
                "model.user_access_token.is_valid.description.app_error",
                "Invalid description, must be 255 or less characters.",
            ));
        }
        let id = self.new_id();
        let token = self.new_id().to_string();
        self.add_pat(id, token.clone(), user_id, description);
        Ok(model::UserAccessToken {
            id,
            token,
            user_id,
            description: description.to_owned(),
            is_active: true,
        })
    }

    pub(crate) fn add_pat(&mut self, id: Id, token: String, user_id: Id, description: &str) {
        self.sessions.insert(
            token.clone(),
            SessionRec {
                user_id,
                kind: SessionKind::Pat(id),
                csrf: String::new(),
                expires_at: 0,
            },
        );
        self.pats.insert(
            id,
            PatRec {
                id,
                token,
                user_id,
                description: description.to_owned(),
                is_active: true,
            },
        );
    }

    #[must_use]
    pub fn list_pats(&self, user_id: Id) -> Vec<model::UserAccessToken> {
        self.pats
            .values()
            .filter(|p| p.user_id == user_id)
            .map(|p| model::UserAccessToken {
                id: p.id,
                token: String::new(),
                user_id: p.user_id,
                description: p.description.clone(),
                is_active: p.is_active,
            })
            .collect()
    }

    /// `POST /users/tokens/revoke`: only the owner may revoke.
    pub fn revoke_pat(&mut self, caller: Id, token_id: Id) -> ApiResult<()> {
        let pat = self.pats.get(&token_id).ok_or_else(|| {
            AppError::not_found(
                "app.user_access_token.get_by_token.app_error",
                "Unable to get user access token by token.",
            )
        })?;
        if pat.user_id != caller {
            return Err(AppError::permissions());
        }
        let token = pat.token.clone();
        self.pats.remove(&token_id);
        self.sessions.remove(&token);
        Ok(())
    }

    #[must_use]
    pub fn status_json(&self, user: Id) -> model::Status {
        let rec = self.statuses.get(&user);
        model::Status {
            user_id: user,
            status: rec.map_or_else(|| "offline".to_owned(), |s| s.status.clone()),
            manual: rec.is_some_and(|s| s.manual),
            last_activity_at: rec.map_or(0, |s| s.last_activity_at),
            dnd_end_time: 0,
        }
    }

    pub fn set_status(&mut self, user: Id, status: &str) {
        let now = self.now();
        self.statuses.insert(
            user,
            StatusRec {
                status: status.to_owned(),
                manual: false,
                last_activity_at: now,
            },
        );
    }

    #[must_use]
    pub fn preferences(&self, user: Id) -> Vec<model::Preference> {
        self.preferences
            .get(&user)
            .into_iter()
            .flatten()
            .map(|((category, name), value)| model::Preference {
                user_id: user.into(),
                category: category.clone(),
                name: name.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// Validate a preference batch for `user`: 1–100 items, each for `user` (research §7).
    fn check_preferences(user: Id, prefs: &[model::Preference]) -> ApiResult<()> {
        if prefs.is_empty() || prefs.len() > 100 {
            return Err(AppError::invalid_body_param("preferences"));
        }
        if prefs.iter().any(|p| p.user_id != user.as_str()) {
            return Err(AppError::permissions());
        }
        if prefs
            .iter()
            .any(|p| p.category.is_empty() || p.category.len() > 32 || p.name.len() > 32)
        {
            return Err(AppError::new(
                400,
                "model.preference.is_valid.category.app_error",
                "Invalid category",
            ));
        }
        Ok(())
    }

    /// `PUT /users/{u}/preferences` → event `preferences_changed`.
    pub fn save_preferences(&mut self, user: Id, prefs: Vec<model::Preference>) -> ApiResult<()> {
        Self::check_preferences(user, &prefs)?;
        let map = self.preferences.entry(user).or_default();
        for p in &prefs {
            map.insert((p.category.clone(), p.name.clone()), p.value.clone());
        }
        let data = obj([("preferences", string_json(&prefs))]);
        self.emit_user("preferences_changed", user, "", "", data);
        Ok(())
    }

    /// `POST /users/{u}/preferences/delete` → event `preferences_deleted`.
    pub fn delete_preferences(&mut self, user: Id, prefs: Vec<model::Preference>) -> ApiResult<()> {
        Self::check_preferences(user, &prefs)?;
        if let Some(map) = self.preferences.get_mut(&user) {
            for p in &prefs {
                map.remove(&(p.category.clone(), p.name.clone()));
            }
        }
        let data = obj([("preferences", string_json(&prefs))]);
        self.emit_user("preferences_deleted", user, "", "", data);
        Ok(())
    }

    /// Users by id (unknown ids are skipped, as the server does).
    #[must_use]
    pub fn users_by_ids(&self, ids: &[Id], since: Option<i64>, viewer: Id) -> Vec<model::User> {
        ids.iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| since.is_none_or(|s| u.update_at > s))
            .map(|u| self.user_json(u, Some(viewer)))
            .collect()
    }

    /// Insert a user (seed and driver).
    pub fn add_user(&mut self, user: UserRec) {
        self.usernames.insert(user.username.clone(), user.id);
        self.users.insert(user.id, user);
    }

    /// Ids of every user mentioned by `@name` in `message` (usernames only).
    #[must_use]
    pub fn mentioned_usernames(&self, message: &str) -> Vec<Id> {
        mention_words(message)
            .filter_map(|w| self.usernames.get(&w.to_lowercase()).copied())
            .collect()
    }

    #[must_use]
    pub fn user_map(&self) -> HashMap<Id, String> {
        self.users
            .values()
            .map(|u| (u.id, u.username.clone()))
            .collect()
    }

    /// Value of a single preference.
    #[must_use]
    pub fn preference(&self, user: Id, category: &str, name: &str) -> Option<&str> {
        self.preferences
            .get(&user)?
            .get(&(category.to_owned(), name.to_owned()))
            .map(String::as_str)
    }
}

/// Words following `@` in a message (`@name`, `@name.` → `name`).
pub(crate) fn mention_words(message: &str) -> impl Iterator<Item = &str> {
    message.split('@').skip(1).filter_map(|rest| {
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            .unwrap_or(rest.len());
        let word = rest[..end].trim_end_matches(['.', '-', '_']);
        (!word.is_empty()).then_some(word)
    })
}
