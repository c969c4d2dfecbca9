//! Interest routing over the in-memory hub: a member receives a channel's traffic only while
//! one of its connections is subscribed; a subscription asked of another member is in place
//! for what that member sends next; interest is withdrawn after the last subscriber left.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use thywill_core::{ChannelId, DynHistory, LocalHistory, MemberId, Topic};

use crate::cluster::{Cluster, Tab, cmd, next, none_before_answer, session_of};
use crate::replay::SharedMemory;

/// Members sharing one in-memory history (as with Redis), withdrawing interest 200 ms after a
/// channel's last local subscriber left.
async fn cluster(ids: &[&str]) -> anyhow::Result<Cluster> {
    let shared = Arc::new(LocalHistory::default());
    Cluster::start_with(
        ids,
        Arc::new(move || Arc::new(SharedMemory(shared.clone())) as Arc<dyn DynHistory>),
        Duration::from_millis(200),
    )
    .await
}

/// Tasks sent to a topic that `member` received so far.
fn topic_tasks(c: &Cluster, member: &str) -> u64 {
    c.hub.received(&MemberId::from(member)).1
}

/// Waits until `member`'s interest is `topics`.
async fn interest_becomes(c: &Cluster, member: &str, topics: &[Topic]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let now = c.hub.interest_of(&MemberId::from(member));
        if now == topics {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{member}'s interest is {now:?}, not {topics:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `said` texts of `t`'s messages until a command round trip completes, in order.
async fn said_until_answer(t: &mut Tab, expected: usize) -> anyhow::Result<Vec<String>> {
    let mut got = Vec::new();
    for _ in 0..expected {
        let d = next(t, |d| d.get("said").is_some()).await?;
        got.push(d["said"].as_str().unwrap_or_default().to_owned());
    }
    // Nothing else (no second copy) before a round trip through the sender's member.
    none_before_answer(t, |d| d.get("said").is_some()).await?;
    Ok(got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_receives_a_channels_traffic_only_while_a_connection_subscribes() -> anyhow::Result<()> {
    let c = cluster(&["alpha", "beta", "gamma"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut listener = c.connect(0, &cookie).await?;
    let mut idle = c.connect(2, &cookie).await?;
    let mut speaker = c.connect(1, &speaker_cookie).await?;
    let room = Topic::channel(&ChannelId::from("room"));

    // The subscription call returns once alpha's interest is declared.
    cmd(&mut listener, json!({"op": "join", "channel": "room"})).await?;
    assert_eq!(c.hub.interest_of(&"alpha".into()), vec![room.clone()]);
    assert!(c.hub.interest_of(&"gamma".into()).is_empty());
    for i in 0..20 {
        cmd(
            &mut speaker,
            json!({"op": "say", "channel": "room", "text": i.to_string()}),
        )
        .await?;
    }
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(
        said_until_answer(&mut listener, 20).await?,
        expected,
        "each once, in order"
    );
    assert_eq!(topic_tasks(&c, "alpha"), 20);
    assert_eq!(
        topic_tasks(&c, "gamma"),
        0,
        "gamma has no subscriber: none of the traffic"
    );
    none_before_answer(&mut idle, |d| d.get("said").is_some()).await?;

    // The last subscriber leaves: after the linger, alpha takes no more of the channel.
    cmd(&mut listener, json!({"op": "leave", "channel": "room"})).await?;
    interest_becomes(&c, "alpha", &[]).await?;
    for i in 20..25 {
        cmd(
            &mut speaker,
            json!({"op": "say", "channel": "room", "text": i.to_string()}),
        )
        .await?;
    }
    none_before_answer(&mut listener, |d| d.get("said").is_some()).await?;
    assert_eq!(topic_tasks(&c, "alpha"), 20);

    // Back in the channel: declared again, and the traffic follows.
    cmd(&mut listener, json!({"op": "join", "channel": "room"})).await?;
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "again"}),
    )
    .await?;
    assert_eq!(said_until_answer(&mut listener, 1).await?, vec!["again"]);
    assert_eq!(topic_tasks(&c, "gamma"), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_subscribed_from_another_member_gets_what_that_member_sends_next() -> anyhow::Result<()> {
    let c = cluster(&["alpha", "beta"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, admin_cookie) = c.session().await?;
    let mut tab = c.connect(0, &cookie).await?;
    let session = session_of(&tab);
    let mut admin = c.connect(1, &admin_cookie).await?;

    // Beta adds the session (whose only tab is on alpha) to a channel and says something there
    // in the same hook, before alpha can have declared its interest: the message arrives.
    let rooms = 10;
    for r in 0..rooms {
        cmd(
            &mut admin,
            json!({"op": "add_and_say", "channel": format!("room{r}"), "session": session, "text": format!("hello {r}")}),
        )
        .await?;
    }
    let mut got = said_until_answer(&mut tab, rooms).await?;
    got.sort();
    let mut expected: Vec<String> = (0..rooms).map(|r| format!("hello {r}")).collect();
    expected.sort();
    assert_eq!(got, expected);

    // Within the grace, beta sends both by the topic (alpha is interested now) and directly:
    // alpha's tab still gets each message once.
    let topics: Vec<Topic> = {
        let mut t: Vec<Topic> = (0..rooms)
            .map(|r| Topic::channel(&ChannelId::from(format!("room{r}"))))
            .collect();
        t.sort();
        t
    };
    interest_becomes(&c, "alpha", &topics).await?;
    for r in 0..rooms {
        cmd(
            &mut admin,
            json!({"op": "say", "channel": format!("room{r}"), "text": format!("again {r}")}),
        )
        .await?;
    }
    let mut got = said_until_answer(&mut tab, rooms).await?;
    got.sort();
    let mut expected: Vec<String> = (0..rooms).map(|r| format!("again {r}")).collect();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_traffic_goes_only_to_the_members_holding_it() -> anyhow::Result<()> {
    let c = cluster(&["alpha", "beta", "gamma"]).await?;
    let (s, cookie) = c.session().await?;
    let (_, admin_cookie) = c.session().await?;
    let mut tab = c.connect(0, &cookie).await?;
    let mut admin = c.connect(1, &admin_cookie).await?;
    // Gamma's own connection, so that it is a live member with a tab.
    let (_, gamma_cookie) = c.session().await?;
    let _idle = c.connect(2, &gamma_cookie).await?;
    // Let the tracker announcements of the connections settle.
    cmd(
        &mut admin,
        json!({"op": "tell", "session": s.as_str(), "text": "warm"}),
    )
    .await?;
    next(&mut tab, |d| d["told"] == "warm").await?;
    let gamma_before = c.hub.received(&"gamma".into()).0;
    for i in 0..20 {
        cmd(
            &mut admin,
            json!({"op": "tell", "session": s.as_str(), "text": i.to_string()}),
        )
        .await?;
    }
    for i in 0..20 {
        let text = i.to_string();
        next(&mut tab, |d| d["told"] == text.as_str()).await?;
    }
    assert_eq!(
        c.hub.received(&"gamma".into()).0,
        gamma_before,
        "gamma holds no connection of the session"
    );
    Ok(())
}
