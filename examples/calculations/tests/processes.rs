//! Memoized results across real member processes over a real Redis: with the default caches
//! (each member its own copies), a result stored on one member evicts that key on the other;
//! with `[cache] backend = "redis"`, every member reads one copy. Checked through what a client
//! sees (`memo.isCached`).

use std::time::Duration;

use anyhow::{bail, ensure};
use serde_json::{Value, json};
use thywill::protocol::ServerFrame;
use thywill_testkit::members::{Member, all_up};
use thywill_testkit::redis::RedisServer;
use thywill_testkit::{TIMEOUT, WsClient, free_port};

const CALCULATIONS: &str = env!("CARGO_BIN_EXE_example-calculations");

/// A client calling the example's functions.
struct Caller {
    ws: WsClient,
    next: u64,
}

impl Caller {
    async fn connect(member: &Member) -> anyhow::Result<Caller> {
        Ok(Caller {
            ws: WsClient::connect(&member.ws("/calculations")).await?,
            next: 0,
        })
    }

    async fn call(&mut self, name: &str, args: Value) -> anyhow::Result<Value> {
        self.next += 1;
        let id = self.next;
        self.ws.rpc(example_calculations::APP_ID, id, name, args).await?;
        loop {
            match self.ws.recv().await? {
                ServerFrame::RpcOk { id: got, result, .. } if got == id => return Ok(result),
                ServerFrame::RpcErr { id: got, code, .. } if got == id => bail!("{name}: {code:?}"),
                _ => {}
            }
        }
    }

    async fn cached(&mut self, function: &str, x: f64) -> anyhow::Result<bool> {
        match self.call("memo.isCached", json!([function, x])).await? {
            Value::Bool(b) => Ok(b),
            other => bail!("memo.isCached answered {other}"),
        }
    }
}

/// Two members over the Redis cluster backend, up to each other, with `extra` arguments.
async fn members(redis: &RedisServer, prefix: &str, extra: &[String]) -> anyhow::Result<Vec<Member>> {
    let mut args: Vec<String> = [
        "--cluster",
        "redis",
        "--redis-url",
        &redis.url(),
        "--cluster-members",
        "alpha,beta",
        "--redis-prefix",
        prefix,
        "--heartbeat-interval",
        "100",
        "--heartbeat-timeout",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().cloned());
    let mut members = vec![
        Member::start(CALCULATIONS, "alpha", free_port(), &args).await?,
        Member::start(CALCULATIONS, "beta", free_port(), &args).await?,
    ];
    all_up(&mut members).await?;
    Ok(members)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_stored_on_one_member_is_evicted_on_the_other() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let members = members(&redis, "test:calculations:", &[]).await?;
    let mut on_alpha = Caller::connect(&members[0]).await?;
    let mut on_beta = Caller::connect(&members[1]).await?;

    ensure!(!on_alpha.cached("powers.squareRoot", 16.0).await?);
    ensure!(on_alpha.call("powers.squareRoot", json!([16])).await? == json!(4.0));
    ensure!(on_alpha.call("multiplicative.divideByTwo", json!([10])).await? == json!(5.0));
    ensure!(
        on_alpha.cached("powers.squareRoot", 16.0).await?,
        "memoized on alpha"
    );
    ensure!(
        !on_beta.cached("powers.squareRoot", 16.0).await?,
        "each member holds its own copies"
    );

    // Beta stores the same key: alpha's copy goes, and only that key.
    ensure!(on_beta.call("powers.squareRoot", json!([16])).await? == json!(4.0));
    ensure!(
        on_beta.cached("powers.squareRoot", 16.0).await?,
        "memoized on beta"
    );
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while on_alpha.cached("powers.squareRoot", 16.0).await? {
        if tokio::time::Instant::now() >= deadline {
            bail!("alpha still holds squareRoot(16) {TIMEOUT:?} after beta stored it");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(
        on_alpha.cached("multiplicative.divideByTwo", 10.0).await?,
        "a key beta did not touch stays memoized on alpha"
    );
    // And alpha computes it again.
    ensure!(on_alpha.call("powers.squareRoot", json!([16])).await? == json!(4.0));
    ensure!(on_alpha.cached("powers.squareRoot", 16.0).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_caches_every_member_reads_one_copy() -> anyhow::Result<()> {
    let redis = RedisServer::start().await?;
    let dir = std::env::temp_dir().join(format!("thywill-calculations-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("member.toml");
    std::fs::write(
        &config,
        format!(
            "[cache]\nbackend = \"redis\"\nredis_url = \"{}\"\nprefix = \"test:calculations:cache:\"\n",
            redis.url()
        ),
    )?;
    let extra = ["--config".to_owned(), config.display().to_string()];
    let members = members(&redis, "test:calculations:cluster:", &extra).await?;
    let mut on_alpha = Caller::connect(&members[0]).await?;
    let mut on_beta = Caller::connect(&members[1]).await?;

    ensure!(!on_beta.cached("powers.squareRoot", 81.0).await?);
    ensure!(on_alpha.call("powers.squareRoot", json!([81])).await? == json!(9.0));
    ensure!(
        on_beta.cached("powers.squareRoot", 81.0).await?,
        "beta reads the result alpha stored"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
