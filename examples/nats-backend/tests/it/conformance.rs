//! The framework's cluster conformance suite (`thywill_testkit::conformance`, the one the Redis
//! and HTTP backends pass), run against the NATS backend over a real `nats-server`.

use std::time::Duration;

use thywill_testkit::conformance::{self, Options, Spec};
use thywill_testkit::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_backend_conforms() -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let url = nats.url();
    // timeout (500 ms) + one interval (200 ms), plus scheduling slack for a loaded machine, as
    // for Redis.
    let opts = Options::clustered(Duration::from_millis(700 + 250));
    conformance::run(opts, |spec: Spec| {
        let url = url.clone();
        async move { crate::dyn_member(&url, &spec) }
    })
    .await
}
