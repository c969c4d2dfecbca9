//! Presence and the cluster-wide tracker across members: join and leave messages, queries, the
//! applications' hooks, and no ghost once a member is down.

use serde_json::{Value, json};

use crate::cluster::{Cluster, cmd, next};

fn presence<'a>(kind: &'a str, session: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |d: &Value| d["presence"] == kind && d["session"] == session
}

fn sorted(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = serde_json::from_value(v.clone()).unwrap_or_default();
    s.sort();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_cluster_wide_and_a_crashed_members_sessions_leave() -> anyhow::Result<()> {
    let c = Cluster::start(&["alpha", "beta", "gamma"]).await?;
    let (a, a_cookie) = c.session().await?;
    let (b, b_cookie) = c.session().await?;
    let (g, g_cookie) = c.session().await?;
    let (a, b, g) = (a.to_string(), b.to_string(), g.to_string());

    let mut on_alpha = c.connect(0, &a_cookie).await?;
    cmd(&mut on_alpha, json!({"op": "join", "channel": "p:room"})).await?;
    let state = next(&mut on_alpha, |d| d["presence"] == "state").await?;
    assert_eq!(
        state,
        json!({"presence": "state", "channel": "p:room", "sessions": [a]})
    );

    let mut on_beta = c.connect(1, &b_cookie).await?;
    cmd(&mut on_beta, json!({"op": "join", "channel": "p:room"})).await?;
    let state = next(&mut on_beta, |d| d["presence"] == "state").await?;
    assert_eq!(sorted(&state["sessions"]), sorted(&json!([a, b])));
    next(&mut on_alpha, presence("join", &b)).await?;

    // b also has a tab on gamma, and g is only on gamma.
    let mut b_on_gamma = c.connect(2, &b_cookie).await?;
    cmd(&mut b_on_gamma, json!({"op": "join", "channel": "p:room"})).await?;
    let mut g_on_gamma = c.connect(2, &g_cookie).await?;
    cmd(&mut g_on_gamma, json!({"op": "join", "channel": "p:room"})).await?;
    next(&mut on_alpha, presence("join", &g)).await?;
    next(&mut on_beta, presence("join", &g)).await?;
    for m in [&mut on_alpha, &mut on_beta] {
        let p = cmd(m, json!({"op": "presence", "channel": "p:room"})).await?;
        assert_eq!(sorted(&p["present"]), sorted(&json!([a, b, g])));
    }
    // An untracked channel has no presence messages and no presence.
    cmd(&mut on_alpha, json!({"op": "join", "channel": "quiet"})).await?;
    let p = cmd(&mut on_alpha, json!({"op": "presence", "channel": "quiet"})).await?;
    assert_eq!(p["present"], json!([]));

    // Everyone knows every connection.
    let table = cmd(&mut on_alpha, json!({"op": "table"})).await?;
    assert_eq!(
        table["table"]["gamma"].as_array().map(Vec::len),
        Some(2),
        "{table}"
    );

    // gamma crashes: g leaves (b stays: it is still on beta); nothing of gamma remains.
    c.kill(2);
    for m in [&mut on_alpha, &mut on_beta] {
        let first = next(m, |d| d["presence"] == "leave").await?;
        assert_eq!(first["session"], g.as_str(), "only g leaves: {first}");
        let p = cmd(m, json!({"op": "presence", "channel": "p:room"})).await?;
        assert_eq!(sorted(&p["present"]), sorted(&json!([a, b])));
        let table = cmd(m, json!({"op": "table"})).await?;
        assert!(table["table"].get("gamma").is_none(), "ghosts: {table}");
        let q = json!({"op": "connected", "session": g, "connection": g_on_gamma.connection()});
        let answer = cmd(m, q).await?;
        assert_eq!(
            (answer["session"].clone(), answer["member"].clone()),
            (json!(false), Value::Null)
        );
    }
    // alpha, next after gamma in ring order, is its designated handler; everyone saw it down.
    c.logged(&["alpha: member_down gamma", "connections=2", "sessions=2"])
        .await?;
    c.logged(&["alpha: status gamma Down"]).await?;
    c.logged(&["beta: status gamma Down"]).await?;
    assert!(
        !c.lines().iter().any(|l| l.starts_with("beta: member_down")),
        "only the designated handler handles the failure"
    );

    // b's last tab goes: b leaves.
    on_beta.close().await;
    next(&mut on_alpha, presence("leave", &b)).await?;
    let p = cmd(&mut on_alpha, json!({"op": "presence", "channel": "p:room"})).await?;
    assert_eq!(p["present"], json!([a]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_clients_reach_every_members_hooks_and_a_restarted_member_learns_the_table()
-> anyhow::Result<()> {
    let mut c = Cluster::start(&["alpha", "beta", "gamma"]).await?;
    let (s, cookie) = c.session().await?;
    let client = c.connect(1, &cookie).await?;
    let conn = client.connection();
    c.logged(&["alpha: connection_to beta", &conn]).await?;
    c.logged(&["gamma: connection_to beta", &conn]).await?;
    assert!(
        !c.lines().iter().any(|l| l.starts_with("beta: connection_to")),
        "local clients are not remote"
    );

    // Queries from another member see it.
    let (_, other) = c.session().await?;
    let mut asker = c.connect(0, &other).await?;
    let answer = cmd(
        &mut asker,
        json!({"op": "connected", "session": s.as_str(), "connection": conn}),
    )
    .await?;
    assert_eq!(
        (
            answer["session"].clone(),
            answer["connections"].clone(),
            answer["member"].clone()
        ),
        (json!(true), json!(1), json!("beta"))
    );

    // gamma crashes and a new gamma starts: it asks for the others' tables.
    c.kill(2);
    c.logged(&["alpha: member_down gamma", "connections=0"]).await?;
    let gamma = c.start_member("gamma").await?;
    c.members[2] = gamma;
    let (_, third) = c.session().await?;
    let mut on_gamma = c.connect(2, &third).await?;
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let table = cmd(&mut on_gamma, json!({"op": "table"})).await?;
        let on_beta: Vec<String> = serde_json::from_value(table["table"]["beta"].clone()).unwrap_or_default();
        let on_alpha: Vec<String> =
            serde_json::from_value(table["table"]["alpha"].clone()).unwrap_or_default();
        if on_beta == [conn.clone()] && on_alpha == [asker.connection()] {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "gamma's table: {table}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // A disconnection reaches everyone's hooks.
    client.close().await;
    c.logged(&["alpha: disconnection_from beta", &conn]).await?;
    c.logged(&["gamma: disconnection_from beta", &conn]).await?;
    Ok(())
}
