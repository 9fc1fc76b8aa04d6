//! Resource-based policies: AddPermission, GetPolicy, RemovePermission (Terraform's
//! `aws_lambda_permission`, `aws lambda add-permission`). thaw stores each statement and
//! returns the policy document Lambda returns; access itself is decided by thaw's own
//! auth (`crate::auth`) and a function URL's AuthType, not by these statements.
use super::{json, json_body};
use crate::backend::Backend;
use crate::errors::ApiError;
use crate::names;
use crate::registry::{Permission, Policy};
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;

type Svc<B> = State<Arc<Service<B>>>;

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PermissionBody {
    statement_id: Option<String>,
    action: Option<String>,
    principal: Option<String>,
    source_arn: Option<String>,
    source_account: Option<String>,
    event_source_token: Option<String>,
    revision_id: Option<String>,
    #[serde(rename = "PrincipalOrgID")]
    principal_org_id: Option<String>,
    function_url_auth_type: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct PolicyQuery {
    #[serde(rename = "Qualifier")]
    qualifier: Option<String>,
    #[serde(rename = "RevisionId")]
    revision_id: Option<String>,
}

fn invalid(m: &str) -> ApiError {
    ApiError::InvalidParameter(m.into())
}

/// The statement the body describes, checked as Lambda checks it.
fn permission(b: PermissionBody) -> Result<Permission, ApiError> {
    let sid = b
        .statement_id
        .ok_or_else(|| invalid("StatementId is required"))?;
    if sid.is_empty()
        || sid.len() > 100
        || !sid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(invalid(
            "StatementId must be 1-100 letters, digits, '-', '_' or '.'",
        ));
    }
    let action = b.action.ok_or_else(|| invalid("Action is required"))?;
    let action_ok = action == "*"
        || action.strip_prefix("lambda:").is_some_and(|a| {
            a == "*" || (!a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic()))
        });
    if !action_ok {
        return Err(invalid("Action must be lambda:<Operation>, lambda:* or *"));
    }
    let principal = b
        .principal
        .ok_or_else(|| invalid("Principal is required"))?;
    if principal.is_empty() || principal.len() > 256 || principal.contains(char::is_whitespace) {
        return Err(invalid(
            "Principal must be a service, an account, an ARN or *",
        ));
    }
    if let Some(t) = &b.function_url_auth_type {
        if t != "NONE" && t != "AWS_IAM" {
            return Err(invalid("FunctionUrlAuthType must be NONE or AWS_IAM"));
        }
    }
    if let Some(a) = &b.source_account {
        if a.len() != 12 || !a.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid("SourceAccount must be a 12-digit account id"));
        }
    }
    Ok(Permission {
        sid,
        action,
        principal,
        source_arn: b.source_arn,
        source_account: b.source_account,
        principal_org_id: b.principal_org_id,
        event_source_token: b.event_source_token,
        function_url_auth_type: b.function_url_auth_type,
    })
}

/// A statement as IAM writes it.
fn statement_json(resource: &str, p: &Permission) -> Value {
    let principal = if p.principal == "*" {
        json!("*")
    } else if p.principal.ends_with(".amazonaws.com") {
        json!({ "Service": p.principal })
    } else if p.principal.len() == 12 && p.principal.chars().all(|c| c.is_ascii_digit()) {
        json!({ "AWS": format!("arn:aws:iam::{}:root", p.principal) })
    } else {
        json!({ "AWS": p.principal })
    };
    let mut equals = Map::new();
    for (key, value) in [
        ("AWS:SourceAccount", &p.source_account),
        ("aws:PrincipalOrgID", &p.principal_org_id),
        ("lambda:EventSourceToken", &p.event_source_token),
        ("lambda:FunctionUrlAuthType", &p.function_url_auth_type),
    ] {
        if let Some(v) = value {
            equals.insert(key.into(), json!(v));
        }
    }
    let mut condition = Map::new();
    if !equals.is_empty() {
        condition.insert("StringEquals".into(), Value::Object(equals));
    }
    if let Some(arn) = &p.source_arn {
        condition.insert("ArnLike".into(), json!({ "AWS:SourceArn": arn }));
    }
    let mut s = json!({
        "Sid": p.sid,
        "Effect": "Allow",
        "Principal": principal,
        "Action": p.action,
        "Resource": resource,
    });
    if !condition.is_empty() {
        s["Condition"] = Value::Object(condition);
    }
    s
}

/// The ARN a policy's statements name.
fn resource<B: Backend>(svc: &Service<B>, policy: &Policy) -> String {
    let arn = svc.arn.function(&policy.function);
    match &policy.qualifier {
        Some(q) => format!("{arn}:{q}"),
        None => arn,
    }
}

/// The whole policy document.
pub fn document(resource: &str, policy: &Policy) -> Value {
    json!({
        "Version": "2012-10-17",
        "Id": "default",
        "Statement": policy
            .statements
            .iter()
            .map(|s| statement_json(resource, s))
            .collect::<Vec<_>>(),
    })
}

pub(super) async fn add_permission<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PolicyQuery>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let mut b: PermissionBody = json_body(&body)?;
    // The qualifier (a version or an alias) must exist.
    svc.registry.resolve(&f.name, f.qualifier.as_deref())?;
    let revision = b.revision_id.take();
    let p = permission(b)?;
    let sid = p.sid.clone();
    let policy =
        svc.registry
            .add_permission(&f.name, f.qualifier.as_deref(), p, revision.as_deref())?;
    let added = policy
        .statements
        .iter()
        .find(|s| s.sid == sid)
        .ok_or_else(|| ApiError::Service("the added statement is missing".into()))?;
    let s = statement_json(&resource(&svc, &policy), added);
    Ok(json(
        StatusCode::CREATED,
        json!({ "Statement": s.to_string() }),
    ))
}

pub(super) async fn get_policy<B: Backend>(
    State(svc): Svc<B>,
    Path(name): Path<String>,
    Query(q): Query<PolicyQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    let policy = svc.registry.policy(&f.name, f.qualifier.as_deref())?;
    let doc = document(&resource(&svc, &policy), &policy);
    Ok(json(
        StatusCode::OK,
        json!({ "Policy": doc.to_string(), "RevisionId": policy.revision_id }),
    ))
}

pub(super) async fn remove_permission<B: Backend>(
    State(svc): Svc<B>,
    Path((name, sid)): Path<(String, String)>,
    Query(q): Query<PolicyQuery>,
) -> Result<Response, ApiError> {
    let f = names::parse(&name, q.qualifier.as_deref())?;
    svc.registry.remove_permission(
        &f.name,
        f.qualifier.as_deref(),
        &sid,
        q.revision_id.as_deref(),
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> PermissionBody {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn test_statements_are_checked() {
        let ok = json!({"StatementId": "s3-1", "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com"});
        assert!(permission(body(ok.clone())).is_ok());
        for (field, bad) in [
            ("StatementId", json!("has space")),
            ("StatementId", json!("")),
            ("StatementId", json!("x".repeat(101))),
            ("Action", json!("s3:GetObject")),
            ("Action", json!("lambda:")),
            ("Principal", json!("a b")),
            ("FunctionUrlAuthType", json!("BASIC")),
            ("SourceAccount", json!("12345")),
        ] {
            let mut v = ok.clone();
            v[field] = bad.clone();
            assert!(
                matches!(permission(body(v)), Err(ApiError::InvalidParameter(_))),
                "{field} = {bad} accepted"
            );
        }
        for missing in ["StatementId", "Action", "Principal"] {
            let mut v = ok.clone();
            v.as_object_mut().unwrap().remove(missing);
            assert!(permission(body(v)).is_err(), "{missing} not required");
        }
    }

    #[test]
    fn test_statement_json_is_what_iam_writes() {
        let p = permission(body(json!({
            "StatementId": "url", "Action": "lambda:InvokeFunctionUrl", "Principal": "*",
            "FunctionUrlAuthType": "NONE"
        })))
        .unwrap();
        let s = statement_json("arn:aws:lambda:us-east-1:000000000000:function:f", &p);
        assert_eq!(
            s,
            json!({"Sid": "url", "Effect": "Allow", "Principal": "*",
                   "Action": "lambda:InvokeFunctionUrl",
                   "Resource": "arn:aws:lambda:us-east-1:000000000000:function:f",
                   "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}}})
        );
        let p = permission(body(json!({
            "StatementId": "s3", "Action": "lambda:InvokeFunction", "Principal": "s3.amazonaws.com",
            "SourceArn": "arn:aws:s3:::bucket", "SourceAccount": "123456789012"
        })))
        .unwrap();
        let s = statement_json("r", &p);
        assert_eq!(s["Principal"], json!({"Service": "s3.amazonaws.com"}));
        assert_eq!(
            s["Condition"],
            json!({"StringEquals": {"AWS:SourceAccount": "123456789012"},
                   "ArnLike": {"AWS:SourceArn": "arn:aws:s3:::bucket"}})
        );
        let p = permission(body(json!({
            "StatementId": "acct", "Action": "lambda:*", "Principal": "123456789012"
        })))
        .unwrap();
        assert_eq!(
            statement_json("r", &p)["Principal"],
            json!({"AWS": "arn:aws:iam::123456789012:root"})
        );
    }
}
