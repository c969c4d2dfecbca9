//! The generated declarations, with the client library's, make `tsc` accept correct calls
//! and refuse wrong ones.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::fixture::Fixture;

/// A first run of `npx` may download TypeScript from the npm registry.
const TSC_TIMEOUT: Duration = Duration::from_secs(300);

const GOOD: &str = r#"/// <reference path="thywill.d.ts" />
/// <reference path="rpc.d.ts" />
const calc = new Thywill.ApplicationInterface<CalculationsRpc>("calculations");

async function run(): Promise<void> {
  const doubled: number | null = await calc.rpc("multiplicative.multiplyByTwo", [10]);
  const root = await calc.rpc("powers.squareRoot", [100], { timeout: 500 });
  const rootOrNull: number | null = root;
  calc.rpc({ name: "powers.square", args: [3] }, (error, result) => {
    const r: number | null | undefined = result;
    console.log(error, r);
  });
  console.log(doubled, rootOrNull);
}
run();
"#;

/// Each line marked `// error` must be reported by `tsc`.
const BAD: &str = r#"/// <reference path="thywill.d.ts" />
/// <reference path="rpc.d.ts" />
const calc = new Thywill.ApplicationInterface<CalculationsRpc>("calculations");

async function run(): Promise<void> {
  await calc.rpc("powers.square", ["10"]); // error
  await calc.rpc("powers.square", [1, 2]); // error
  await calc.rpc("powers.square", []); // error
  const s: string = await calc.rpc("powers.squareRoot", [4]); // error
  const n: number = await calc.rpc("multiplicative.divideByTwo", [4]); // error
  calc.rpc({ name: "powers.square", args: ["3"] }, () => {}); // error
  console.log(s, n);
}
run();
"#;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn tsc(dir: &Path, file: &str) -> anyhow::Result<(bool, String)> {
    let mut cmd = tokio::process::Command::new("npx");
    cmd.args([
        "-y",
        "-p",
        "typescript@5",
        "tsc",
        "--noEmit",
        "--strict",
        "--pretty",
        "false",
    ])
    .args(["--target", "es2017", "--lib", "es2017,dom"])
    .args(["thywill.d.ts", "rpc.d.ts", file])
    .current_dir(dir)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let out = tokio::time::timeout(TSC_TIMEOUT, cmd.output()).await??;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

fn npx_installed() -> bool {
    std::process::Command::new("npx")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn tsc_accepts_correct_calls_and_refuses_wrong_ones() -> anyhow::Result<()> {
    if !npx_installed() {
        println!("notice: npx is not installed; skipping the TypeScript compilation check");
        return Ok(());
    }
    let f = Fixture::start().await?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let dir =
        TempDir(std::env::temp_dir().join(format!("thywill-calculations-ts-{}-{stamp}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let (status, client) = f.get("/calculations/thywill/thywill.d.ts").await?;
    anyhow::ensure!(status == 200, "thywill.d.ts: status {status}");
    let (status, rpc) = f.get(example_calculations::TYPESCRIPT_PATH).await?;
    anyhow::ensure!(status == 200, "rpc.d.ts: status {status}");
    std::fs::write(dir.0.join("thywill.d.ts"), client)?;
    std::fs::write(dir.0.join("rpc.d.ts"), rpc)?;
    std::fs::write(dir.0.join("good.ts"), GOOD)?;
    std::fs::write(dir.0.join("bad.ts"), BAD)?;

    let (ok, output) = tsc(&dir.0, "good.ts").await?;
    assert!(ok, "tsc refused correct calls:\n{output}");

    let (ok, output) = tsc(&dir.0, "bad.ts").await?;
    assert!(!ok, "tsc accepted wrong calls");
    for (i, line) in BAD.lines().enumerate() {
        if line.ends_with("// error") {
            let at = format!("bad.ts({},", i + 1);
            assert!(
                output.contains(&at),
                "no error reported on line {}: {line}\n{output}",
                i + 1
            );
        }
    }
    let reported = output.lines().filter(|l| l.starts_with("bad.ts(")).count();
    assert_eq!(
        reported,
        BAD.matches("// error").count(),
        "unexpected errors:\n{output}"
    );
    Ok(())
}
