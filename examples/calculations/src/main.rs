//! Calculations: remote procedure calls from the browser to typed server functions. Numbers
//! typed into the page are sent to `multiplicative.multiplyByTwo`, `multiplicative.divideByTwo`,
//! `powers.square` and `powers.squareRoot`, and the results shown beside them.
//!
//! Run it with `cargo xtask run-example calculations` (or
//! `cargo run -p example-calculations -- --port 10082`) and open
//! <http://127.0.0.1:10082/calculations/>. The TypeScript declarations of the functions are
//! served at <http://127.0.0.1:10082/calculations/rpc.d.ts>.
//!
//! Results of the asynchronous functions are memoized in a named cache; in a cluster
//! (`--cluster redis --cluster-members alpha,beta`) a result stored on one member evicts that
//! key on the others, or is shared with `[cache] backend = "redis"` in a `--config` file.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_calculations::DEFAULT_PORT)?;
    opts.init_logging();
    let builder = example_support::cluster::apply(
        example_calculations::builder()?,
        &opts,
        example_calculations::APP_ID,
    )?;
    let node = builder.build().await?;
    example_support::serve(node, &opts, "/calculations/").await
}
