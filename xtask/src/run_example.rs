//! `cargo xtask run-example NAME`: builds the workspace once, runs N members of an example on
//! consecutive ports, prints each member's page URL, reports members that die, and stops every
//! process it started on Ctrl-C or SIGTERM.
//!
//! The children run in their own process groups, so a Ctrl-C in the terminal reaches xtask
//! only; xtask then stops them in order (SIGTERM, a grace period, SIGKILL).
//!
//! `--cluster nats` (Draw only: the one example that installs the NATS backend of
//! `examples/nats-backend`) starts a loopback `nats-server` for the run, as `--cluster redis`
//! starts a `redis-server`, and stops it after the members.
//!
//! Secrets are drawn anew for every run and handed to every member in its environment (not on
//! its command line, which every local user can read): `THYWILL_CLUSTER_SECRET` for
//! `--cluster http` (the HTTP backend refuses to run without one), and
//! `THYWILL_SESSION__SECRET` for a clustered Chat (its members must sign session cookies
//! alike, and refuse to start without a secret), and `AXUM_APP_SECRET` for a clustered
//! axum-app (the key of the app's own login tokens, which every member must accept).
//!
//! `vite-echo` is not a crate but a front end (`examples/vite-echo`): it runs Echo (one
//! member) and Vite's dev server for the page, whose proxy passes the page's WebSocket on to
//! Echo.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};

use crate::flags::Args;
use crate::sys::{self, Signals};
use crate::{binary, cargo, cmd, project_root, run as run_cmd};

/// How long a stopped process may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(10);
/// How long a loopback Redis (or NATS) may take to accept connections.
const REDIS_START: Duration = Duration::from_secs(10);

/// The examples that install the NATS backend (`--cluster nats`).
const NATS_EXAMPLES: [&str; 1] = ["draw"];

/// Member ids, in the order members are started.
const MEMBER_IDS: [&str; 24] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
    "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega",
];

/// Each example's default port (the original's); an example missing here starts at 10081.
const DEFAULT_PORTS: [(&str, u16); 7] = [
    ("echo", 10081),
    ("calculations", 10082),
    ("draw", 10083),
    ("chat", 10087),
    ("display", 10091),
    ("tabular", 10093),
    // Not an original example: an axum app with thywill mounted under /live.
    ("axum-app", 10095),
];

/// How the members of a run are clustered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cluster {
    None,
    Redis,
    Http,
    /// The NATS backend of `examples/nats-backend` (Draw only).
    Nats,
}

impl FromStr for Cluster {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Self::None),
            "redis" => Ok(Self::Redis),
            "http" => Ok(Self::Http),
            "nats" => Ok(Self::Nats),
            _ => Err("expected none, redis, http or nats".into()),
        }
    }
}

/// The options of `run-example`.
#[derive(Debug, PartialEq)]
struct Options {
    name: String,
    members: usize,
    cluster: Cluster,
    port: Option<u16>,
    redis_url: Option<String>,
    release: bool,
}

fn parse(args: Vec<String>) -> anyhow::Result<Options> {
    let mut args = Args::new(args);
    let members = args.value_or("--members", 1usize)?;
    let cluster = args.value_or("--cluster", Cluster::None)?;
    let port = args.value("--port")?;
    let redis_url: Option<String> = args.value("--redis-url")?;
    let release = args.switch("--release");
    let name = args.positional("example NAME")?;
    args.finish()?;
    if members == 0 {
        bail!("--members must be at least 1");
    }
    if redis_url.is_some() && cluster != Cluster::Redis {
        bail!("--redis-url needs --cluster redis");
    }
    if cluster == Cluster::Nats && !NATS_EXAMPLES.contains(&name.as_str()) {
        bail!(
            "--cluster nats: only {} install the NATS backend (examples/nats-backend)",
            NATS_EXAMPLES.join(", ")
        );
    }
    Ok(Options {
        name,
        members,
        cluster,
        port,
        redis_url,
        release,
    })
}

/// One member process to start.
#[derive(Debug, PartialEq)]
struct Member {
    id: String,
    port: u16,
}

fn member_id(index: usize) -> String {
    MEMBER_IDS
        .get(index)
        .map_or_else(|| format!("member{}", index + 1), |id| (*id).to_owned())
}

fn default_port(example: &str) -> u16 {
    DEFAULT_PORTS
        .iter()
        .find(|(name, _)| *name == example)
        .map_or(10081, |(_, port)| *port)
}

/// Members `alpha, beta, …` on consecutive ports from `first_port` (`0`: chosen later).
fn plan(count: usize, first_port: u16) -> anyhow::Result<Vec<Member>> {
    (0..count)
        .map(|i| {
            let port = match first_port {
                0 => Some(0),
                _ => u16::try_from(i).ok().and_then(|i| first_port.checked_add(i)),
            };
            let port =
                port.with_context(|| format!("{count} members from port {first_port} run past port 65535"))?;
            Ok(Member {
                id: member_id(i),
                port,
            })
        })
        .collect()
}

/// Bytes of randomness in a generated secret (hex-encoded: twice as many characters).
const SECRET_BYTES: usize = 32;

/// A fresh random secret: [`SECRET_BYTES`] bytes from the system's generator, hex-encoded.
fn random_secret() -> anyhow::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; SECRET_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for a secret")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The environment every member of this run gets: the secrets it needs, drawn anew per run.
fn run_env(example: &str, cluster: Cluster) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut env = Vec::new();
    if cluster == Cluster::Http {
        env.push(("THYWILL_CLUSTER_SECRET", random_secret()?));
    }
    if example == "chat" && cluster != Cluster::None {
        env.push(("THYWILL_SESSION__SECRET", random_secret()?));
    }
    // The axum app's own login tokens: every member must accept the others' (its own key,
    // not thywill's).
    if example == "axum-app" && cluster != Cluster::None {
        env.push(("AXUM_APP_SECRET", random_secret()?));
    }
    Ok(env)
}

/// The command line of one member.
fn member_args(member: &Member, all: &[Member], cluster: Cluster, server_url: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--port".to_owned(),
        member.port.to_string(),
        "--member".to_owned(),
        member.id.clone(),
    ];
    match cluster {
        Cluster::None => {}
        Cluster::Redis => {
            args.extend([
                "--cluster".to_owned(),
                "redis".to_owned(),
                "--redis-url".to_owned(),
            ]);
            args.push(server_url.unwrap_or_default().to_owned());
        }
        Cluster::Nats => {
            let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
            args.extend([
                "--cluster".to_owned(),
                "nats".to_owned(),
                "--nats-url".to_owned(),
                server_url.unwrap_or_default().to_owned(),
                "--cluster-members".to_owned(),
                ids.join(","),
            ]);
        }
        Cluster::Http => {
            let list: Vec<String> = all
                .iter()
                .map(|m| format!("{}=127.0.0.1:{}", m.id, m.port))
                .collect();
            args.extend([
                "--cluster".to_owned(),
                "http".to_owned(),
                "--cluster-members".to_owned(),
            ]);
            args.push(list.join(","));
        }
    }
    args
}

/// The `name` of a manifest's `[package]` section.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
        {
            return Some(value.trim().trim_matches('"').to_owned());
        }
    }
    None
}

/// The examples of the workspace: packages `example-NAME` under `examples/`, without
/// `example-support`; returns the NAMEs, sorted.
fn discover_examples(root: &Path) -> anyhow::Result<Vec<String>> {
    let dir = root.join("examples");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let manifest = entry?.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        if let Some(name) = package_name(&text)
            .as_deref()
            .and_then(|n| n.strip_prefix("example-"))
            && name != "support"
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The front-end example run with Vite's dev server next to Echo.
const VITE_ECHO: &str = "vite-echo";

pub(crate) fn run(args: Vec<String>) -> anyhow::Result<()> {
    let mut opts = parse(args)?;
    let vite = opts.name == VITE_ECHO;
    if vite {
        if opts.members != 1 || opts.cluster != Cluster::None {
            bail!("{VITE_ECHO} runs one Echo member: no --members or --cluster");
        }
        let port = opts.port.unwrap_or_else(|| default_port("echo"));
        if port == 0 {
            bail!("{VITE_ECHO} needs Echo's port known: no --port 0");
        }
        opts.name = "echo".to_owned();
        opts.port = Some(port);
        crate::client::install_toolchain(&vite_echo_dir())?;
    }
    let known = discover_examples(&project_root())?;
    if !known.contains(&opts.name) {
        bail!(
            "unknown example {:?}; the examples are: {}",
            opts.name,
            known.join(", ")
        );
    }
    // The whole workspace, never `-p`: see crates.md, "the -p trap".
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins"]);
    if opts.release {
        build.arg("--release");
    }
    run_cmd(build)?;
    let bin = binary(&format!("example-{}", opts.name), opts.release);
    if !bin.is_file() {
        bail!("the build did not produce {}", bin.display());
    }
    tokio::runtime::Runtime::new()?.block_on(async move {
        let mut dev_server = match (vite, opts.port) {
            (true, Some(port)) => Some(start_vite(port)?),
            _ => None,
        };
        let result = supervise(opts, bin).await;
        if let Some(child) = dev_server.as_mut() {
            let status = sys::stop(child, GRACE).await;
            println!("vite: stopped ({})", describe(&status));
        }
        result
    })
}

fn vite_echo_dir() -> PathBuf {
    project_root().join("examples").join(VITE_ECHO)
}

/// Vite's dev server for `examples/vite-echo`, proxying the page's socket to Echo on `port`;
/// it prints the page's URL.
fn start_vite(port: u16) -> anyhow::Result<tokio::process::Child> {
    // Vite's own executable rather than `npx vite`, so that stopping it stops the server
    // (npx would leave its child running).
    let dir = vite_echo_dir();
    let mut c = tokio::process::Command::from(cmd(dir.join("node_modules").join(".bin").join("vite")));
    c.current_dir(&dir)
        .args(["--host", "127.0.0.1"])
        .env("THYWILL_ECHO", format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let child = c.spawn().context("cannot start Vite's dev server")?;
    println!(
        "vite: started (pid {}); its page is under /echo/vite/",
        child.id().unwrap_or_default()
    );
    Ok(child)
}

/// What a member process reports to the supervisor.
#[derive(Debug)]
enum Event {
    Listening {
        id: String,
        url: String,
    },
    Exited {
        id: String,
        status: std::io::Result<ExitStatus>,
    },
}

async fn supervise(opts: Options, bin: PathBuf) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let mut redis = None;
    let mut nats = None;
    let server_url = match (opts.cluster, opts.redis_url.clone()) {
        (Cluster::Redis, Some(url)) => Some(url),
        (Cluster::Redis, None) => {
            let (child, url) = start_redis().await?;
            println!("redis: {url} (pid {})", child.id().unwrap_or_default());
            redis = Some(child);
            Some(url)
        }
        (Cluster::Nats, _) => {
            let (child, url) = start_nats().await?;
            println!("nats: {url} (pid {})", child.id().unwrap_or_default());
            nats = Some(child);
            Some(url)
        }
        _ => None,
    };

    let first_port = opts.port.unwrap_or_else(|| default_port(&opts.name));
    let mut members = plan(opts.members, first_port)?;
    if first_port == 0 {
        // `--port 0`: free ports, known before the start so that members can be told each other's.
        for m in &mut members {
            m.port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        }
    }
    let env = run_env(&opts.name, opts.cluster)?;
    for (name, _) in &env {
        println!("xtask: {name}: a secret generated for this run");
    }
    let (events, mut event_rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut started = 0usize;
    let mut failure = None;
    for m in &members {
        let mut c = tokio::process::Command::from(cmd(&bin));
        c.args(member_args(m, &members, opts.cluster, server_url.as_deref()))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        match c.spawn() {
            Ok(child) => {
                println!(
                    "{}: started (pid {}, port {})",
                    m.id,
                    child.id().unwrap_or_default(),
                    m.port
                );
                watch_member(m.id.clone(), child, events.clone(), stop_rx.clone());
                started += 1;
            }
            Err(e) => {
                failure = Some(anyhow::anyhow!("cannot start {}: {e}", bin.display()));
                break;
            }
        }
    }

    let mut running = started;
    let mut listening = 0usize;
    while failure.is_none() {
        tokio::select! {
            signal = signals.recv() => {
                println!("xtask: {signal}: stopping {running} member(s)");
                break;
            }
            Some(event) = event_rx.recv() => match event {
                Event::Listening { id, url } => {
                    println!("{id}: {url}");
                    listening += 1;
                    if listening == members.len() {
                        println!("xtask: {listening} member(s) running; Ctrl-C stops them");
                    }
                }
                Event::Exited { id, status } => {
                    running -= 1;
                    println!("xtask: member {id} died ({}); {running} still running", describe(&status));
                    if running == 0 {
                        failure = Some(anyhow::anyhow!("every member has exited"));
                    }
                }
            },
        }
    }

    // Stop everything we started: members first, then Redis or NATS.
    let _ = stop_tx.send(true);
    while running > 0 {
        match event_rx.recv().await {
            Some(Event::Exited { id, status }) => {
                running -= 1;
                println!("{id}: stopped ({})", describe(&status));
            }
            Some(Event::Listening { .. }) => {}
            None => break,
        }
    }
    if let Some(mut child) = redis {
        let status = sys::stop(&mut child, GRACE).await;
        println!("redis: stopped ({})", describe(&status));
    }
    if let Some(mut child) = nats {
        let status = sys::stop(&mut child, GRACE).await;
        println!("nats: stopped ({})", describe(&status));
    }
    failure.map_or(Ok(()), Err)
}

fn describe(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("cannot wait for it: {e}"),
    }
}

/// Forwards a member's output (prefixed with its id), reports its `listening:` URL, and waits
/// for it to exit or to be told to stop.
fn watch_member(
    id: String,
    mut child: tokio::process::Child,
    events: mpsc::UnboundedSender<Event>,
    stop: watch::Receiver<bool>,
) {
    if let Some(out) = child.stdout.take() {
        let (id, events) = (id.clone(), events.clone());
        tokio::spawn(forward_lines(out, move |line| {
            match line.strip_prefix("listening: ") {
                Some(url) => {
                    let _ = events.send(Event::Listening {
                        id: id.clone(),
                        url: url.trim().to_owned(),
                    });
                }
                None => println!("[{id}] {line}"),
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let id = id.clone();
        tokio::spawn(forward_lines(err, move |line| eprintln!("[{id}] {line}")));
    }
    tokio::spawn(async move {
        let mut stop = stop;
        let status = tokio::select! {
            status = child.wait() => status,
            _ = async { stop.wait_for(|stop| *stop).await.map(drop) } => sys::stop(&mut child, GRACE).await,
        };
        let _ = events.send(Event::Exited { id, status });
    });
}

async fn forward_lines(stream: impl AsyncRead + Unpin, mut each: impl FnMut(&str)) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        each(&line);
    }
}

/// Starts `redis-server` on a free loopback port, without persistence, and waits until it
/// accepts connections.
async fn start_redis() -> anyhow::Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut c = tokio::process::Command::from(cmd("redis-server"));
    c.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .process_group(0)
    .kill_on_drop(true);
    let mut child = c
        .spawn()
        .context("cannot start redis-server (`bash scripts/install-test-deps.sh` installs it)")?;
    let deadline = tokio::time::Instant::now() + REDIS_START;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((child, format!("redis://127.0.0.1:{port}")));
        }
        if let Some(status) = child.try_wait()? {
            bail!("redis-server exited at start ({status})");
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = sys::stop(&mut child, GRACE).await;
            bail!("redis-server did not accept connections on port {port} within {REDIS_START:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts `nats-server` on a free loopback port and waits until it accepts connections.
async fn start_nats() -> anyhow::Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    // Debian installs it in /usr/sbin, which is not on every user's PATH.
    let program = if Path::new("/usr/sbin/nats-server").is_file() {
        "/usr/sbin/nats-server"
    } else {
        "nats-server"
    };
    let mut c = tokio::process::Command::from(cmd(program));
    c.args(["--addr", "127.0.0.1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .context("cannot start nats-server (`bash scripts/install-test-deps.sh` installs it)")?;
    let deadline = tokio::time::Instant::now() + REDIS_START;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((child, format!("nats://127.0.0.1:{port}")));
        }
        if let Some(status) = child.try_wait()? {
            bail!("nats-server exited at start ({status})");
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = sys::stop(&mut child, GRACE).await;
            bail!("nats-server did not accept connections on port {port} within {REDIS_START:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// The ports browsers refuse to connect to (the Fetch standard's "bad ports", also
    /// Chromium's and Firefox's lists): a page on one fails with `ERR_UNSAFE_PORT`.
    const FETCH_BAD_PORTS: &[u16] = &[
        0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102,
        103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512,
        513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719,
        1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697,
        10080,
    ];

    #[test]
    fn no_example_defaults_to_a_port_browsers_refuse() -> anyhow::Result<()> {
        let root = crate::project_root();
        for (name, port) in DEFAULT_PORTS {
            // Every member of a run, up to the most members a run has.
            for i in 0..MEMBER_IDS.len() as u16 {
                let p = port + i;
                assert!(
                    !FETCH_BAD_PORTS.contains(&p),
                    "{name}'s member {i} would use port {p}"
                );
            }
            // The example's own default agrees with the table.
            let lib = std::fs::read_to_string(root.join("examples").join(name).join("src/lib.rs"))?;
            let declared = lib
                .lines()
                .find_map(|l| l.trim().strip_prefix("pub const DEFAULT_PORT: u16 = "))
                .and_then(|v| v.trim_end_matches(';').parse::<u16>().ok());
            assert_eq!(declared, Some(port), "examples/{name}/src/lib.rs DEFAULT_PORT");
        }
        // The README's first command, and the configuration's default port.
        let readme = std::fs::read_to_string(root.join("README.md"))?;
        let mut named = 0;
        for (at, _) in readme.match_indices("127.0.0.1:") {
            let digits: String = readme[at + 10..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(p) = digits.parse::<u16>() {
                named += 1;
                assert!(!FETCH_BAD_PORTS.contains(&p), "README names port {p}");
            }
        }
        assert!(named > 0, "the README names the address to open");
        let config = std::fs::read_to_string(root.join("thywill/src/config.rs"))?;
        assert!(
            !config.contains("port: 10080,"),
            "the configuration's default port is refused by browsers"
        );
        Ok(())
    }

    #[test]
    fn parses_defaults() -> anyhow::Result<()> {
        let o = parse(args("echo"))?;
        let expected = Options {
            name: "echo".into(),
            members: 1,
            cluster: Cluster::None,
            port: None,
            redis_url: None,
            release: false,
        };
        assert_eq!(o, expected);
        Ok(())
    }

    #[test]
    fn parses_everything_in_any_order() -> anyhow::Result<()> {
        let o = parse(args(
            "--members 3 chat --cluster=redis --redis-url redis://h:1 --port 18090 --release",
        ))?;
        assert_eq!(
            (o.name.as_str(), o.members, o.cluster, o.port),
            ("chat", 3, Cluster::Redis, Some(18090))
        );
        assert_eq!((o.redis_url.as_deref(), o.release), (Some("redis://h:1"), true));
        assert_eq!(parse(args("draw --cluster http"))?.cluster, Cluster::Http);
        assert_eq!(
            parse(args("draw --cluster nats --members 3"))?.cluster,
            Cluster::Nats
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_arguments() {
        for bad in [
            "",
            "echo --members 0",
            "echo --members x",
            "echo --cluster zookeeper",
            "echo --cluster nats",
            "echo --port 70000",
            "echo --redis-url redis://h:1",
            "echo --bogus",
            "echo chat",
        ] {
            assert!(parse(args(bad)).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn plans_members_on_consecutive_ports() -> anyhow::Result<()> {
        let plan = plan(3, 18090)?;
        let got: Vec<(&str, u16)> = plan.iter().map(|m| (m.id.as_str(), m.port)).collect();
        assert_eq!(got, [("alpha", 18090), ("beta", 18091), ("gamma", 18092)]);
        assert!(super::plan(2, 65535).is_err());
        assert!(super::plan(2, 0)?.iter().all(|m| m.port == 0));
        assert_eq!(member_id(4), "epsilon");
        assert_eq!(member_id(24), "member25");
        assert_eq!((default_port("draw"), default_port("tabular")), (10083, 10093));
        Ok(())
    }

    #[test]
    fn member_command_lines() -> anyhow::Result<()> {
        let all = plan(2, 100)?;
        assert_eq!(
            member_args(&all[1], &all, Cluster::None, None),
            args("--port 101 --member beta")
        );
        assert_eq!(
            member_args(&all[0], &all, Cluster::Redis, Some("redis://127.0.0.1:6400")),
            args("--port 100 --member alpha --cluster redis --redis-url redis://127.0.0.1:6400")
        );
        assert_eq!(
            member_args(&all[0], &all, Cluster::Http, None),
            args(
                "--port 100 --member alpha --cluster http --cluster-members alpha=127.0.0.1:100,beta=127.0.0.1:101"
            )
        );
        assert_eq!(
            member_args(&all[1], &all, Cluster::Nats, Some("nats://127.0.0.1:4300")),
            args(
                "--port 101 --member beta --cluster nats --nats-url nats://127.0.0.1:4300 --cluster-members alpha,beta"
            )
        );
        Ok(())
    }

    #[test]
    fn every_run_draws_the_secrets_its_members_need() -> anyhow::Result<()> {
        let names = |env: &[(&str, String)]| env.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
        let http = run_env("draw", Cluster::Http)?;
        assert_eq!(names(&http), ["THYWILL_CLUSTER_SECRET"]);
        let secret = &http[0].1;
        assert!(secret.len() == 2 * SECRET_BYTES && secret.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(
            run_env("draw", Cluster::Http)?[0].1,
            *secret,
            "drawn anew per run"
        );
        assert_eq!(
            names(&run_env("chat", Cluster::Http)?),
            ["THYWILL_CLUSTER_SECRET", "THYWILL_SESSION__SECRET"]
        );
        assert_eq!(
            names(&run_env("chat", Cluster::Redis)?),
            ["THYWILL_SESSION__SECRET"]
        );
        assert!(
            run_env("chat", Cluster::None)?.is_empty(),
            "a single chat member draws its own"
        );
        assert!(run_env("draw", Cluster::Redis)?.is_empty());
        assert_eq!(names(&run_env("axum-app", Cluster::Redis)?), ["AXUM_APP_SECRET"]);
        assert!(run_env("axum-app", Cluster::None)?.is_empty());
        Ok(())
    }

    #[test]
    fn finds_package_names_and_examples() -> anyhow::Result<()> {
        let manifest =
            "[package]\nname = \"example-echo\"\nversion.workspace = true\n\n[dependencies]\nname = \"x\"\n";
        assert_eq!(package_name(manifest).as_deref(), Some("example-echo"));
        assert_eq!(package_name("[dependencies]\nname = \"x\"\n"), None);
        let examples = discover_examples(&project_root())?;
        assert!(examples.iter().any(|e| e == "echo"), "{examples:?}");
        assert!(!examples.iter().any(|e| e == "support"), "{examples:?}");
        Ok(())
    }
}
