//! Integration tests of the HTTP backend: members in this process on free loopback ports.

mod auth;
mod conformance;
mod interest;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use thywill_cluster_http::{HttpCluster, HttpClusterConfig};
use thywill_core::{DynCluster, MemberId};
use thywill_testkit::conformance::Spec;

/// Free ports per (cluster, member), kept so that a restarted member reuses its port.
#[derive(Debug, Default)]
pub struct Ports(Mutex<HashMap<(String, MemberId), u16>>);

impl Ports {
    /// The addresses of the members of `spec.cluster`.
    pub fn members(&self, spec: &Spec) -> Vec<(MemberId, SocketAddr)> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        spec.members
            .iter()
            .map(|m| {
                let port = *map
                    .entry((spec.cluster.clone(), m.clone()))
                    .or_insert_with(thywill_testkit::free_port);
                (m.clone(), SocketAddr::from(([127, 0, 0, 1], port)))
            })
            .collect()
    }
}

/// Builds one member of the cluster described by `spec`, sharing `secret`.
pub fn member(ports: &Ports, spec: &Spec, secret: &[u8]) -> anyhow::Result<Arc<dyn DynCluster>> {
    let config = HttpClusterConfig::default()
        .with_members(ports.members(spec))?
        .with_local(spec.local.clone())?
        .with_secret(secret.to_vec())?;
    Ok(Arc::new(HttpCluster::new(config)?))
}
