//! Tabular: Start / Stop a stream of rows of five numbers from the server, rendered newest
//! first with Alpine.js. Shows the resource pipeline (one page, one minified script bundle, one
//! CSS bundle) and progressive exposure (the totals feature, loaded after a few rows).
//!
//! Run it with `cargo xtask run-example tabular` (or `cargo run -p example-tabular -- --port 10093`)
//! and open <http://127.0.0.1:10093/tabular/>.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_tabular::DEFAULT_PORT)?;
    opts.init_logging();
    let node = opts.configure(example_tabular::builder()?)?.build().await?;
    example_support::serve(node, &opts, "/tabular/").await
}
