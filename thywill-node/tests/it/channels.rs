//! Channels of sessions across members: persisted, current connections subscribed at once,
//! later ones (a reconnection, another tab, on any member) subscribed automatically.

use serde_json::json;

use crate::cluster::{Cluster, cmd, next, none_before_answer, session_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_session_is_resubscribed_to_its_channels() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta"]).await?;
    let (_, cookie) = c.session().await?;
    let (_, speaker_cookie) = c.session().await?;
    let mut speaker = c.connect(0, &speaker_cookie).await?;

    // The session joins "room" from a tab on alpha.
    let mut tab = c.connect(0, &cookie).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    let answer = cmd(&mut tab, json!({"op": "channels"})).await?;
    assert_eq!(answer["channels"], json!(["room"]));
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "one"}),
    )
    .await?;
    assert_eq!(next(&mut tab, |d| d["said"] == "one").await?["said"], "one");

    // The browser goes away and comes back, on the other member: subscribed again with no
    // command, before anything else happens.
    tab.close().await;
    let mut back = c.connect(1, &cookie).await?;
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "two"}),
    )
    .await?;
    assert_eq!(next(&mut back, |d| d["said"] == "two").await?["said"], "two");

    // A second tab of the session is in the room too.
    let mut second = c.connect(0, &cookie).await?;
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "three"}),
    )
    .await?;
    assert_eq!(
        next(&mut second, |d| d["said"] == "three").await?["said"],
        "three"
    );
    assert_eq!(next(&mut back, |d| d["said"] == "three").await?["said"], "three");

    // Removed from the channel: no tab hears it any more, and a new tab is not subscribed.
    cmd(&mut second, json!({"op": "remove", "channel": "room"})).await?;
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "four"}),
    )
    .await?;
    none_before_answer(&mut second, |d| d.get("said").is_some()).await?;
    let mut third = c.connect(1, &cookie).await?;
    cmd(
        &mut speaker,
        json!({"op": "say", "channel": "room", "text": "five"}),
    )
    .await?;
    // "four" and "five" were sent before this round trip through beta: none reached beta's tabs.
    cmd(
        &mut speaker,
        json!({"op": "tell", "session": session_of(&back), "text": "bound"}),
    )
    .await?;
    for tab in [&mut back, &mut third] {
        next(tab, |d| d["told"] == "bound").await?;
        none_before_answer(tab, |d| d["said"] == "four" || d["said"] == "five").await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_added_anywhere_subscribe_their_connections_everywhere() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta", "gamma"]).await?;
    let (s, cookie) = c.session().await?;
    let (_, other_cookie) = c.session().await?;
    let mut on_beta = c.connect(1, &cookie).await?;
    let mut on_gamma = c.connect(2, &cookie).await?;
    let mut other = c.connect(2, &other_cookie).await?;
    let mut admin = c.connect(0, &other_cookie).await?;

    // Added from alpha, where the session has no connection: its tabs on beta and gamma are
    // subscribed at once.
    cmd(
        &mut admin,
        json!({"op": "add_session", "channel": "room", "session": s.as_str()}),
    )
    .await?;
    cmd(&mut admin, json!({"op": "add", "channel": "room"})).await?;
    cmd(
        &mut other,
        json!({"op": "say", "channel": "room", "text": "hi", "others": true}),
    )
    .await?;
    for tab in [&mut on_beta, &mut on_gamma, &mut admin] {
        assert_eq!(next(tab, |d| d.get("said").is_some()).await?["said"], "hi");
    }
    // The sender was excluded.
    none_before_answer(&mut other, |d| d.get("said").is_some()).await?;

    // A message to the session reaches both of its tabs, from a member that holds neither.
    cmd(
        &mut admin,
        json!({"op": "tell", "session": s.as_str(), "text": "psst"}),
    )
    .await?;
    assert_eq!(
        next(&mut on_beta, |d| d.get("told").is_some()).await?["told"],
        "psst"
    );
    assert_eq!(
        next(&mut on_gamma, |d| d.get("told").is_some()).await?["told"],
        "psst"
    );

    // Clearing the channel unsubscribes everyone and says who was in it.
    let cleared = cmd(&mut on_beta, json!({"op": "clear", "channel": "room"})).await?;
    let mut who: Vec<String> = serde_json::from_value(cleared["cleared"].clone())?;
    who.sort();
    let mut expected = vec![s.to_string(), session_of(&admin)];
    expected.sort();
    assert_eq!(who, expected);
    // (Said from beta, which cleared: beta's tasks reach gamma in order.)
    cmd(
        &mut on_beta,
        json!({"op": "say", "channel": "room", "text": "gone"}),
    )
    .await?;
    none_before_answer(&mut on_beta, |d| d.get("said").is_some()).await?;
    cmd(
        &mut on_beta,
        json!({"op": "tell", "session": session_of(&other), "text": "bound"}),
    )
    .await?;
    next(&mut other, |d| d["told"] == "bound").await?;
    none_before_answer(&mut other, |d| d["said"] == "gone").await?;
    none_before_answer(&mut on_gamma, |d| d["said"] == "gone").await?;

    // Connection-level subscriptions work across members as well.
    cmd(&mut on_gamma, json!({"op": "join", "channel": "direct"})).await?;
    cmd(
        &mut admin,
        json!({"op": "say", "channel": "direct", "text": "direct"}),
    )
    .await?;
    assert_eq!(
        next(&mut on_gamma, |d| d.get("said").is_some()).await?["said"],
        "direct"
    );
    cmd(&mut on_gamma, json!({"op": "leave", "channel": "direct"})).await?;
    cmd(
        &mut on_gamma,
        json!({"op": "say", "channel": "direct", "text": "after"}),
    )
    .await?;
    none_before_answer(&mut on_gamma, |d| d.get("said").is_some()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_cannot_be_reached_does_not_keep_the_others_from_their_share() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta", "gamma"]).await?;
    let (s, cookie) = c.session().await?;
    let mut on_beta = c.connect(1, &cookie).await?;
    let mut on_gamma = c.connect(2, &cookie).await?;
    let (_, admin_cookie) = c.session().await?;
    let mut admin = c.connect(0, &admin_cookie).await?;
    // Alpha's tracker knows both tabs of the session.
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let answer = cmd(
            &mut admin,
            json!({"op": "connected", "session": s.as_str(), "connection": ""}),
        )
        .await?;
        if answer["connections"] == 2 {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "alpha never saw both tabs: {answer}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Alpha cannot reach beta (which comes first in member order); gamma still gets its share,
    // and the sender is told of the failure.
    c.hub.fail_sends("alpha", "beta", true);
    admin
        .ws
        .send(
            "rooms",
            json!({"op": "tell", "session": s.as_str(), "text": "psst"}),
        )
        .await?;
    let answer = next(&mut admin, |d| d["done"] == "tell").await?;
    assert!(answer.get("error").is_some(), "the failure is reported: {answer}");
    assert_eq!(
        next(&mut on_gamma, |d| d.get("told").is_some()).await?["told"],
        "psst"
    );
    c.hub.fail_sends("alpha", "beta", false);
    cmd(
        &mut admin,
        json!({"op": "tell", "session": s.as_str(), "text": "again"}),
    )
    .await?;
    assert_eq!(
        next(&mut on_beta, |d| d.get("told").is_some()).await?["told"],
        "again"
    );
    Ok(())
}
