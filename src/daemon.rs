//! Daemon duties around the reactor: `--daemonize` (fork into the
//! background), `--pidfile`, `--runas` (drop root for an ordinary user
//! once the listening ports are bound), and the open-files limit. rkite stays in the foreground unless
//! told otherwise, so procd and systemd can supervise it. Everything here
//! runs once at start-up or exit, before or after the reactor, never in it.

use std::ffi::CString;
use std::io;

/// A resolved `--runas=USER[:GROUP]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Resolves `USER[:GROUP]` (names or numbers) against the password and
/// group databases. The group defaults to the user's primary group.
pub fn parse_runas(spec: &str) -> Result<RunAs, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if user.is_empty() {
        return Err(format!("{spec:?} is not USER[:GROUP]"));
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

fn lookup_user(name: &str) -> Result<(libc::uid_t, libc::gid_t), String> {
    let cname = CString::new(name).map_err(|_| format!("{name:?} is not a user name"))?;
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
        Err(_) => Err(format!("no such user {name:?}")),
    }
}

fn lookup_group(name: &str) -> Result<libc::gid_t, String> {
    if let Ok(gid) = name.parse::<libc::gid_t>() {
        return Ok(gid);
    }
    let cname = CString::new(name).map_err(|_| format!("{name:?} is not a group name"))?;
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
        Err(format!("no such group {name:?}"))
    }
}

/// Gives up root for good: supplementary groups, then the group, then the
/// user (in that order, since each step needs the privilege the next
/// removes), and checks that root cannot be regained.
pub fn drop_privileges(to: &RunAs) -> Result<(), String> {
    // SAFETY: plain syscalls on integer arguments; a one-element group list.
    unsafe {
        if libc::geteuid() != 0 {
            if libc::geteuid() == to.uid {
                return Ok(());
            }
            return Err(format!(
                "--runas={}: only root can change user (running as uid {})",
                to.user,
                libc::geteuid()
            ));
        }
        let groups = [to.gid];
        if libc::setgroups(1, groups.as_ptr()) != 0 {
            return Err(format!("setgroups: {}", io::Error::last_os_error()));
        }
        if libc::setgid(to.gid) != 0 {
            return Err(format!(
                "setgid({}): {}",
                to.gid,
                io::Error::last_os_error()
            ));
        }
        if libc::setuid(to.uid) != 0 {
            return Err(format!(
                "setuid({}): {}",
                to.uid,
                io::Error::last_os_error()
            ));
        }
        if to.uid != 0 && libc::setuid(0) == 0 {
            return Err("root privileges could be regained after setuid".to_string());
        }
    }
    Ok(())
}

/// `--daemonize`: forks; the parent exits at once with success, the child
/// becomes a session leader with stdin/stdout/stderr on /dev/null. Call it
/// before any thread exists.
pub fn daemonize() -> Result<(), String> {
    // SAFETY: fork in a single-threaded process; the parent leaves with
    // _exit so no destructor or atexit handler runs twice.
    unsafe {
        match libc::fork() {
            -1 => return Err(format!("fork: {}", io::Error::last_os_error())),
            0 => {}
            _ => libc::_exit(0),
        }
        if libc::setsid() == -1 {
            return Err(format!("setsid: {}", io::Error::last_os_error()));
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
pub fn raise_nofile_limit() -> Result<(libc::rlim_t, Option<libc::rlim_t>), String> {
    // SAFETY: an all-zero rlimit is a valid value for getrlimit to fill.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: a valid resource and a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", io::Error::last_os_error()));
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
        return Err(format!(
            "cannot raise the open files limit from {} to {target}: {}",
            lim.rlim_cur,
            io::Error::last_os_error()
        ));
    }
    Ok((target, Some(lim.rlim_cur)))
}

/// `--pidfile`: written at start, removed at exit (if it still holds our pid).
pub struct PidFile {
    path: String,
    pid: u32,
}

impl PidFile {
    pub fn create(path: &str) -> Result<PidFile, String> {
        let pid = std::process::id();
        let tmp = format!("{path}.tmp{pid}");
        std::fs::write(&tmp, format!("{pid}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                format!("--pidfile: cannot write {path}: {e}")
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
        assert!(parse_runas("no-such-user-rkite").is_err());
        assert!(parse_runas("root:no-such-group-rkite").is_err());
        assert!(parse_runas(":0").is_err());
    }
}
