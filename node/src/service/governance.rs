//! The `Governance` service: grants, budgets, classification.

use std::collections::BTreeSet;
use std::sync::Arc;

use concord_dp::PrivacyCost;
use concord_proto::v1 as pb;
use concord_proto::v1::governance_server::Governance;
use tonic::{Request, Response, Status};

use super::admit::Admit;
use crate::config::Role;
use crate::convert::{tier_from_pb, tier_to_pb};
use crate::error::NodeError;
use crate::grants::{self, GrantError};
use crate::ledger::{self, Cap, Period};
use crate::node::Node;
#[cfg(test)]
use crate::policy::Refusal;
use crate::policy::{Grant, JobKind, Limits, Scope, Terms};
use crate::store::Store;

pub(crate) struct GovernanceService(pub(crate) Arc<Node>);

const MANAGERS: &[Role] = &[Role::DataManager];
const READERS: &[Role] = &[Role::DataManager, Role::Operator, Role::Auditor];

fn cost_to_pb(c: &PrivacyCost) -> pb::Cost {
    pb::Cost {
        epsilon: c.epsilon.to_string(),
        delta: c.delta.to_string(),
        rho: c.rho.to_string(),
    }
}

/// A cap as people wrote it, exactly (see [`concord_dp::Quantity`]'s `FromStr`).
fn cost_from_pb(c: Option<pb::Cost>, what: &str) -> Result<PrivacyCost, NodeError> {
    let c = c.unwrap_or_default();
    let amount = |text: &str, part: &str| -> Result<concord_dp::Quantity, NodeError> {
        if text.trim().is_empty() {
            return Ok(concord_dp::Quantity::ZERO);
        }
        text.parse()
            .map_err(|e| NodeError::Invalid(format!("{what} {part}: {e}")))
    };
    Ok(PrivacyCost {
        epsilon: amount(&c.epsilon, "epsilon")?,
        delta: amount(&c.delta, "delta")?,
        rho: amount(&c.rho, "rho")?,
    })
}

fn period(s: &str, what: &str) -> Result<Period, NodeError> {
    Period::parse(s)
        .ok_or_else(|| NodeError::Invalid(format!("{what} {s:?}: use day, month or year")))
}

fn terms_from_pb(r: pb::ProposeGrantRequest, now_ms: i64) -> Result<Terms, NodeError> {
    let invalid = |m: String| NodeError::Invalid(m);
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    let scope = match r.scope.as_str() {
        "overall" | "domain"
            if !(r.kinds.is_empty() && r.fields.is_empty() && r.peers.is_empty()) =>
        {
            return Err(invalid(format!(
                "kinds, fields and peers belong to a scenario grant, not an {} one",
                r.scope
            )));
        }
        "overall" => Scope::Overall { dataset: r.target },
        "domain" => Scope::Domain { domain: r.target },
        "scenario" => Scope::Scenario {
            dataset: r.target,
            kinds: r
                .kinds
                .iter()
                .map(|k| {
                    JobKind::parse(k).ok_or_else(|| {
                        invalid(format!(
                            "job kind {k:?}: use {}",
                            JobKind::ALL.map(JobKind::as_str).join(", ")
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            fields: set(r.fields),
            peers: set(r.peers),
        },
        other => {
            return Err(invalid(format!(
                "scope {other:?}: use overall, domain or scenario"
            )));
        }
    };
    Ok(Terms {
        grantee: r.grantee,
        scope,
        recipients: set(r.recipients),
        valid_from_ms: if r.valid_from_ms == 0 {
            now_ms
        } else {
            r.valid_from_ms
        },
        valid_until_ms: r.valid_until_ms,
        purpose: r.purpose,
        security_owner: r.security_owner,
        limits: Limits {
            min_set_size: r.min_set_size,
            min_group_size: r.min_group_size,
            max_runs: (r.max_runs > 0).then_some(r.max_runs),
            runs_period: period(&r.runs_period, "runs period")?,
        },
        budget: cost_from_pb(r.budget, "budget")?,
        budget_period: period(&r.budget_period, "budget period")?,
    })
}

fn terms_to_pb(t: &Terms) -> pb::ProposeGrantRequest {
    let (kinds, fields, peers) = match &t.scope {
        Scope::Scenario {
            kinds,
            fields,
            peers,
            ..
        } => (
            kinds.iter().map(|k| k.as_str().to_owned()).collect(),
            fields.iter().cloned().collect(),
            peers.iter().cloned().collect(),
        ),
        _ => (Vec::new(), Vec::new(), Vec::new()),
    };
    pb::ProposeGrantRequest {
        grantee: t.grantee.clone(),
        scope: t.scope.name().into(),
        target: t.scope.target().into(),
        kinds,
        fields,
        peers,
        recipients: t.recipients.iter().cloned().collect(),
        valid_from_ms: t.valid_from_ms,
        valid_until_ms: t.valid_until_ms,
        purpose: t.purpose.clone(),
        security_owner: t.security_owner.clone(),
        min_set_size: t.limits.min_set_size,
        min_group_size: t.limits.min_group_size,
        max_runs: t.limits.max_runs.unwrap_or(0),
        runs_period: t.limits.runs_period.as_str().into(),
        budget: Some(cost_to_pb(&t.budget)),
        budget_period: t.budget_period.as_str().into(),
    }
}

/// A grant as people see it, with its state and use now.
fn grant_to_pb(node: &Node, store: &mut Store, g: &Grant) -> Result<pb::GrantInfo, NodeError> {
    let now = node.clock.now_ms();
    let rule = &node.rules.approvals;
    let db = ledger::db_err(store);
    let conn = store.conn();
    let (reserved, spent, _) =
        ledger::grant_usage(conn, &db, &g.id, g.terms.budget_period.start_of(now))?;
    let (_, _, runs) =
        ledger::grant_usage(conn, &db, &g.id, g.terms.limits.runs_period.start_of(now))?;
    let revoked = g.revoked.clone().unwrap_or_default();
    Ok(pb::GrantInfo {
        id: g.id.clone(),
        status: g.status(rule, now).as_str().into(),
        terms: Some(terms_to_pb(&g.terms)),
        proposed_by: g.proposed_by.clone(),
        proposed_at_ms: g.proposed_at_ms,
        approvals: g
            .approvals
            .iter()
            .map(|(by, at_ms)| pb::Approval {
                by: by.clone(),
                at_ms: *at_ms,
            })
            .collect(),
        approvals_counted: g.counted_approvals(rule),
        approvals_needed: rule.needed,
        revoked_at_ms: revoked.at_ms,
        revoked_by: revoked.by,
        revoke_reason: revoked.reason,
        reserved: Some(cost_to_pb(&reserved)),
        spent: Some(cost_to_pb(&spent)),
        runs,
    })
}

fn usage_to_pb(
    node: &Node,
    store: &mut Store,
    dataset: &str,
) -> Result<pb::ShowBudgetResponse, NodeError> {
    let caps = ledger::usage(store, dataset, node.clock.now_ms())?
        .into_iter()
        .map(|u| pb::BudgetUsage {
            dataset: u.cap.dataset.clone(),
            grantee: u.cap.grantee.clone(),
            period: u.cap.period.as_str().into(),
            period_start_ms: u.period_start_ms,
            cap: Some(cost_to_pb(&u.cap.limit)),
            reserved: Some(cost_to_pb(&u.reserved)),
            spent: Some(cost_to_pb(&u.spent)),
            remaining: Some(cost_to_pb(&u.remaining)),
        })
        .collect();
    Ok(pb::ShowBudgetResponse { caps })
}

/// Runs a grant change on the store and describes the grant after it.
async fn grant_change(
    node: &Arc<Node>,
    change: impl FnOnce(&Node, &mut Store, i64) -> Result<Grant, GrantError> + Send + 'static,
    what: &'static str,
) -> Result<(pb::GrantInfo, String), NodeError> {
    node.with_store(move |node, store| {
        let grant = change(node, store, node.clock.now_ms())?;
        let info = grant_to_pb(node, store, &grant)?;
        let detail = format!(
            "{what}: {} for {} on {} {}, now {} ({} of {} approvals)",
            grant.id,
            grant.terms.grantee,
            grant.terms.scope.name(),
            grant.terms.scope.target(),
            info.status,
            info.approvals_counted,
            info.approvals_needed
        );
        Ok((info, detail))
    })
    .await?
}

#[tonic::async_trait]
impl Governance for GovernanceService {
    async fn propose_grant(
        &self,
        req: Request<pb::ProposeGrantRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let node = &self.0;
        let action = "grant.propose";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let r = req.into_inner();
        let subjects = vec![format!("{}:{}", r.scope, r.target)];
        let by = caller.audit_name();
        let result = match terms_from_pb(r, node.clock.now_ms()) {
            Ok(terms) => {
                grant_change(
                    node,
                    move |node, store, now| grants::propose(store, &node.rules, terms, &by, now),
                    "proposed",
                )
                .await
            }
            Err(e) => Err(e),
        };
        let grant = result.as_ref().ok().map(|(g, _)| g.id.clone());
        node.finish_under(&caller, action, grant, subjects, result)
            .await
            .map(Response::new)
    }

    async fn approve_grant(
        &self,
        req: Request<pb::GrantRef>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let node = &self.0;
        let action = "grant.approve";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let id = req.into_inner().id;
        let (by, gid) = (caller.audit_name(), id.clone());
        let result = grant_change(
            node,
            move |_, store, now| grants::approve(store, &gid, &by, now),
            "approved",
        )
        .await;
        node.finish_under(&caller, action, Some(id), Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn revoke_grant(
        &self,
        req: Request<pb::RevokeGrantRequest>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let node = &self.0;
        let action = "grant.revoke";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let r = req.into_inner();
        let (by, gid) = (caller.audit_name(), r.id.clone());
        let result = if r.reason.trim().is_empty() {
            Err(NodeError::Invalid("say why the grant is revoked".into()))
        } else {
            grant_change(
                node,
                move |_, store, now| grants::revoke(store, &gid, &by, &r.reason, now),
                "revoked",
            )
            .await
        };
        node.finish_under(&caller, action, Some(r.id), Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn list_grants(
        &self,
        req: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let node = &self.0;
        let action = "grant.list";
        let caller = node.admit(&req, action, Admit::People(READERS)).await?;
        let result = node
            .with_store(|node, store| {
                let grants = grants::list(store)?
                    .iter()
                    .map(|g| grant_to_pb(node, store, g))
                    .collect::<Result<Vec<_>, _>>()?;
                let detail = format!("{} grants listed", grants.len());
                Ok::<_, NodeError>((pb::ListGrantsResponse { grants }, detail))
            })
            .await
            .and_then(|r| r);
        node.finish(&caller, action, Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn show_grant(
        &self,
        req: Request<pb::GrantRef>,
    ) -> Result<Response<pb::GrantInfo>, Status> {
        let node = &self.0;
        let action = "grant.show";
        let caller = node.admit(&req, action, Admit::People(READERS)).await?;
        let id = req.into_inner().id;
        let gid = id.clone();
        let result = node
            .with_store(move |node, store| {
                let grant =
                    grants::get(store, &gid)?.ok_or_else(|| GrantError::NotFound(gid.clone()))?;
                let info = grant_to_pb(node, store, &grant)?;
                Ok::<_, NodeError>((info, "shown".to_owned()))
            })
            .await
            .and_then(|r| r);
        node.finish_under(&caller, action, Some(id), Vec::new(), result)
            .await
            .map(Response::new)
    }

    async fn set_budget(
        &self,
        req: Request<pb::SetBudgetRequest>,
    ) -> Result<Response<pb::ShowBudgetResponse>, Status> {
        let node = &self.0;
        let action = "budget.set";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let r = req.into_inner();
        let target = budget_key(&r.dataset, &r.population);
        let subjects = vec![target.as_ref().cloned().unwrap_or_default()];
        let result = async {
            let target = target?;
            let grantee_ok =
                r.grantee == ledger::EVERYONE || crate::config::is_identity(&r.grantee);
            if !grantee_ok {
                return Err(NodeError::Invalid(format!(
                    "grantee {:?}: an operator identity, or * for everyone",
                    r.grantee
                )));
            }
            let cap = Cap {
                dataset: target.clone(),
                grantee: r.grantee.clone(),
                period: period(&r.period, "period")?,
                limit: cost_from_pb(r.cap, "cap")?,
            };
            node.with_store(move |node, store| {
                // A population's cap may come before its datasets; a dataset must exist.
                if ledger::population_of_key(&cap.dataset).is_none() {
                    let known = crate::catalog::load(store.conn(), Some(&cap.dataset))
                        .map_err(|e| NodeError::Internal(store.err(e).to_string()))?;
                    if known.is_empty() {
                        return Err(NodeError::NotFound(format!(
                            "no dataset {:?} is registered at this node",
                            cap.dataset
                        )));
                    }
                }
                ledger::set_cap(store, &cap)?;
                let detail = format!(
                    "cap on {} for {}: {} per {}",
                    cap.dataset, cap.grantee, cap.limit, cap.period
                );
                Ok((usage_to_pb(node, store, &cap.dataset)?, detail))
            })
            .await?
        }
        .await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    async fn show_budget(
        &self,
        req: Request<pb::ShowBudgetRequest>,
    ) -> Result<Response<pb::ShowBudgetResponse>, Status> {
        let node = &self.0;
        let action = "budget.show";
        let caller = node.admit(&req, action, Admit::People(READERS)).await?;
        let r = req.into_inner();
        let key = budget_key(&r.dataset, &r.population);
        let subjects = vec![key.as_ref().cloned().unwrap_or_default()];
        let result = node
            .with_store(move |node, store| {
                let dataset = key?;
                let usage = usage_to_pb(node, store, &dataset)?;
                let detail = format!("{} caps shown", usage.caps.len());
                Ok::<_, NodeError>((usage, detail))
            })
            .await
            .and_then(|r| r);
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }

    async fn classify_dataset(
        &self,
        req: Request<pb::ClassifyRequest>,
    ) -> Result<Response<pb::ClassifyResponse>, Status> {
        let node = &self.0;
        let action = "dataset.classify";
        let caller = node.admit(&req, action, Admit::People(MANAGERS)).await?;
        let r = req.into_inner();
        let subjects: Vec<String> = r
            .columns
            .iter()
            .map(|c| format!("{}.{}", r.dataset, c.column))
            .collect();
        let result = async {
            let changes = r
                .columns
                .iter()
                .map(|c| {
                    pb::Tier::try_from(c.tier)
                        .ok()
                        .and_then(tier_from_pb)
                        .map(|t| (c.column.clone(), t))
                        .ok_or_else(|| {
                            NodeError::Invalid(format!("column {:?}: no valid tier", c.column))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if changes.is_empty() {
                return Err(NodeError::Invalid(
                    "name at least one column and its tier".into(),
                ));
            }
            let dataset = r.dataset.clone();
            let done = node
                .with_store(move |_, store| crate::catalog::classify(store, &dataset, &changes))
                .await??;
            let detail = done
                .iter()
                .map(|(c, old, new)| format!("{c}: {old} -> {new}"))
                .collect::<Vec<_>>()
                .join(", ");
            let changes = done
                .into_iter()
                .map(|(column, old, new)| pb::TierChange {
                    column,
                    old_tier: tier_to_pb(old).into(),
                    new_tier: tier_to_pb(new).into(),
                })
                .collect();
            Ok((pb::ClassifyResponse { changes }, detail))
        }
        .await;
        node.finish(&caller, action, subjects, result)
            .await
            .map(Response::new)
    }
}

#[cfg(test)]
mod tests;

/// The ledger key of a budget request: a dataset, or a population's caps.
fn budget_key(dataset: &str, population: &str) -> Result<String, NodeError> {
    match (dataset.is_empty(), population.is_empty()) {
        (false, true) => Ok(dataset.to_owned()),
        (true, false) if crate::config::is_name(population) => {
            Ok(ledger::population_cap_key(population))
        }
        (true, false) => Err(NodeError::Invalid(format!(
            "population {population:?}: 1-64 of a-z, 0-9, '_' and '-', starting with a letter"
        ))),
        _ => Err(NodeError::Invalid(
            "name a dataset or a population (one of them)".into(),
        )),
    }
}
