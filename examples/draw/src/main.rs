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
//!
//! **A backend of your own.** `--cluster nats` runs the members over NATS with the backend in
//! `examples/nats-backend`, written outside the framework's crates as a user would write one
//! (see the README, "Swap the backend"). Draw installs it with one dependency (its
//! `Cargo.toml`) and one builder call (below). `cargo xtask run-example draw --cluster nats
//! --members 3` starts a `nats-server` and three members; by hand:
//!
//! ```text
//! nats-server --addr 127.0.0.1 --port 4222 &
//! example-draw --port 10083 --member alpha --cluster nats --nats-url nats://127.0.0.1:4222 \
//!     --cluster-members alpha,beta,gamma
//! ```

use anyhow::{Context, bail};
use thywill::MemberId;
use thywill_nats_example::{NatsBackend, NatsClusterConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (nats_url, args) = take_nats_flags(std::env::args().skip(1))?;
    let opts = example_support::Options::parse(args, example_draw::DEFAULT_PORT)?;
    opts.init_logging();
    let local = MemberId::from(opts.member.as_str());
    let app = example_draw::Draw::default().on_member_down(move |member, connections| {
        let mut fields = serde_json::Map::new();
        fields.insert("member".into(), member.as_str().into());
        fields.insert("connections".into(), connections.into());
        example_support::cluster::print_event("app_member_down", &local, fields);
    });
    let mut builder = example_support::cluster::apply(example_draw::builder_with(app)?, &opts, "draw")?;
    if let Some(url) = nats_url {
        let config = nats_config(&url, &opts)?;
        // The swap: one builder call. (`printed` prints the cluster's events on stdout, as for
        // every clustered example; `.backend(NatsBackend::new(config))` alone is the swap.)
        builder = builder.backend(example_support::cluster::printed(NatsBackend::new(config)));
    }
    let node = builder.build().await?;
    example_support::serve(node, &opts, "/draw/").await
}

/// Takes `--cluster nats` and `--nats-url URL` out of the arguments (example-support knows the
/// framework's backends only): the NATS URL when the NATS backend is asked for, and the other
/// arguments.
fn take_nats_flags(args: impl IntoIterator<Item = String>) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let mut rest = Vec::new();
    let (mut nats, mut url) = (false, None);
    let mut args = args.into_iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--cluster" => match args.next() {
                Some(kind) if kind == "nats" => nats = true,
                Some(kind) => rest.extend([a, kind]),
                None => rest.push(a),
            },
            "--nats-url" => url = Some(args.next().context("--nats-url needs a value")?),
            _ => rest.push(a),
        }
    }
    match (nats, url) {
        (true, url) => Ok((Some(url.unwrap_or_else(|| "nats://127.0.0.1:4222".into())), rest)),
        (false, Some(_)) => bail!("--nats-url needs --cluster nats"),
        (false, None) => Ok((None, rest)),
    }
}

/// Member ids of a NATS cluster when `--cluster-members` is not given (as for Redis).
const DEFAULT_NATS_MEMBERS: &str = "alpha,beta,gamma,delta";

/// The NATS backend's settings from the example's options: the cluster named `draw`, the
/// members of `--cluster-members` (ids; the local member added if missing), the heartbeat of
/// `--heartbeat-interval` / `--heartbeat-timeout`.
fn nats_config(url: &str, opts: &example_support::Options) -> anyhow::Result<NatsClusterConfig> {
    let list = opts.cluster_members.as_deref().unwrap_or(DEFAULT_NATS_MEMBERS);
    let mut members: Vec<MemberId> = list
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(MemberId::from)
        .collect();
    let local = MemberId::from(opts.member.as_str());
    if !members.contains(&local) {
        members.push(local.clone());
    }
    let mut config = NatsClusterConfig::default()
        .with_url(url)?
        .with_cluster("draw")?
        .with_members(members)?
        .with_local(local)?;
    if opts.heartbeat_interval_ms.is_some() || opts.heartbeat_timeout_ms.is_some() {
        let interval = std::time::Duration::from_millis(opts.heartbeat_interval_ms.unwrap_or(200));
        let timeout = std::time::Duration::from_millis(opts.heartbeat_timeout_ms.unwrap_or(500));
        config = config.with_heartbeat(interval, timeout)?;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_nats_flags_are_taken_and_the_rest_left_to_example_support() -> anyhow::Result<()> {
        let (url, rest) = take_nats_flags(args(
            "--port 1 --cluster nats --nats-url nats://127.0.0.1:9 --cluster-members alpha,beta",
        ))?;
        assert_eq!(url.as_deref(), Some("nats://127.0.0.1:9"));
        assert_eq!(rest, args("--port 1 --cluster-members alpha,beta"));
        let (url, rest) = take_nats_flags(args("--cluster redis --port 1"))?;
        assert_eq!((url, rest), (None, args("--cluster redis --port 1")));
        assert_eq!(
            take_nats_flags(args("--cluster nats"))?.0.as_deref(),
            Some("nats://127.0.0.1:4222")
        );
        assert!(take_nats_flags(args("--nats-url nats://h:1")).is_err());

        let opts = example_support::Options::parse(args("--member gamma --cluster-members alpha,beta"), 1)?;
        let config = nats_config("nats://127.0.0.1:9", &opts)?;
        let ids: Vec<&str> = config.members().iter().map(MemberId::as_str).collect();
        assert_eq!(
            (ids, config.local().as_str()),
            (vec!["alpha", "beta", "gamma"], "gamma")
        );
        Ok(())
    }
}
