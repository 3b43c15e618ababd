//! The GGUF file format: plain-data types, a validating memory-mapped reader, and a streaming,
//! atomic writer. No C library is involved, so this layer is tested on its own.

mod cursor;
pub mod error;
pub mod families;
mod header;
pub mod hparams;
pub mod reader;
pub mod split;
pub mod synth;
pub mod types;
pub mod writer;

pub use error::GgufError;
pub use reader::GgufFile;
pub use types::{GgmlType, MetaType, MetaValue, TensorInfo};
pub use writer::{GgufWriter, TensorSpec};
