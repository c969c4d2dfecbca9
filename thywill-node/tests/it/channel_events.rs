//! Channel membership events: `sessions_added` / `sessions_removed` run on every member, the
//! one that made the change included, with the sessions whose membership changed.

use serde_json::json;

use crate::cluster::{Cluster, cmd};

const MEMBERS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Waits until every member logged `line` (after its `"<member>: "`).
async fn on_every_member(c: &Cluster, line: &str) -> anyhow::Result<()> {
    for m in MEMBERS {
        c.logged(&[&format!("{m}: {line}")]).await?;
    }
    Ok(())
}

/// How many lines of the log contain `part`.
fn count(c: &Cluster, part: &str) -> usize {
    c.lines().iter().filter(|l| l.contains(part)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_member_hears_of_sessions_added_and_removed_anywhere() -> anyhow::Result<()> {
    let c = Cluster::start(&MEMBERS).await?;
    let (s1, cookie) = c.session().await?;
    let (s2, _) = c.session().await?;
    let (s3, _) = c.session().await?;
    let mut on_alpha = c.connect(0, &cookie).await?;
    let mut on_beta = c.connect(1, &cookie).await?;
    let mut on_gamma = c.connect(2, &cookie).await?;

    // Added on alpha: alpha itself, beta and gamma run the hook, with both sessions.
    cmd(
        &mut on_alpha,
        json!({"op": "add_many", "channel": "room", "sessions": [s1.as_str(), s2.as_str()]}),
    )
    .await?;
    on_every_member(&c, &format!("sessions_added room {s1},{s2}")).await?;

    // Added again with a new one, on alpha: only the new session is reported. (Then s3 on its
    // own from alpha: alpha's tasks reach each member in order, so once that is logged
    // everywhere, anything the first change caused is logged too.)
    cmd(
        &mut on_alpha,
        json!({"op": "add_many", "channel": "room", "sessions": [s1.as_str(), s2.as_str()]}),
    )
    .await?;
    cmd(
        &mut on_alpha,
        json!({"op": "add_many", "channel": "room", "sessions": [s3.as_str(), s1.as_str()]}),
    )
    .await?;
    on_every_member(&c, &format!("sessions_added room {s3}")).await?;
    assert_eq!(count(&c, "sessions_added"), 6, "{:#?}", c.lines());

    // Removed on beta, with a session that is not in the channel: every member hears of s2.
    cmd(
        &mut on_beta,
        json!({"op": "remove_many", "channel": "room", "sessions": [s2.as_str(), "never-added"]}),
    )
    .await?;
    on_every_member(&c, &format!("sessions_removed room {s2}")).await?;

    // Cleared on gamma: every member hears of the sessions that were left.
    let cleared = cmd(&mut on_gamma, json!({"op": "clear", "channel": "room"})).await?;
    let mut left: Vec<String> = serde_json::from_value(cleared["cleared"].clone())?;
    left.sort();
    let mut expected = vec![s1.to_string(), s3.to_string()];
    expected.sort();
    assert_eq!(left, expected);
    on_every_member(&c, &format!("sessions_removed room {}", left.join(","))).await?;

    // Clearing an empty channel and removing absent sessions change nothing: no hook. (Then
    // a change from each of those members, which is logged everywhere after them.)
    cmd(&mut on_gamma, json!({"op": "clear", "channel": "room"})).await?;
    cmd(
        &mut on_beta,
        json!({"op": "remove_many", "channel": "room", "sessions": [s1.as_str()]}),
    )
    .await?;
    cmd(
        &mut on_gamma,
        json!({"op": "add_many", "channel": "hall", "sessions": [s1.as_str()]}),
    )
    .await?;
    cmd(
        &mut on_beta,
        json!({"op": "add_many", "channel": "yard", "sessions": [s1.as_str()]}),
    )
    .await?;
    on_every_member(&c, &format!("sessions_added hall {s1}")).await?;
    on_every_member(&c, &format!("sessions_added yard {s1}")).await?;
    assert_eq!(count(&c, "sessions_removed"), 6, "{:#?}", c.lines());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_member_hears_of_its_own_changes() -> anyhow::Result<()> {
    let c = Cluster::start(&["solo"]).await?;
    let (s, cookie) = c.session().await?;
    let mut tab = c.connect(0, &cookie).await?;
    cmd(&mut tab, json!({"op": "add", "channel": "room"})).await?;
    c.logged(&[&format!("solo: sessions_added room {s}")]).await?;
    cmd(&mut tab, json!({"op": "remove", "channel": "room"})).await?;
    c.logged(&[&format!("solo: sessions_removed room {s}")]).await?;
    Ok(())
}
