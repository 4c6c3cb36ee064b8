use http::Method;

use crate::api::{MAX_BATCH, MAX_PER_PAGE, Paging};
use crate::client::{Client, read_bytes};
use crate::error::Result;
use crate::models::{ClientConfig, Emoji, FileBytes, FileInfo, PingResponse, Preference};

impl Client {
    // ---- files ------------------------------------------------------------------------

    /// `GET /files/{id}`: the file's bytes and content type.
    pub async fn get_file(&self, file_id: &str) -> Result<FileBytes> {
        read_bytes(
            self.send(self.request(Method::GET, &["files", file_id]))
                .await?,
        )
        .await
    }

    /// `GET /files/{id}/thumbnail`.
    pub async fn get_file_thumbnail(&self, file_id: &str) -> Result<FileBytes> {
        read_bytes(
            self.send(self.request(Method::GET, &["files", file_id, "thumbnail"]))
                .await?,
        )
        .await
    }

    /// `GET /files/{id}/preview`.
    pub async fn get_file_preview(&self, file_id: &str) -> Result<FileBytes> {
        read_bytes(
            self.send(self.request(Method::GET, &["files", file_id, "preview"]))
                .await?,
        )
        .await
    }

    /// `GET /files/{id}/info`.
    pub async fn get_file_info(&self, file_id: &str) -> Result<FileInfo> {
        self.json(self.request(Method::GET, &["files", file_id, "info"]))
            .await
    }

    // ---- preferences ------------------------------------------------------------------

    /// `GET /users/{u}/preferences`.
    pub async fn get_preferences(&self, user_id: &str) -> Result<Vec<Preference>> {
        self.json(self.request(Method::GET, &["users", user_id, "preferences"]))
            .await
    }

    /// `GET /users/{u}/preferences/{category}`. A 404 (how a server may answer for a category
    /// with no preferences) is returned as an empty list.
    pub async fn get_preferences_by_category(
        &self,
        user_id: &str,
        category: &str,
    ) -> Result<Vec<Preference>> {
        match self
            .json(self.request(Method::GET, &["users", user_id, "preferences", category]))
            .await
        {
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            other => other,
        }
    }

    /// `PUT /users/{u}/preferences`, in chunks of at most 100 (the server's limit). Every
    /// preference's `user_id` must be the target user's id. Emits `preferences_changed`.
    pub async fn update_preferences(&self, user_id: &str, prefs: &[Preference]) -> Result<()> {
        for chunk in prefs.chunks(MAX_BATCH) {
            self.no_content(
                self.request(Method::PUT, &["users", user_id, "preferences"])
                    .json(chunk)?,
            )
            .await?;
        }
        Ok(())
    }

    /// `POST /users/{u}/preferences/delete`, in chunks of at most 100. Emits
    /// `preferences_deleted`.
    pub async fn delete_preferences(&self, user_id: &str, prefs: &[Preference]) -> Result<()> {
        for chunk in prefs.chunks(MAX_BATCH) {
            self.no_content(
                self.request(Method::POST, &["users", user_id, "preferences", "delete"])
                    .json(chunk)?,
            )
            .await?;
        }
        Ok(())
    }

    // ---- emoji ------------------------------------------------------------------------

    /// `GET /emoji?page=&per_page=&sort=name`: one page of custom emojis (system emojis are not
    /// served by the API).
    pub async fn get_custom_emojis(&self, page: u32, per_page: u32) -> Result<Vec<Emoji>> {
        let req = self
            .request(Method::GET, &["emoji"])
            .query(&Paging {
                page: i64::from(page),
                per_page: per_page.min(MAX_PER_PAGE),
            })?
            .query(&[("sort", "name")])?;
        self.json(req).await
    }

    /// Every custom emoji, in pages of 200 until a short page.
    pub async fn get_all_custom_emojis(&self) -> Result<Vec<Emoji>> {
        let mut all = Vec::new();
        for page in 0.. {
            let batch = self.get_custom_emojis(page, MAX_PER_PAGE).await?;
            let len = batch.len();
            all.extend(batch);
            if len < MAX_PER_PAGE as usize {
                break;
            }
        }
        Ok(all)
    }

    // ---- system -----------------------------------------------------------------------

    /// `GET /config/client?format=old`: flat string map (`"true"`, `"60"`, …). Sent with the
    /// token if there is one (the anonymous view is limited).
    pub async fn get_client_config(&self) -> Result<ClientConfig> {
        let mut req = self
            .request(Method::GET, &["config", "client"])
            .query(&[("format", "old")])?;
        if self.token().is_none() {
            req = req.without_auth();
        }
        self.json(req).await
    }

    /// `GET /system/ping` (no authentication needed).
    pub async fn ping(&self) -> Result<PingResponse> {
        self.json(
            self.request(Method::GET, &["system", "ping"])
                .without_auth(),
        )
        .await
    }
}
