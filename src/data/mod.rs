//! Data sets: where they live (`dir`), and the calibration texts (`calibration`, with the
//! built-in set in `embedded`). Evaluation tasks read their own records in `eval::datasets`.

pub mod calibration;
pub mod dir;
pub mod embedded;
