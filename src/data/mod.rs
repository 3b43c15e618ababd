//! data stage: where data sets live (`dir`), and the calibration texts (`calibration`, with the
//! built-in set in `embedded`).

pub mod calibration;
pub mod dir;
pub mod embedded;
