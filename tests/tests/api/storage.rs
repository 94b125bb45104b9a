//! Every SQL statement of the services is checked against the migrated schema: at compile time
//! by sqlx's `query!` macros, from the descriptions committed in each service's `.sqlx/`; and here,
//! each description against the schema the service's migrations really make (the stack's
//! services have just migrated their databases), so that a migration that changes what a
//! statement means cannot go unnoticed with a stale description.

use serde_json::Value;
use sqlx::Executor;
use tests::{workspace_root, Part, Stack};

#[tokio::test]
async fn every_statement_matches_the_migrated_schema() {
    let s = Stack::start().await;
    let mut checked = 0;
    let mut stale = Vec::new();
    for part in [Part::Stock, Part::Payment, Part::Order] {
        let dir = workspace_root().join(part.name()).join(".sqlx");
        let db = s.db(part).await;
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|f| f.unwrap().path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{} has no statements", dir.display());
        for file in files {
            let committed: Value =
                serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
            let query = committed["query"].as_str().expect("a query");
            let live = match db.describe(query).await {
                Ok(describe) => serde_json::to_value(&describe).unwrap(),
                Err(e) => {
                    stale.push(format!("{}: {e}\n{query}", file.display()));
                    continue;
                }
            };
            if live != committed["describe"] {
                stale.push(format!(
                    "{}: the schema now describes it as {live}\n{query}",
                    file.display()
                ));
            }
            checked += 1;
        }
    }
    assert!(
        stale.is_empty(),
        "statements whose description is stale (run `make sqlx-prepare`):\n{}",
        stale.join("\n\n")
    );
    assert!(checked > 40, "only {checked} statements");
}
