//! Where an edit may apply: `apply --only ffn,attn,head,other --layers A-B`. A selection is made
//! over every target as usual and then restricted to the tensors kept here, so the selected
//! entries of a kept tensor are exactly those of the unrestricted selection (per-matrix top-K).
//! `tune`'s search regions are expressed in these terms (see `tune::space::Region::restriction`),
//! so its choice is rebuilt by the `apply` command its report prints.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A kind of target matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Kind {
    /// Feed-forward matrices (`blk.N.ffn_*`).
    Ffn,
    /// Attention matrices (`blk.N.attn_*`).
    Attn,
    /// The output head (`output.weight`; absent when tied to the embeddings).
    Head,
    /// Any other target (e.g. an architecture's extra per-block matrices).
    Other,
}

impl Kind {
    /// The kind of the target weight `name`.
    pub fn of(name: &str) -> Kind {
        let kind = crate::model::matrix_kind(name);
        if name == "output.weight" {
            Kind::Head
        } else if kind.starts_with("ffn_") {
            Kind::Ffn
        } else if kind.starts_with("attn_") {
            Kind::Attn
        } else {
            Kind::Other
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ffn => "ffn",
            Kind::Attn => "attn",
            Kind::Head => "head",
            Kind::Other => "other",
        }
    }
}

/// An inclusive band of layers (`blk.A` … `blk.B`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    /// First layer.
    pub first: usize,
    /// Last layer (inclusive).
    pub last: usize,
}

impl FromStr for Layers {
    type Err = String;

    /// `A-B` or a single layer `A`.
    fn from_str(s: &str) -> Result<Layers, String> {
        let num = |x: &str| x.trim().parse::<usize>().map_err(|_| format!("{s:?}: give layers as A-B (e.g. 0-5) or one layer A"));
        let (first, last) = match s.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(s)?, num(s)?),
        };
        if first > last {
            return Err(format!("{s:?}: the first layer is after the last"));
        }
        Ok(Layers { first, last })
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// Which targets an edit may touch: every one by default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restriction {
    /// Only these kinds (`None`: every kind).
    pub kinds: Option<BTreeSet<Kind>>,
    /// Only blocks in this band (`None`: every block, and the tensors outside blocks). A band
    /// leaves out the tensors that are in no block, such as the head.
    pub layers: Option<Layers>,
}

impl Restriction {
    /// No restriction: the paper's setting.
    pub fn is_all(&self) -> bool {
        self.kinds.is_none() && self.layers.is_none()
    }

    /// Whether the edit may touch the target `name`.
    pub fn contains(&self, name: &str) -> bool {
        let kind_ok = self.kinds.as_ref().is_none_or(|k| k.contains(&Kind::of(name)));
        let layer_ok = self.layers.is_none_or(|b| crate::model::layer_of(name).is_some_and(|l| (b.first..=b.last).contains(&l)));
        kind_ok && layer_ok
    }

    /// The `apply` flags that give this restriction (empty for none): `--only ffn,attn --layers 0-5`.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(kinds) = &self.kinds {
            flags.push("--only".to_string());
            flags.push(kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","));
        }
        if let Some(b) = self.layers {
            flags.push("--layers".to_string());
            flags.push(b.to_string());
        }
        flags
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_layers_pick_the_named_tensors() {
        assert_eq!(Kind::of("blk.3.ffn_down.weight"), Kind::Ffn);
        assert_eq!(Kind::of("blk.0.attn_q.weight"), Kind::Attn);
        assert_eq!(Kind::of("output.weight"), Kind::Head);
        assert_eq!(Kind::of("blk.0.ssm_in.weight"), Kind::Other);
        let r = Restriction { kinds: Some([Kind::Ffn, Kind::Head].into()), layers: None };
        assert!(r.contains("blk.9.ffn_up.weight") && r.contains("output.weight") && !r.contains("blk.9.attn_k.weight"));
        let band = Restriction { kinds: None, layers: Some("2-4".parse().unwrap()) };
        assert!(band.contains("blk.4.attn_v.weight") && !band.contains("blk.5.attn_v.weight") && !band.contains("output.weight"));
        assert_eq!(r.flags(), ["--only", "ffn,head"]);
        assert_eq!(band.flags(), ["--layers", "2-4"]);
        assert!(Restriction::default().is_all() && Restriction::default().flags().is_empty());
    }

    #[test]
    fn bad_bands_are_refused_with_the_form() {
        assert_eq!("7".parse::<Layers>(), Ok(Layers { first: 7, last: 7 }));
        assert!("5-2".parse::<Layers>().unwrap_err().contains("after the last"));
        assert!("a-b".parse::<Layers>().unwrap_err().contains("A-B"));
    }
}
