//! Interest routing between HTTP members: announced interest, tasks of a topic posted only to
//! the members interested in it.

use std::sync::Arc;

use thywill_testkit::conformance::{self, Spec};

use crate::Ports;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_receives_only_the_topics_it_is_interested_in() -> anyhow::Result<()> {
    let ports = Arc::new(Ports::default());
    conformance::interest_routing(&crate::conformance::options(), &|spec: Spec| {
        let ports = ports.clone();
        async move { crate::member(&ports, &spec, b"a shared secret of the cluster") }
    })
    .await
}
