//! eval stage (TODO).
