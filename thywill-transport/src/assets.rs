//! The browser client library, stored as resources under `<base>/thywill/`.

use thywill_core::{Resource, ResourceKind};

use crate::{Edge, TransportError};

/// The browser client library (a classic script defining the global `Thywill`).
pub const CLIENT_JS: &str = include_str!("../client/thywill.js");
/// TypeScript declarations for [`CLIENT_JS`].
pub const CLIENT_DTS: &str = include_str!("../client/thywill.d.ts");

/// Client path of the client library under a base path.
pub fn client_js_path(node: &Edge) -> String {
    node.config().path("thywill/thywill.js")
}

pub(crate) async fn store_client_assets(node: &Edge) -> Result<(), TransportError> {
    let js = Resource::new(client_js_path(node), CLIENT_JS)
        .with_kind(ResourceKind::Javascript)
        .with_weight(-1000);
    node.resources().store(js).await?;
    let dts = Resource::new(node.config().path("thywill/thywill.d.ts"), CLIENT_DTS);
    node.resources().store(dts).await?;
    Ok(())
}
