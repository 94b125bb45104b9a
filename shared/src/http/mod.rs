//! What every service's HTTP edge shares: problem+json errors, the JSON and query extractors that
//! name the bad field, bearer-token authentication, request ids, health and 404/405 answers.

pub mod auth;
pub mod health;
pub mod json;
pub mod problem;
pub mod request_id;
pub mod routing;

pub use json::{Json, Query};
pub use problem::{Answers, Problem, ProblemCode, ToProblem};
