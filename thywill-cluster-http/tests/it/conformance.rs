//! The shared conformance suite, run against the HTTP backend (which always has a secret).

use std::sync::Arc;
use std::time::Duration;

use thywill_testkit::conformance::{self, Options, Spec};

use crate::Ports;

/// Two failed up-checks 200 ms apart (a dead port refuses at once), within timeout + interval
/// as for Redis, plus scheduling slack.
pub(crate) fn options() -> Options {
    Options::clustered(Duration::from_millis(700 + 250))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_conforms() -> anyhow::Result<()> {
    let ports = Arc::new(Ports::default());
    conformance::run(options(), |spec: Spec| {
        let ports = ports.clone();
        async move { crate::member(&ports, &spec, b"a shared secret of the cluster") }
    })
    .await
}
