//! The preparing store: resources stored while running are minified, tagged and compressed.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use thywill_core::{CoreResult, Resource, ResourceManager, attr};
use thywill_resources::{Pipeline, PipelineConfig, PreparedStore};

/// A plain map, standing in for any store.
#[derive(Default)]
struct Map(Mutex<BTreeMap<String, Resource>>);

impl ResourceManager for Map {
    async fn store(&self, r: Resource) -> CoreResult<()> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.client_path.clone(), r);
        Ok(())
    }
    async fn load(&self, path: &str) -> CoreResult<Option<Resource>> {
        let r = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            .cloned();
        Ok(r)
    }
    async fn remove(&self, path: &str) -> CoreResult<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        Ok(())
    }
    async fn bootstrap(&self) -> CoreResult<Vec<Resource>> {
        Ok(Vec::new())
    }
}

fn store() -> (Arc<Map>, PreparedStore) {
    let map = Arc::new(Map::default());
    let prepared = PreparedStore::new(map.clone(), Pipeline::new(PipelineConfig::new("/app")));
    (map, prepared)
}

fn keys(map: &Map) -> Vec<String> {
    map.0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .keys()
        .cloned()
        .collect()
}

#[tokio::test]
async fn stored_scripts_are_minified_tagged_and_compressed() -> anyhow::Result<()> {
    let (map, store) = store();
    let source = format!(
        "// a comment\nfunction feature(x) {{\n  return x * 2;\n}}\n{}",
        "feature(1);\n".repeat(40)
    );
    store
        .store(Resource::new("/app/js/feature.js", source.clone()))
        .await?;
    assert_eq!(
        keys(&map),
        [
            "/app/js/feature.js",
            "/app/js/feature.js#br",
            "/app/js/feature.js#gzip"
        ]
    );

    let r = store
        .load("/app/js/feature.js")
        .await?
        .ok_or_else(|| anyhow::anyhow!("not stored"))?;
    let text = r.text().unwrap_or_default();
    assert!(text.len() < source.len() && !text.contains("a comment"), "{text}");
    assert_eq!(r.attribute(attr::MINIFIED), Some("true"));
    assert_eq!(r.attribute(attr::ENCODINGS), Some("br,gzip"));
    let etag = r.attribute(attr::ETAG).unwrap_or_default().to_owned();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");

    let gz = store
        .load("/app/js/feature.js#gzip")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no gzip"))?;
    assert_eq!(gz.attribute(attr::CONTENT_ENCODING), Some("gzip"));
    assert_eq!(gz.attribute(attr::VARIANT_OF), Some(etag.as_str()));
    let mut plain = Vec::new();
    flate2_read(&gz.body, &mut plain)?;
    assert_eq!(plain, r.body.to_vec());

    // Small resources get no variants, and a shrinking resource loses its old ones.
    store
        .store(Resource::new("/app/js/feature.js", "var tiny = 1;"))
        .await?;
    assert_eq!(keys(&map), ["/app/js/feature.js"]);
    let r = store
        .load("/app/js/feature.js")
        .await?
        .ok_or_else(|| anyhow::anyhow!("not stored"))?;
    assert_eq!(r.attribute(attr::ENCODINGS), None);

    // Removing removes the variants too.
    let css: String = (0..50).map(|i| format!(".a{i} {{ margin: {i}px; }}\n")).collect();
    store.store(Resource::new("/app/css/big.css", css)).await?;
    assert_eq!(keys(&map).len(), 4);
    store.remove("/app/css/big.css").await?;
    assert_eq!(keys(&map), ["/app/js/feature.js"]);
    Ok(())
}

#[tokio::test]
async fn broken_scripts_are_refused_with_file_line_and_column() -> anyhow::Result<()> {
    let (map, store) = store();
    let r = Resource::new("/app/js/bad.js", "var a = 1;\n  a +;\n").with_origin("src/bad.js");
    let err = store
        .store(r)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("src/bad.js:2:6"), "{err}");
    assert!(keys(&map).is_empty());
    Ok(())
}

#[tokio::test]
async fn other_resources_pass_unchanged() -> anyhow::Result<()> {
    let (_, store) = store();
    let json = "{ \"a\": 1 }";
    store.store(Resource::new("/app/data.json", json)).await?;
    let r = store
        .load("/app/data.json")
        .await?
        .ok_or_else(|| anyhow::anyhow!("not stored"))?;
    assert_eq!(r.text(), Some(json));
    store
        .store(Resource::new("/app/js/x.min.js", "/* keep */ var   x = 1;"))
        .await?;
    let r = store
        .load("/app/js/x.min.js")
        .await?
        .ok_or_else(|| anyhow::anyhow!("not stored"))?;
    assert_eq!(r.text(), Some("/* keep */ var   x = 1;"));
    Ok(())
}

fn flate2_read(body: &[u8], out: &mut Vec<u8>) -> std::io::Result<usize> {
    flate2::read::GzDecoder::new(body).read_to_end(out)
}

/// A minifier that records the thread it runs on and, for scripts, waits (bounded) for a
/// signal that only a task of the test's runtime sends: minifying on the runtime's only
/// thread would stall that task, and the store would fail.
struct Rendezvous {
    go: Mutex<std::sync::mpsc::Receiver<()>>,
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

impl Rendezvous {
    fn new() -> (Arc<Rendezvous>, std::sync::mpsc::Sender<()>) {
        let (tx, rx) = std::sync::mpsc::channel();
        let m = Rendezvous {
            go: Mutex::new(rx),
            threads: Mutex::new(Vec::new()),
        };
        (Arc::new(m), tx)
    }

    fn threads(&self) -> Vec<std::thread::ThreadId> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl thywill_core::Minifier for Rendezvous {
    fn minify_js(&self, _origin: &str, source: &str) -> CoreResult<String> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::thread::current().id());
        self.go
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| {
                thywill_core::CoreError::Unavailable("the runtime's tasks did not run while minifying".into())
            })?;
        Ok(source.trim().to_owned())
    }

    fn minify_css(&self, _origin: &str, source: &str) -> CoreResult<String> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(std::thread::current().id());
        Ok(source.trim().to_owned())
    }
}

// `#[tokio::test]` runs a current-thread runtime: its one worker is this test's thread.
#[tokio::test]
async fn storing_minifies_and_compresses_off_the_runtime_thread() -> anyhow::Result<()> {
    let (minifier, go) = Rendezvous::new();
    let map = Arc::new(Map::default());
    let store = PreparedStore::new(
        map.clone(),
        Pipeline::new(PipelineConfig::new("/app")).with_minifier(minifier.clone()),
    );
    // Runs only while the runtime's thread is free: not while a minifier blocks it.
    let signal = tokio::spawn(async move { go.send(()) });
    store
        .store(Resource::new("/app/js/big.js", "feature(1);\n".repeat(200)))
        .await?;
    signal.await??;
    let here = std::thread::current().id();
    assert_eq!(minifier.threads().len(), 1);
    assert!(
        minifier.threads().iter().all(|t| *t != here),
        "minified on the runtime thread"
    );
    // Compressed in the same step: the variants are there.
    assert_eq!(
        keys(&map),
        ["/app/js/big.js", "/app/js/big.js#br", "/app/js/big.js#gzip"]
    );
    Ok(())
}

#[tokio::test]
async fn assembling_from_async_code_runs_off_the_runtime_thread() -> anyhow::Result<()> {
    let (minifier, _go) = Rendezvous::new();
    let pipeline = Pipeline::new(PipelineConfig::new("/app")).with_minifier(minifier.clone());
    let assembly = pipeline
        .assemble_async(vec![
            Resource::new("/app/css/a.css", " body { color: red; } ").bootstrap(),
        ])
        .await?;
    assert!(assembly.style_bundle.is_some());
    let here = std::thread::current().id();
    assert_eq!(minifier.threads().len(), 1);
    assert!(
        minifier.threads().iter().all(|t| *t != here),
        "minified on the runtime thread"
    );
    Ok(())
}

#[test]
fn outside_a_runtime_storing_prepares_on_the_calling_thread() -> anyhow::Result<()> {
    let (minifier, go) = Rendezvous::new();
    go.send(())?;
    let map = Arc::new(Map::default());
    let store = PreparedStore::new(
        map.clone(),
        Pipeline::new(PipelineConfig::new("/app")).with_minifier(minifier.clone()),
    );
    let fut = store.store(Resource::new("/app/js/small.js", " f(); "));
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(done) => done?,
        std::task::Poll::Pending => anyhow::bail!("the store waited for something outside a runtime"),
    }
    assert_eq!(minifier.threads(), [std::thread::current().id()]);
    assert_eq!(keys(&map), ["/app/js/small.js"]);
    Ok(())
}
