//! data stage (TODO).

pub mod dir;
