//! View models (front-end engineer).
