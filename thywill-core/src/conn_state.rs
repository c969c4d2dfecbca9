//! Typed per-connection state of the applications (see [`AppContext::set_state`]).
//!
//! [`AppContext::set_state`]: crate::AppContext::set_state

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::{ApplicationId, CoreError, CoreResult};

/// How many values (one per type) each application may keep on one connection.
///
/// State is application memory held for as long as the connection is open: the node bounds
/// how many values an application keeps per connection, the size of each is the
/// application's to keep small.
pub const MAX_STATES_PER_CONNECTION: usize = 16;

type Entry = Box<dyn Any + Send + Sync>;

/// The typed values the applications keep on one local connection, one per (application,
/// type). Kept by the node that holds the connection and dropped after its `disconnection`
/// hooks ran.
#[derive(Default)]
pub struct ConnectionState {
    values: Mutex<HashMap<(ApplicationId, TypeId), Entry>>,
}

impl fmt::Debug for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionState")
            .field("values", &self.len())
            .finish()
    }
}

impl ConnectionState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    fn values(&self) -> std::sync::MutexGuard<'_, HashMap<(ApplicationId, TypeId), Entry>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many values are kept, over all applications.
    pub fn len(&self) -> usize {
        self.values().len()
    }

    /// Whether no value is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `app`'s value of type `T`, replacing (and returning) the previous one; refused
    /// ([`CoreError::Invalid`]) past [`MAX_STATES_PER_CONNECTION`] types for `app`.
    pub fn set<T: Send + Sync + 'static>(&self, app: &ApplicationId, value: T) -> CoreResult<Option<T>> {
        let mut values = self.values();
        let key = (app.clone(), TypeId::of::<T>());
        if !values.contains_key(&key)
            && values.keys().filter(|(a, _)| a == app).count() >= MAX_STATES_PER_CONNECTION
        {
            return Err(CoreError::Invalid(format!(
                "connection state: at most {MAX_STATES_PER_CONNECTION} types per application"
            )));
        }
        let previous = values.insert(key, Box::new(value));
        Ok(previous.and_then(|p| p.downcast::<T>().ok()).map(|p| *p))
    }

    /// Runs `f` on `app`'s value of type `T`, if there is one (under the state's lock: keep
    /// `f` short).
    pub fn with<T: Send + Sync + 'static, R>(
        &self,
        app: &ApplicationId,
        f: impl FnOnce(&mut T) -> R,
    ) -> Option<R> {
        let mut values = self.values();
        let value = values.get_mut(&(app.clone(), TypeId::of::<T>()))?;
        value.downcast_mut::<T>().map(f)
    }

    /// Removes and returns `app`'s value of type `T`.
    pub fn take<T: Send + Sync + 'static>(&self, app: &ApplicationId) -> Option<T> {
        let value = self.values().remove(&(app.clone(), TypeId::of::<T>()))?;
        value.downcast::<T>().ok().map(|v| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_kept_per_application_and_type() -> CoreResult<()> {
        let state = ConnectionState::new();
        let (a, b) = (ApplicationId::from("a"), ApplicationId::from("b"));
        assert_eq!(state.set(&a, 1u32)?, None);
        assert_eq!(state.set(&b, 2u32)?, None);
        assert_eq!(state.set(&a, String::from("x"))?, None);
        assert_eq!(
            state.with(&a, |n: &mut u32| {
                *n += 10;
                *n
            }),
            Some(11)
        );
        assert_eq!(state.with(&b, |n: &mut u32| *n), Some(2));
        assert_eq!(state.with(&b, |s: &mut String| s.clone()), None);
        assert_eq!(state.set(&a, 5u32)?, Some(11));
        assert_eq!(state.take::<u32>(&a), Some(5));
        assert_eq!(state.take::<u32>(&a), None);
        assert_eq!(state.len(), 2);
        Ok(())
    }

    #[test]
    fn an_application_keeps_a_bounded_number_of_types() -> CoreResult<()> {
        struct Nth<const N: usize>;
        let state = ConnectionState::new();
        let a = ApplicationId::from("a");
        macro_rules! set {
            ($($n:literal)*) => { $( state.set(&a, Nth::<$n>)?; )* };
        }
        set!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        assert!(matches!(state.set(&a, Nth::<16>), Err(CoreError::Invalid(_))));
        // Replacing a kept type and another application's values still work.
        assert!(state.set(&a, Nth::<3>).is_ok());
        assert!(state.set(&ApplicationId::from("b"), Nth::<16>).is_ok());
        Ok(())
    }
}
