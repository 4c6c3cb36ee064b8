use http::Method;

use crate::api::MAX_USER_IDS;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::models::{LoginResponse, Status, User};
use crate::secret::Secret;

impl Client {
    /// `GET /users/me`: the user behind the token.
    pub async fn get_me(&self) -> Result<User> {
        self.json(self.request(Method::GET, &["users", "me"])).await
    }

    /// `GET /users/{user_id}`.
    pub async fn get_user(&self, user_id: &str) -> Result<User> {
        self.json(self.request(Method::GET, &["users", user_id]))
            .await
    }

    /// `POST /users/ids` for at most [`MAX_USER_IDS`] ids (use
    /// [`Client::get_users_by_ids_batched`] for more). Unknown ids are silently left out by the
    /// server.
    pub async fn get_users_by_ids(&self, ids: &[String]) -> Result<Vec<User>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() > MAX_USER_IDS {
            return Err(Error::InvalidArgument(format!(
                "at most {MAX_USER_IDS} ids per call, got {}",
                ids.len()
            )));
        }
        self.json(self.request(Method::POST, &["users", "ids"]).json(ids)?)
            .await
    }

    /// [`Client::get_users_by_ids`] in batches of [`MAX_USER_IDS`], one call after the other.
    pub async fn get_users_by_ids_batched(&self, ids: &[String]) -> Result<Vec<User>> {
        let mut users = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_USER_IDS) {
            users.extend(self.get_users_by_ids(chunk).await?);
        }
        Ok(users)
    }

    /// `POST /users/status/ids`: statuses of other users (they are not pushed over the
    /// WebSocket, research §0 trap 26).
    pub async fn get_statuses_by_ids(&self, ids: &[String]) -> Result<Vec<Status>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.json(
            self.request(Method::POST, &["users", "status", "ids"])
                .json(ids)?,
        )
        .await
    }

    /// `POST /users/login` with a login id (username or email) and password; returns the user
    /// and the session token from the `Token` header (research §2.3). For tests and tools.
    ///
    /// No `X-Requested-With` header is sent, so the server sets no cookies. The token is not
    /// stored in this client: use [`Client::with_token`] or [`Client::set_token`].
    pub async fn login(&self, login_id: &str, password: &Secret) -> Result<LoginResponse> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            login_id: &'a str,
            password: &'a str,
        }
        let req = self
            .request(Method::POST, &["users", "login"])
            .without_auth()
            .json(&Body {
                login_id,
                password: password.expose(),
            })?;
        let resp = self.send(req).await?;
        let token = resp
            .headers()
            .get("token")
            .and_then(|v| v.to_str().ok())
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| Error::Decode {
                endpoint: "POST /api/v4/users/login".into(),
                reason: "missing Token header".into(),
                truncated: false,
            })?;
        let user = resp.json().await?;
        Ok(LoginResponse { user, token })
    }

    /// `POST /users/logout`: revokes the current session (for an OAuth token, also its
    /// refresh token).
    pub async fn logout(&self) -> Result<()> {
        self.no_content(self.request(Method::POST, &["users", "logout"]))
            .await
    }
}
