//! A service's OpenAPI document — generated from the contract types and the route handlers'
//! `#[utoipa::path]` descriptions, then completed from a table of the service's operations with
//! everything the shared layers add: who may call (security), the `Idempotency-Key` header, and
//! every problem an operation can answer (its route error's, and the layers' before and around it:
//! validation, payload size and type, keys, tokens, storage, nginx) — and served at
//! `GET /openapi.json`, rendered at `GET /docs`.
//!
//! The document is meant to be exact: a client generated from it, or a schema-driven fuzzer, agrees
//! with the service. `make test` holds the services to it with schemathesis.

use crate::contract::problem::schema_for;
use crate::http::problem::ProblemCode;
use crate::idempotency::KEY_PATTERN;
use actix_web::{web, HttpResponse};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use utoipa_scalar::{Scalar, Servable};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A token from `SERVICE_TOKENS`.
    Service,
    /// A token from `ADMIN_TOKENS`.
    Admin,
    /// A token from either list.
    ServiceOrAdmin,
}

/// One operation of a service and the layers it sits behind.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    /// `get`, `post`.
    pub method: &'static str,
    /// As in the document (`/orders/{id}`).
    pub path: &'static str,
    pub access: Access,
    /// Behind the Idempotency-Key layer.
    pub idempotent: bool,
    /// Takes a JSON body.
    pub body: bool,
    /// Takes path or query parameters, which may be refused.
    pub params: bool,
    /// The problems the route itself answers (its error type's `ANSWERS`).
    pub answers: &'static [(u16, ProblemCode)],
    /// What a client (or a stateful fuzzer) can do next with an answer.
    pub links: &'static [Link],
}

/// An OpenAPI link: from an answer of an operation to another operation, with the values the
/// answer gives it.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    /// The answer's status.
    pub status: u16,
    /// The operation the link leads to.
    pub operation_id: &'static str,
    /// Its parameters, as runtime expressions (`$response.body#/id`).
    pub parameters: &'static [(&'static str, &'static str)],
    /// Its request body: JSON whose strings may be runtime expressions.
    pub body: Option<&'static str>,
}

impl Operation {
    /// An operation that takes nothing but its path, answers nothing of its own, and links nowhere;
    /// the methods below add what it does take.
    pub const fn new(method: &'static str, path: &'static str, access: Access) -> Self {
        Operation {
            method,
            path,
            access,
            idempotent: false,
            body: false,
            params: false,
            answers: &[],
            links: &[],
        }
    }

    /// Behind the Idempotency-Key layer.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Takes a JSON body.
    pub const fn body(mut self) -> Self {
        self.body = true;
        self
    }

    /// Takes path or query parameters.
    pub const fn params(mut self) -> Self {
        self.params = true;
        self
    }

    pub const fn answers(mut self, answers: &'static [(u16, ProblemCode)]) -> Self {
        self.answers = answers;
        self
    }

    pub const fn links(mut self, links: &'static [Link]) -> Self {
        self.links = links;
        self
    }

    /// The problems this operation can answer: its own and its layers'.
    pub fn problems(&self) -> BTreeMap<u16, Vec<ProblemCode>> {
        use ProblemCode::*;
        let mut all: Vec<(u16, ProblemCode)> = self.answers.to_vec();
        // Every operation: an internal error, a dependency (PostgreSQL, Redis) away, or the
        // service itself away (nginx answers for it).
        all.extend([
            (500, InternalError),
            (503, DependencyUnavailable),
            (503, ServiceUnavailable),
        ]);
        if self.params {
            all.push((400, ValidationError));
        }
        if self.body {
            all.extend([
                (400, ValidationError),
                (413, PayloadTooLarge),
                (415, UnsupportedMediaType),
            ]);
        }
        if self.idempotent {
            all.extend([
                (400, IdempotencyKeyMissing),
                (400, IdempotencyKeyInvalid),
                (409, RequestInProgress),
                (422, IdempotencyKeyReused),
            ]);
        }
        if self.access != Access::Public {
            all.extend([(401, Unauthorized), (403, Forbidden)]);
        }
        let mut by_status: BTreeMap<u16, Vec<ProblemCode>> = BTreeMap::new();
        for (status, code) in all {
            let codes = by_status.entry(status).or_default();
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
        by_status
    }
}

/// The health operations every service has.
pub const HEALTH: [Operation; 3] = [
    Operation::new("get", "/health/live", Access::Public),
    Operation::new("get", "/health/ready", Access::Public),
    Operation::new("get", "/health", Access::Public),
];

/// Completes `base` (the service's generated document) for the `operations` it has, published
/// under `prefix` (`/stock`). Fails if the document and the table do not name the same
/// operations.
pub fn document(
    mut base: utoipa::openapi::OpenApi,
    prefix: &str,
    operations: &[Operation],
) -> Result<Value, String> {
    base.merge(<crate::http::health::HealthDoc as utoipa::OpenApi>::openapi());
    let mut doc = serde_json::to_value(&base).map_err(|e| e.to_string())?;
    doc["servers"] = json!([{"url": prefix, "description": "through nginx"}]);
    let operations: Vec<Operation> = operations.iter().chain(HEALTH.iter()).copied().collect();
    let mut schemes = Map::new();
    for op in &operations {
        let target = doc
            .pointer_mut(&format!("/paths/{}/{}", pointer(op.path), op.method))
            .ok_or_else(|| format!("{} {} is not in the document", op.method, op.path))?;
        complete(target, op, &mut schemes)?;
    }
    let documented = documented_operations(&doc);
    for (method, path) in documented {
        if !operations
            .iter()
            .any(|o| o.method == method && o.path == path)
        {
            return Err(format!(
                "{method} {path} is documented but not in the operation table"
            ));
        }
    }
    resolve_references(&mut doc)?;
    check_links(&doc)?;
    if !schemes.is_empty() {
        let components = doc
            .as_object_mut()
            .ok_or("the document is not an object")?
            .entry("components")
            .or_insert_with(|| json!({}));
        components["securitySchemes"] = Value::Object(schemes);
    }
    Ok(doc)
}

/// Adds to the document's components every contract schema its `$ref`s name (and theirs), and
/// fails if a reference names no schema at all.
fn resolve_references(doc: &mut Value) -> Result<(), String> {
    const PREFIX: &str = "#/components/schemas/";
    let known: BTreeMap<String, Value> = crate::contract::schemas()
        .into_iter()
        .filter_map(|(name, schema)| Some((name, serde_json::to_value(schema).ok()?)))
        .collect();
    loop {
        let mut references = Vec::new();
        collect_references(doc, &mut references);
        let schemas = doc
            .as_object_mut()
            .ok_or("the document is not an object")?
            .entry("components")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or("components is not an object")?
            .entry("schemas")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .ok_or("schemas is not an object")?;
        let mut added = false;
        for reference in references {
            let Some(name) = reference.strip_prefix(PREFIX) else {
                return Err(format!("reference {reference} is not to a schema"));
            };
            if schemas.contains_key(name) {
                continue;
            }
            let schema = known
                .get(name)
                .ok_or_else(|| format!("reference {reference} names no schema"))?;
            schemas.insert(name.to_string(), schema.clone());
            added = true;
        }
        if !added {
            return Ok(());
        }
    }
}

/// Every link leads to an operation of the document.
fn check_links(doc: &Value) -> Result<(), String> {
    let mut ids = Vec::new();
    let mut targets = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for item in paths.values().filter_map(Value::as_object) {
            for operation in item.values() {
                if let Some(id) = operation["operationId"].as_str() {
                    if ids.contains(&id) {
                        return Err(format!("operationId {id} is not unique"));
                    }
                    ids.push(id);
                }
                for response in operation["responses"]
                    .as_object()
                    .into_iter()
                    .flat_map(|r| r.values())
                {
                    for link in response["links"]
                        .as_object()
                        .into_iter()
                        .flat_map(|l| l.values())
                    {
                        targets.push(link["operationId"].as_str().unwrap_or("").to_string());
                    }
                }
            }
        }
    }
    match targets.iter().find(|t| !ids.contains(&t.as_str())) {
        Some(target) => Err(format!("a link leads to {target:?}, which is no operation")),
        None => Ok(()),
    }
}

fn collect_references(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => into.push(reference.clone()),
                    _ => collect_references(value, into),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|v| collect_references(v, into)),
        _ => {}
    }
}

/// `(method, path)` of every operation in a document.
pub fn documented_operations(doc: &Value) -> Vec<(String, String)> {
    let mut all = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            for method in [
                "get", "put", "post", "delete", "patch", "options", "head", "trace",
            ] {
                if item.get(method).is_some() {
                    all.push((method.to_string(), path.clone()));
                }
            }
        }
    }
    all
}

/// A path as a JSON pointer segment (`/` is `~1`).
fn pointer(path: &str) -> String {
    path.replace('~', "~0").replace('/', "~1")
}

fn complete(
    target: &mut Value,
    op: &Operation,
    schemes: &mut Map<String, Value>,
) -> Result<(), String> {
    let operation = target
        .as_object_mut()
        .ok_or("an operation is not an object")?;
    secure(operation, op.access, schemes);
    if op.idempotent {
        require_key(operation)?;
    }
    let responses = operation
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or("responses is not an object")?;
    add_problems(responses, op)?;
    add_links(responses, op)?;
    if op.idempotent {
        for (status, response) in responses.iter_mut() {
            if status.starts_with('2') {
                response["headers"]["Idempotent-Replayed"] = json!({
                    "description": "`true` when this is the stored answer to an earlier request with the same key",
                    "schema": {"type": "string", "enum": ["true"]}
                });
            }
        }
    }
    Ok(())
}

/// Who may call: the operation's security requirement, and the scheme it names.
fn secure(operation: &mut Map<String, Value>, access: Access, schemes: &mut Map<String, Value>) {
    const SERVICE: (&str, &str) = ("service_token", "a token from SERVICE_TOKENS");
    const ADMIN: (&str, &str) = ("admin_token", "a token from ADMIN_TOKENS");
    let accepted: &[(&str, &str)] = match access {
        Access::Public => &[],
        Access::Service => &[SERVICE],
        Access::Admin => &[ADMIN],
        Access::ServiceOrAdmin => &[SERVICE, ADMIN],
    };
    // Each element of `security` is an alternative: any one of the schemes will do.
    let requirements: Vec<Value> = accepted
        .iter()
        .map(|(scheme, _)| json!({ *scheme: [] }))
        .collect();
    operation.insert("security".into(), Value::Array(requirements));
    for (scheme, description) in accepted {
        schemes.insert((*scheme).into(), bearer(description));
    }
}

/// The `Idempotency-Key` header, with exactly the values the layer accepts.
fn require_key(operation: &mut Map<String, Value>) -> Result<(), String> {
    let parameters = operation
        .entry("parameters")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("parameters is not a list")?;
    parameters.retain(|p| p["name"] != "Idempotency-Key");
    parameters.push(json!({
        "name": "Idempotency-Key",
        "in": "header",
        "required": true,
        "description": "Makes the request safe to retry: the same key and request replay the first answer; \
                        1 to 255 printable ASCII characters, or an RFC 8941 quoted string of them.",
        "schema": {"type": "string", "pattern": KEY_PATTERN}
    }));
    Ok(())
}

/// Every problem the operation can answer, by status, with exactly its codes.
fn add_problems(responses: &mut Map<String, Value>, op: &Operation) -> Result<(), String> {
    for (status, codes) in op.problems() {
        let response = responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"description": ""}));
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let description = response["description"].as_str().unwrap_or("").to_string();
        response["description"] = if description.is_empty() {
            json!(names.join(", "))
        } else {
            json!(format!("{description}; or a problem: {}", names.join(", ")))
        };
        let schema = serde_json::to_value(schema_for(status, &codes)).map_err(|e| e.to_string())?;
        response
            .as_object_mut()
            .ok_or("a response is not an object")?
            .entry("content")
            .or_insert_with(|| json!({}))[crate::http::problem::CONTENT_TYPE] =
            json!({ "schema": schema });
        if status == 503 || codes.contains(&ProblemCode::RequestInProgress) {
            response["headers"]["Retry-After"] = json!({
                "description": "seconds to wait before retrying with the same Idempotency-Key",
                "schema": {"type": "integer", "minimum": 0}
            });
        }
    }
    Ok(())
}

/// What can be done next with an answer.
fn add_links(responses: &mut Map<String, Value>, op: &Operation) -> Result<(), String> {
    for link in op.links {
        let response = responses.get_mut(&link.status.to_string()).ok_or_else(|| {
            format!(
                "{} {} has a link from no {} answer",
                op.method, op.path, link.status
            )
        })?;
        let mut target = json!({ "operationId": link.operation_id });
        if !link.parameters.is_empty() {
            let parameters: Map<String, Value> = link
                .parameters
                .iter()
                .map(|(name, expression)| (name.to_string(), json!(expression)))
                .collect();
            target["parameters"] = Value::Object(parameters);
        }
        if let Some(body) = link.body {
            target["requestBody"] = serde_json::from_str(body).map_err(|e| e.to_string())?;
        }
        response["links"][link.operation_id] = target;
    }
    Ok(())
}

fn bearer(description: &str) -> Value {
    json!({"type": "http", "scheme": "bearer", "description": description})
}

/// `GET /openapi.json` and `GET /docs` (a Scalar page rendering it).
pub fn routes(document: Value) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let json = document.to_string();
        cfg.service(Scalar::with_url("/docs", document)).service(
            crate::http::routing::only(web::resource("/openapi.json"), &["GET"]).route(
                web::get().to(move || {
                    let json = json.clone();
                    async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(json)
                    }
                }),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layers_add_their_problems() {
        let op = Operation::new("post", "/reserve", Access::Service)
            .idempotent()
            .body()
            .answers(&[(409, ProblemCode::InsufficientStock)]);
        let problems = op.problems();
        assert_eq!(
            problems[&409],
            [
                ProblemCode::InsufficientStock,
                ProblemCode::RequestInProgress
            ]
        );
        assert!(problems[&400].contains(&ProblemCode::IdempotencyKeyMissing));
        assert!(problems[&401].contains(&ProblemCode::Unauthorized));
        assert!(problems.contains_key(&415));
        let public = Operation {
            access: Access::Public,
            idempotent: false,
            body: false,
            ..op
        };
        assert!(!public.problems().contains_key(&401));
        assert!(!public.problems().contains_key(&415));
    }
}
