//! Daemon duties around the reactor: `--daemonize` (fork into the
//! background), `--pidfile`, `--runas` (drop root for an ordinary user
//! once the listening ports are bound), and the open-files limit. rkite stays in the foreground unless
//! told otherwise, so procd and systemd can supervise it. Everything here
//! runs once at start-up or exit, before or after the reactor, never in it.

use std::ffi::CString;
use std::fmt;
use std::io;

/// What went wrong in a daemon duty; each one stops rkite at start-up.
#[derive(Debug)]
pub enum DaemonError {
    /// `--runas` is not `USER[:GROUP]`.
    NotRunAs(String),
    NoUser(String),
    NoGroup(String),
    /// Only root can change user.
    NotRoot {
        user: String,
        euid: libc::uid_t,
    },
    /// A system call failed (`setgid(1000)`, `fork`, …).
    Sys {
        call: String,
        err: io::Error,
    },
    /// setuid(0) worked after giving root up.
    RootRegained,
    PidFile {
        path: String,
        err: io::Error,
    },
    /// The open-files limit could not be raised (a warning, not fatal).
    NoFileLimit {
        from: libc::rlim_t,
        to: libc::rlim_t,
        err: io::Error,
    },
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::NotRunAs(spec) => write!(f, "{spec:?} is not USER[:GROUP]"),
            DaemonError::NoUser(name) => write!(f, "no such user {name:?}"),
            DaemonError::NoGroup(name) => write!(f, "no such group {name:?}"),
            DaemonError::NotRoot { user, euid } => write!(
                f,
                "--runas={user}: only root can change user (running as uid {euid})"
            ),
            DaemonError::Sys { call, err } => write!(f, "{call}: {err}"),
            DaemonError::RootRegained => {
                f.write_str("root privileges could be regained after setuid")
            }
            DaemonError::PidFile { path, err } => {
                write!(f, "--pidfile: cannot write {path}: {err}")
            }
            DaemonError::NoFileLimit { from, to, err } => write!(
                f,
                "cannot raise the open files limit from {from} to {to}: {err}"
            ),
        }
    }
}

/// The last system call's failure, named.
fn sys(call: impl Into<String>) -> DaemonError {
    DaemonError::Sys {
        call: call.into(),
        err: io::Error::last_os_error(),
    }
}

/// A resolved `--runas=USER[:GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Resolves `USER[:GROUP]` (names or numbers) against the password and
/// group databases. The group defaults to the user's primary group.
#[inline(never)]
pub fn parse_runas(spec: &str) -> Result<RunAs, DaemonError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(DaemonError::NotRunAs(spec.to_string()));
    }
    let (uid, primary_gid) = lookup_user(user)?;
    let gid = match group.filter(|g| !g.is_empty()) {
        Some(g) => lookup_group(g)?,
        None => primary_gid,
    };
    Ok(RunAs {
        user: user.to_string(),
        uid,
        gid,
    })
}

#[inline(never)]
fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t), DaemonError> {
    let cname = CString::new(name).map_err(|_| DaemonError::NoUser(name.to_string()))?;
    // SAFETY: an all-zero `passwd` (null pointers, zero ids) is a valid
    // value for getpwnam_r to overwrite.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the right type, and the
    // buffer length passed is the buffer's length.
    let rc = unsafe {
        libc::getpwnam_r(
            cname.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc == 0 && !found.is_null() {
        return Ok((pwd.pw_uid, pwd.pw_gid));
    }
    match name.parse::<libc::uid_t>() {
        // A bare number need not be in /etc/passwd; its group is the same number.
        Ok(uid) => Ok((uid, uid)),
        Err(_) => Err(DaemonError::NoUser(name.to_string())),
    }
}

#[inline(never)]
fn lookup_group(name: &str) -> Result<libc::gid_t, DaemonError> {
    if let Ok(gid) = name.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let cname = CString::new(name).map_err(|_| DaemonError::NoGroup(name.to_string()))?;
    // SAFETY: an all-zero `group` is a valid value to be overwritten.
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        )
    };
    if rc == 0 && !found.is_null() {
        Ok(grp.gr_gid)
    } else {
        Err(DaemonError::NoGroup(name.to_string()))
    }
}

/// Gives up root for good: supplementary groups, then the group, then the
/// user (in that order, since each step needs the privilege the next
/// removes), and checks that root cannot be regained.
#[inline(never)]
pub fn drop_privileges(to: &RunAs) -> Result<(), DaemonError> {
    // SAFETY: plain syscalls on integer arguments; a one-element group list.
    unsafe {
        if libc::geteuid() != 0 {
            if libc::geteuid() == to.uid {
                return Ok(());
            }
            return Err(DaemonError::NotRoot {
                user: to.user.clone(),
                euid: libc::geteuid(),
            });
        }
        let groups = [to.gid];
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(sys("setgroups"));
        }
        if libc::setgid(to.gid) != 0 {
            return Err(sys(format!("setgid({})", to.gid)));
        }
        if libc::setuid(to.uid) != 0 {
            return Err(sys(format!("setuid({})", to.uid)));
        }
        if to.uid != 0 && libc::setuid(0) == 0 {
            return Err(DaemonError::RootRegained);
        }
    }
    Ok(())
}

/// `--daemonize`: forks; the parent exits at once with success, the child
/// becomes a session leader with stdin/stdout/stderr on /dev/null. Call it
/// before any thread exists.
#[inline(never)]
pub fn daemonize() -> Result<(), DaemonError> {
    // SAFETY: fork in a single-threaded process; the parent leaves with
    // _exit so no destructor or atexit handler runs twice.
    unsafe {
        match libc::fork() {
            -1 => return Err(sys("fork")),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(sys("setsid"));
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// When the hard limit is unlimited, the soft limit goes this high (the
/// kernel's default `fs.nr_open`; more is refused anyway).
const NOFILE_CEILING: libc::rlim_t = 1 << 20;

/// Raises the soft limit on open files to the hard limit: the usual default
/// of 1024 descriptors runs out at a few hundred visitors, since each
/// relayed connection holds one on a backend and one or two on a frontend.
/// Returns the limit now in force, and the one before if it changed.
#[inline(never)]
pub fn raise_nofile_limit() -> Result<(libc::rlim_t, Option<libc::rlim_t>), DaemonError> {
    // SAFETY: an all-zero rlimit is a valid value for getrlimit to fill.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(sys("getrlimit"));
    }
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        NOFILE_CEILING.max(lim.rlim_cur)
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur >= target {
        return Ok((lim.rlim_cur, None));
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(DaemonError::NoFileLimit {
            from: lim.rlim_cur,
            to: target,
            err: io::Error::last_os_error(),
        });
    }
    Ok((target, Some(lim.rlim_cur)))
}

/// `--pidfile`: written at start, removed at exit (if it still holds our pid).
pub struct PidFile {
    path: String,
    pid: u32,
}

impl PidFile {
    #[inline(never)]
    pub fn create(path: &str) -> Result<PidFile, DaemonError> {
        let pid = std::process::id();
        let tmp = format!("{path}.tmp{pid}");
        std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|err| {
                let _ = std::fs::remove_file(&tmp);
                DaemonError::PidFile {
                    path: path.to_string(),
                    err,
                }
            })?;
        Ok(PidFile {
            path: path.to_string(),
            pid,
        })
    }
}

impl PidFile {
    /// Gives the file to the `--runas` user, so that it can still remove
    /// (or at least empty) the file at exit.
    pub fn hand_to(&self, to: &RunAs) {
        let Ok(path) = CString::new(self.path.as_str()) else {
            return;
        };
        // SAFETY: a valid NUL-terminated path and plain ids.
        if unsafe { libc::chown(path.as_ptr(), to.uid, to.gid) } != 0 {
            log::debug!(
                "cannot give the pid file {} to {}: {}",
                self.path,
                to.user,
                io::Error::last_os_error()
            );
        }
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == self.pid.to_string());
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                // After --runas the directory may no longer be ours to change.
                log::debug!("cannot remove the pid file {}: {e}", self.path);
                let _ = std::fs::write(&self.path, "");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runas_resolves_names_and_numbers() {
        let root = parse_runas("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let numeric = parse_runas("65534:65534").unwrap();
        assert_eq!((numeric.uid, numeric.gid), (65534, 65534));
        assert_eq!(parse_runas("root:0").unwrap().gid, 0);
        assert!(matches!(
            parse_runas("no-such-user-rkite"),
            Err(DaemonError::NoUser(_))
        ));
        assert!(matches!(
            parse_runas("root:no-such-group-rkite"),
            Err(DaemonError::NoGroup(_))
        ));
        assert!(matches!(parse_runas(":0"), Err(DaemonError::NotRunAs(_))));
    }
}
