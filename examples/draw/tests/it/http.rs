//! Three members over HTTP: cross-member strokes, a killed member reported down (to its
//! designated handler too) and up again.

use anyhow::ensure;

use crate::{all_up, connect, kill_and_detect, restart_and_detect, stroke_reaches};

/// Three members over HTTP, up.
async fn cluster() -> anyhow::Result<Vec<crate::Member>> {
    let ids = ["alpha", "beta", "gamma"];
    let web: Vec<u16> = ids.iter().map(|_| thywill_testkit::free_port()).collect();
    let cluster: Vec<u16> = ids.iter().map(|_| thywill_testkit::free_port()).collect();
    let list: Vec<String> = ids
        .iter()
        .zip(&cluster)
        .map(|(id, p)| format!("{id}=127.0.0.1:{p}"))
        .collect();
    let mut members = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let args = vec![
            "--cluster".to_owned(),
            "http".to_owned(),
            "--cluster-members".to_owned(),
            list.join(","),
            "--cluster-secret".to_owned(),
            "a test secret, long enough".to_owned(),
        ];
        members.push(crate::start_member(id, web[i], &args).await?);
    }
    all_up(&mut members).await?;
    Ok(members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strokes_reach_only_members_with_pages() -> anyhow::Result<()> {
    let members = cluster().await?;
    crate::strokes_skip_members_without_pages(&members).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_fail_and_return() -> anyhow::Result<()> {
    let mut members = cluster().await?;
    let mut on_alpha = connect(&members[0].ws(crate::BASE)).await?;
    let mut on_gamma = connect(&members[2].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_gamma, 1).await?;

    kill_and_detect(&mut members, 1, "gamma").await?;
    restart_and_detect(&mut members, 1).await?;
    kill_and_detect(&mut members, 2, "alpha").await?;
    restart_and_detect(&mut members, 2).await?;
    let mut on_gamma = connect(&members[2].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_gamma, 100).await?;
    for m in &mut members {
        ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}
