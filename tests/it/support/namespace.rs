//! glibc's stub resolver as a real client: `getent` run in a private mount namespace (as
//! root, `unshare`), with files of the test's bind-mounted over /etc's, so resolv.conf can
//! name any nameserver without touching the host's. glibc cannot be told another port than
//! 53; with [`Namespace::snapdns_registry`] the script also gets a private network namespace
//! and starts snapdns on 127.0.0.1:53 inside it.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{binary, write};

/// Runs in the namespaces: loopback up and snapdns on 127.0.0.1:53 (only with
/// `$REGISTRY`), private /etc files, then `getent $DATABASE` for each name in $NAMES, each
/// result between `== NAME` and `== rc CODE`.
const SCRIPT: &str = r#"
set -u
if [ -n "$REGISTRY" ]; then ip link set lo up || exit 101; fi
for file in $ETC_FILES; do
    mount --bind "$DIR/etc/$file" "/etc/$file" || exit 102
done
# A host nscd would answer from the host's view; hide its socket.
for d in /run/nscd /var/run/nscd; do
    if [ -d "$d" ]; then mount -t tmpfs tmpfs "$d" || exit 105; fi
done
if [ -n "$REGISTRY" ]; then
    "$SNAPDNS" serve --listen 127.0.0.1:53 --http off --no-forward --udp-workers 1 \
        --registry "file:$REGISTRY" --state-dir "$DIR/state" --zones-dir "$DIR/no-zones" \
        2>"$DIR/snapdns.log" &
    pid=$!
    trap 'kill $pid 2>/dev/null' EXIT
    i=0
    until grep -q "listening on udp" "$DIR/snapdns.log"; do
        kill -0 $pid 2>/dev/null || { echo "snapdns exited"; exit 106; }
        i=$((i + 1))
        [ $i -le 400 ] || { echo "snapdns did not start"; exit 107; }
        sleep 0.05
    done
fi
for name in $NAMES; do
    echo "== $name"
    getent "$DATABASE" "$name"
    echo "== rc $?"
done
"#;

/// Where `getent` runs.
pub struct Namespace<'a> {
    /// `(name under /etc, text)`: written to the scratch directory and bind-mounted over
    /// `/etc/<name>`.
    pub etc: &'a [(&'a str, &'a str)],
    /// A registry file: when set, the network namespace is private too (loopback only) and
    /// snapdns serves this file on 127.0.0.1:53 in it; otherwise the host's network is used.
    pub snapdns_registry: Option<&'a Path>,
}

/// What `getent DATABASE NAME` printed: exit code, distinct addresses, canonical name.
#[derive(Debug, Default)]
pub struct Lookup {
    /// getent's exit code (2: not found).
    pub rc: i32,
    /// The first field of every line.
    pub addresses: BTreeSet<String>,
    /// The canonical name, printed on the first line.
    pub canonical: Option<String>,
}

impl Namespace<'_> {
    /// Runs `getent database NAME` for each of `names` in turn (in one namespace, so a name
    /// asked twice shows the second lookup too); the lookups in the order of `names`. `dir`
    /// is the scratch directory. Kills the whole process group after a minute.
    pub fn getent(&self, dir: &Path, database: &str, names: &[&str]) -> Vec<Lookup> {
        for tool in ["unshare", "ip", "mount", "getent"] {
            assert!(
                have(tool),
                "{tool} is needed (util-linux, iproute2, libc-bin)"
            );
        }
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).unwrap();
        for (name, text) in self.etc {
            write(&etc, name, text);
        }
        let files: Vec<&str> = self.etc.iter().map(|(name, _)| *name).collect();
        let stdout = std::fs::File::create(dir.join("stdout")).unwrap();
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        let mut unshare = Command::new("unshare");
        unshare.args(["--mount", "--propagation", "private"]);
        if self.snapdns_registry.is_some() {
            unshare.arg("--net");
        }
        let mut child = unshare
            .args(["--", "sh", "-c", SCRIPT])
            .env("DIR", dir)
            .env("SNAPDNS", binary())
            .env("REGISTRY", self.snapdns_registry.unwrap_or(Path::new("")))
            .env("ETC_FILES", files.join(" "))
            .env("DATABASE", database)
            .env("NAMES", names.join(" "))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("run unshare");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                panic!("the namespace script did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        assert!(
            status.success(),
            "the namespace script failed ({status}; unshare needs root):\nstdout:\n{}\nstderr:\n{}\nsnapdns:\n{}",
            read("stdout"),
            read("stderr"),
            read("snapdns.log")
        );
        let output = read("stdout");
        let lookups = parse(&output);
        assert_eq!(lookups.len(), names.len(), "one lookup per name:\n{output}");
        lookups
    }
}

/// The lookups in the script's output, in order.
fn parse(output: &str) -> Vec<Lookup> {
    let mut lookups = Vec::new();
    let mut current: Option<Lookup> = None;
    for line in output.lines() {
        if let Some(rc) = line.strip_prefix("== rc ") {
            if let Some(mut lookup) = current.take() {
                lookup.rc = rc.trim().parse().unwrap_or(-1);
                lookups.push(lookup);
            }
        } else if line.starts_with("== ") {
            current = Some(Lookup {
                rc: -1,
                ..Lookup::default()
            });
        } else if let Some(lookup) = current.as_mut() {
            // `ADDRESS  STREAM|DGRAM|RAW  [CANONICAL]`
            let mut fields = line.split_whitespace();
            if let Some(address) = fields.next() {
                lookup.addresses.insert(address.to_string());
            }
            if let Some(canonical) = fields.nth(1) {
                lookup
                    .canonical
                    .get_or_insert_with(|| canonical.to_string());
            }
        }
    }
    lookups
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
