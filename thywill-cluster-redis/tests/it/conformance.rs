//! The shared conformance suite, run against the Redis backend.

use std::time::Duration;

use thywill_testkit::conformance::{self, Options, Spec};
use thywill_testkit::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_backend_conforms() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let url = redis.url();
    // timeout (500 ms) + one interval (200 ms), plus scheduling slack for a loaded CI machine.
    let opts = Options::clustered(Duration::from_millis(700 + 250));
    conformance::run(opts, |spec: Spec| {
        let url = url.clone();
        async move { crate::member(&url, &spec) }
    })
    .await
}
