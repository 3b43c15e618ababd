//! calibrate stage (TODO).
