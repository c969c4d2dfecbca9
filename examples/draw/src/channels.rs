//! `example-draw-channels`: the Draw example's server with any number of channels, for `cargo
//! xtask bench scale` (not a page: there is no bootstrap). A connection chooses its channels:
//!
//! - `{"sub": "c17"}` subscribes the sending connection to channel `c17` and answers it
//!   `{"subscribed": "c17"}` once the subscription is in place;
//! - `{"pub": "c17", ...}` sends the whole message to every connection subscribed to `c17`,
//!   on whichever member of the cluster it is connected to.
//!
//! Anything else is dropped with a warning. It takes the options of every example (`--port`,
//! `--member`, `--cluster redis --redis-url URL --cluster-members a,b,c,d`, ...) and serves the
//! application `channels` under `/channels` (its metrics at `/channels/metrics`, loopback only).

use serde_json::{Value, json};
use thywill::{AppContext, Application, ChannelId, Client, Message};

/// Application id and base path of the bench server.
const APP_ID: &str = "channels";
const BASE: &str = "/channels";
/// Longest channel name accepted.
const MAX_CHANNEL_CHARS: usize = 64;

/// Subscribes connections to the channels they name and publishes what they send.
#[derive(Clone, Copy, Debug, Default)]
struct Channels;

/// The channel named by `key` in a message, if it is a short string.
fn channel(data: &Value, key: &str) -> Option<ChannelId> {
    let name = data.get(key)?.as_str()?;
    (!name.is_empty() && name.chars().count() <= MAX_CHANNEL_CHARS).then(|| ChannelId::from(name))
}

impl Application for Channels {
    async fn received(&self, ctx: &AppContext, client: &Client, message: Message) {
        if let Some(ch) = channel(&message.data, "pub") {
            if let Err(e) = ctx.send_to_channel(&ch, message, &[]).await {
                tracing::warn!(channel = %ch, error = %e, "not published");
            }
        } else if let Some(ch) = channel(&message.data, "sub") {
            if let Err(e) = ctx.subscribe(&client.connection, &ch).await {
                tracing::warn!(channel = %ch, error = %e, "not subscribed");
                return;
            }
            let answer = json!({ "subscribed": ch.as_str() });
            if let Err(e) = ctx.send_to_connection(&client.connection, answer).await {
                tracing::debug!(error = %e, "subscription not confirmed");
            }
        } else {
            tracing::warn!(connection = %client.connection, "neither pub nor sub: dropped");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = example_support::Options::from_args(0)?;
    opts.init_logging();
    let builder = thywill::Thywill::builder()
        .base_path(BASE)?
        .application(APP_ID, Channels);
    let node = example_support::cluster::apply(builder, &opts, APP_ID)?
        .build()
        .await?;
    example_support::serve(node, &opts, "/channels/").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_named_by_short_strings() {
        assert_eq!(
            channel(&json!({"pub": "c1", "id": 3}), "pub"),
            Some(ChannelId::from("c1"))
        );
        assert_eq!(channel(&json!({"pub": 1}), "pub"), None);
        assert_eq!(channel(&json!({"pub": ""}), "pub"), None);
        assert_eq!(channel(&json!({"sub": "x".repeat(65)}), "sub"), None);
        assert_eq!(channel(&json!({"sub": "c1"}), "pub"), None);
    }
}
