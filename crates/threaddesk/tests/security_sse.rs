//! Live-stream isolation (T-15): a user's Server-Sent Events carry only their own items, and a
//! stream ends as soon as the user signs out.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Session, Stack};

/// An open SSE stream read chunk by chunk.
struct Stream {
    resp: reqwest::Response,
    seen: String,
}

impl Stream {
    async fn open(s: &Session) -> Self {
        let resp = s
            .client
            .get(format!("{}/api/v1/events", s.base))
            .header(
                "cookie",
                format!("td_session={}", s.cookie("td_session").unwrap()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            resp,
            seen: String::new(),
        }
    }

    /// Read until `needle` has been seen or `wait` passed; true if seen.
    async fn saw_within(&mut self, needle: &str, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.seen.contains(needle) {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return false,
            }
        }
        true
    }

    /// Whether the server ended the stream within `wait`.
    async fn ended_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

#[tokio::test]
async fn a_live_stream_carries_only_its_own_users_items_and_ends_at_sign_out() {
    let stack = Stack::start().await.unwrap();
    let mut alice = stack.sign_in("alice").await.unwrap();
    let mut bob = stack.sign_in("bob").await.unwrap();
    alice.wait_items(1).await.unwrap();
    bob.wait_items(1).await.unwrap();
    let mut a_stream = Stream::open(&alice).await;
    let mut b_stream = Stream::open(&bob).await;

    // Carol writes to alice: alice's stream names the DM, bob's never does.
    let driver = stack.driver();
    let to_alice = driver.dm("carol", "alice", "for alice only").unwrap();
    let (_, post) = stack
        .mm_get(
            &format!("/api/v4/posts/{to_alice}"),
            &stack.mm_token("carol").await.unwrap(),
        )
        .await
        .unwrap();
    let alice_key = format!("c_{}", post["channel_id"].as_str().unwrap());
    assert!(
        a_stream
            .saw_within(&alice_key, Duration::from_secs(10))
            .await,
        "alice's stream announces her new DM"
    );
    // Positive control for bob's stream: his own DM arrives…
    let to_bob = driver.dm("carol", "bob", "for bob only").unwrap();
    let (_, post) = stack
        .mm_get(
            &format!("/api/v4/posts/{to_bob}"),
            &stack.mm_token("carol").await.unwrap(),
        )
        .await
        .unwrap();
    let bob_key = format!("c_{}", post["channel_id"].as_str().unwrap());
    assert!(
        b_stream.saw_within(&bob_key, Duration::from_secs(10)).await,
        "bob's stream works"
    );
    // …and by then alice's event had long been published: bob's stream never named it.
    assert!(
        !b_stream.seen.contains(&alice_key),
        "bob's stream carried alice's item"
    );
    assert!(
        !a_stream
            .saw_within(&bob_key, Duration::from_millis(500))
            .await
    );
    assert!(!a_stream.seen.contains("for bob only") && !b_stream.seen.contains("for alice only"));

    // A stream without a session is refused; another origin is refused.
    let anon = support::http()
        .get(format!("{}/api/v1/events", stack.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let foreign = alice
        .client
        .get(format!("{}/api/v1/events", stack.url))
        .header(
            "cookie",
            format!("td_session={}", alice.cookie("td_session").unwrap()),
        )
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);

    // Signing out ends alice's open stream at once; bob's goes on.
    let csrf = alice.csrf.clone();
    let r = alice
        .post_form("/auth/signout", &[("csrf", &csrf)])
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert!(
        a_stream.ended_within(Duration::from_secs(1)).await,
        "the stream ends within 1 s of sign-out"
    );
    assert!(!b_stream.ended_within(Duration::from_millis(300)).await);
}
