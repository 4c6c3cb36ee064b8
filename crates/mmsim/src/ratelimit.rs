//! The real server's rate limiter (OWNED BY THE WS WORK).
#[derive(Clone, Debug)]
pub struct RateLimitSettings {
    pub per_sec: u32,
    pub max_burst: u32,
}

pub struct RateLimiter {}

impl RateLimiter {
    #[must_use]
    pub fn new(settings: Option<RateLimitSettings>) -> Self {
        let _ = settings;
        Self {}
    }
}
