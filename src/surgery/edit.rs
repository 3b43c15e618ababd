//! How an edit reaches the file (`apply`/`run --edit`, `--quantize`):
//! - `keep`: every tensor keeps its type; touched blocks are edited on their own grid (`blocks`);
//! - `promote=TYPE` (q8_0, f16, bf16, f32): every target with a selected entry is decoded,
//!   edited in f32 and written in TYPE, so ×s is exact up to TYPE's step; the other tensors keep
//!   their bytes (`transcode`);
//! - the master-precision flow, `--quantize like=SIBLING.gguf | Q4_K_M`: the model read is an
//!   F16/BF16 master; it is edited in f32 and every tensor quantized with ggml's quantizer to the
//!   type its quantized sibling has, or that llama-quantize's Q4_K_M mix gives it (`quantmix`).

use std::path::PathBuf;
use std::str::FromStr;

use crate::gguf::GgmlType;

/// Where the edited values are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EditMode {
    /// Every tensor keeps its type (in-grid edits, scales widened only where that helps).
    #[default]
    Keep,
    /// Targets with selected entries are rewritten in this type.
    Promote(GgmlType),
}

/// The types `promote=` accepts: exact enough that ×1.1 survives (Q8_0's step is 1/127 of a
/// block's largest entry) and loadable everywhere.
pub const PROMOTE_TYPES: [GgmlType; 4] = [GgmlType::Q8_0, GgmlType::F16, GgmlType::BF16, GgmlType::F32];

impl EditMode {
    /// The name shown in reports and metadata (`keep`, `promote=q8_0`).
    pub fn name(self) -> String {
        match self {
            EditMode::Keep => "keep".into(),
            EditMode::Promote(t) => format!("promote={}", t.name().to_ascii_lowercase()),
        }
    }

    /// The type a target of type `source` with selected entries is written in. Float sources are
    /// already exact enough and keep their type (promotion never lowers precision).
    pub fn target_type(self, source: GgmlType) -> GgmlType {
        match self {
            EditMode::Keep => source,
            EditMode::Promote(_) if is_float(source) => source,
            EditMode::Promote(t) => t,
        }
    }
}

/// True for the plain float types (F32, F16, BF16).
pub fn is_float(t: GgmlType) -> bool {
    matches!(t, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
}

impl FromStr for EditMode {
    type Err = String;

    fn from_str(s: &str) -> Result<EditMode, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("keep") {
            return Ok(EditMode::Keep);
        }
        let wanted = || format!("`--edit {s}`: expected keep or promote=TYPE with TYPE one of q8_0, f16, bf16, f32");
        let ty = s.strip_prefix("promote=").ok_or_else(wanted)?;
        let ty = parse_type(ty).filter(|t| PROMOTE_TYPES.contains(t)).ok_or_else(wanted)?;
        Ok(EditMode::Promote(ty))
    }
}

/// A ggml type by its name, case-insensitive (`q8_0`, `F16`, `q4_k`).
pub fn parse_type(name: &str) -> Option<GgmlType> {
    GgmlType::all().find(|t| t.name().eq_ignore_ascii_case(name))
}

/// The llama.cpp file-type mixes `--quantize` and `quantize` know (`llama_ftype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Mix {
    /// `LLAMA_FTYPE_MOSTLY_Q4_K_M` = 15.
    Q4KM,
    /// `LLAMA_FTYPE_MOSTLY_Q3_K_M` = 12.
    Q3KM,
    /// `LLAMA_FTYPE_MOSTLY_Q2_K` = 10.
    Q2K,
}

impl Mix {
    /// Every mix, in the order of the names in messages.
    pub const ALL: [Mix; 3] = [Mix::Q4KM, Mix::Q3KM, Mix::Q2K];

    /// The `general.file_type` value llama.cpp writes for this mix (llama.h, `llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            Mix::Q4KM => 15,
            Mix::Q3KM => 12,
            Mix::Q2K => 10,
        }
    }

    /// The name as llama-quantize spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q4KM => "Q4_K_M",
            Mix::Q3KM => "Q3_K_M",
            Mix::Q2K => "Q2_K",
        }
    }

    /// The mix's default tensor type (`llama_model_quantize_impl`'s `default_type`).
    pub fn base_type(self) -> GgmlType {
        match self {
            Mix::Q4KM => GgmlType::Q4_K,
            Mix::Q3KM => GgmlType::Q3_K,
            Mix::Q2K => GgmlType::Q2_K,
        }
    }

    /// The mix named `s` (case-insensitive).
    pub fn parse(s: &str) -> Option<Mix> {
        Mix::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }
}

/// `--quantize`: the types of the tensors written from a master.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// Each tensor gets the type it has in this quantized sibling of the master.
    Like(PathBuf),
    /// llama-quantize's type mix.
    Mix(Mix),
}

impl FromStr for Quantize {
    type Err = String;

    fn from_str(s: &str) -> Result<Quantize, String> {
        if let Some(path) = s.strip_prefix("like=") {
            if path.is_empty() {
                return Err("`--quantize like=`: name the quantized sibling, e.g. like=model-q4_k_m.gguf".into());
            }
            return Ok(Quantize::Like(PathBuf::from(path)));
        }
        if let Some(mix) = Mix::parse(s) {
            return Ok(Quantize::Mix(mix));
        }
        Err(format!("`--quantize {s}`: expected like=SIBLING.gguf or Q4_K_M, Q3_K_M, Q2_K"))
    }
}

impl Quantize {
    /// The name shown in reports (`like=PATH`, `Q4_K_M`).
    pub fn name(&self) -> String {
        match self {
            Quantize::Like(p) => format!("like={}", p.display()),
            Quantize::Mix(m) => m.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_modes_parse_and_refuse_with_the_accepted_forms() {
        assert_eq!("keep".parse::<EditMode>(), Ok(EditMode::Keep));
        assert_eq!("promote=q8_0".parse::<EditMode>(), Ok(EditMode::Promote(GgmlType::Q8_0)));
        assert_eq!("promote=F16".parse::<EditMode>(), Ok(EditMode::Promote(GgmlType::F16)));
        assert_eq!("promote=bf16".parse::<EditMode>(), Ok(EditMode::Promote(GgmlType::BF16)));
        for bad in ["promote=q4_k", "promote=", "exact", "promote=x"] {
            let e = bad.parse::<EditMode>().unwrap_err();
            assert!(e.contains("keep or promote=TYPE"), "{bad}: {e}");
        }
        assert_eq!(EditMode::Promote(GgmlType::Q8_0).name(), "promote=q8_0");
        assert_eq!(EditMode::Promote(GgmlType::Q8_0).target_type(GgmlType::Q4_K), GgmlType::Q8_0);
        assert_eq!(EditMode::Promote(GgmlType::Q8_0).target_type(GgmlType::F16), GgmlType::F16);
    }

    #[test]
    fn quantize_targets_parse() {
        assert_eq!("Q4_K_M".parse::<Quantize>(), Ok(Quantize::Mix(Mix::Q4KM)));
        assert_eq!("like=a.gguf".parse::<Quantize>(), Ok(Quantize::Like("a.gguf".into())));
        assert!("like=".parse::<Quantize>().is_err());
        assert_eq!("q3_k_m".parse::<Quantize>(), Ok(Quantize::Mix(Mix::Q3KM)));
        assert_eq!("Q2_K".parse::<Quantize>(), Ok(Quantize::Mix(Mix::Q2K)));
        assert!("Q5_K_S".parse::<Quantize>().unwrap_err().contains("Q4_K_M"));
    }
}
