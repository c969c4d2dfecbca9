//! Three members over a real Redis: cross-member strokes, a killed member reported down (to
//! its designated handler too) and up again, and a Redis restart survived: what was not
//! delivered live is reported lost or replayed from the channel's history.

use std::time::Duration;

use anyhow::ensure;
use serde_json::json;
use thywill::protocol::ServerFrame;
use thywill_testkit::redis::RedisServer;

use crate::{
    Member, all_up, connect, is, kill_and_detect, next_stroke, restart_and_detect, stroke, stroke_reaches,
};

async fn cluster(redis: &RedisServer) -> anyhow::Result<Vec<Member>> {
    let args: Vec<String> = [
        "--cluster",
        "redis",
        "--redis-url",
        &redis.url(),
        "--cluster-members",
        "alpha,beta,gamma",
        "--redis-prefix",
        "test:draw:",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut members = Vec::new();
    for id in ["alpha", "beta", "gamma"] {
        members.push(crate::start_member(id, thywill_testkit::free_port(), &args).await?);
    }
    all_up(&mut members).await?;
    Ok(members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strokes_reach_only_members_with_pages() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let members = cluster(&redis).await?;
    crate::strokes_skip_members_without_pages(&members).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_fail_and_return() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let mut members = cluster(&redis).await?;
    let mut on_alpha = connect(&members[0].ws(crate::BASE)).await?;
    let mut on_beta = connect(&members[1].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_beta, 1).await?;

    // gamma dies: alpha (next in ring order after gamma) is its designated handler.
    kill_and_detect(&mut members, 2, "alpha").await?;
    restart_and_detect(&mut members, 2).await?;
    // beta dies: gamma is its designated handler.
    kill_and_detect(&mut members, 1, "gamma").await?;
    restart_and_detect(&mut members, 1).await?;
    let mut on_beta = connect(&members[1].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_beta, 100).await?;
    for m in &mut members {
        ensure!(m.proc.is_running(), "{} exited", m.id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_the_gap_reported() -> anyhow::Result<()> {
    let mut redis = RedisServer::start().await?;
    let mut members = cluster(&redis).await?;
    let mut on_alpha = connect(&members[0].ws(crate::BASE)).await?;
    let mut on_beta = connect(&members[1].ws(crate::BASE)).await?;
    stroke_reaches(&mut on_alpha, &mut on_beta, 1).await?;
    let cursors: Vec<usize> = members.iter().map(Member::cursor).collect();

    redis.stop();
    for (m, c) in members.iter_mut().zip(&cursors) {
        m.wait_event(*c, thywill_testkit::TIMEOUT, |v| {
            v["event"] == "health" && v["healthy"] == false
        })
        .await?;
    }
    // Strokes drawn during the outage.
    const DURING: u64 = 10;
    for id in 1000..1000 + DURING {
        on_alpha
            .send("draw", stroke(id))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // The outage outlasts the Redis command timeout (2 s). This is the scenario's length, not
    // a wait for something to happen.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    redis.restart().await?;
    for (m, c) in members.iter_mut().zip(&cursors) {
        m.wait_event(*c, thywill_testkit::TIMEOUT, |v| {
            v["event"] == "health" && v["healthy"] == true
        })
        .await?;
    }
    on_alpha
        .send("draw", stroke(2000))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut received: u64 = 0;
    // The channel's stream as beta's client saw it: its name and epoch, from the last stroke.
    let mut position: Option<(String, String)> = None;
    loop {
        let frame = on_beta.recv_within(thywill_testkit::TIMEOUT).await?;
        let ServerFrame::Msg {
            app,
            data,
            stream,
            epoch,
            ..
        } = frame
        else {
            continue;
        };
        if app.as_str() != "draw" {
            continue;
        }
        if let (Some(stream), Some(epoch)) = (stream, epoch) {
            position = Some((stream, epoch));
        }
        match data["id"].as_u64() {
            Some(2000) => break,
            Some(id) if (1000..1000 + DURING).contains(&id) => received += 1,
            _ => {}
        }
    }
    // What did not arrive live is in the channel's shared history (the strokes were logged
    // once Redis was back): a client that sees the hole in the stream's offsets asks for it,
    // as thywill.js does. Published while beta's subscriber was re-subscribing after the
    // restart, a stroke reaches no member live, and no member can count it lost.
    let mut replayed: u64 = 0;
    if received < DURING {
        let (stream, epoch) = position.ok_or_else(|| anyhow::anyhow!("strokes without a stream position"))?;
        on_beta
            .send_text(json!({"t": "resume", "streams": {stream: {"epoch": epoch, "off": 0}}}).to_string())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        loop {
            let s = next_stroke(&mut on_beta, thywill_testkit::TIMEOUT).await?;
            match s["id"].as_u64() {
                Some(2000) => break,
                Some(id) if (1000..1000 + DURING).contains(&id) => replayed += 1,
                _ => {}
            }
        }
        ensure!(
            received + replayed >= DURING,
            "{received} strokes received live and {replayed} replayed of {DURING} logged"
        );
    }
    // Whatever did not arrive must be reported lost (a publication that timed out may still
    // go out after the reconnection and arrive: then there is nothing to report), unless the
    // client recovered it from the history.
    let beta = &mut members[1];
    let mut reported: u64;
    let deadline = tokio::time::Instant::now() + thywill_testkit::TIMEOUT;
    loop {
        let cursor = beta.cursor();
        reported = beta
            .events(|v| is(v, "gap", "alpha"))
            .iter()
            .filter_map(|v| v["missing"].as_u64())
            .sum();
        if received + replayed + reported >= DURING {
            break;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        ensure!(
            !left.is_zero(),
            "{received} received + {replayed} replayed + {reported} reported lost < {DURING} sent"
        );
        let _ = beta.wait_event(cursor, left, |v| is(v, "gap", "alpha")).await;
    }
    eprintln!(
        "redis restart: {received} of {DURING} strokes arrived live, {replayed} replayed, {reported} messages reported lost"
    );
    for m in &mut members {
        ensure!(m.proc.is_running(), "{} exited", m.id);
        let downs = m.events(|v| v["event"] == "member_down");
        ensure!(
            downs.is_empty(),
            "{}: members declared down during the Redis restart: {downs:?}",
            m.id
        );
    }
    Ok(())
}
