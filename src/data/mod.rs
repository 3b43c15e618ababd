//! Data sets: where they live (`dir`), and the calibration texts (`calibration`, with the
//! built-in set in `embedded`), and the one MATH split (`math_split`). Evaluation tasks read
//! their own records in `eval::datasets`.

pub mod calibration;
pub mod dir;
pub mod embedded;
pub mod math_split;
