//! The election manifest: contests, their options, and how many selections each allows (design 3).

use serde::{Deserialize, Serialize};

use crate::hash::Transcript;

/// Upper bounds that keep work on untrusted input small.
pub mod limits {
    /// Most contests in one manifest.
    pub const MAX_CONTESTS: usize = 64;
    /// Most options in one contest.
    pub const MAX_OPTIONS: usize = 64;
    /// Longest identifier or label, in bytes.
    pub const MAX_TEXT: usize = 256;
}

/// One option (candidate, answer) of a contest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContestOption {
    /// Stable identifier, unique within the contest.
    pub id: String,
    /// Human-readable label.
    pub label: String,
}

/// A contest: the voter selects between `min` and `max` options, each at most once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contest {
    /// Stable identifier, unique within the manifest.
    pub id: String,
    /// The question or office.
    pub title: String,
    /// The options, in ballot order.
    pub options: Vec<ContestOption>,
    /// Fewest selections allowed (0 allows a blank vote).
    pub min_selections: u64,
    /// Most selections allowed.
    pub max_selections: u64,
}

/// The election manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The contests, in ballot order.
    pub contests: Vec<Contest>,
}

/// Why a manifest is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// No contest, or too many.
    #[error("a manifest needs 1 to {} contests, got {0}", limits::MAX_CONTESTS)]
    ContestCount(usize),
    /// A contest has no option, or too many.
    #[error("contest {contest:?} needs 1 to {} options, got {count}", limits::MAX_OPTIONS)]
    OptionCount {
        /// Contest id.
        contest: String,
        /// Options given.
        count: usize,
    },
    /// min > max, or max > number of options.
    #[error("contest {contest:?}: selections must satisfy min <= max <= options ({min}, {max}, {options})")]
    SelectionBounds {
        /// Contest id.
        contest: String,
        /// min_selections.
        min: u64,
        /// max_selections.
        max: u64,
        /// number of options.
        options: usize,
    },
    /// An identifier repeats or is empty or too long.
    #[error("identifier {0:?} is empty, too long, or not unique")]
    BadId(String),
}

fn check_text(s: &str) -> bool {
    !s.is_empty() && s.len() <= limits::MAX_TEXT
}

impl Manifest {
    /// Checks the manifest's shape and bounds.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.contests.is_empty() || self.contests.len() > limits::MAX_CONTESTS {
            return Err(ManifestError::ContestCount(self.contests.len()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.contests {
            if !check_text(&c.id) || !seen.insert(c.id.as_str()) || c.title.len() > limits::MAX_TEXT {
                return Err(ManifestError::BadId(c.id.clone()));
            }
            let n = c.options.len();
            if n == 0 || n > limits::MAX_OPTIONS {
                return Err(ManifestError::OptionCount {
                    contest: c.id.clone(),
                    count: n,
                });
            }
            if c.min_selections > c.max_selections || c.max_selections > n as u64 {
                return Err(ManifestError::SelectionBounds {
                    contest: c.id.clone(),
                    min: c.min_selections,
                    max: c.max_selections,
                    options: n,
                });
            }
            let mut opts = std::collections::BTreeSet::new();
            for o in &c.options {
                if !check_text(&o.id) || !opts.insert(o.id.as_str()) || o.label.len() > limits::MAX_TEXT {
                    return Err(ManifestError::BadId(o.id.clone()));
                }
            }
        }
        Ok(())
    }

    /// Total number of options over all contests (the number of ciphertexts in a ballot).
    pub fn option_count(&self) -> usize {
        self.contests.iter().map(|c| c.options.len()).sum()
    }

    /// Canonical bytes: a length-prefixed encoding in a fixed field order (never JSON text).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut t = Transcript::new("urna/v1/manifest").u64(self.contests.len() as u64);
        for c in &self.contests {
            t = t
                .str(&c.id)
                .str(&c.title)
                .u64(c.min_selections)
                .u64(c.max_selections)
                .u64(c.options.len() as u64);
            for o in &c.options {
                t = t.str(&o.id).str(&o.label);
            }
        }
        t.into_bytes()
    }

    /// A convenience constructor for tests and demos: contests given as (options, min, max).
    pub fn simple(contests: &[(usize, u64, u64)]) -> Self {
        Manifest {
            contests: contests
                .iter()
                .enumerate()
                .map(|(i, &(n, min, max))| Contest {
                    id: format!("contest-{i}"),
                    title: format!("Contest {i}"),
                    options: (0..n)
                        .map(|k| ContestOption {
                            id: format!("option-{k}"),
                            label: format!("Option {k}"),
                        })
                        .collect(),
                    min_selections: min,
                    max_selections: max,
                })
                .collect(),
        }
    }
}
