//! surgery stage (TODO).
