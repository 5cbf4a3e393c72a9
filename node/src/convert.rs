//! Between the node's types and the wire's.

use concord_proto::v1 as pb;

use crate::audit::Entry;
use crate::catalog::{ColumnSpec, Dataset, Tier};
use crate::csv_input::{Column, ColumnType};

use crate::error::NodeError;

pub(crate) fn tier_to_pb(t: Tier) -> pb::Tier {
    match t {
        Tier::Public => pb::Tier::Public,
        Tier::Internal => pb::Tier::Internal,
        Tier::Sensitive => pb::Tier::Sensitive,
        Tier::Restricted => pb::Tier::Restricted,
    }
}

fn type_to_pb(t: ColumnType) -> pb::ColumnType {
    match t {
        ColumnType::Text => pb::ColumnType::Text,
        ColumnType::Integer => pb::ColumnType::Integer,
        ColumnType::Decimal => pb::ColumnType::Decimal,
        ColumnType::Date => pb::ColumnType::Date,
    }
}

pub(crate) fn type_from_pb(t: pb::ColumnType) -> Option<ColumnType> {
    match t {
        pb::ColumnType::Text => Some(ColumnType::Text),
        pb::ColumnType::Integer => Some(ColumnType::Integer),
        pb::ColumnType::Decimal => Some(ColumnType::Decimal),
        pb::ColumnType::Date => Some(ColumnType::Date),
        pb::ColumnType::Unspecified => None,
    }
}

pub(crate) fn tier_from_pb(t: pb::Tier) -> Option<Tier> {
    match t {
        pb::Tier::Public => Some(Tier::Public),
        pb::Tier::Internal => Some(Tier::Internal),
        pb::Tier::Sensitive => Some(Tier::Sensitive),
        pb::Tier::Restricted => Some(Tier::Restricted),
        pb::Tier::Unspecified => None,
    }
}

pub(crate) fn column_from_pb(c: &pb::Column) -> Result<ColumnSpec, NodeError> {
    let bad = |what: &str| NodeError::Invalid(format!("column {:?}: no valid {what}", c.name));
    let ty = pb::ColumnType::try_from(c.r#type)
        .ok()
        .and_then(type_from_pb)
        .ok_or_else(|| bad("type"))?;
    let tier = pb::Tier::try_from(c.tier)
        .ok()
        .and_then(tier_from_pb)
        .ok_or_else(|| bad("tier"))?;
    Ok(ColumnSpec {
        column: Column {
            name: c.name.clone(),
            ty,
            nullable: c.nullable,
        },
        tier,
    })
}

pub(crate) fn column_to_pb(c: &ColumnSpec) -> pb::Column {
    pb::Column {
        name: c.column.name.clone(),
        r#type: type_to_pb(c.column.ty).into(),
        tier: tier_to_pb(c.tier).into(),
        nullable: c.column.nullable,
    }
}

/// `withheld` is the number of columns the reader may not see.
pub(crate) fn dataset_to_pb(node: &str, d: &Dataset, withheld: usize) -> pb::Dataset {
    pb::Dataset {
        id: d.spec.id.clone(),
        node: node.to_owned(),
        description: d.spec.description.clone(),
        domain: d.spec.domain.clone(),
        key_columns: d.spec.key_columns.clone(),
        columns: d.spec.columns.iter().map(column_to_pb).collect(),
        withheld_columns: withheld as u32,
        rows: d.rows,
        digest: if d.digest == [0u8; 32] {
            Vec::new()
        } else {
            d.digest.to_vec()
        },
        path: d.spec.path.to_string_lossy().into_owned(),
        registered_at_ms: d.registered_at_ms,
        registered_by: d.registered_by.clone(),
        key_types: d.spec.key_types.iter().map(|t| t.name().into()).collect(),
        on_bad_row: d.spec.on_bad_row.name().into(),
        rejects: Some(pb::RejectCounts {
            ragged: d.rejects.ragged,
            not_utf8: d.rejects.not_utf8,
            null: d.rejects.null,
            bad_value: d.rejects.bad_value,
            bad_key: d.rejects.bad_key,
        }),
        reject_report: String::new(),
        privacy_unit: d.spec.privacy_unit.name(),
        population: d.spec.population.clone(),
    }
}

pub(crate) fn entry_to_pb(e: &Entry) -> pb::AuditEntry {
    pb::AuditEntry {
        seq: e.seq,
        at_ms: e.at_ms,
        actor: e.record.actor.clone(),
        action: e.record.action.clone(),
        grant: e.record.grant.clone().unwrap_or_default(),
        subjects: e.record.subjects.clone(),
        privacy_cost: e.record.privacy_cost.clone().unwrap_or_default(),
        output_digest: e
            .record
            .output_digest
            .map(|d| d.to_vec())
            .unwrap_or_default(),
        outcome: e.record.outcome.as_str().into(),
        detail: e.record.detail.clone(),
        hash: e.hash.to_vec(),
    }
}

impl crate::policy::JobKind {
    /// The kind on the wire.
    pub fn to_pb(self) -> pb::JobKind {
        use crate::policy::JobKind as K;
        match self {
            K::PsiCardinality => pb::JobKind::PsiCardinality,
            K::PsiIntersection => pb::JobKind::PsiIntersection,
            K::Join => pb::JobKind::Join,
            K::Aggregate => pb::JobKind::Aggregate,
            K::Query => pb::JobKind::Query,
        }
    }

    /// A kind from the wire: `None` for one this build does not know, or none given.
    pub fn from_pb(value: i32) -> Option<Self> {
        use crate::policy::JobKind as K;
        match pb::JobKind::try_from(value).ok()? {
            pb::JobKind::PsiCardinality => Some(K::PsiCardinality),
            pb::JobKind::PsiIntersection => Some(K::PsiIntersection),
            pb::JobKind::Join => Some(K::Join),
            pb::JobKind::Aggregate => Some(K::Aggregate),
            pb::JobKind::Query => Some(K::Query),
            pb::JobKind::Unspecified => None,
        }
    }

    /// A kind from the wire, or the error that names what came instead and what is known (a
    /// peer of a newer version may send a kind this node cannot run).
    pub(crate) fn from_pb_checked(value: i32) -> Result<Self, NodeError> {
        Self::from_pb(value).ok_or_else(|| {
            let known = Self::ALL.map(Self::as_str).join(", ");
            NodeError::Invalid(if value == 0 {
                format!("no job kind given (one of {known})")
            } else {
                format!("unknown job kind {value} on the wire (this node knows {known})")
            })
        })
    }

    /// The kind's name, as it came on the wire (for display: an unknown value is named as such).
    pub fn name_of_pb(value: i32) -> String {
        Self::from_pb(value).map_or_else(|| format!("unknown kind {value}"), |k| k.as_str().into())
    }
}

impl crate::jobs::table::Protocol {
    /// An optional protocol on the wire (unspecified for none).
    pub(crate) fn to_pb(p: Option<Self>) -> i32 {
        use crate::jobs::table::Protocol as P;
        let pb = match p {
            None => pb::PsiProtocol::Unspecified,
            Some(P::Ecdh) => pb::PsiProtocol::Ecdh,
            Some(P::Ot) => pb::PsiProtocol::Ot,
        };
        pb.into()
    }

    /// An optional protocol from the wire; one this build does not know is refused, named.
    pub(crate) fn from_pb(value: i32) -> Result<Option<Self>, NodeError> {
        use crate::jobs::table::Protocol as P;
        match pb::PsiProtocol::try_from(value) {
            Ok(pb::PsiProtocol::Unspecified) => Ok(None),
            Ok(pb::PsiProtocol::Ecdh) => Ok(Some(P::Ecdh)),
            Ok(pb::PsiProtocol::Ot) => Ok(Some(P::Ot)),
            Err(_) => Err(NodeError::Invalid(format!(
                "unknown PSI protocol {value} on the wire (this node knows ecdh and ot)"
            ))),
        }
    }
}
