//! OAuth 2.0 against mmsim: authorize URL with state + PKCE, code exchange with form
//! credentials, refresh rotation, AppError failures.

mod common;

use mattermost::oauth::{Pkce, random_token};
use mattermost::{Error, Secret};

#[tokio::test]
async fn code_exchange_refresh_and_errors() {
    let env = common::env().await;
    let app = env
        .running
        .sim
        .with_state(|s| mmsim::seed::threaddesk_app(s))
        .expect("seeded ThreadDesk app");
    let secret = Secret::new(app.client_secret.clone());
    let redirect_uri = mmsim::seed::THREADDESK_CALLBACKS[0];

    let pkce = Pkce::generate();
    let state = random_token();
    let url = env
        .anon
        .authorize_url(&app.client_id, redirect_uri, &state, Some(&pkce));

    // The browser's part: the simulator approves as alice and redirects with the code.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = browser.get(url.as_str()).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let location = url::Url::parse(&location).unwrap();
    assert!(location.as_str().starts_with(redirect_uri));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["state"], state);
    let code = q["code"].clone();

    // A wrong verifier is refused (AppError JSON, trap 4).
    let err = env
        .anon
        .oauth_exchange_code(
            &app.client_id,
            Some(&secret),
            &code,
            redirect_uri,
            Some(&Secret::new(random_token())),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");

    // A fresh code, exchanged properly.
    let resp = browser.get(url.as_str()).send().await.unwrap();
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let code = location
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let tokens = env
        .anon
        .oauth_exchange_code(
            &app.client_id,
            Some(&secret),
            &code,
            redirect_uri,
            Some(&pkce.verifier),
        )
        .await
        .unwrap();
    assert_eq!(tokens.token_type.to_ascii_lowercase(), "bearer");
    assert!(tokens.expires_in > 0);
    let refresh = tokens
        .refresh_token
        .clone()
        .expect("confidential clients get one");
    let user = env.anon.with_token(tokens.access_token.clone());
    assert_eq!(user.get_me().await.unwrap().username, "alice");

    // Refresh rotates both tokens; the old access token dies at once (trap 6).
    let rotated = env
        .anon
        .oauth_refresh(&app.client_id, &secret, &refresh)
        .await
        .unwrap();
    assert_ne!(rotated.access_token, tokens.access_token);
    assert!(user.get_me().await.unwrap_err().is_unauthorized());
    user.set_token(rotated.access_token.clone());
    assert_eq!(user.get_me().await.unwrap().username, "alice");

    // The old refresh token is gone; a wrong secret is refused.
    let err = env
        .anon
        .oauth_refresh(&app.client_id, &secret, &refresh)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
    let err = env
        .anon
        .oauth_refresh(
            &app.client_id,
            &Secret::new("wrongsecretwrongsecretwron"),
            rotated.refresh_token.as_ref().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401), "{err:?}");
}
