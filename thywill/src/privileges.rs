//! Dropping root privileges after binding (Unix).
//!
//! A member started as root, to bind ports 80 and 443, switches to an unprivileged user and
//! group once its listeners are bound and before it serves a request: supplementary groups
//! first (`setgroups`: only the target group), then the group (`setgid`), then the user
//! (`setuid`), in that order (once the user has changed, the group could no longer be). It then
//! checks that the switch took, for every thread of the process (`/proc/self/task/*/status`
//! on Linux), and that root cannot be regained. A process that would go on serving as root
//! is refused unless [`RunAs::allow_root`] says so.
//!
//! [`Config::serve`](crate::config::Config::serve) does this from the `[process]` section of
//! the configuration:
//!
//! ```toml
//! [process]
//! user = "thywill"     # a name or a numeric id
//! group = "thywill"    # a name or a numeric id; default: the user's primary group
//! # allow_root = true  # serve as root when no user is given (not recommended)
//! ```
//!
//! (`THYWILL_PROCESS__USER=thywill` in the environment.) Applications that bind themselves
//! call [`RunAs::apply`] after [`Thywill::bind`](crate::Thywill::bind):
//!
//! ```no_run
//! # async fn run(node: thywill::Thywill) -> Result<(), thywill::Error> {
//! use thywill::privileges::RunAs;
//!
//! let (_, serving) = node.bind(([0, 0, 0, 0], 80).into()).await?;
//! let now = RunAs::user("thywill").apply()?; // fails rather than serve as root
//! tracing::info!(uid = now.uid, gid = now.gid, "serving");
//! serving.await;
//! # Ok(()) }
//! ```
//!
//! Files the process opens before the switch (TLS keys, listeners, log files) stay open;
//! anything it opens later is opened as the new user.

use crate::Error;

/// Which user and group to run as once bound; see the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    user: Option<String>,
    group: Option<String>,
    allow_root: bool,
}

/// The identity of the process after [`RunAs::apply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user id (real, effective and saved).
    pub uid: u32,
    /// The group id (real, effective and saved).
    pub gid: u32,
    /// Whether [`RunAs::apply`] switched user (false: the process already ran as the user,
    /// or no user was given).
    pub switched: bool,
}

impl RunAs {
    /// Switch to `user` (a name or a numeric id) and, unless [`RunAs::group`] says otherwise,
    /// to its primary group.
    pub fn user(user: impl Into<String>) -> Self {
        Self {
            user: Some(user.into()),
            ..Self::default()
        }
    }

    /// Stay who the process is: [`RunAs::apply`] only refuses root (unless allowed).
    pub fn unchanged() -> Self {
        Self::default()
    }

    /// From the configuration's `[process]` keys: `user`, `group`, `allow_root`.
    pub fn from_settings(user: Option<&str>, group: Option<&str>, allow_root: bool) -> Self {
        Self {
            user: user.map(str::to_owned),
            group: group.map(str::to_owned),
            allow_root,
        }
    }

    /// Switch to this group (a name or a numeric id) instead of the user's primary group.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Allow serving as root (when no user is given, or the user is root). Off by default.
    pub fn allow_root(mut self, allow: bool) -> Self {
        self.allow_root = allow;
        self
    }

    /// The user to switch to, if any.
    pub fn user_name(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Switches user and group, checks the switch, and refuses root unless allowed. Call it
    /// after binding and before serving.
    ///
    /// Not running as root, naming the current user is fine (nothing to do); naming another
    /// user fails. On platforms other than Unix, naming a user fails.
    pub fn apply(&self) -> Result<Identity, Error> {
        imp::apply(self)
    }
}

fn refused(message: impl Into<String>) -> Error {
    Error::Privileges(message.into())
}

#[cfg(not(unix))]
mod imp {
    use super::{Identity, RunAs, refused};
    use crate::Error;

    pub(super) fn apply(run_as: &RunAs) -> Result<Identity, Error> {
        match &run_as.user {
            Some(user) => Err(refused(format!(
                "cannot switch to user `{user}`: not supported on this platform"
            ))),
            None => Ok(Identity {
                uid: 0,
                gid: 0,
                switched: false,
            }),
        }
    }
}

#[cfg(unix)]
mod imp {
    use std::ffi::CString;
    use std::io;

    use super::{Identity, RunAs, refused};
    use crate::Error;

    /// A user's id and primary group, from the user database.
    struct User {
        uid: libc::uid_t,
        gid: libc::gid_t,
    }

    /// Buffer size for the `_r` lookups when sysconf gives none.
    const LOOKUP_BUFFER: usize = 16 * 1024;
    /// Largest buffer tried before giving up on an entry (ERANGE doubles it).
    const LOOKUP_BUFFER_MAX: usize = 1024 * 1024;

    fn name_to_c(kind: &str, name: &str) -> Result<CString, Error> {
        CString::new(name).map_err(|_| refused(format!("{kind} `{name}`: contains a NUL byte")))
    }

    /// Looks a user up by name (numeric ids are taken as they are, with their primary group
    /// when the database knows them).
    #[allow(unsafe_code)]
    fn lookup_user(name: &str) -> Result<(User, bool), Error> {
        let numeric = name.parse::<libc::uid_t>().ok();
        let c_name = name_to_c("user", name)?;
        let mut size = LOOKUP_BUFFER;
        loop {
            let mut buf = vec![0 as libc::c_char; size];
            // SAFETY: an all-zero `passwd` is a valid value of a plain C struct (null pointers,
            // zero ids); getpw*_r fill it with pointers into `buf`, which outlives every use.
            let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::passwd = std::ptr::null_mut();
            // SAFETY: every pointer is valid for the call: `c_name` is NUL-terminated, `pwd`
            // and `result` are ours, `buf` is `size` bytes long as passed.
            let rc = unsafe {
                match numeric {
                    Some(uid) => libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), size, &mut result),
                    None => libc::getpwnam_r(c_name.as_ptr(), &mut pwd, buf.as_mut_ptr(), size, &mut result),
                }
            };
            if rc == libc::ERANGE && size < LOOKUP_BUFFER_MAX {
                size *= 2;
                continue;
            }
            if rc != 0 {
                return Err(refused(format!(
                    "cannot look user `{name}` up: {}",
                    io::Error::from_raw_os_error(rc)
                )));
            }
            if result.is_null() {
                return match numeric {
                    // A numeric id needs no database entry, but then has no primary group.
                    Some(uid) => Ok((
                        User {
                            uid,
                            gid: libc::gid_t::MAX,
                        },
                        false,
                    )),
                    None => Err(refused(format!("no such user `{name}`"))),
                };
            }
            return Ok((
                User {
                    uid: pwd.pw_uid,
                    gid: pwd.pw_gid,
                },
                true,
            ));
        }
    }

    /// Looks a group up by name; numeric ids are taken as they are.
    #[allow(unsafe_code)]
    fn lookup_group(name: &str) -> Result<libc::gid_t, Error> {
        if let Ok(gid) = name.parse::<libc::gid_t>() {
            return Ok(gid);
        }
        let c_name = name_to_c("group", name)?;
        let mut size = LOOKUP_BUFFER;
        loop {
            let mut buf = vec![0 as libc::c_char; size];
            // SAFETY: as in `lookup_user`: a zeroed plain C struct, filled by getgrnam_r with
            // pointers into `buf`.
            let mut grp: libc::group = unsafe { std::mem::zeroed() };
            let mut result: *mut libc::group = std::ptr::null_mut();
            // SAFETY: `c_name` is NUL-terminated; `grp`, `result` and `buf` (of `size` bytes)
            // are ours and live across the call.
            let rc =
                unsafe { libc::getgrnam_r(c_name.as_ptr(), &mut grp, buf.as_mut_ptr(), size, &mut result) };
            if rc == libc::ERANGE && size < LOOKUP_BUFFER_MAX {
                size *= 2;
                continue;
            }
            if rc != 0 {
                return Err(refused(format!(
                    "cannot look group `{name}` up: {}",
                    io::Error::from_raw_os_error(rc)
                )));
            }
            if result.is_null() {
                return Err(refused(format!("no such group `{name}`")));
            }
            return Ok(grp.gr_gid);
        }
    }

    struct Ids {
        uid: libc::uid_t,
        euid: libc::uid_t,
        gid: libc::gid_t,
        egid: libc::gid_t,
    }

    #[allow(unsafe_code)]
    fn current() -> Ids {
        // SAFETY: the get*id calls take no arguments and cannot fail.
        unsafe {
            Ids {
                uid: libc::getuid(),
                euid: libc::geteuid(),
                gid: libc::getgid(),
                egid: libc::getegid(),
            }
        }
    }

    fn os_error(step: &str) -> Error {
        refused(format!("{step} failed: {}", io::Error::last_os_error()))
    }

    /// setgroups, setgid, setuid: in that order.
    #[allow(unsafe_code)]
    fn switch(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Error> {
        let groups = [gid];
        // SAFETY: `groups` holds the one group passed; setgroups(2) copies it. The libc
        // wrappers of setgroups/setgid/setuid apply to every thread of the process (glibc and
        // musl signal each thread), which `verify` checks.
        if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
            return Err(os_error("setgroups"));
        }
        // SAFETY: plain integer argument.
        if unsafe { libc::setgid(gid) } != 0 {
            return Err(os_error("setgid"));
        }
        // SAFETY: plain integer argument.
        if unsafe { libc::setuid(uid) } != 0 {
            return Err(os_error("setuid"));
        }
        Ok(())
    }

    /// Checks that the process (every thread of it, where `/proc` tells) has the ids asked
    /// for, that its only supplementary group is `gid`, and that root cannot be regained.
    #[allow(unsafe_code)]
    fn verify(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Error> {
        let now = current();
        if (now.uid, now.euid, now.gid, now.egid) != (uid, uid, gid, gid) {
            return Err(refused(format!(
                "the switch to {uid}:{gid} did not take: uid {} euid {} gid {} egid {}",
                now.uid, now.euid, now.gid, now.egid
            )));
        }
        let mut groups = [0 as libc::gid_t; 64];
        // SAFETY: getgroups(2) writes at most `groups.len()` ids into our array.
        let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
        let n = usize::try_from(n).map_err(|_| os_error("getgroups"))?;
        if groups[..n].iter().any(|g| *g != gid) {
            return Err(refused(format!(
                "supplementary groups remain after the switch: {:?}",
                &groups[..n]
            )));
        }
        if uid != 0 {
            // SAFETY: plain integer argument; it must fail.
            if unsafe { libc::setuid(0) } == 0 {
                return Err(refused("root could be regained after the switch"));
            }
        }
        verify_threads(uid, gid)
    }

    /// Every thread's real, effective, saved and filesystem ids, from `/proc/self/task`
    /// (Linux); skipped where there is no `/proc`.
    fn verify_threads(uid: libc::uid_t, gid: libc::gid_t) -> Result<(), Error> {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return Ok(());
        };
        for task in tasks.flatten() {
            let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            for (key, want) in [("Uid:", uid), ("Gid:", gid)] {
                let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_default();
                let ids: Vec<&str> = line.split_whitespace().skip(1).collect();
                if ids.len() != 4 || ids.iter().any(|id| id.parse::<u32>().ok() != Some(want)) {
                    return Err(refused(format!(
                        "thread {} still has `{line}` after the switch to {uid}:{gid}",
                        task.file_name().to_string_lossy()
                    )));
                }
            }
        }
        Ok(())
    }

    pub(super) fn apply(run_as: &RunAs) -> Result<Identity, Error> {
        let before = current();
        let Some(name) = &run_as.user else {
            if before.euid == 0 && !run_as.allow_root {
                return Err(refused(
                    "refusing to serve as root: set `process.user` (and `process.group`) to the \
                     account to switch to once bound, or `process.allow_root = true`",
                ));
            }
            return Ok(Identity {
                uid: before.euid,
                gid: before.egid,
                switched: false,
            });
        };
        let (user, known) = lookup_user(name)?;
        let gid = match &run_as.group {
            Some(group) => lookup_group(group)?,
            None if known => user.gid,
            None => {
                return Err(refused(format!(
                    "user `{name}` is not in the user database: set `process.group` too"
                )));
            }
        };
        if user.uid == 0 && !run_as.allow_root {
            return Err(refused(format!(
                "refusing to serve as root: `process.user` is `{name}`, which is root"
            )));
        }
        if before.euid != 0 {
            if (before.uid, before.euid, before.gid, before.egid) == (user.uid, user.uid, gid, gid) {
                return Ok(Identity {
                    uid: user.uid,
                    gid,
                    switched: false,
                });
            }
            return Err(refused(format!(
                "cannot switch to user `{name}`: the process runs as uid {}, not root",
                before.euid
            )));
        }
        switch(user.uid, gid)?;
        verify(user.uid, gid)?;
        tracing::info!(user = %name, uid = user.uid, gid, "privileges dropped");
        Ok(Identity {
            uid: user.uid,
            gid,
            switched: true,
        })
    }

    /// The process's effective user id (for tests).
    #[cfg(test)]
    pub(super) fn euid() -> u32 {
        current().euid
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn root_is_refused_unless_allowed_and_strangers_are_unknown() {
        let root = imp::euid() == 0;
        let plain = RunAs::unchanged().apply();
        assert_eq!(plain.is_err(), root, "{plain:?}");
        if let Err(e) = plain {
            assert!(e.to_string().contains("refusing to serve as root"), "{e}");
        }
        assert!(RunAs::unchanged().allow_root(true).apply().is_ok());
        let nobody = RunAs::user("no-such-user-of-thywill-tests").apply();
        let msg = nobody.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("no such user"), "{msg}");
        let root_user = RunAs::user("0").group("0").apply();
        let msg = root_user.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("which is root"), "{msg}");
        let nul = RunAs::user("a\0b").apply();
        assert!(nul.is_err());
    }
}
