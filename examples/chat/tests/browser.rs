//! Browser test of the Chat page across two members clustered over a real Redis (sessions,
//! channels and the waiting pool in Redis too), with two separate browsers (two sessions):
//! paired, messages both ways, partner disconnected and reconnected, a second tab sharing the
//! chat from the other member, kick, new chat.

use std::sync::Arc;

use anyhow::Context;
use thywill::DynCluster;
use thywill_testkit::TIMEOUT;
use thywill_testkit::browser::Browser;
use thywill_testkit::redis::RedisServer;
use thywill_testkit::served;

/// A served member.
struct Served {
    node: thywill::Thywill,
    url: String,
    backend: Arc<dyn DynCluster>,
    serving: tokio::task::JoinHandle<()>,
}

async fn member(id: &str, redis: &str) -> anyhow::Result<Served> {
    let args = format!(
        "--port 0 --member {id} --cluster redis --redis-url {redis} --cluster-members alpha,beta \
         --heartbeat-interval 100 --heartbeat-timeout 300"
    );
    let opts = example_support::Options::parse(args.split_whitespace().map(String::from), 0)?;
    let node =
        example_chat::build(opts.clone(), Some("a browser test secret of enough bytes".into())).await?;
    let (addr, serving) = node.bind(opts.addr()).await?;
    Ok(Served {
        backend: node.cluster().clone(),
        node,
        url: format!("http://{addr}/chat/"),
        serving: tokio::spawn(serving),
    })
}

/// The channel shown while chatting.
const CHATTING: &str = "const w = document.getElementById('chat-wrapper'); \
     return w.classList.contains('chatting') && !document.getElementById('channel').hidden && \
     document.querySelector('#channel .channel').textContent === w.dataset.channel && \
     !document.querySelector('#control button.send-button').disabled;";

/// Whether the newest message (first in the output) is `text`.
fn newest(text: &str) -> String {
    format!(
        "const m = document.querySelector('#chat-output .chat-message'); \
         return m !== null && m.textContent === {};",
        serde_json::Value::from(text)
    )
}

/// Whether only the notice `id` is shown.
fn notice(id: &str) -> String {
    format!(
        "return ['waiting', 'kick', 'kicked'].every(n => document.getElementById(n).hidden === (n !== '{id}'));"
    )
}

async fn send(b: &Browser, text: &str) -> anyhow::Result<()> {
    b.type_into("#control textarea", text).await?;
    b.click("#control button.send-button").await
}

async fn channel(b: &Browser) -> anyhow::Result<String> {
    b.text("#channel .channel").await
}

/// Waits until the page shows that its browser has sent `n` messages (a count the server keeps
/// in the session's data).
async fn sent_count(b: &Browser, n: u64) -> anyhow::Result<()> {
    b.wait_js(&format!(
        "return !document.getElementById('sent-count').hidden && \
         document.querySelector('#sent-count .count').textContent === '{n}';"
    ))
    .await
    .with_context(|| format!("the page does not show {n} messages sent"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_across_two_members() -> anyhow::Result<()> {
    served::require_browser()?;
    let redis = RedisServer::start().await?;
    let alpha = member("alpha", &redis.url()).await?;
    let beta = member("beta", &redis.url()).await?;
    served::wait_up(&*alpha.backend, "beta").await?;
    served::wait_up(&*beta.backend, "alpha").await?;

    // Ann on alpha waits; Bob on beta arrives: paired.
    let ann = Browser::start().await?;
    ann.goto(&alpha.url).await?;
    ann.wait_text("#status", "Connected").await?;
    ann.wait_text("#title", "Thywill: Chat Application").await?;
    ann.wait_js(&notice("waiting")).await?;
    let bob = Browser::start().await?;
    bob.goto(&beta.url).await?;
    bob.wait_text("#status", "Connected").await?;
    ann.wait_js(CHATTING).await.context("ann was not paired")?;
    bob.wait_js(CHATTING).await.context("bob was not paired")?;
    let chat = channel(&ann).await?;
    assert_eq!(channel(&bob).await?, chat);
    assert!(!chat.is_empty());

    // Messages both ways; each sees its own too.
    send(&ann, "hello from alpha").await?;
    bob.wait_js(&newest("hello from alpha")).await?;
    ann.wait_js(&newest("hello from alpha")).await?;
    send(&bob, "hi <b>ann</b>").await?;
    ann.wait_js(&newest("hi <b>ann</b>"))
        .await
        .context("text is shown, never markup")?;
    // Each page shows how many messages its browser has sent.
    sent_count(&ann, 1).await?;
    sent_count(&bob, 1).await?;

    // Bob leaves the page: Ann is told. Bob comes back: Ann is told, and Bob's page resumes the
    // chat without anything else (his session was re-subscribed to the chat's channel).
    bob.goto("about:blank").await?;
    ann.wait_js(&newest("Chat partner disconnected.")).await?;
    ann.wait_js("return document.querySelector('#chat-output .chat-message.partner-disconnected') !== null;")
        .await?;
    bob.goto(&beta.url).await?;
    bob.wait_js(CHATTING).await.context("bob's chat did not resume")?;
    assert_eq!(channel(&bob).await?, chat);
    ann.wait_js(&newest("Chat partner reconnected.")).await?;
    send(&ann, "welcome back").await?;
    bob.wait_js(&newest("welcome back")).await?;

    // A second tab of Bob's browser, on the other member, shares the chat.
    let first_tab = bob.client().window().await?;
    let second_tab = bob.client().new_window(true).await?.handle;
    bob.client().switch_to_window(second_tab).await?;
    bob.goto(&alpha.url).await?;
    bob.wait_js(CHATTING)
        .await
        .context("bob's second tab did not join the chat")?;
    assert_eq!(channel(&bob).await?, chat);
    // The count Bob's session kept on beta is shown on alpha.
    sent_count(&bob, 1).await?;
    send(&ann, "to both tabs").await?;
    bob.wait_js(&newest("to both tabs")).await?;
    bob.client().close_window().await?;
    bob.client().switch_to_window(first_tab).await?;
    bob.wait_js(&newest("to both tabs")).await?;

    // Bob kicks Ann.
    bob.click("#control button.kick-button").await?;
    bob.wait_js(&notice("kick")).await?;
    ann.wait_js(&notice("kicked")).await?;
    ann.wait_js("return !document.getElementById('chat-wrapper').classList.contains('chatting');")
        .await?;

    // Both ask for a new chat: paired again.
    bob.click("#kick button.new-partner").await?;
    bob.wait_js(&notice("waiting")).await?;
    ann.click("#kicked button.new-partner").await?;
    ann.wait_js(CHATTING).await.context("no new chat for ann")?;
    bob.wait_js(CHATTING).await.context("no new chat for bob")?;
    send(&bob, "again").await?;
    ann.wait_js(&newest("again")).await?;

    ann.close().await?;
    bob.close().await?;
    for m in [alpha, beta] {
        m.node.shutdown();
        tokio::time::timeout(TIMEOUT, m.serving)
            .await
            .context("node did not stop")??;
        m.backend.stop().await?;
    }
    Ok(())
}

/// The partners' own messages shown, oldest first (notices left out).
const MESSAGES: &str = "return Array.from(document.querySelectorAll('#chat-output .chat-message')) \
     .filter(m => m.className === 'chat-message').map(m => m.textContent).reverse();";

/// Waits until the page shows exactly `want` as its messages, in this order.
async fn shows(b: &Browser, who: &str, want: &[&str]) -> anyhow::Result<()> {
    let expected = serde_json::Value::from(want.to_vec()).to_string();
    let script = format!(
        "const got = (function () {{ {MESSAGES} }})(); return JSON.stringify(got) === JSON.stringify({expected});"
    );
    if let Err(e) = b.wait_js(&script).await {
        let got = b
            .client()
            .execute(MESSAGES, vec![])
            .await
            .map(|v| v.to_string())
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        anyhow::bail!("{who} shows {got}, not {expected}: {e}");
    }
    Ok(())
}

/// Issue 7, item 7: the conversation survives a network blip of one partner and the crash
/// (`kill -9`) of the member the other is connected to; every message sent meanwhile (also
/// one typed while offline) appears once, in order, on both pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversation_survives_a_blip_and_a_member_crash() -> anyhow::Result<()> {
    use thywill_testkit::members::{Member, all_up, is};
    served::require_browser()?;
    let redis = RedisServer::start().await?;
    let args: Vec<String> = format!(
        "--cluster redis --redis-url {} --cluster-members alpha,beta --heartbeat-interval 100 \
         --heartbeat-timeout 300 --session-secret a-browser-test-secret-of-at-least-32-bytes",
        redis.url()
    )
    .split_whitespace()
    .map(String::from)
    .collect();
    let chat = env!("CARGO_BIN_EXE_example-chat");
    let mut members = vec![
        Member::start(chat, "alpha", thywill_testkit::free_port(), &args).await?,
        Member::start(chat, "beta", thywill_testkit::free_port(), &args).await?,
    ];
    all_up(&mut members).await?;

    let ann = Browser::start().await?;
    ann.goto(&members[0].url("/chat/")).await?;
    ann.wait_js(&notice("waiting")).await?;
    let bob = Browser::start().await?;
    bob.goto(&members[1].url("/chat/")).await?;
    ann.wait_js(CHATTING).await.context("ann was not paired")?;
    bob.wait_js(CHATTING).await.context("bob was not paired")?;
    send(&ann, "one").await?;
    send(&bob, "two").await?;
    shows(&ann, "ann", &["one", "two"]).await?;

    // A blip on Bob's side: his socket goes; Ann writes, and so does Bob, offline.
    bob.client()
        .execute("Thywill.disconnect(); return true;", vec![])
        .await?;
    send(&ann, "three").await?;
    send(&ann, "four").await?;
    send(&bob, "five (typed offline)").await?;
    bob.client()
        .execute("Thywill.connect(); return true;", vec![])
        .await?;
    let after_blip = ["one", "two", "three", "four", "five (typed offline)"];
    shows(&bob, "bob", &after_blip).await?;
    shows(&ann, "ann", &after_blip).await?;

    // Alpha, Ann's member, crashes. Bob goes on writing; alpha comes back (Redis kept the
    // chat's history) and Ann's page reconnects to it by itself.
    let cursor = members[1].cursor();
    members[0].kill();
    members[1]
        .wait_event(cursor, TIMEOUT, |v| is(v, "member_down", "alpha"))
        .await?;
    send(&bob, "six").await?;
    send(&bob, "seven").await?;
    members[0].restart().await?;
    let mut all = after_blip.to_vec();
    all.extend(["six", "seven"]);
    shows(&ann, "ann", &all).await?;
    send(&ann, "eight").await?;
    all.push("eight");
    shows(&bob, "bob", &all).await?;
    shows(&ann, "ann", &all).await?;
    ann.wait_js("return document.querySelector('#chat-output .continuity-lost') === null;")
        .await
        .context("a continuity loss was reported")?;

    ann.close().await?;
    bob.close().await?;
    Ok(())
}
