//! The [`Backend`] trait: a cluster backend and the stores that go with it, installed as one
//! bundle ([`BackendParts`]).

use std::future::Future;
use std::sync::Arc;

use crate::{
    BoxFuture, ChannelManager, Cluster, CoreResult, DynChannelManager, DynClientTracker, DynCluster,
    DynHistory, DynResourceManager, DynSessionStore, History, ResourceManager, SessionStore,
};

/// How the clients of a backend's members are tracked.
#[derive(Clone)]
#[non_exhaustive]
pub enum Tracking {
    /// Each member knows its own connections only: right for a single member, refused for a
    /// cluster of several (clients on other members would be unreachable).
    Local,
    /// The framework's cluster-wide tracker, carried by the backend's own [`Cluster`] (the node
    /// builder wraps the cluster with it; nobody wires it by hand). The default.
    ClusterWide,
    /// The backend's own cluster-wide tracker (it must learn of the other members' clients
    /// by itself).
    Own(Arc<dyn DynClientTracker>),
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local => f.write_str("Local"),
            Self::ClusterWide => f.write_str("ClusterWide"),
            Self::Own(_) => f.write_str("Own(..)"),
        }
    }
}

/// The parts of a connected backend: its cluster, how clients are tracked, and the stores it
/// shares between members. A part left out is the node's in-memory default, which each
/// member keeps for itself.
///
/// `BackendParts` is itself a [`Backend`] (already connected), so a backend without anything to
/// connect can be installed as it is.
#[must_use]
pub struct BackendParts {
    name: String,
    cluster: Arc<dyn DynCluster>,
    tracking: Tracking,
    history: Option<Arc<dyn DynHistory>>,
    channels: Option<Arc<dyn DynChannelManager>>,
    sessions: Option<Arc<dyn DynSessionStore>>,
    resources: Option<Arc<dyn DynResourceManager>>,
}

impl std::fmt::Debug for BackendParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendParts")
            .field("name", &self.name)
            .field("members", &self.cluster.members().len())
            .field("tracking", &self.tracking)
            .field("history", &self.history.as_ref().map(|h| h.is_shared()))
            .field("channels", &self.channels.as_ref().map(|c| c.is_shared()))
            .field("sessions", &self.sessions.as_ref().map(|s| s.is_shared()))
            .field("resources", &self.resources.is_some())
            .finish()
    }
}

impl BackendParts {
    /// A backend named `name` (in errors and logs, such as `redis`) over `cluster`, with the
    /// cluster-wide tracker ([`Tracking::ClusterWide`]) and no shared store yet.
    pub fn new(name: impl Into<String>, cluster: impl Cluster) -> Self {
        Self::from_arc(name, Arc::new(cluster))
    }

    /// [`BackendParts::new`] for a cluster already shared behind an `Arc`.
    pub fn from_arc(name: impl Into<String>, cluster: Arc<dyn DynCluster>) -> Self {
        Self {
            name: name.into(),
            cluster,
            tracking: Tracking::ClusterWide,
            history: None,
            channels: None,
            sessions: None,
            resources: None,
        }
    }

    /// How clients are tracked (default [`Tracking::ClusterWide`]).
    pub fn with_tracking(mut self, tracking: Tracking) -> Self {
        self.tracking = tracking;
        self
    }

    /// The replay history (shared by the members when [`History::is_shared`]).
    pub fn with_history(mut self, history: impl History) -> Self {
        self.history = Some(Arc::new(history));
        self
    }

    /// The store of channels of sessions.
    pub fn with_channels(mut self, channels: impl ChannelManager) -> Self {
        self.channels = Some(Arc::new(channels));
        self
    }

    /// The session store.
    pub fn with_session_store(mut self, sessions: impl SessionStore) -> Self {
        self.sessions = Some(Arc::new(sessions));
        self
    }

    /// The resource store (pages, scripts, styles served by every member).
    pub fn with_resources(mut self, resources: impl ResourceManager) -> Self {
        self.resources = Some(Arc::new(resources));
        self
    }

    /// Replaces the cluster with `wrap(cluster)`, keeping every other part: for a wrapper that
    /// observes the backend's events (it must pass every call and event on).
    pub fn map_cluster(mut self, wrap: impl FnOnce(Arc<dyn DynCluster>) -> Arc<dyn DynCluster>) -> Self {
        self.cluster = wrap(self.cluster);
        self
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster.
    pub fn cluster(&self) -> &Arc<dyn DynCluster> {
        &self.cluster
    }

    /// How clients are tracked.
    pub fn tracking(&self) -> &Tracking {
        &self.tracking
    }

    /// The replay history, if the backend has one.
    pub fn history(&self) -> Option<&Arc<dyn DynHistory>> {
        self.history.as_ref()
    }

    /// The store of channels of sessions, if the backend has one.
    pub fn channels(&self) -> Option<&Arc<dyn DynChannelManager>> {
        self.channels.as_ref()
    }

    /// The session store, if the backend has one.
    pub fn session_store(&self) -> Option<&Arc<dyn DynSessionStore>> {
        self.sessions.as_ref()
    }

    /// The resource store, if the backend has one.
    pub fn resources(&self) -> Option<&Arc<dyn DynResourceManager>> {
        self.resources.as_ref()
    }
}

/// A cluster backend and the stores that go with it, installed into a node as one bundle.
///
/// Implement it for your backend's settings type: [`connect`](Backend::connect) makes every
/// part (connecting where it must) when the node starts.
///
/// A backend is more than its [`Cluster`]: members that share clients also need to share what a
/// client may find on any member — its session ([`SessionStore`]), the channels of its session
/// ([`ChannelManager`]), the replay logs it recovers from ([`History`]) — and a cluster-wide
/// table of who is connected where ([`ClientTracker`](crate::ClientTracker)). A backend crate exports one type that
/// implements [`Backend`]: when the node starts it connects and hands over all of its parts
/// at once ([`BackendParts`]), so that they cannot be wired inconsistently by hand. The node
/// builder takes it in one call and refuses a combination that cannot work (see the facade's
/// `Builder::build`).
///
/// ```
/// use thywill_core::{Backend, BackendParts, CoreResult, Tracking};
/// # use std::sync::Arc;
/// # use thywill_core::{Cluster, ClusterEvents, ClusterTask, MemberId, MemberStatus};
/// # struct MyCluster(MemberId);
/// # impl Cluster for MyCluster {
/// #     fn local_member(&self) -> &MemberId { &self.0 }
/// #     fn members(&self) -> Vec<MemberId> { vec![self.0.clone()] }
/// #     fn status(&self, _: &MemberId) -> MemberStatus { MemberStatus::Up }
/// #     async fn start(&self, _: Arc<dyn ClusterEvents>) -> CoreResult<()> { Ok(()) }
/// #     async fn send_to(&self, _: &MemberId, _: ClusterTask) -> CoreResult<()> { Ok(()) }
/// #     async fn send_to_others(&self, _: ClusterTask) -> CoreResult<()> { Ok(()) }
/// #     async fn send_to_all(&self, _: ClusterTask) -> CoreResult<()> { Ok(()) }
/// # }
///
/// /// A backend whose members talk over a bus of their own; its stores are the in-memory
/// /// defaults (so a node refuses sessions on more than one member until it has a shared store).
/// struct MyBackend {
///     local: MemberId,
/// }
///
/// impl Backend for MyBackend {
///     async fn connect(self) -> CoreResult<BackendParts> {
///         // Connect here; every part is made now.
///         Ok(BackendParts::new("my-bus", MyCluster(self.local)))
///     }
/// }
/// # let _ = Tracking::ClusterWide;
/// ```
pub trait Backend: Send + 'static {
    /// Connects and returns the parts. Called once, by the node builder, on the node's runtime.
    fn connect(self) -> impl Future<Output = CoreResult<BackendParts>> + Send
    where
        Self: Sized;
}

impl Backend for BackendParts {
    async fn connect(self) -> CoreResult<BackendParts> {
        Ok(self)
    }
}

/// A backend chosen at run time (such as from a configuration file) is a backend too.
impl Backend for Box<dyn DynBackend> {
    fn connect(self) -> impl Future<Output = CoreResult<BackendParts>> + Send {
        self.connect_boxed()
    }
}

/// The object-safe twin of [`Backend`], which the node builder stores; implemented for every
/// [`Backend`], never by hand.
pub trait DynBackend: Send + 'static {
    /// See [`Backend::connect`].
    fn connect_boxed(self: Box<Self>) -> BoxFuture<'static, CoreResult<BackendParts>>;
}

impl<B: Backend> DynBackend for B {
    fn connect_boxed(self: Box<Self>) -> BoxFuture<'static, CoreResult<BackendParts>> {
        Box::pin((*self).connect())
    }
}
