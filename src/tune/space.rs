//! The search space of `tune`: a candidate edit is (K, s, where). K and s are the paper's two
//! knobs; *where* restricts the edit to part of the model (FFN or attention matrices, a band of
//! layers, the output head or everything but it), which the paper does not search.
//!
//! Candidates are drawn from the grid by a seeded shuffle, so the same seed gives the same
//! candidates in the same order.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::select::restrict::{Kind, Layers, Restriction};

/// Which target weights an edit may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Region {
    /// Every target weight (the paper's setting).
    All,
    /// Every target weight except the output head.
    NoHead,
    /// Only the output head (`output.weight`).
    HeadOnly,
    /// Only the feed-forward matrices (`ffn_*`).
    Ffn,
    /// Only the attention matrices (`attn_*`).
    Attention,
    /// Only the blocks `first..=last`.
    Layers {
        /// First layer of the band.
        first: usize,
        /// Last layer of the band (inclusive).
        last: usize,
    },
}

impl Region {
    /// Whether the edit may touch the target weight `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.restriction().contains(name)
    }

    /// The same region as `apply`'s `--only`/`--layers` restriction (so the report can print
    /// the `apply` command that rebuilds a candidate).
    pub fn restriction(&self) -> Restriction {
        let kinds = |k: &[Kind]| Some(k.iter().copied().collect());
        match *self {
            Region::All => Restriction::default(),
            Region::NoHead => Restriction { kinds: kinds(&[Kind::Ffn, Kind::Attn, Kind::Other]), layers: None },
            Region::HeadOnly => Restriction { kinds: kinds(&[Kind::Head]), layers: None },
            Region::Ffn => Restriction { kinds: kinds(&[Kind::Ffn]), layers: None },
            Region::Attention => Restriction { kinds: kinds(&[Kind::Attn]), layers: None },
            Region::Layers { first, last } => Restriction { kinds: None, layers: Some(Layers { first, last }) },
        }
    }

    /// A short label for tables and plots.
    pub fn label(&self) -> String {
        match self {
            Region::All => "all".into(),
            Region::NoHead => "no-head".into(),
            Region::HeadOnly => "head".into(),
            Region::Ffn => "ffn".into(),
            Region::Attention => "attn".into(),
            Region::Layers { first, last } => format!("layers {first}-{last}"),
        }
    }
}

/// One candidate edit: ×`scale` on the math-specific entries at top-K `top_k` % within `region`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// K, percent of each matrix.
    pub top_k: f64,
    /// The factor s.
    pub scale: f64,
    /// Where the edit applies.
    pub region: Region,
}

impl Candidate {
    /// The paper's default edit: ×1.1 at K = 5 % on every target.
    pub const PAPER: Candidate = Candidate { top_k: 5.0, scale: 1.1, region: Region::All };

    /// A stable identifier, used in the journal and file names.
    pub fn id(&self) -> String {
        let region = match self.region {
            Region::Layers { first, last } => format!("L{first}-{last}"),
            r => r.label(),
        };
        format!("k{}-s{}-{region}", self.top_k, self.scale)
    }

    /// `×1.1 K=5% all`.
    pub fn label(&self) -> String {
        format!("×{} K={}% {}", self.scale, self.top_k, self.region.label())
    }
}

/// The grid searched.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Space {
    /// K values, percent.
    pub top_ks: Vec<f64>,
    /// Factors.
    pub scales: Vec<f64>,
    /// Regions.
    pub regions: Vec<Region>,
}

impl Space {
    /// The default grid for a model of `n_layers` blocks; `has_head`: the output head is a
    /// target (untied), so head-in/head-out regions mean something.
    pub fn default_for(n_layers: usize, has_head: bool) -> Space {
        let mut regions = vec![Region::All, Region::Ffn, Region::Attention];
        if has_head {
            regions.extend([Region::NoHead, Region::HeadOnly]);
        }
        if n_layers >= 3 {
            let third = n_layers / 3;
            regions.push(Region::Layers { first: 0, last: third - 1 });
            regions.push(Region::Layers { first: third, last: n_layers - third - 1 });
            regions.push(Region::Layers { first: n_layers - third, last: n_layers - 1 });
        }
        Space { top_ks: vec![0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0], scales: vec![0.9, 0.95, 1.05, 1.1, 1.2, 1.3, 1.5], regions }
    }

    /// Every point of the grid, in a fixed order.
    pub fn grid(&self) -> Vec<Candidate> {
        let mut all = Vec::new();
        for &region in &self.regions {
            for &top_k in &self.top_ks {
                for &scale in &self.scales {
                    all.push(Candidate { top_k, scale, region });
                }
            }
        }
        all
    }

    /// `n` distinct candidates: the first `n` of a seeded shuffle of the grid.
    pub fn draw(&self, n: usize, seed: u64) -> Vec<Candidate> {
        let mut all = self.grid();
        all.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        all.truncate(n);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_pick_the_right_tensors() {
        assert!(Region::Ffn.contains("blk.3.ffn_down.weight") && !Region::Ffn.contains("blk.3.attn_q.weight"));
        assert!(Region::Attention.contains("blk.0.attn_output.weight") && !Region::Attention.contains("output.weight"));
        assert!(Region::HeadOnly.contains("output.weight") && !Region::NoHead.contains("output.weight"));
        let band = Region::Layers { first: 2, last: 4 };
        assert!(band.contains("blk.4.ffn_up.weight") && !band.contains("blk.5.ffn_up.weight") && !band.contains("output.weight"));
    }

    #[test]
    fn draws_are_seeded_and_distinct() {
        let space = Space::default_for(18, false);
        let a = space.draw(12, 7);
        assert_eq!(a, space.draw(12, 7));
        assert_ne!(a, space.draw(12, 8));
        let ids: std::collections::BTreeSet<String> = a.iter().map(Candidate::id).collect();
        assert_eq!(ids.len(), 12);
        assert!(!space.regions.contains(&Region::HeadOnly), "a tied head is no target");
        assert_eq!(Space::default_for(24, true).regions.len(), 8);
    }
}
