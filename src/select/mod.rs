//! select stage (TODO).
