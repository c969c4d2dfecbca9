//! Dropping privileges, for real: as root, the Echo example binds a privileged port, then
//! switches to a throw-away system user made by this test (`[process] user`, here through
//! `THYWILL_PROCESS__USER`). `/proc/<pid>/status` shows the user's ids for every thread, and
//! the page is still served on the privileged port. Without the option the example refuses to
//! serve as root, with an error that says what to set.
//!
//! Needs root and `useradd`; skipped with a notice otherwise. The user is removed at the end,
//! whatever happens (a guard's `Drop`).

use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use thywill_testkit::TIMEOUT;
use thywill_testkit::process::Process;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO: &str = env!("CARGO_BIN_EXE_example-echo");
/// What `.cargo/config.toml` sets for every process cargo starts; removed here.
const ALLOW_ROOT: &str = "THYWILL_PROCESS__ALLOW_ROOT";

/// A system user (and its group) made for this test; deleted on drop.
struct ThrowAwayUser {
    name: String,
}

impl ThrowAwayUser {
    fn create() -> anyhow::Result<Self> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        // System user names: at most 32 characters, lower case.
        let name = format!("thywill-t{:x}{:x}", std::process::id(), stamp);
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .stdin(Stdio::null())
            .output()
            .context("cannot run useradd")?;
        if !out.status.success() {
            bail!("useradd {name} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self { name })
    }

    fn id(&self, flag: &str) -> anyhow::Result<u32> {
        let out = Command::new("id").arg(flag).arg(&self.name).output()?;
        anyhow::ensure!(out.status.success(), "id {flag} {} failed", self.name);
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
    }
}

impl Drop for ThrowAwayUser {
    fn drop(&mut self) {
        // userdel also removes the user's own group (made by --user-group).
        match Command::new("userdel")
            .arg(&self.name)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: userdel {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run userdel {}: {e}", self.name),
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn has(program: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| std::path::Path::new(d).join(program).is_file())
}

/// A free port below 1024: only root may bind it.
fn privileged_port() -> anyhow::Result<u16> {
    (600..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .context("no free port below 1024")
}

/// The `Uid:` and `Gid:` lines' four ids (real, effective, saved, filesystem) of a status file.
fn ids(status: &str, key: &str) -> Vec<u32> {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn get(port: u16, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut reply = String::new();
    tokio::time::timeout(TIMEOUT, s.read_to_string(&mut reply)).await??;
    Ok(reply)
}

fn echo(port: u16) -> Command {
    let mut cmd = Command::new(ECHO);
    cmd.args(["--port", &port.to_string()])
        .env_remove(ALLOW_ROOT)
        .env_remove("THYWILL_PROCESS__USER")
        .env_remove("THYWILL_PROCESS__GROUP")
        .env("RUST_LOG", "info");
    cmd
}

#[tokio::test]
async fn a_member_started_as_root_serves_as_the_configured_user_and_refuses_root() -> anyhow::Result<()> {
    if !is_root() {
        println!("notice: not running as root; skipping the privilege-drop test");
        return Ok(());
    }
    if !has("useradd") || !has("userdel") {
        println!("notice: useradd/userdel are not installed; skipping the privilege-drop test");
        return Ok(());
    }
    let user = ThrowAwayUser::create()?;
    let (uid, gid) = (user.id("-u")?, user.id("-g")?);
    assert_ne!(uid, 0);

    // With the user configured: binds the privileged port as root, then serves as the user.
    let port = privileged_port()?;
    let mut cmd = echo(port);
    cmd.env("THYWILL_PROCESS__USER", &user.name);
    let mut member = Process::spawn_command(cmd)?;
    let url = member.listening_url().await?;
    assert!(url.contains(&format!(":{port}/")), "{url}");
    let pid = member.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    assert_eq!(ids(&status, "Uid:"), vec![uid; 4], "{status}");
    assert_eq!(ids(&status, "Gid:"), vec![gid; 4], "{status}");
    let groups = status
        .lines()
        .find(|l| l.starts_with("Groups:"))
        .unwrap_or_default();
    assert!(
        groups.split_whitespace().skip(1).all(|g| g == gid.to_string()),
        "only the user's group remains: {groups}"
    );
    // Every thread (the runtime's workers included) switched, not just the main one.
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        assert_eq!(ids(&status, "Uid:"), vec![uid; 4], "{status}");
        assert_eq!(ids(&status, "Gid:"), vec![gid; 4], "{status}");
    }
    let page = get(port, "/echo/").await?;
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "the page through the dropped member: {page}"
    );
    let alive = get(port, "/echo/alive").await?;
    assert!(alive.starts_with("HTTP/1.1 200"), "{alive}");
    member.kill();

    // Without it, as root: refused, with a clear error, and the page is never served.
    let port = privileged_port()?;
    let run = tokio::process::Command::from(echo(port))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(TIMEOUT, run)
        .await
        .context("the example did not exit when refusing to serve as root")??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "it ran as root: {stdout}\n{stderr}");
    assert!(
        stderr.contains("refusing to serve as root") && stderr.contains("process.user"),
        "the error says why and what to set: {stderr}"
    );
    assert!(!stdout.contains("listening:"), "{stdout}");

    // A user that does not exist is an error too, not a member left running as root.
    let mut cmd = echo(port);
    cmd.env("THYWILL_PROCESS__USER", format!("{}-missing", user.name));
    let out = tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::from(cmd).kill_on_drop(true).output(),
    )
    .await??;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such user"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every process above has exited or been killed and reaped, so userdel (on drop) finds
    // none of the user's processes running.
    Ok(())
}
