//! Axum App: an axum application with its own routes and login, and thywill mounted under
//! `/live` for a live notice feed whose connections the app's own token authenticates.
//!
//! Run it with `cargo xtask run-example axum-app` (or `cargo run -p example-axum-app -- --port
//! 10095`), open <http://127.0.0.1:10095/>, sign in as `alice` / `alice-password` and send a
//! notice to yourself or to `bob` (signed in in another browser). Two members over Redis:
//! `cargo xtask run-example axum-app --cluster redis --members 2` (xtask draws the token key,
//! `AXUM_APP_SECRET`, that both members need). Every other option is `example_support`'s
//! (`--help`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_axum_app::DEFAULT_PORT)?;
    opts.init_logging();
    let tokens = example_axum_app::tokens_from_env(&opts)?;
    let app = example_axum_app::build(&opts, tokens).await?;
    let listener = tokio::net::TcpListener::bind(opts.addr()).await?;
    println!("listening: http://{}/", listener.local_addr()?);
    app.serve(listener, thywill::shutdown_signal()).await
}
