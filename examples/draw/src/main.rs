//! Draw: a shared scribble canvas across the members of a cluster. Strokes drawn on one page
//! appear on every other page, whichever member serves it, and fade after 30 s.
//!
//! Run one member with `cargo xtask run-example draw` (no Redis needed) and open
//! <http://127.0.0.1:10083/draw/>; four members over Redis with
//! `cargo xtask run-example draw --cluster redis --members 4`. By hand:
//!
//! ```text
//! example-draw --port 10083 --member alpha --cluster redis --redis-url redis://127.0.0.1:6379
//! THYWILL_CLUSTER_SECRET="$(cat cluster-secret)" example-draw --port 10083 --member alpha \
//!     --cluster http --cluster-members alpha=127.0.0.1:10083,beta=127.0.0.1:10084
//! ```
//!
//! The HTTP cluster needs a secret shared by every member (`THYWILL_CLUSTER_SECRET` or
//! `--cluster-secret`, at least 16 bytes; `openssl rand -hex 32 > cluster-secret`); `cargo xtask
//! run-example draw --cluster http` draws one per run.
//!
//! A clustered member prints its cluster events as JSON lines on stdout (see
//! `example_support::cluster`), plus `app_member_down` when, as designated handler, the
//! application is told that a member went down.

use thywill::MemberId;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(example_draw::DEFAULT_PORT)?;
    opts.init_logging();
    let local = MemberId::from(opts.member.as_str());
    let app = example_draw::Draw::default().on_member_down(move |member, connections| {
        let mut fields = serde_json::Map::new();
        fields.insert("member".into(), member.as_str().into());
        fields.insert("connections".into(), connections.into());
        example_support::cluster::print_event("app_member_down", &local, fields);
    });
    let builder = example_support::cluster::apply(example_draw::builder_with(app)?, &opts, "draw")?;
    let node = builder.build().await?;
    example_support::serve(node, &opts, "/draw/").await
}
