//! Operating-system helpers: signals for child processes, the open-files limit, resident memory,
//! CPU time.
//!
//! The only `unsafe` code of the workspace lives here: a few libc calls, each allowed on its own.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Child;

/// Sends `signal` (such as [`libc::SIGTERM`]) to process `pid`.
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Raises this process's soft limit of open files to its hard limit (children inherit it) and
/// returns the new soft limit.
#[allow(unsafe_code)]
pub(crate) fn raise_open_files_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit`, which we own, and keeps no pointer to it.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel refuses "infinity" for open files; a million is far beyond what we need.
    let wanted = limit.rlim_max.min(1 << 20);
    if limit.rlim_cur < wanted {
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit(2) reads one `rlimit`, which we own, and keeps no pointer to it.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Raises this process's limit of open files to at least `wanted` (children inherit it) and
/// returns the new soft limit: above the hard limit this raises the hard limit too, which
/// needs privilege (root, or `CAP_SYS_RESOURCE`); without it, the soft limit goes to the hard
/// one and the caller sees it falls short.
#[allow(unsafe_code)]
pub(crate) fn raise_open_files_to(wanted: u64) -> io::Result<u64> {
    let current = raise_open_files_limit()?;
    if current >= wanted {
        return Ok(current);
    }
    let raised = libc::rlimit {
        rlim_cur: wanted,
        rlim_max: wanted,
    };
    // SAFETY: setrlimit(2) reads one `rlimit`, which we own, and keeps no pointer to it.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        // Not privileged, or above fs.nr_open: keep what we have.
        return Ok(current);
    }
    Ok(wanted)
}

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// CPU time process `pid` has used so far, user and system, all its threads (`utime` +
/// `stime` of `/proc/<pid>/stat`, in clock ticks: 10 ms resolution on most systems).
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let ticks = parse_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_sec()? as f64,
    ))
}

/// `utime + stime` of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the command
/// name in parentheses (which may itself contain spaces and parentheses).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (the state).
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/<pid>/stat` times.
#[allow(unsafe_code)]
fn clock_ticks_per_sec() -> io::Result<u64> {
    // SAFETY: sysconf(3) takes an integer and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(io::Error::last_os_error)
}

/// Ctrl-C (SIGINT) and SIGTERM, hooked from creation on: from then until the process exits they
/// no longer kill it, they only wake [`Signals::recv`].
#[derive(Debug)]
pub(crate) struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Hooks both signals (needs a running tokio runtime).
    pub(crate) fn new() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM and returns its name.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Stops a child politely: SIGTERM, then SIGKILL if it has not exited within `grace`.
pub(crate) async fn stop(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(pid) = child.id() {
        // It may have exited in the meantime (ESRCH): waiting below tells.
        let _ = send_signal(pid, libc::SIGTERM);
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            return status;
        }
        eprintln!("xtask: process {pid} ignored SIGTERM for {grace:?}; killing it");
    }
    child.kill().await?;
    child.wait().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss() -> anyhow::Result<()> {
        assert!(rss_kib(std::process::id())? > 0);
        assert_eq!(parse_vm_rss("Name:\tx\nVmRSS:\t   1234 kB\n"), Some(1234));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        Ok(())
    }

    #[test]
    fn reads_cpu_time() -> anyhow::Result<()> {
        // Burn some CPU so that at least one tick is counted.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_time(std::process::id())? > Duration::ZERO);
        let line = "42 (a (strange) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 17 0 0 20 0 4 0 9 0";
        assert_eq!(parse_cpu_ticks(line), Some(267));
        assert_eq!(parse_cpu_ticks("42 (x) S 1"), None);
        Ok(())
    }

    #[test]
    fn open_files_limit_can_be_raised() -> anyhow::Result<()> {
        assert!(raise_open_files_limit()? >= 64);
        Ok(())
    }
}
