//! data stage (TODO).
