//! The chaos harness's invariant checker, on the databases of any stack: waits until the stack
//! has finished what it owes (every order terminal, every refund, transfer and payout settled),
//! checks every invariant of docs/guarantees.md (`tests/src/invariants.rs`) and prints each
//! violation. `make compose-test` runs it on docker-compose's databases after the black-box suite:
//!
//!     invariants --server postgres://checkout:PASSWORD@127.0.0.1:PORT [--other-callers]
//!
//! Exits 0 when every invariant holds, 1 when one does not, 2 when the databases cannot be read.

use clap::Parser;
use sqlx::postgres::PgPoolOptions;
use std::process::ExitCode;
use std::time::Duration;
use tests::invariants::{self, Databases};

#[derive(Parser)]
#[command(about = "Checks the checkout's and the ledger's invariants on a stack's databases")]
struct Args {
    /// The PostgreSQL server (a URL without a database) that holds the three databases.
    #[arg(long)]
    server: String,
    /// The databases' names.
    #[arg(long, default_value = "order")]
    order_db: String,
    #[arg(long, default_value = "stock")]
    stock_db: String,
    #[arg(long, default_value = "payment")]
    payment_db: String,
    /// How long to wait for every order to become terminal (seconds).
    #[arg(long, default_value_t = 60.0)]
    quiet_timeout: f64,
    /// Others than order called stock's and payment's service endpoints (the black-box suite,
    /// schemathesis): the invariants that hold only while order is their only caller are not
    /// checked (they are listed).
    #[arg(long)]
    other_callers: bool,
}

async fn pool(server: &str, database: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&format!("{}/{database}", server.trim_end_matches('/')))
        .await
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let pools = async {
        Ok::<_, sqlx::Error>((
            pool(&args.server, &args.order_db).await?,
            pool(&args.server, &args.stock_db).await?,
            pool(&args.server, &args.payment_db).await?,
        ))
    };
    let (order, stock, payment) = match pools.await {
        Ok(pools) => pools,
        Err(e) => {
            eprintln!("invariants: the databases cannot be reached: {e}");
            return ExitCode::from(2);
        }
    };
    let db = Databases {
        order: &order,
        stock: &stock,
        payment: &payment,
    };
    let callers = if args.other_callers {
        invariants::Callers::Others
    } else {
        invariants::Callers::OrderOnly
    };
    let quiet = Duration::from_secs_f64(args.quiet_timeout);
    let checked = invariants::settle_then_check(&db, callers, quiet);
    let (findings, settling) = match checked.await {
        Ok(done) => done,
        Err(e) => {
            eprintln!("invariants: a check could not run: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "invariants: settled (orders {:.1} s, refunds {:.1} s, transfers and payouts {:.1} s); {} invariants checked",
        settling.quiet_after_s,
        settling.refunds_settled_after_s,
        settling.moves_settled_after_s,
        findings.checked.len()
    );
    println!("  checked: {}", findings.checked.join(", "));
    if callers == invariants::Callers::Others {
        println!(
            "  not checked, as others than order called stock and payment: {}",
            invariants::ORDER_ONLY.join(", ")
        );
    }
    if findings.violations.is_empty() {
        println!("invariants: every invariant holds");
        ExitCode::SUCCESS
    } else {
        for v in &findings.violations {
            println!("VIOLATION {v}");
        }
        println!("invariants: {} violations", findings.violations.len());
        ExitCode::from(1)
    }
}
