//! Application tasks: an application's own typed messages between the members of a cluster.
//!
//! An application sends a [`Task`] (any serde type with a stable [`Task::NAME`]) with
//! [`AppContext::send_task_to`], [`AppContext::send_task_to_others`] or
//! [`AppContext::send_task_to_all`]; on the receiving members the **same application** (by
//! application id) gets it in [`Application::task`] as an [`AppTask`], with the sender, and
//! decodes it by type. Tasks of one application never reach another.
//!
//! The payload is JSON-encoded (serde_json), so any serde type travels, `serde_json::Value`
//! and untagged enums included; the node wraps it, with the application id, in one internal
//! cluster task (bincode, like every [`ClusterTask`](crate::ClusterTask)), so backends still
//! move opaque bytes.
//!
//! [`AppContext::send_task_to`]: crate::AppContext::send_task_to
//! [`AppContext::send_task_to_others`]: crate::AppContext::send_task_to_others
//! [`AppContext::send_task_to_all`]: crate::AppContext::send_task_to_all
//! [`Application::task`]: crate::Application::task

use crate::{CoreError, CoreResult, MemberId, Task};

/// Which members an application task goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskTarget {
    /// One member (the local member included). Refused with an error when the member is not
    /// up or not configured.
    Member(MemberId),
    /// Every member but the local one, as the cluster backend reaches them.
    Others,
    /// Every member, the local one included.
    All,
}

/// An application task as it arrives: its name and its encoded payload, decoded by type.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use thywill_core::{AppTask, Task};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Ping {
///     n: u32,
/// }
///
/// impl Task for Ping {
///     const NAME: &'static str = "ping";
/// }
///
/// let task = AppTask::encode(&Ping { n: 7 })?;
/// assert_eq!(task.name(), "ping");
/// assert_eq!(task.decode::<Ping>().transpose()?, Some(Ping { n: 7 }));
/// // Another task type: not this one.
/// # #[derive(Serialize, Deserialize)] struct Pong;
/// # impl Task for Pong { const NAME: &'static str = "pong"; }
/// assert!(task.decode::<Pong>().is_none());
/// # Ok::<(), thywill_core::CoreError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct AppTask {
    name: String,
    payload: Vec<u8>,
}

impl std::fmt::Debug for AppTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTask")
            .field("name", &self.name)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl AppTask {
    /// Encodes a task (JSON) under its [`Task::NAME`].
    pub fn encode<T: Task>(task: &T) -> CoreResult<Self> {
        let payload = serde_json::to_vec(task).map_err(|e| CoreError::Codec(e.to_string()))?;
        Ok(Self::from_parts(T::NAME, payload))
    }

    /// A task from its name and its JSON payload as they came off the wire (used by the node;
    /// nothing is checked until [`AppTask::decode`]).
    pub fn from_parts(name: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            name: name.into(),
            payload,
        }
    }

    /// The task's name ([`Task::NAME`] of the type it was sent as).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The encoded payload (JSON).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Takes the task apart into its name and payload.
    pub fn into_parts(self) -> (String, Vec<u8>) {
        (self.name, self.payload)
    }

    /// Decodes the payload as `T` if the name is `T::NAME`: `None` if it is another task,
    /// `Some(Err(_))` if it is this task but the payload does not decode (a sender running
    /// another version of the type, say).
    pub fn decode<T: Task>(&self) -> Option<CoreResult<T>> {
        if self.name != T::NAME {
            return None;
        }
        Some(serde_json::from_slice(&self.payload).map_err(|e| CoreError::Codec(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
        data: serde_json::Value,
    }

    impl Task for Note {
        const NAME: &'static str = "test.note";
    }

    #[derive(Debug, Serialize, Deserialize)]
    struct Other {
        n: u8,
    }

    impl Task for Other {
        const NAME: &'static str = "test.other";
    }

    #[test]
    fn json_values_round_trip_and_names_select_the_type() -> CoreResult<()> {
        let note = Note {
            text: "hi".into(),
            data: serde_json::json!({"any": [1, "two", null]}),
        };
        let task = AppTask::encode(&note)?;
        assert_eq!(task.name(), "test.note");
        assert_eq!(task.decode::<Note>().transpose()?, Some(note));
        assert!(task.decode::<Other>().is_none());
        Ok(())
    }

    #[test]
    fn a_payload_that_does_not_decode_is_an_error_not_a_panic() {
        for payload in [&b"\xff\xfe"[..], b"", b"{\"n\": 300}", b"[1,2"] {
            let task = AppTask::from_parts("test.other", payload.to_vec());
            assert!(
                matches!(task.decode::<Other>(), Some(Err(CoreError::Codec(_)))),
                "{payload:?}"
            );
        }
    }
}
