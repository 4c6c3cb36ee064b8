//! Shared set-up: a seeded `demo` simulator on loopback and clients signed in as `alice`.
#![allow(dead_code)]

use std::time::Duration;

use mattermost::{Client, Secret};

pub struct Env {
    pub running: mmsim::Running,
    /// Anonymous client (no token).
    pub anon: Client,
    /// Signed in as alice (session token from `POST /users/login`).
    pub alice: Client,
    pub alice_id: String,
    pub driver: mmsim::driver::Driver,
}

pub async fn env() -> Env {
    env_with(mmsim::SimConfig::default()).await
}

pub async fn env_with(config: mmsim::SimConfig) -> Env {
    let running = mmsim::start(config, 0).await.expect("simulator starts");
    let anon = Client::builder(&running.url)
        .request_timeout(Duration::from_secs(10))
        .build()
        .expect("client builds");
    let login = anon
        .login(
            mmsim::seed::DEMO_USERNAME,
            &Secret::new(mmsim::seed::DEMO_PASSWORD),
        )
        .await
        .expect("alice logs in");
    let alice = anon.with_token(login.token);
    let driver = mmsim::driver::Driver::new(&running.sim);
    Env {
        alice_id: login.user.id,
        running,
        anon,
        alice,
        driver,
    }
}

impl Env {
    pub fn channel(&self, team: &str, name: &str) -> String {
        self.driver
            .channel_id(team, name)
            .unwrap_or_else(|| panic!("seeded channel {team}/{name}"))
    }
}
