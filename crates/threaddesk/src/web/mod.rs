pub mod render;
pub mod views;
