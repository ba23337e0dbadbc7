//! The OpenWrt package's shell scripts (openwrt/rkite/files/), run on this
//! machine. `uci2rc` turns each sample UCI config tests/data/openwrt/CASE/rkite.config
//! into an option file, read through the stub `uci` in tests/data/openwrt/stub/,
//! and must print CASE/rkite.rc exactly (`UPDATE_GOLDEN=1 cargo test --test openwrt`
//! rewrites those), or, where CASE/expected-error exists, exit non-zero with
//! that message and print nothing. Every script must pass `sh -n`; the init
//! script is run against a fake procd (stub/procd.sh); and every golden
//! option file, and the package's shipped config, must be accepted by
//! `rkite --optfile=FILE --settings`, which proves uci2rc writes what rkite reads.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn scripts() -> PathBuf {
    Path::new(ROOT).join("openwrt/rkite/files")
}

fn data() -> PathBuf {
    Path::new(ROOT).join("tests/data/openwrt")
}

/// The sample cases, sorted by name: (name, directory).
fn cases() -> Vec<(String, PathBuf)> {
    let mut cases: Vec<(String, PathBuf)> = fs::read_dir(data())
        .expect("tests/data/openwrt")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.join("rkite.config").is_file())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    cases.sort();
    cases
}

fn good_cases() -> Vec<(String, PathBuf)> {
    cases()
        .into_iter()
        .filter(|(_, dir)| !dir.join("expected-error").exists())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory of one test's own under the target directory, with the stub
/// `uci` (made executable) in `bin/` and UCI config directories beside it.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("openwrt")
            .join(test);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("bin")).expect("scratch directory");
        let scratch = Scratch { dir };
        scratch.executable("uci", &data().join("stub/uci"));
        scratch.executable("uci2rc", &scripts().join("uci2rc"));
        scratch
    }

    fn executable(&self, name: &str, from: &Path) {
        let to = self.dir.join("bin").join(name);
        fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
        fs::set_permissions(&to, fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A UCI config directory holding `config` as the package `rkite`.
    fn config_dir(&self, name: &str, config: &Path) -> PathBuf {
        let dir = self.dir.join("config").join(name);
        fs::create_dir_all(&dir).expect("config directory");
        fs::copy(config, dir.join("rkite")).expect("copy config");
        dir
    }

    /// PATH with the stubs first.
    fn path(&self) -> OsString {
        let mut path = self.dir.join("bin").into_os_string();
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        path
    }

    /// `sh uci2rc` on `config`.
    fn uci2rc(&self, name: &str, config: &Path) -> Output {
        Command::new("sh")
            .arg(scripts().join("uci2rc"))
            .env("PATH", self.path())
            .env("UCI_CONFIG_DIR", self.config_dir(name, config))
            .output()
            .expect("run sh uci2rc")
    }
}

/// The lines that differ between `want` and `got`, for a failure message.
fn line_diff(want: &str, got: &str) -> String {
    let (want, got): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    let mut out = String::new();
    for i in 0..want.len().max(got.len()) {
        let (w, g) = (want.get(i), got.get(i));
        if w != g {
            out.push_str(&format!(
                "  line {:>3}: want {}\n            got  {}\n",
                i + 1,
                w.map_or("(nothing)".to_string(), |l| format!("{l:?}")),
                g.map_or("(nothing)".to_string(), |l| format!("{l:?}")),
            ));
        }
    }
    out
}

#[test]
fn uci2rc_writes_the_golden_option_files() {
    let scratch = Scratch::new("golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let cases = good_cases();
    assert!(cases.len() >= 4, "sample cases missing: {cases:?}");
    let mut failures = Vec::new();
    for (name, dir) in &cases {
        let out = scratch.uci2rc(name, &dir.join("rkite.config"));
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        if !out.status.success() || !stderr.is_empty() {
            failures.push(format!(
                "{name}: uci2rc exited {}, stderr: {stderr}",
                out.status
            ));
            continue;
        }
        let golden = dir.join("rkite.rc");
        if update {
            fs::write(&golden, &stdout).expect("write golden file");
            continue;
        }
        let want = fs::read_to_string(&golden).unwrap_or_default();
        if stdout != want {
            failures.push(format!(
                "{name}: uci2rc's output differs from {}:\n{}--- uci2rc printed:\n{stdout}",
                golden.display(),
                line_diff(&want, &stdout)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n(if the new output is right: UPDATE_GOLDEN=1 cargo test --test openwrt)",
        failures.join("\n")
    );
}

#[test]
fn uci2rc_refuses_unusable_configs_with_a_message() {
    let scratch = Scratch::new("errors");
    let cases: Vec<_> = cases()
        .into_iter()
        .filter(|(_, dir)| dir.join("expected-error").exists())
        .collect();
    assert!(cases.len() >= 2, "error cases missing: {cases:?}");
    for (name, dir) in &cases {
        let expected = fs::read_to_string(dir.join("expected-error")).expect("expected-error");
        let expected = expected.trim();
        let out = scratch.uci2rc(name, &dir.join("rkite.config"));
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{name}: uci2rc succeeded");
        assert!(
            stderr.contains(expected),
            "{name}: stderr {stderr:?} does not contain {expected:?}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: printed an option file anyway: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn the_shipped_config_translates() {
    let scratch = Scratch::new("shipped");
    let out = scratch.uci2rc("shipped", &scripts().join("rkite.config"));
    assert!(
        out.status.success(),
        "uci2rc on the shipped /etc/config/rkite: {}",
        text(&out.stderr)
    );
    let rc = text(&out.stdout);
    for line in [
        "frontend = relay.example.com:443",
        "fe_certname = relay.example.com",
        "service_on = http:home.example.com:127.0.0.1:80:changeme",
    ] {
        assert!(
            rc.lines().any(|l| l == line),
            "{line:?} missing from:\n{rc}"
        );
    }
}

#[test]
fn every_script_passes_sh_n() {
    for script in ["uci2rc", "rkite.init", "rkite.hotplug"] {
        let out = Command::new("sh")
            .arg("-n")
            .arg(scripts().join(script))
            .output()
            .expect("run sh -n");
        assert!(
            out.status.success(),
            "sh -n {script}: {}",
            text(&out.stderr)
        );
    }
}

/// The init script, sourced after the fake procd, with its paths moved into
/// the scratch directory: runs `call` and returns (success, the procd log
/// followed by what it printed on stderr as `stderr: ...` lines).
fn init(scratch: &Scratch, config_dir: &Path, running: bool, call: &str) -> (bool, Vec<String>) {
    let log = scratch.dir.join("procd.log");
    let _ = fs::remove_file(&log);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            ". \"$STUB\"; . \"$INIT\"; UCI2RC=\"$BIN/uci2rc\"; RC=\"$SCRATCH/var/etc/rkite.rc\"; {call}"
        ))
        .env("STUB", data().join("stub/procd.sh"))
        .env("INIT", scripts().join("rkite.init"))
        .env("BIN", scratch.dir.join("bin"))
        .env("SCRATCH", &scratch.dir)
        .env("PATH", scratch.path())
        .env("UCI_CONFIG_DIR", config_dir)
        .env("PROCD_LOG", &log)
        .env("PROCD_RUNNING", if running { "1" } else { "0" })
        .output()
        .expect("run the init script");
    let log = fs::read_to_string(&log).unwrap_or_default();
    let stderr = text(&out.stderr);
    let lines = log
        .lines()
        .map(str::to_string)
        .chain(stderr.lines().map(|l| format!("stderr: {l}")))
        .collect();
    (out.status.success(), lines)
}

#[test]
fn the_init_script_drives_procd() {
    let scratch = Scratch::new("init");
    let rc = scratch.dir.join("var/etc/rkite.rc");
    let case = |name: &str| data().join(name).join("rkite.config");
    let backend = scratch.config_dir("backend", &case("backend-tls"));
    let frontend = scratch.config_dir("frontend", &case("frontend-relay"));
    let disabled = scratch.config_dir("disabled", &scripts().join("rkite.config"));
    let broken = scratch.config_dir("broken", &case("error-missing-secret"));
    let has = |log: &[String], line: &str| log.iter().any(|l| l == line);

    // enabled '0': no instance, no option file.
    let (ok, log) = init(&scratch, &disabled, false, "start_service");
    assert!(ok && !has(&log, "procd_open_instance"), "{log:?}");
    assert!(!rc.exists());

    // Start: the option file, private, and the instance running rkite on it.
    let (ok, log) = init(&scratch, &backend, false, "start_service");
    assert!(ok, "{log:?}");
    let want = [
        "procd_open_instance".to_string(),
        format!(
            "procd_set_param command /usr/sbin/rkite --clean --optfile={}",
            rc.display()
        ),
        "procd_set_param respawn".to_string(),
        "procd_set_param term_timeout 10".to_string(),
        "procd_set_param stdout 1".to_string(),
        "procd_set_param stderr 1".to_string(),
        "procd_close_instance".to_string(),
    ];
    assert_eq!(log, want);
    let golden = fs::read_to_string(data().join("backend-tls/rkite.rc")).expect("golden");
    assert_eq!(fs::read_to_string(&rc).expect("option file"), golden);
    let mode = fs::metadata(&rc).expect("option file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the option file holds secrets");

    // A config that cannot work: start fails, the old option file stays.
    let (ok, log) = init(&scratch, &broken, false, "start_service");
    assert!(!ok && !has(&log, "procd_open_instance"), "{log:?}");
    assert_eq!(fs::read_to_string(&rc).expect("option file"), golden);

    // reconnect: SIGUSR1 to a running backend only.
    let (ok, log) = init(&scratch, &backend, true, "reconnect");
    assert!(ok && has(&log, "procd_send_signal rkite * USR1"), "{log:?}");
    let (ok, log) = init(&scratch, &backend, false, "reconnect");
    assert!(
        !ok && !log.iter().any(|l| l.starts_with("procd_send_signal")),
        "{log:?}"
    );

    // Reload, same role: a new option file and SIGHUP, no restart.
    let (ok, log) = init(&scratch, &backend, true, "reload_service");
    assert!(ok && has(&log, "procd_send_signal rkite * HUP"), "{log:?}");
    assert!(!has(&log, "stop") && !has(&log, "start"), "{log:?}");

    // Reload into the other role: a restart.
    let (ok, log) = init(&scratch, &frontend, true, "reload_service");
    assert!(ok && has(&log, "stop") && has(&log, "start"), "{log:?}");
    assert!(
        !log.iter().any(|l| l.starts_with("procd_send_signal")),
        "{log:?}"
    );
    let relay_golden = fs::read_to_string(data().join("frontend-relay/rkite.rc")).expect("golden");
    assert_eq!(fs::read_to_string(&rc).expect("option file"), relay_golden);

    // A relay has no tunnels to redial.
    let (ok, log) = init(&scratch, &frontend, true, "reconnect");
    assert!(
        ok && !log.iter().any(|l| l.starts_with("procd_send_signal")),
        "{log:?}"
    );

    // Reload while stopped starts; reload after enabled '0' stops.
    let (ok, log) = init(&scratch, &backend, false, "reload_service");
    assert!(ok && has(&log, "start") && !has(&log, "stop"), "{log:?}");
    let (ok, log) = init(&scratch, &disabled, true, "reload_service");
    assert!(ok && has(&log, "stop") && !has(&log, "start"), "{log:?}");

    // Config changes (uci commit rkite) trigger a reload.
    let (ok, log) = init(&scratch, &backend, true, "service_triggers");
    assert!(ok && has(&log, "procd_add_reload_trigger rkite"), "{log:?}");
}

#[test]
fn rkite_accepts_every_golden_option_file() {
    let scratch = Scratch::new("settings");
    let mut files: Vec<(String, PathBuf)> = good_cases()
        .into_iter()
        .map(|(name, dir)| (name, dir.join("rkite.rc")))
        .collect();
    let out = scratch.uci2rc("shipped", &scripts().join("rkite.config"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shipped = scratch.dir.join("shipped.rc");
    fs::write(&shipped, &out.stdout).expect("write shipped.rc");
    files.push(("shipped config".to_string(), shipped));
    for (name, rc) in files {
        let out = Command::new(env!("CARGO_BIN_EXE_rkite"))
            .arg("--clean")
            .arg(format!("--optfile={}", rc.display()))
            .arg("--settings")
            .output()
            .expect("run rkite");
        assert!(
            out.status.success(),
            "{name}: rkite --optfile={} --settings exited {}:\n{}",
            rc.display(),
            out.status,
            text(&out.stderr)
        );
    }
}
