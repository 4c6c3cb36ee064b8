//! Privacy by construction: encrypted tokens at rest ([`cipher`]), and the log set-up that only
//! ever carries technical events ([`logging`]).

pub mod cipher;
pub mod logging;
