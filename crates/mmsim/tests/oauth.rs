//! Mattermost as an OAuth 2.0 provider over loopback HTTP (research §2.4, traps 4-7).

#![allow(clippy::unwrap_used)] // test helpers: a panic is a test failure

use base64::Engine;
use mmsim::oauth::AppSpec;
use mmsim::{Running, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const CALLBACK: &str = "http://127.0.0.1:9999/auth/oauth/callback";
const VERIFIER: &str = "a-very-long-code-verifier-string-that-is-at-least-43-chars";

struct Env {
    run: Running,
    http: reqwest::Client,
    client_id: String,
    secret: String,
}

impl Env {
    async fn start(config: SimConfig) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let run = mmsim::start(config, 0).await.expect("start");
        let app = run
            .sim
            .with_state(|s| mmsim::seed::threaddesk_app(s))
            .expect("seeded app");
        assert!(run.sim.add_oauth_callback(&app.client_id, CALLBACK));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            run,
            http,
            client_id: app.client_id,
            secret: app.client_secret,
        }
    }

    fn challenge() -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()))
    }

    /// `/oauth/authorize` → the `Location` header.
    async fn authorize(&self, client_id: &str, redirect: &str, pkce: bool) -> (StatusCode, String) {
        let mut q = vec![
            ("response_type", "code".to_owned()),
            ("client_id", client_id.to_owned()),
            ("redirect_uri", redirect.to_owned()),
            ("state", "xyz".to_owned()),
        ];
        if pkce {
            q.push(("code_challenge", Self::challenge()));
            q.push(("code_challenge_method", "S256".to_owned()));
        }
        let resp = self
            .http
            .get(format!("{}/oauth/authorize", self.run.url))
            .query(&q)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, location)
    }

    async fn code(&self) -> String {
        let (status, location) = self.authorize(&self.client_id, CALLBACK, true).await;
        assert_eq!(status, 302);
        let url = url::Url::parse(&location).unwrap();
        assert!(location.starts_with(CALLBACK));
        let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(q.contains(&("state".into(), "xyz".into())));
        let code = q.iter().find(|(k, _)| k == "code").unwrap().1.clone();
        assert_eq!(code.len(), 52);
        code
    }

    async fn token(
        &self,
        form: &[(&str, &str)],
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .post(format!("{}/oauth/access_token", self.run.url))
            .form(form)
            .send()
            .await
            .unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.json().await.unwrap())
    }

    async fn exchange(&self, code: &str) -> (StatusCode, Value) {
        let (status, _, body) = self
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", &self.client_id),
                ("client_secret", &self.secret),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", VERIFIER),
            ])
            .await;
        (status, body)
    }

    async fn me(&self, token: &str) -> StatusCode {
        self.http
            .get(format!("{}/api/v4/users/me", self.run.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }
}

#[tokio::test]
async fn authorization_code_flow_with_pkce_and_refresh_rotation() {
    let env = Env::start(SimConfig::default()).await;
    let code = env.code().await;
    let (status, headers, tokens) = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.secret),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["scope"], "");
    assert_eq!(tokens["id_token"], "");
    assert!(tokens["expires_in"].as_i64().unwrap() > 2_590_000);
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(env.me(&access).await, 200);
    assert!(env.run.sim.user_for_token(&access).is_some());

    // One-time codes.
    let (status, body) = env.exchange(&code).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["id"],
        "api.oauth.get_access_token.expired_code.app_error"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid_grant")
    );

    // Refresh rotates both tokens and kills the old session at once.
    let (status, _, new) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &env.client_id),
            ("client_secret", &env.secret),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(status, 200, "{new}");
    assert_ne!(new["access_token"], tokens["access_token"]);
    assert_ne!(new["refresh_token"], tokens["refresh_token"]);
    assert_eq!(env.me(&access).await, 401);
    assert_eq!(env.me(new["access_token"].as_str().unwrap()).await, 200);
    let (status, _, body) = env
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", &env.client_id),
            ("client_secret", &env.secret),
            ("refresh_token", &refresh),
        ])
        .await;
    assert_eq!(status, 404, "an old refresh token is unknown: {body}");

    // OAuth sessions may not create personal access tokens (trap 3).
    let resp = env
        .http
        .post(format!("{}/api/v4/users/me/tokens", env.run.url))
        .bearer_auth(new["access_token"].as_str().unwrap())
        .json(&json!({"description": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    // Logout with the OAuth token revokes it.
    let access2 = new["access_token"].as_str().unwrap();
    let resp = env
        .http
        .post(format!("{}/api/v4/users/logout", env.run.url))
        .bearer_auth(access2)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.me(access2).await, 401);
}

#[tokio::test]
async fn token_endpoint_errors() {
    let env = Env::start(SimConfig::default()).await;
    let code = env.code().await;
    let base = |secret: &str, client: &str, redirect: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", client.to_owned()),
            ("client_secret", secret.to_owned()),
            ("code", code.clone()),
            ("redirect_uri", redirect.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ]
    };
    let call = |form: Vec<(&'static str, String)>| {
        let env = &env;
        async move {
            let refs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, _, body) = env.token(&refs).await;
            (status.as_u16(), body)
        }
    };
    // Trap 4: AppError JSON with unusual statuses; the code survives none of these checks
    // except the client checks that come before it is consumed.
    let (status, body) = call(base(
        &env.secret,
        "aaaaaaaaaaaaaaaaaaaaaaaaaa",
        CALLBACK,
        VERIFIER,
    ))
    .await;
    assert_eq!(status, 404, "unknown client: {body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid_client")
    );
    assert_eq!(body["detailed_error"], "");
    let (status, _) = call(base("wrong-secret", &env.client_id, CALLBACK, VERIFIER)).await;
    assert_eq!(status, 401);
    let (status, _) = call(base(&env.secret, "short", CALLBACK, VERIFIER)).await;
    assert_eq!(status, 400);
    let (status, body) = call(base(
        &env.secret,
        &env.client_id,
        "http://127.0.0.1:9999/other",
        VERIFIER,
    ))
    .await;
    assert_eq!(status, 400, "redirect mismatch: {body}");

    let code2 = env.code().await;
    let (status, _, body) = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.secret),
            ("code", &code2),
            ("redirect_uri", CALLBACK),
            (
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier-x",
            ),
        ])
        .await;
    assert_eq!(status, 400, "PKCE failure: {body}");

    let (status, _, body) = env
        .token(&[("grant_type", "password"), ("client_id", &env.client_id)])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["id"], "api.oauth.get_access_token.bad_grant.app_error");
    let (status, _, body) = env
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", &env.client_id),
            ("client_secret", &env.secret),
        ])
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["message"], "invalid_request: Missing code.");

    // Codes expire after 10 minutes → 403.
    let code3 = env.code().await;
    env.run.sim.clock().advance(11 * 60 * 1000);
    let (status, body) = env.exchange(&code3).await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn authorize_validation_login_redirect_and_discovery() {
    let env = Env::start(SimConfig::default()).await;
    // Redirect URIs must match exactly.
    let (status, _) = env
        .authorize(
            &env.client_id,
            "http://127.0.0.1:9999/auth/oauth/callback/",
            true,
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = env
        .authorize("aaaaaaaaaaaaaaaaaaaaaaaaaa", CALLBACK, true)
        .await;
    assert_eq!(status, 404);
    let (status, _) = env.authorize("bad", CALLBACK, true).await;
    assert_eq!(status, 400);

    // Apps registered through the Rust API work at once.
    let public = env.run.sim.register_oauth_app(AppSpec {
        name: "cli".into(),
        callback_urls: vec!["http://localhost:1/cb".into()],
        homepage: "http://localhost:1".into(),
        is_trusted: false,
        is_public: true,
    });
    assert!(public.client_secret.is_empty());
    let (status, _) = env
        .authorize(&public.client_id, "http://localhost:1/cb", false)
        .await;
    assert_eq!(status, 400, "public clients must use PKCE");
    let (status, location) = env
        .authorize(&public.client_id, "http://localhost:1/cb", true)
        .await;
    assert_eq!(status, 302);
    assert!(location.contains("code="));

    // Without auto-approval a request without a session goes to the login page.
    let strict = Env::start(SimConfig {
        oauth_auto_approve_user: None,
        ..SimConfig::default()
    })
    .await;
    let (status, location) = strict.authorize(&strict.client_id, CALLBACK, true).await;
    assert_eq!(status, 302);
    assert!(
        location.starts_with(&format!("{}/login?redirect_to=", strict.run.url)),
        "{location}"
    );

    let meta: Value = env
        .http
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            env.run.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["token_endpoint"],
        format!("{}/oauth/access_token", env.run.url)
    );
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_post"])
    );
}

#[tokio::test]
async fn same_app_exchange_returns_existing_token_and_app_registration_api() {
    let env = Env::start(SimConfig::default()).await;
    let (_, first) = env.exchange(&env.code().await).await;
    let (_, second) = env.exchange(&env.code().await).await;
    assert_eq!(first["access_token"], second["access_token"], "trap 6");
    assert_eq!(first["refresh_token"], second["refresh_token"]);

    let user = env
        .run
        .sim
        .with_state(|s| mmsim::seed::demo_user(s))
        .unwrap();
    let resp = env
        .http
        .post(format!("{}/api/v4/oauth/apps", env.run.url))
        .bearer_auth(&user.token)
        .json(&json!({"name": "x", "callback_urls": ["http://localhost:3/cb"], "homepage": "http://localhost:3", "is_trusted": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let app: Value = resp.json().await.unwrap();
    assert_eq!(
        app["is_trusted"], false,
        "only admins may create trusted apps"
    );
    assert_eq!(app["client_secret"].as_str().unwrap().len(), 26);
    let resp = env
        .http
        .post(format!("{}/api/v4/oauth/apps", env.run.url))
        .bearer_auth(&user.token)
        .json(
            &json!({"name": "x", "callback_urls": ["not a url"], "homepage": "http://localhost:3"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // Deauthorizing revokes the app's tokens for the user.
    let resp = env
        .http
        .post(format!("{}/oauth/deauthorize", env.run.url))
        .bearer_auth(&user.token)
        .json(&json!({"client_id": env.client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.me(first["access_token"].as_str().unwrap()).await, 401);
}
