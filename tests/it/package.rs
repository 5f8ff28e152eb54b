//! The Debian package: `.ci/package` builds it from the binary `cargo test` built (no second,
//! release build), `dpkg -i` installs it, the installed snapdns runs and accepts its own
//! configuration, systemd accepts the unit, and `dpkg -r` then `dpkg -P` remove it cleanly.
//!
//! It installs to /usr/bin, /etc/snapdns and /var/lib/snapdns, so it needs root, holds a lock
//! so that two runs never install at once, refuses to run over a snapdns installed by anything
//! but itself, and purges what it installed even when an assertion fails midway. The other
//! tests run the cargo-built binary by its path, never /usr/bin/snapdns, so they do not notice.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

use crate::support;

const CONFIG: &str = "/etc/snapdns/snapdns.toml";
const UNIT: &str = "/usr/lib/systemd/system/snapdns.service";
const STATE_DIR: &str = "/var/lib/snapdns";

#[test]
fn the_debian_package_installs_runs_and_removes_cleanly() {
    let Some(_lock) = take_the_machine() else {
        return;
    };
    let out = tempfile::tempdir().expect("tempdir");
    let deb = build_package(out.path());
    check_package_contents(&deb);

    let installed = Installed::new();
    run("dpkg", &[OsStr::new("-i"), deb.as_os_str()]);
    assert_eq!(dpkg_status().as_deref(), Some("install ok installed"));

    let version = run("/usr/bin/snapdns", &["--version"]);
    assert_eq!(
        stdout(&version).trim(),
        format!("snapdns {}", env!("CARGO_PKG_VERSION"))
    );
    // The unit's ExecStartPre: the shipped configuration is valid as it is, without Consul.
    run("/usr/bin/snapdns", &["check", "--config", CONFIG]);

    let uid = user_id("snapdns").expect("postinst created the snapdns user");
    let state = std::fs::metadata(STATE_DIR).expect("postinst made the state directory");
    assert_eq!(
        (state.uid(), state.permissions().mode() & 0o7777),
        (uid, 0o750)
    );
    check_man_page_and_completions();
    verify_unit();

    run("dpkg", &["-r", "snapdns"]);
    assert!(
        !Path::new("/usr/bin/snapdns").exists(),
        "dpkg -r left the binary"
    );
    assert!(Path::new(CONFIG).exists(), "dpkg -r removed the conffile");
    assert_eq!(dpkg_status().as_deref(), Some("deinstall ok config-files"));

    run("dpkg", &["-P", "snapdns"]);
    for gone in [CONFIG, "/etc/snapdns", STATE_DIR, UNIT] {
        assert!(!Path::new(gone).exists(), "dpkg -P left {gone}");
    }
    assert_eq!(dpkg_status(), None);
    drop(installed);
}

/// Root, the tools, no snapdns installed otherwise, and the lock; `None` (the test skipped, and
/// saying why) where one is missing, except in CI, where the test must run.
fn take_the_machine() -> Option<Lock> {
    let missing = if !is_root() {
        Some("needs root (dpkg -i)".to_string())
    } else {
        ["dpkg", "dpkg-deb", "dpkg-shlibdeps", "strip", "flock"]
            .into_iter()
            .find(|tool| !on_path(tool))
            .map(|tool| format!("needs {tool}"))
            .or_else(|| {
                let cargo_deb = Command::new(env!("CARGO"))
                    .args(["deb", "--version"])
                    .output();
                (!cargo_deb.is_ok_and(|o| o.status.success()))
                    .then(|| "needs cargo-deb (cargo install cargo-deb --locked)".to_string())
            })
    };
    if let Some(why) = missing {
        assert!(std::env::var_os("CI").is_none(), "package test in CI {why}");
        eprintln!("skipped: the package test {why}");
        return None;
    }
    let lock = Lock::take();
    // Only what this test installed may be removed: a snapdns installed by hand or by a package
    // the administrator chose, or its state, is never touched.
    if let Some(status) = dpkg_status() {
        panic!("a snapdns package is on this machine ({status}): purge it (dpkg -P snapdns) to run this test");
    }
    for path in ["/usr/bin/snapdns", "/etc/snapdns", STATE_DIR] {
        assert!(
            !Path::new(path).exists(),
            "{path} exists without the package: the test would overwrite or purge it"
        );
    }
    Some(lock)
}

/// `.ci/package --binary` on the binary under test, into `out`; the package file.
fn build_package(out: &Path) -> PathBuf {
    let binary = support::binary();
    // target/debug/snapdns: the target directory is two levels up.
    let target_dir = binary.parent().and_then(Path::parent).expect("target dir");
    let output = Command::new("bash")
        .arg(support::repo().join(".ci/package"))
        .arg("--binary")
        .arg(&binary)
        .arg("--output")
        .arg(out)
        .arg("--fast")
        .env("CARGO_TARGET_DIR", target_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run .ci/package");
    assert!(
        output.status.success(),
        ".ci/package failed:\n{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let deb = out.join(format!("snapdns_{}_amd64.deb", env!("CARGO_PKG_VERSION")));
    assert!(deb.exists(), "no {}: {}", deb.display(), stdout(&output));
    deb
}

/// What the package holds, before it is installed: every file in its place, and the config
/// file a conffile (kept by `dpkg -r`, replaced on upgrade only with the administrator's leave).
fn check_package_contents(deb: &Path) {
    let contents = stdout(&run("dpkg-deb", &[OsStr::new("-c"), deb.as_os_str()]));
    for path in [
        "./usr/bin/snapdns",
        "./etc/snapdns/snapdns.toml",
        "./usr/lib/systemd/system/snapdns.service",
        "./usr/share/man/man1/snapdns.1.gz",
        "./usr/share/bash-completion/completions/snapdns",
        "./usr/share/zsh/vendor-completions/_snapdns",
        "./usr/share/doc/snapdns/deploy.md",
        "./usr/share/doc/snapdns/monitoring/alerts.yml",
    ] {
        assert!(
            contents.lines().any(|line| line.ends_with(path)),
            "{path} not in the package:\n{contents}"
        );
    }
    let conffiles = run(
        "dpkg-deb",
        &[
            OsStr::new("--info"),
            deb.as_os_str(),
            OsStr::new("conffiles"),
        ],
    );
    assert_eq!(stdout(&conffiles).trim(), CONFIG);
    let depends = run(
        "dpkg-deb",
        &[
            OsStr::new("--field"),
            deb.as_os_str(),
            OsStr::new("Depends"),
        ],
    );
    assert!(stdout(&depends).contains("adduser"), "{}", stdout(&depends));
}

/// The man page is snapdns(1) with the serve flags; bash loads its completion.
fn check_man_page_and_completions() {
    let mut page = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open("/usr/share/man/man1/snapdns.1.gz").unwrap())
        .read_to_string(&mut page)
        .expect("a gzip man page");
    assert!(page.contains(".TH snapdns 1"), "{page}");
    assert!(page.contains("\\-\\-state\\-dir"), "{page}");
    let bash = run(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/snapdns && complete -p snapdns",
        ],
    );
    assert!(stdout(&bash).contains("_snapdns"), "{}", stdout(&bash));
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_snapdns").unwrap();
    assert!(zsh.starts_with("#compdef snapdns"), "{zsh}");
}

/// `systemd-analyze verify` of the installed unit, where systemd is installed. It needs no
/// running systemd (this runs in containers too); it exits 0 after a mere warning (an unknown
/// key, a bad value it ignores), so any line it prints about the unit fails the test as well.
fn verify_unit() {
    if !on_path("systemd-analyze") {
        eprintln!("systemd-analyze not installed: the unit is not verified");
        return;
    }
    // --man=no: whether `man` is installed is not the unit's business; the page is checked above.
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no", UNIT])
        .stdin(Stdio::null())
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    let about_the_unit: Vec<&str> = said.lines().filter(|l| l.contains("snapdns")).collect();
    assert!(
        output.status.success() && about_the_unit.is_empty(),
        "systemd-analyze verify {UNIT}:\n{said}"
    );
    let unit = std::fs::read_to_string(UNIT).unwrap();
    for line in [
        "User=snapdns",
        "StateDirectory=snapdns",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "ExecStartPre=/usr/bin/snapdns check --config /etc/snapdns/snapdns.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing in {UNIT}");
    }
}

/// What this test installed, purged on drop whether the test passed or not: the package and,
/// if this test created it, the `snapdns` user (the package leaves it, as Debian's do).
struct Installed {
    user_existed: bool,
}

impl Installed {
    fn new() -> Self {
        Self {
            user_existed: user_id("snapdns").is_some(),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if dpkg_status().is_some() {
            let _ = Command::new("dpkg").args(["-P", "snapdns"]).status();
        }
        if !self.user_existed && user_id("snapdns").is_some() {
            let _ = Command::new("userdel").arg("snapdns").status();
            let _ = Command::new("groupdel")
                .arg("snapdns")
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// An exclusive `flock` on a file in /run/lock, held by a child `flock` process for as long as
/// its stdin is open: released when this is dropped, and also when the test process dies, since
/// its end of the pipe closes with it.
struct Lock {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Lock {
    /// Waits (at most 10 minutes, a whole other run) for the lock.
    fn take() -> Self {
        let mut child = Command::new("flock")
            .args([
                "--wait",
                "600",
                "/run/lock/snapdns-package-test.lock",
                "sh",
                "-c",
                "echo locked; exec cat >/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run flock");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read flock");
        assert_eq!(line.trim(), "locked", "no lock within 10 minutes");
        let stdin = child.stdin.take();
        Self { child, stdin }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Runs `program` and asserts that it succeeded, showing its output if not.
fn run(program: &str, args: &[impl AsRef<OsStr>]) -> Output {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {:?}: {}\n{}{}",
        args.iter().map(AsRef::as_ref).collect::<Vec<_>>(),
        output.status,
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// dpkg's status of the snapdns package (`install ok installed`, `deinstall ok
/// config-files`), `None` when dpkg does not know it.
fn dpkg_status() -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "snapdns"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let status = stdout(&output);
    (output.status.success() && !status.is_empty() && !status.ends_with("not-installed"))
        .then_some(status)
}

fn user_id(name: &str) -> Option<u32> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .output()
        .ok()?;
    stdout(&output).split(':').nth(2)?.parse().ok()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("Uid:"))?.to_string();
            Some(line.split_whitespace().nth(2)? == "0")
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
