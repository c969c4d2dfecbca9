//! The cluster-wide tracker on its own, over an in-memory cluster of two members: no node, no
//! socket. Every wait is on an event the tracker reports, bounded.

use std::sync::Arc;

use thywill_core::{
    Client, ClientTracker, Cluster, ClusterEvents, ClusterTask, ConnectionId, DynCluster, MemberId,
    SessionId, TrackerEvent, TrackerListener,
};
use thywill_testkit::hub::Hub;
use thywill_tracking::{ClusterTracker, tracked};
use tokio::sync::mpsc;

/// The node's side of the cluster's events: only members going down are noted (the tracker
/// has purged them by then).
struct Downs(mpsc::Sender<MemberId>);

impl ClusterEvents for Downs {
    fn task(&self, _from: MemberId, _task: ClusterTask) {}
    fn member_up(&self, _member: MemberId) {}
    fn member_down(&self, member: MemberId, _designated: bool) {
        let _ = self.0.try_send(member);
    }
}

/// Passes the tracker's events to the test (bounded; a test never has that many).
struct Events(mpsc::Sender<TrackerEvent>);

impl TrackerListener for Events {
    fn tracker_event(&self, event: TrackerEvent) {
        let _ = self.0.try_send(event);
    }
}

/// A started member: its tracker and the events it reports.
struct Member {
    tracker: ClusterTracker,
    events: mpsc::Receiver<TrackerEvent>,
    downs: mpsc::Receiver<MemberId>,
    _cluster: Arc<dyn DynCluster>,
}

impl Member {
    async fn start(hub: &Hub, id: &str) -> anyhow::Result<Self> {
        let (cluster, tracker) = tracked(hub.member(id));
        let (tx, events) = mpsc::channel(1024);
        tracker.set_listener(Arc::new(Events(tx)));
        let (down, downs) = mpsc::channel(16);
        Cluster::start(&cluster, Arc::new(Downs(down))).await?;
        Ok(Self {
            tracker,
            events,
            downs,
            _cluster: Arc::new(cluster),
        })
    }

    /// The next event that `pick` accepts (others are skipped), within the test timeout.
    async fn until<T>(&mut self, what: &str, pick: impl Fn(&TrackerEvent) -> Option<T>) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
                .ok_or_else(|| anyhow::anyhow!("the tracker's events ended before {what}"))?;
            if let Some(found) = pick(&event) {
                return Ok(found);
            }
        }
    }
}

fn client(member: &str, connection: &str, session: &str) -> Client {
    Client {
        connection: ConnectionId::from(connection),
        session: SessionId::from(session),
        member: MemberId::from(member),
        identity: None,
    }
}

#[tokio::test]
async fn members_learn_each_others_clients_and_forget_a_member_that_goes_down() -> anyhow::Result<()> {
    let hub = Hub::new(["alpha", "beta"]);
    let alpha_id = MemberId::from("alpha");
    let mut alpha = Member::start(&hub, "alpha").await?;
    // Connected before beta is up: beta learns it from alpha's table when it comes up.
    alpha.tracker.connected(&client("alpha", "a1", "s1")).await?;
    let mut beta = Member::start(&hub, "beta").await?;
    beta.until("alpha's table", |e| match e {
        TrackerEvent::SnapshotReceived { member, connections } if member.as_str() == "alpha" => {
            Some(*connections)
        }
        _ => None,
    })
    .await
    .and_then(|n| {
        anyhow::ensure!(n == 1, "alpha's table has {n} connections, not 1");
        Ok(())
    })?;
    assert_eq!(
        beta.tracker.member_of(&"a1".into()).await?,
        Some(alpha_id.clone())
    );

    // Announced as it happens, with its session.
    alpha.tracker.connected(&client("alpha", "a2", "s2")).await?;
    let connected = beta
        .until("a2's connection", |e| match e {
            TrackerEvent::ConnectedTo { client, .. } if client.connection.as_str() == "a2" => {
                Some(client.clone())
            }
            _ => None,
        })
        .await?;
    assert_eq!(connected, client("alpha", "a2", "s2"));
    beta.tracker.connected(&client("beta", "b1", "s2")).await?;
    let mut of_s2 = beta.tracker.connections_of_session(&"s2".into()).await?;
    of_s2.sort();
    assert_eq!(
        of_s2,
        vec![
            (ConnectionId::from("a2"), alpha_id.clone()),
            (ConnectionId::from("b1"), MemberId::from("beta"))
        ]
    );
    alpha
        .until("b1's connection", |e| {
            matches!(e, TrackerEvent::ConnectedTo { client, .. } if client.connection.as_str() == "b1")
                .then_some(())
        })
        .await?;

    alpha.tracker.disconnected(&client("alpha", "a1", "s1")).await?;
    beta.until("a1's disconnection", |e| {
        matches!(e, TrackerEvent::DisconnectedFrom { client, .. } if client.connection.as_str() == "a1")
            .then_some(())
    })
    .await?;
    assert_eq!(beta.tracker.member_of(&"a1".into()).await?, None);

    // Alpha goes down: its entries leave beta's table at once, and the node takes them.
    hub.kill("alpha");
    let down = tokio::time::timeout(thywill_testkit::TIMEOUT, beta.downs.recv()).await?;
    assert_eq!(down, Some(alpha_id.clone()));
    assert_eq!(beta.tracker.member_of(&"a2".into()).await?, None);
    let purged = beta.tracker.purge_member(&alpha_id).await?;
    assert_eq!(
        purged.connections.keys().cloned().collect::<Vec<_>>(),
        vec![ConnectionId::from("a2")]
    );
    assert_eq!(
        beta.tracker.connections_of_session(&"s2".into()).await?,
        vec![(ConnectionId::from("b1"), MemberId::from("beta"))]
    );
    Ok(())
}
