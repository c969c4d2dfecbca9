//! Chat: visitors paired into one-on-one chats by browser session, across the members of a
//! cluster. Every tab of one browser shares the chat; a partner who closes the page and comes
//! back is announced as disconnected, then reconnected.
//!
//! Run one member with `cargo xtask run-example chat` (sessions, channels and the waiting pool
//! in memory) and open <http://127.0.0.1:10087/chat/> in two different browsers (or a private
//! window): each browser is one session. Four members over Redis with
//! `cargo xtask run-example chat --cluster redis --members 4` (sessions, channels, the replay
//! history and the waiting pool in Redis, keys under `thywill:chat:`; xtask generates a session secret for the
//! run and hands it to every member). By hand:
//!
//! ```text
//! example-chat --port 10087 --member alpha --cluster redis --redis-url redis://127.0.0.1:6379 \
//!     --session-secret "$(cat secret-of-at-least-32-bytes)"
//! ```
//!
//! Session cookies are signed: every member of a cluster needs the same secret
//! (`--session-secret S`, `THYWILL_SESSION__SECRET` or `[session] secret` in the file given by
//! `--config`). Without one, a clustered member refuses to start; a single member draws a
//! random one. Every other option is `example_support`'s (`--help`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut secret = None;
    if let Some(i) = args.iter().position(|a| a == "--session-secret") {
        anyhow::ensure!(i + 1 < args.len(), "--session-secret needs a value");
        secret = Some(args.remove(i + 1));
        args.remove(i);
    }
    let opts = example_support::Options::parse(args, example_chat::DEFAULT_PORT)?;
    opts.init_logging();
    let node = example_chat::build(opts.clone(), secret).await?;
    example_support::serve(node, &opts, "/chat/").await
}
