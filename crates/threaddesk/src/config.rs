//! Configuration (file + THREADDESK_* env + flags), validated with clear errors.
