//! Echo: the minimal thywill-rs application. Text typed into the page is sent to the server
//! and echoed back, newest on top.
//!
//! Run it with `cargo xtask run-example echo` (or `cargo run -p example-echo -- --port 10081`)
//! and open <http://127.0.0.1:10081/echo/>.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_echo::DEFAULT_PORT)?;
    opts.init_logging();
    let node = opts.configure(example_echo::builder()?)?.build().await?;
    example_support::serve(node, &opts, "/echo/").await
}
