//! The crate's one error type.

/// Everything that can go wrong in `concord-dp`.
///
/// Invalid parameters are rejected when a value is constructed, so a release or a share sampler
/// never runs with ε ≤ 0, a NaN, δ ≥ 1 or inverted bounds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DpError {
    /// A privacy or noise parameter is outside its valid range.
    #[error("invalid {name} = {value}: must be {expected}")]
    InvalidParameter {
        /// Which parameter (`epsilon`, `delta`, `rho`, `scale`, …).
        name: &'static str,
        /// The rejected value (as given).
        value: f64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// Clamping bounds with `lower > upper`.
    #[error("invalid bounds: lower {lower} > upper {upper}")]
    InvalidBounds {
        /// Lower clamping bound.
        lower: i64,
        /// Upper clamping bound.
        upper: i64,
    },
    /// A count parameter (parties, rows per individual, categories, …) is outside its range.
    #[error("invalid {name} = {value}: must be {expected}")]
    InvalidCount {
        /// Which parameter.
        name: &'static str,
        /// The rejected value.
        value: u64,
        /// The valid range, in words.
        expected: &'static str,
    },
    /// A decimal amount could not be read exactly.
    #[error("invalid amount {text:?}: {reason}")]
    InvalidAmount {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A ledger amount does not fit the fixed-point representation.
    #[error("privacy cost overflow: the ledger holds at most {max} per component")]
    CostOverflow {
        /// The largest representable amount.
        max: f64,
    },
    /// Two costs of different kinds cannot be compared or converted without more parameters.
    #[error("cannot convert {from} cost to {to}: {reason}")]
    Conversion {
        /// Kind of the source cost.
        from: &'static str,
        /// Requested target kind.
        to: &'static str,
        /// Why not.
        reason: &'static str,
    },
    /// OpenDP rejected a construction or failed while releasing (its error is not `std::error::Error`,
    /// so it is carried as its message).
    #[error("OpenDP {stage} failed: {message}")]
    OpenDp {
        /// `build`, `map` or `invoke`.
        stage: &'static str,
        /// OpenDP's error message.
        message: String,
    },
    /// The scale OpenDP reports for the built mechanism does not meet the requested cost.
    #[error("calibration failed: mechanism costs {achieved} but {target} was requested")]
    Calibration {
        /// The cost OpenDP's privacy map reports.
        achieved: f64,
        /// The requested cost.
        target: f64,
    },
    /// An accuracy computation did not converge (the scale is too large to tabulate).
    #[error("accuracy of {mechanism} with scale {scale} cannot be computed")]
    Accuracy {
        /// Mechanism name.
        mechanism: &'static str,
        /// Its scale.
        scale: f64,
    },
}

impl DpError {
    pub(crate) fn opendp(stage: &'static str, e: opendp::error::Error) -> Self {
        DpError::OpenDp {
            stage,
            message: format!("{:?}: {}", e.variant, e.message.unwrap_or_default()),
        }
    }
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, DpError>;
