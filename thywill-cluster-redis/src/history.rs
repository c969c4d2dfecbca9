//! [`RedisHistory`]: a [`History`] in Redis, shared by the members of a cluster, so that a
//! client recovers what it missed on whichever member it reconnects to.

use std::sync::Arc;
use std::time::Duration;

use fred::types::{ClusterHash, Value};
use thywill_core::{CoreResult, Entry, History, HistoryLimits, Offset, ReadLimit, Replay};

use crate::Error;
use crate::store::Commands;

/// Appends one entry, atomically, and returns `{epoch, off}`.
///
/// KEYS[1]: the stream's meta hash; KEYS[2]: its list; KEYS[3]: the append's key, which
/// remembers its offset for a minute (a retried append returns it instead of logging twice).
/// ARGV[1]: an epoch for a log that starts
/// now (used only when the meta hash is absent); ARGV[2]: the payload; ARGV[3]: the entries kept;
/// ARGV[4]: the list's TTL (ms); ARGV[5]: the meta hash's TTL (ms); ARGV[6]: the payload bytes
/// kept (the meta hash's `b` counts the list's); ARGV[7]: `1` when Redis is replicated with
/// failover (Redis Cluster, Sentinel).
///
/// Replication is asynchronous: a replica promoted after its primary failed may lack the last
/// appends the primary acknowledged, and would number new entries with offsets clients already
/// saw. With ARGV[7] set, the meta hash therefore records (`r`) the replication id of the primary
/// that wrote it; a promoted replica has a new one, so its first append starts a new epoch and
/// clients are told of the discontinuity instead of missing entries silently.
///
/// A log that starts empty drops whatever list is left (its meta hash was lost), so that the
/// list always holds consecutive offsets of the current epoch. The entry's time is Redis's
/// `TIME`, so the clocks of the members do not matter.
const APPEND: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'e')
local primary = nil
if ARGV[7] == '1' then
  primary = string.match(redis.call('INFO', 'replication'), 'master_replid:(%w+)')
  if epoch and primary and redis.call('HGET', KEYS[1], 'r') ~= primary then
    epoch = nil
  end
end
local seen = redis.call('GET', KEYS[3])
if seen and epoch then
  local e, o = string.match(seen, '^(%S+) (%d+)$')
  if e == epoch then return {e, o} end
end
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch)
end
if primary then
  redis.call('HSET', KEYS[1], 'r', primary)
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'b', 0)
end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local off = string.format('%d', n)
local entry = off .. ' ' .. string.format('%d', ms) .. ' ' .. ARGV[2]
redis.call('RPUSH', KEYS[2], entry)
local bytes = redis.call('HINCRBY', KEYS[1], 'b', #entry)
local max_entries = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[6])
local len = redis.call('LLEN', KEYS[2])
while len > 0 and (len > max_entries or bytes > max_bytes) do
  local dropped = redis.call('LPOP', KEYS[2])
  bytes = redis.call('HINCRBY', KEYS[1], 'b', -#dropped)
  len = len - 1
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[3], epoch .. ' ' .. off, 'PX', 60000)
return {epoch, off}
";

/// Reads a stream: `{epoch, last, now_ms, entries...}`, or `{'', '0', now_ms}` when the stream
/// has no meta hash.
///
/// KEYS[1]: the meta hash; KEYS[2]: the list. ARGV[1]: the client's epoch; ARGV[2]: the client's
/// offset (decimal, any `u64`); ARGV[3]: entries returned at most; ARGV[4]: bytes returned at
/// most (at least one entry is returned when there is one).
///
/// Of the current epoch, the first entries after the client's offset (the oldest kept when the
/// client's epoch is another), within ARGV[3] and ARGV[4]. The list holds consecutive offsets,
/// so the first wanted entry's index follows from the first entry's offset.
const READ: &str = r"
local t = redis.call('TIME')
local now = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
local m = redis.call('HMGET', KEYS[1], 'e', 'n')
if not m[1] then
  return {'', '0', now}
end
local out = {m[1], m[2] or '0', now}
local len = redis.call('LLEN', KEYS[2])
if len == 0 then
  return out
end
local first = tonumber(string.match(redis.call('LINDEX', KEYS[2], 0), '^(%d+) '))
if not first then
  return redis.error_reply('malformed history entry in ' .. KEYS[2])
end
local start = 0
if m[1] == ARGV[1] then
  -- A float for offsets near 2^64: only compared, never used as an index unless small.
  local after = tonumber(ARGV[2])
  if after >= first + len - 1 then
    return out
  end
  start = after + 1 - first
  if start < 0 then
    start = 0
  end
end
local cap = tonumber(ARGV[3])
local max_bytes = tonumber(ARGV[4])
local entries = redis.call('LRANGE', KEYS[2], start, start + cap - 1)
local bytes = 0
for i = 1, #entries do
  bytes = bytes + #entries[i]
  if i > 1 and bytes > max_bytes then
    break
  end
  out[#out + 1] = entries[i]
end
return out
";

/// Raises a mark (never lowers it) and renews its TTL.
///
/// KEYS[1]: the mark; ARGV[1]: the id (decimal, no leading zeros); ARGV[2]: the TTL (ms).
/// Ids are compared as decimal strings (length, then digits), exactly for every `u64`.
const RAISE: &str = r"
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if (not cur) or #new > #cur or (#new == #cur and new > cur) then
  redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
  return 1
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0
";

/// Chunks made only of expired entries one read skips before it gives up.
const MAX_SKIPPED_CHUNKS: usize = 64;

/// How long a stream's epoch and counter, and a tab's mark, outlive their last use at least.
const KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// Settings of a [`RedisHistory`].
#[derive(Clone, Debug)]
pub struct RedisHistoryConfig {
    target: crate::connect::Target,
    prefix: String,
    command_timeout: Duration,
    limits: HistoryLimits,
}

impl Default for RedisHistoryConfig {
    /// `redis://127.0.0.1:6379`, prefix `thywill:history:`, 2 s per command, the default
    /// [`HistoryLimits`] (10,000 entries and 5 minutes per stream).
    fn default() -> Self {
        Self {
            target: crate::connect::Target::default(),
            prefix: "thywill:history:".into(),
            command_timeout: Duration::from_secs(2),
            limits: HistoryLimits::default(),
        }
    }
}

impl RedisHistoryConfig {
    crate::store::store_setters!(
        "Prefix of every key (default `thywill:history:`); see [`RedisHistory`] for the keys."
    );

    /// Entries kept per stream and how long each stays replayable (default: 10,000 entries,
    /// 5 minutes). Both must be positive; the age has millisecond resolution (at least 1 ms).
    /// Every member sharing a prefix should use the same limits.
    pub fn with_limits(mut self, limits: HistoryLimits) -> Result<Self, Error> {
        if limits.max_entries == 0 {
            return Err(Error::Config {
                setting: "history max_entries",
                reason: "must be positive".into(),
            });
        }
        if limits.max_age < Duration::from_millis(1) {
            return Err(Error::Config {
                setting: "history max_age",
                reason: "must be at least one millisecond".into(),
            });
        }
        self.limits = limits;
        Ok(self)
    }

    /// The limits of every stream's log.
    pub fn limits(&self) -> HistoryLimits {
        self.limits
    }

    fn append_key(&self, stream: &str, key: u64) -> String {
        format!("{}k:{}:{key:016x}", self.prefix, crate::store::hash_tag(stream))
    }

    fn meta_key(&self, stream: &str) -> String {
        format!("{}m:{}", self.prefix, crate::store::hash_tag(stream))
    }

    fn list_key(&self, stream: &str) -> String {
        format!("{}l:{}", self.prefix, crate::store::hash_tag(stream))
    }

    fn mark_key(&self, tab: &str) -> String {
        format!("{}r:{tab}", self.prefix)
    }

    /// `max_entries`, as Redis takes it (an index: at most `i64::MAX`).
    fn max_entries(&self) -> String {
        i64::try_from(self.limits.max_entries)
            .unwrap_or(i64::MAX)
            .to_string()
    }

    /// The list's TTL: `max_age`, in whole milliseconds (rounded up).
    fn list_ttl_ms(&self) -> String {
        ceil_ms(self.limits.max_age).to_string()
    }

    /// The TTL of meta hashes and marks: `max(24 h, max_age)`.
    fn keep_ttl_ms(&self) -> String {
        ceil_ms(self.limits.max_age.max(KEEP)).to_string()
    }
}

fn ceil_ms(d: Duration) -> u128 {
    d.as_nanos().div_ceil(1_000_000)
}

/// Replay logs and client message marks in Redis, shared by every member of a cluster given the
/// same Redis and prefix ([`History::is_shared`] is true): a client that reconnects to any
/// member receives what it missed, and a message it resends is processed once.
///
/// | key | holds |
/// |---|---|
/// | `<prefix>m:{<stream>}` | hash: `e` the epoch (16 random hex digits, drawn when the hash is absent), `n` the last offset |
/// | `<prefix>l:{<stream>}` | list of the kept entries, oldest first, each `"<off> <unix_ms> <payload>"` |
/// | `<prefix>r:<tab>` | the tab's highest processed client message id (decimal) |
///
/// The stream's name in braces is the hash tag of its keys (and of each append's key): on Redis
/// Cluster every script touches one slot, and streams spread over the nodes.
///
/// An append is one Lua script: it takes the epoch (or starts a new one, dropping any stale
/// list), increments `n`, pushes the entry, trims the list to `max_entries` and renews the
/// expiries (the hash's `b` counts the list's bytes; the oldest entries go while the list is
/// over `max_entries` or `max_stream_bytes`): the list's to `max_age` (by then every entry is too old), the hash's to
/// `max(24 h, max_age)`, so an idle stream keeps its epoch and numbering for a day. Offsets
/// are therefore consecutive across all members, and the list always holds consecutive
/// offsets. When Redis loses the hash (a restart without persistence, eviction) the next
/// append starts a new epoch at offset 1, and clients of the old epoch are told that
/// continuity was lost.
///
/// Entry times are Redis's `TIME` (at append and at read), so the members' clocks do not
/// matter; a read drops entries older than `max_age` (and, should Redis's clock have stepped
/// back, every entry before such an entry, so that what is returned stays consecutive).
/// The payload is opaque text, stored as is.
///
/// Marks are raised by a Lua script that never lowers them, and kept `max(24 h, max_age)`
/// after their last update.
///
/// The scripts address two keys of one stream, so this store needs a single Redis server (not
/// Redis Cluster).
///
/// ```no_run
/// # async fn run() -> Result<(), thywill_cluster_redis::Error> {
/// use std::time::Duration;
///
/// use thywill_cluster_redis::{RedisHistory, RedisHistoryConfig};
/// use thywill_core::HistoryLimits;
///
/// let history = RedisHistory::connect(
///     RedisHistoryConfig::default()
///         .with_url("redis://127.0.0.1:6379")?
///         .with_prefix("thywill:chat:history:")?
///         .with_limits(HistoryLimits {
///             max_entries: 1_000,
///             max_age: Duration::from_secs(120),
///             ..HistoryLimits::default()
///         })?,
/// )
/// .await?;
/// # let _ = history; Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisHistory {
    config: RedisHistoryConfig,
    redis: Arc<Commands>,
    /// Whether Redis fails over to replicas (see `APPEND`): `1` or `0`.
    fails_over: &'static str,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("prefix", &self.config.prefix)
            .field("limits", &self.config.limits)
            .finish()
    }
}

/// One entry of the list: `"<off> <unix_ms> <payload>"`.
fn parse_entry(raw: String) -> Result<(u64, u64, String), Error> {
    let bad = || Error::Codec(format!("malformed history entry {:?}", truncated(&raw)));
    let mut parts = raw.splitn(3, ' ');
    let off = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let ms = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let payload = parts.next().ok_or_else(bad)?.to_owned();
    Ok((off, ms, payload))
}

fn truncated(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn parse_number(what: &str, s: Option<String>) -> Result<u64, Error> {
    let s = s.ok_or_else(|| Error::Codec(format!("history reply without {what}")))?;
    s.parse()
        .map_err(|_| Error::Codec(format!("history {what} {:?} is not a number", truncated(&s))))
}

impl RedisHistory {
    /// Connects (one connection, which reconnects by itself).
    pub async fn connect(config: RedisHistoryConfig) -> Result<Self, Error> {
        let redis = Commands::connect(&config.target, config.command_timeout).await?;
        Ok(Self {
            fails_over: if config.target.fails_over() { "1" } else { "0" },
            config,
            redis: Arc::new(redis),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisHistoryConfig {
        &self.config
    }

    /// Closes the connection.
    pub async fn quit(&self) {
        self.redis.quit().await;
    }

    async fn append(&self, stream: &str, key: u64, payload: String) -> Result<Offset, Error> {
        let fresh_epoch = format!("{:016x}", rand::random::<u64>());
        let args = vec![
            Value::from(APPEND),
            Value::from(3),
            Value::from(self.config.meta_key(stream)),
            Value::from(self.config.list_key(stream)),
            Value::from(self.config.append_key(stream, key)),
            Value::from(fresh_epoch),
            Value::from(payload),
            Value::from(self.config.max_entries()),
            Value::from(self.config.list_ttl_ms()),
            Value::from(self.config.keep_ttl_ms()),
            Value::from(self.config.limits.max_stream_bytes.to_string()),
            Value::from(self.fails_over),
        ];
        let reply: Vec<String> = self.redis.run("EVAL", ClusterHash::Offset(2), args).await?;
        let mut reply = reply.into_iter();
        let epoch = reply
            .next()
            .filter(|e| !e.is_empty())
            .ok_or_else(|| Error::Codec("history append reply without epoch".into()))?;
        let off = parse_number("offset", reply.next())?;
        Ok(Offset { epoch, off })
    }

    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> Result<Replay, Error> {
        // Entries older than max_age are dropped here, not by the script: a chunk made only of
        // them moves the cursor on, a bounded number of times.
        let mut cursor = after.clone();
        for _ in 0..MAX_SKIPPED_CHUNKS {
            let args = vec![
                Value::from(READ),
                Value::from(2),
                Value::from(self.config.meta_key(stream)),
                Value::from(self.config.list_key(stream)),
                Value::from(cursor.epoch.as_str()),
                Value::from(cursor.off.to_string()),
                Value::from(limit.max_entries.clamp(1, 1 << 20).to_string()),
                Value::from(limit.max_bytes.min(1 << 40).to_string()),
            ];
            let reply: Vec<String> = self.redis.run("EVAL", ClusterHash::Offset(2), args).await?;
            let mut reply = reply.into_iter();
            let epoch = reply
                .next()
                .ok_or_else(|| Error::Codec("history read reply without epoch".into()))?;
            let last = parse_number("last offset", reply.next())?;
            let now_ms = parse_number("time", reply.next())?;
            if epoch.is_empty() {
                return Ok(Replay {
                    epoch,
                    continuous: false,
                    entries: Vec::new(),
                    last: 0,
                });
            }
            let mut entries = reply
                .map(parse_entry)
                .collect::<Result<Vec<(u64, u64, String)>, Error>>()?;
            if epoch == cursor.epoch {
                entries.retain(|(off, _, _)| *off > cursor.off);
            }
            let chunk_end = entries.last().map(|(off, _, _)| *off);
            // Too old: every entry up to the last one older than max_age.
            let max_age = ceil_ms(self.config.limits.max_age);
            let too_old = |ms: u64| u128::from(now_ms.saturating_sub(ms)) > max_age;
            if let Some(i) = entries.iter().rposition(|(_, ms, _)| too_old(*ms)) {
                entries.drain(..=i);
            }
            if entries.is_empty()
                && let Some(end) = chunk_end
                && end < last
            {
                cursor = Offset { epoch, off: end };
                continue;
            }
            let continuous = epoch == after.epoch
                && (after.off >= last
                    || entries
                        .first()
                        .is_some_and(|(off, _, _)| Some(*off) == after.off.checked_add(1)));
            return Ok(Replay {
                epoch,
                continuous,
                entries: entries
                    .into_iter()
                    .map(|(off, _, payload)| Entry { off, payload })
                    .collect(),
                last,
            });
        }
        Err(Error::Codec(format!(
            "history of {stream}: more than {MAX_SKIPPED_CHUNKS} chunks of expired entries"
        )))
    }

    async fn received_mark(&self, tab: &str) -> Result<u64, Error> {
        let mark: Option<String> = self
            .redis
            .run(
                "GET",
                ClusterHash::FirstKey,
                vec![Value::from(self.config.mark_key(tab))],
            )
            .await?;
        match mark {
            None => Ok(0),
            Some(m) => parse_number("mark", Some(m)),
        }
    }

    async fn set_received_mark(&self, tab: &str, id: u64) -> Result<(), Error> {
        let args = vec![
            Value::from(RAISE),
            Value::from(1),
            Value::from(self.config.mark_key(tab)),
            Value::from(id.to_string()),
            Value::from(self.config.keep_ttl_ms()),
        ];
        let _: Value = self.redis.run("EVAL", ClusterHash::Offset(2), args).await?;
        Ok(())
    }
}

impl History for RedisHistory {
    fn is_shared(&self) -> bool {
        true
    }

    async fn append(&self, stream: &str, key: u64, payload: String) -> CoreResult<Offset> {
        Ok(self.append(stream, key, payload).await?)
    }

    async fn read_after(&self, stream: &str, after: &Offset, limit: ReadLimit) -> CoreResult<Replay> {
        Ok(self.read_after(stream, after, limit).await?)
    }

    async fn received_mark(&self, tab: &str) -> CoreResult<u64> {
        Ok(self.received_mark(tab).await?)
    }

    async fn set_received_mark(&self, tab: &str, id: u64) -> CoreResult<()> {
        Ok(self.set_received_mark(tab, id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_the_first_two_spaces_only() -> Result<(), Error> {
        let (off, ms, payload) = parse_entry("7 1700000000123 {\"a\": \"b c\"}\n x ".into())?;
        assert_eq!(
            (off, ms, payload.as_str()),
            (7, 1_700_000_000_123, "{\"a\": \"b c\"}\n x ")
        );
        assert_eq!(parse_entry("1 2 ".into())?.2, "");
        assert!(parse_entry("1 2".into()).is_err());
        assert!(parse_entry("x 2 p".into()).is_err());
        assert!(parse_entry(String::new()).is_err());
        Ok(())
    }

    #[test]
    fn limits_must_be_positive() {
        let c = RedisHistoryConfig::default();
        let zero_entries = HistoryLimits {
            max_entries: 0,
            ..HistoryLimits::default()
        };
        let zero_age = HistoryLimits {
            max_age: Duration::ZERO,
            ..HistoryLimits::default()
        };
        assert!(matches!(
            c.clone().with_limits(zero_entries),
            Err(Error::Config { .. })
        ));
        assert!(matches!(
            c.clone().with_limits(zero_age),
            Err(Error::Config { .. })
        ));
        assert!(c.clone().with_prefix("a b").is_err());
        assert!(c.clone().with_command_timeout(Duration::ZERO).is_err());
        assert_eq!(c.list_ttl_ms(), "300000");
        assert_eq!(c.keep_ttl_ms(), "86400000");
        let long = c
            .with_limits(HistoryLimits {
                max_entries: 5,
                max_age: Duration::from_secs(2 * 86_400),
                ..HistoryLimits::default()
            })
            .map(|c| c.keep_ttl_ms());
        assert_eq!(long.ok().as_deref(), Some("172800000"));
    }
}
