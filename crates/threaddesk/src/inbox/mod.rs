//! Pure inbox rules.
