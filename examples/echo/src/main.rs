//! Echo: the minimal thywill-rs application. Text typed into the page is sent to the server
//! and echoed back, newest on top.
//!
//! Run it with `cargo xtask run-example echo` (or `cargo run -p example-echo -- --port 10080`)
//! and open <http://127.0.0.1:10080/echo/>.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    example_support::init_tracing();
    let opts = example_support::Options::from_args(example_echo::DEFAULT_PORT)?;
    let node = example_echo::builder()?.member(opts.member.as_str()).build().await?;
    example_support::serve(node, &opts, "/echo/").await
}
