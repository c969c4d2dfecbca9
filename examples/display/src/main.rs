//! Display: the cluster talking to itself. One column per member shows that member's live
//! connection ids and what it observes, timestamped: clients connecting to and disconnecting
//! from other members, members going down and up, table exchanges of the client tracker, and
//! the connections a dead member held when it went down.
//!
//! Run two members over HTTP with `cargo xtask run-example display --cluster http --members 2`
//! and open <http://127.0.0.1:10091/display/> and <http://127.0.0.1:10092/display/>; stop one
//! member and watch the other's page (xtask draws the cluster secret for the run). By hand,
//! with a secret shared by both members (`openssl rand -hex 32 > cluster-secret`):
//!
//! ```text
//! export THYWILL_CLUSTER_SECRET="$(cat cluster-secret)"
//! example-display --port 10091 --member alpha --cluster http \
//!     --cluster-members alpha=127.0.0.1:10091,beta=127.0.0.1:10092
//! example-display --port 10092 --member beta --cluster http \
//!     --cluster-members alpha=127.0.0.1:10091,beta=127.0.0.1:10092
//! ```
//!
//! It also runs alone (one column) and over Redis (`--cluster redis`). A clustered member
//! prints its cluster events as JSON lines on stdout (see `example_support::cluster`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_display::DEFAULT_PORT)?;
    opts.init_logging();
    let members = example_support::cluster::backend(&opts, example_display::APP_ID)?.members();
    let builder =
        example_support::cluster::apply(example_display::builder()?, &opts, example_display::APP_ID)?;
    let node = builder
        .bootstrap(example_display::script(&members)?)
        .build()
        .await?;
    example_support::serve(node, &opts, "/display/").await
}
