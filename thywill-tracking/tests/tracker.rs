//! The cluster-wide tracker on its own, over an in-memory cluster of two members: no node, no
//! socket. Every wait is on an event the tracker reports, bounded.

use std::sync::Arc;

use thywill_core::{
    Client, ClientTracker, Cluster, ClusterEvents, ClusterTask, ConnectionId, DynCluster, Identity,
    MAX_TRACKED_USER_LEN, MemberId, SessionId, TrackerEvent, TrackerListener,
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

/// `client` of `user` (its session the user's, as with `session_from_identity`).
fn user_client(member: &str, connection: &str, user: &str) -> Client {
    Client::new(
        ConnectionId::from(connection),
        SessionId::of_user(user),
        MemberId::from(member),
    )
    .with_identity(Some(
        Identity::new(user).with_data(serde_json::json!({"kept": "locally"})),
    ))
}

#[tokio::test]
async fn the_user_of_a_connection_is_known_on_every_member() -> anyhow::Result<()> {
    let hub = Hub::new(["alpha", "beta"]);
    let mut alpha = Member::start(&hub, "alpha").await?;
    // Before beta is up: beta learns the user from alpha's table.
    alpha
        .tracker
        .connected(&user_client("alpha", "a1", "alice"))
        .await?;
    let too_long = "x".repeat(MAX_TRACKED_USER_LEN + 1);
    alpha
        .tracker
        .connected(&user_client("alpha", "a9", &too_long))
        .await?;
    let mut beta = Member::start(&hub, "beta").await?;
    let from_snapshot = beta
        .until("a1 from alpha's table", |e| match e {
            TrackerEvent::ConnectedTo { client, .. } if client.connection.as_str() == "a1" => {
                Some(client.clone())
            }
            _ => None,
        })
        .await?;
    // The user id travels, the identity's data does not.
    let alice = Some(Identity::new("alice"));
    assert_eq!(from_snapshot.identity, alice);
    assert_eq!(from_snapshot.session, SessionId::of_user("alice"));
    beta.until("alpha's table", |e| {
        matches!(e, TrackerEvent::SnapshotReceived { member, .. } if member.as_str() == "alpha").then_some(())
    })
    .await?;
    let on_beta = beta.tracker.client_of(&"a1".into()).await?;
    assert_eq!(on_beta, Some(from_snapshot.clone()));
    // A user over the bound is not carried: the connection is tracked without it.
    let long = beta
        .tracker
        .client_of(&"a9".into())
        .await?
        .ok_or_else(|| anyhow::anyhow!("a9 untracked"))?;
    assert_eq!((long.member.as_str(), long.identity), ("alpha", None));

    // Announced as it happens: a second tab of alice, on beta this time.
    beta.tracker
        .connected(&user_client("beta", "b1", "alice"))
        .await?;
    let b1 = alpha
        .until("b1's connection", |e| match e {
            TrackerEvent::ConnectedTo { client, .. } if client.connection.as_str() == "b1" => {
                Some(client.clone())
            }
            _ => None,
        })
        .await?;
    assert_eq!((b1.member.as_str(), b1.identity.clone()), ("beta", alice.clone()));
    // Every tab of the user, on both members, from either.
    for member in [&alpha, &beta] {
        let mut tabs = member
            .tracker
            .connections_of_session(&SessionId::of_user("alice"))
            .await?;
        tabs.sort();
        assert_eq!(
            tabs,
            vec![
                (ConnectionId::from("a1"), MemberId::from("alpha")),
                (ConnectionId::from("b1"), MemberId::from("beta"))
            ]
        );
    }

    // A disconnection reports the user it had.
    beta.tracker
        .disconnected(&user_client("beta", "b1", "alice"))
        .await?;
    let gone = alpha
        .until("b1's disconnection", |e| match e {
            TrackerEvent::DisconnectedFrom { client, .. } if client.connection.as_str() == "b1" => {
                Some(client.clone())
            }
            _ => None,
        })
        .await?;
    assert_eq!(gone.identity, alice);
    assert_eq!(alpha.tracker.client_of(&"b1".into()).await?, None);

    // A member going down: its purged entries keep their users.
    hub.kill("alpha");
    tokio::time::timeout(thywill_testkit::TIMEOUT, beta.downs.recv()).await?;
    let purged = beta.tracker.purge_member(&MemberId::from("alpha")).await?;
    let purged_a1 = purged.client(&MemberId::from("alpha"), &"a1".into());
    assert_eq!(purged_a1.and_then(|c| c.identity), alice);
    Ok(())
}
