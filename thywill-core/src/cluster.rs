//! The [`Cluster`] trait: members of one cluster sending typed tasks to each other.
//!
//! A backend (single-member, Redis, HTTP, or your own) implements [`Cluster`]; the node
//! registers a [`ClusterEvents`] handler that receives tasks and member up/down events.
//! Tasks are serde types named by [`Task::NAME`] and carried as bincode bytes
//! ([`ClusterTask`]), so backends move opaque bytes and never see application types.

use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{BoxFuture, CoreError, CoreResult, MemberId};

/// Status of a member as seen from the local member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Heard from recently.
    Up,
    /// Not heard from within the timeout.
    Down,
    /// Not heard from since start: no event is emitted for the transition out of this state
    /// to `Down` (a member missing at start was never up).
    Unknown,
}

/// A typed cluster task: a serde type with a stable name.
pub trait Task: Serialize + DeserializeOwned + Send + 'static {
    /// The task's name on the wire, such as `thywill.deliver`.
    const NAME: &'static str;

    /// Encodes the task for [`Cluster::send_to`] and friends.
    fn to_task(&self) -> CoreResult<ClusterTask> {
        ClusterTask::encode(Self::NAME, self)
    }
}

/// A named task with its bincode-encoded payload: what backends carry between members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterTask {
    /// The task's name ([`Task::NAME`]).
    pub name: String,
    /// The bincode-encoded payload.
    pub payload: Vec<u8>,
}

fn codec() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl ClusterTask {
    /// Encodes a value under a task name.
    pub fn encode<T: Serialize>(name: &str, value: &T) -> CoreResult<Self> {
        let payload = bincode::serde::encode_to_vec(value, codec()).map_err(|e| CoreError::Codec(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            payload,
        })
    }

    /// Decodes the payload as `T` if the name is `T::NAME`; `None` if it is another task.
    pub fn decode<T: Task>(&self) -> Option<CoreResult<T>> {
        if self.name != T::NAME {
            return None;
        }
        Some(
            bincode::serde::decode_from_slice(&self.payload, codec())
                .map(|(v, _)| v)
                .map_err(|e| CoreError::Codec(e.to_string())),
        )
    }

    /// Encodes the whole task (name and payload) to bytes for a backend's wire.
    pub fn to_bytes(&self) -> CoreResult<Vec<u8>> {
        bincode::serde::encode_to_vec(self, codec()).map_err(|e| CoreError::Codec(e.to_string()))
    }

    /// Decodes a task written by [`ClusterTask::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        bincode::serde::decode_from_slice(bytes, codec())
            .map(|(v, _)| v)
            .map_err(|e| CoreError::Codec(e.to_string()))
    }
}

/// Receives what a [`Cluster`] backend observes. Registered by the node at start.
pub trait ClusterEvents: Send + Sync + 'static {
    /// A task arrived from `from` (which may be the local member, for `send_to_all`).
    fn task(&self, from: MemberId, task: ClusterTask);
    /// `member` came up (or back up).
    fn member_up(&self, member: MemberId);
    /// `member` went down. `designated` is whether the local member is its designated handler.
    fn member_down(&self, member: MemberId, designated: bool);
    /// The backend detected lost member-to-member traffic (a gap in sequence numbers).
    fn gap(&self, from: MemberId, missing: u64) {
        let _ = (from, missing);
    }
}

/// A cluster of members (processes) that route tasks to one another.
pub trait Cluster: Send + Sync + 'static {
    /// The local member's id.
    fn local_member(&self) -> &MemberId;

    /// Every configured member, the local one included, in ring order.
    fn members(&self) -> Vec<MemberId>;

    /// The status of a member as seen from here. The local member is always `Up`.
    fn status(&self, member: &MemberId) -> MemberStatus;

    /// Starts the backend (connections, heartbeats) and registers the event handler.
    fn start(&self, events: Arc<dyn ClusterEvents>) -> BoxFuture<'_, CoreResult<()>>;

    /// Stops heartbeats and closes connections.
    fn stop(&self) -> BoxFuture<'_, CoreResult<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Sends a task to one member (the local member included).
    fn send_to(&self, member: &MemberId, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>>;

    /// Sends a task to every member but the local one.
    fn send_to_others(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>>;

    /// Sends a task to every member, the local one included.
    fn send_to_all(&self, task: ClusterTask) -> BoxFuture<'_, CoreResult<()>>;

    /// Whether the cluster link works (false while, say, Redis is unreachable).
    fn is_healthy(&self) -> bool {
        true
    }

    /// The member that handles the failure of `failed`: the next member that is up, in ring
    /// order after `failed`. `None` if no other member is up.
    fn designated_handler(&self, failed: &MemberId) -> Option<MemberId> {
        designated_handler(&self.members(), failed, |m| self.status(m) == MemberStatus::Up)
    }
}

/// Ring-order designated handler: the first member after `failed` (wrapping) for which `is_up`.
pub fn designated_handler(
    members: &[MemberId],
    failed: &MemberId,
    is_up: impl Fn(&MemberId) -> bool,
) -> Option<MemberId> {
    let start = members.iter().position(|m| m == failed)?;
    (1..members.len())
        .map(|i| &members[(start + i) % members.len()])
        .find(|m| *m != failed && is_up(m))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Hello {
        n: u32,
        who: String,
    }
    impl Task for Hello {
        const NAME: &'static str = "test.hello";
    }

    #[test]
    fn tasks_round_trip_by_name() -> CoreResult<()> {
        let t = Hello { n: 7, who: "x".into() }.to_task()?;
        let bytes = t.to_bytes()?;
        let back = ClusterTask::from_bytes(&bytes)?;
        assert_eq!(back.decode::<Hello>().transpose()?, Some(Hello { n: 7, who: "x".into() }));
        let other = ClusterTask::encode("other", &1u8)?;
        assert!(other.decode::<Hello>().is_none());
        assert!(ClusterTask::from_bytes(&[0xff, 0xff, 0xff]).is_err());
        Ok(())
    }

    #[test]
    fn designated_handler_is_next_up_in_ring_order() {
        let ms: Vec<MemberId> = ["a", "b", "c", "d"].into_iter().map(MemberId::from).collect();
        let up = |m: &MemberId| m.as_str() != "c";
        assert_eq!(designated_handler(&ms, &"b".into(), up), Some("d".into()));
        assert_eq!(designated_handler(&ms, &"d".into(), up), Some("a".into()));
        assert_eq!(designated_handler(&ms, &"a".into(), |_| false), None);
        assert_eq!(designated_handler(&ms, &"zz".into(), up), None);
    }
}
