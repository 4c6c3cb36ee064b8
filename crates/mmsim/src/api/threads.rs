//! Collapsed Reply Threads (research §5.3).

use axum::Json;
use axum::extract::{Path, State};

use super::{Auth, Params, path_id};
use crate::Sim;
use crate::error::{ApiResult, AppError};
use crate::model::{self, STATUS_OK};
use crate::state::ThreadListQuery;

/// `GET /users/{u}/teams/{t}/threads` (traps 11-13): `per_page` clamp 200 and 0 → 30, no
/// `page`, `before`/`after` cursors (exclusive), `totalsOnly`/`threadsOnly` exclusive.
pub async fn list(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id)): Path<(String, String)>,
    q: Params,
) -> ApiResult<Json<model::Threads>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    let before = q.id("before")?;
    let after = q.id("after")?;
    if before.is_some() && after.is_some() {
        return Err(AppError::new(
            400,
            "api.getThreadsForUser.bad_params",
            "Before and After parameters to getThreadsForUser are mutually exclusive",
        ));
    }
    let totals_only = q.bool("totalsOnly");
    let threads_only = q.bool("threadsOnly");
    if totals_only && threads_only {
        return Err(AppError::new(
            400,
            "api.getThreadsForUser.bad_only_params",
            "OnlyThreads and OnlyTotals parameters to getThreadsForUser are mutually exclusive",
        ));
    }
    let per_page = match q.per_page() {
        0 => 30,
        n => n,
    };
    let query = ThreadListQuery {
        since: q.i64("since").filter(|s| *s > 0),
        unread: q.bool("unread"),
        extended: q.bool("extended"),
        deleted: q.bool("deleted"),
        per_page,
        before,
        after,
        totals_only,
        threads_only,
        exclude_direct: q.bool("excludeDirect"),
    };
    sim.with_state(|s| s.thread_list(user, team, &query))
        .map(Json)
}

/// `GET /users/{u}/teams/{t}/threads/{id}`.
pub async fn get_one(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id, thread_id)): Path<(String, String, String)>,
    q: Params,
) -> ApiResult<Json<model::ThreadResponse>> {
    let user = auth.own_user(&user_id)?;
    path_id(&team_id, "team_id")?;
    let thread = path_id(&thread_id, "thread_id")?;
    sim.with_state(|s| s.get_thread(user, thread, q.bool("extended")))
        .map(Json)
}

/// `PUT /users/{u}/teams/{t}/threads/read` (no timestamp segment, trap 14).
pub async fn read_all(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id)): Path<(String, String)>,
) -> ApiResult<Json<model::StatusOk>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    sim.with_state(|s| s.read_all_threads(user, team))?;
    Ok(Json(STATUS_OK))
}

/// `PUT /users/{u}/teams/{t}/threads/{id}/read/{timestamp}`.
pub async fn read(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id, thread_id, ts)): Path<(String, String, String, String)>,
) -> ApiResult<Json<model::ThreadResponse>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    let thread = path_id(&thread_id, "thread_id")?;
    let ts: i64 = ts
        .parse()
        .map_err(|_| AppError::invalid_url_param("timestamp"))?;
    sim.with_state(|s| s.read_thread(user, team, thread, ts))
        .map(Json)
}

/// `POST /users/{u}/teams/{t}/threads/{id}/set_unread/{post_id}`.
pub async fn set_unread(
    State(sim): State<Sim>,
    auth: Auth,
    Path((user_id, team_id, thread_id, post_id)): Path<(String, String, String, String)>,
) -> ApiResult<Json<model::ThreadResponse>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    let thread = path_id(&thread_id, "thread_id")?;
    let post = path_id(&post_id, "post_id")?;
    sim.with_state(|s| s.set_thread_unread(user, team, thread, post))
        .map(Json)
}

async fn set_following(
    sim: &Sim,
    auth: &Auth,
    (user_id, team_id, thread_id): (String, String, String),
    follow: bool,
) -> ApiResult<Json<model::StatusOk>> {
    let user = auth.own_user(&user_id)?;
    let team = path_id(&team_id, "team_id")?;
    let thread = path_id(&thread_id, "thread_id")?;
    sim.with_state(|s| s.set_following(user, team, thread, follow))?;
    Ok(Json(STATUS_OK))
}

/// `PUT /users/{u}/teams/{t}/threads/{id}/following`.
pub async fn follow(
    State(sim): State<Sim>,
    auth: Auth,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Json<model::StatusOk>> {
    set_following(&sim, &auth, p, true).await
}

/// `DELETE /users/{u}/teams/{t}/threads/{id}/following`.
pub async fn unfollow(
    State(sim): State<Sim>,
    auth: Auth,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Json<model::StatusOk>> {
    set_following(&sim, &auth, p, false).await
}
