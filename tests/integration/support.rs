//! A small harness: run the real binary with arguments, check its exit status,
//! and look at the files it left in a temporary root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const DATE: &str = "20261124";
/// The relay password the tests put on the host for the smart-host example.
pub const RELAY_PASSWORD: &str = "test-relay-password";

/// What a run of mailsetup did.
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The tests' day (`DATE` is its selector); a run happens at its noon, UTC.
const DAY: &str = "2026-11-24";

/// One run of the binary under test, described and then checked by
/// [`Test::run`] (after just's test builder): every test runs it the same way
/// (no colour, a fixed day, the crate as working directory), and a failed check
/// shows the whole run, not just the line that was looked for.
#[must_use = "nothing runs until .run()"]
pub struct Test {
    args: Vec<String>,
    day: String,
    env_remove: Vec<String>,
    /// The exit status to expect; `None` for any.
    status: Option<i32>,
    checks: Vec<Check>,
}

/// Text that must (or must not) appear in stdout (or stderr).
struct Check {
    stderr: bool,
    present: bool,
    text: String,
}

impl Test {
    /// No arguments yet, on the tests' day, expecting exit status 0.
    pub fn new() -> Test {
        Test {
            args: Vec::new(),
            day: DAY.to_string(),
            env_remove: Vec::new(),
            status: Some(0),
            checks: Vec::new(),
        }
    }

    /// Appends arguments, so a helper can add to those it was given.
    pub fn args(mut self, args: &[&str]) -> Test {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Runs at noon UTC on `day` (YYYY-MM-DD), through SOURCE_DATE_EPOCH.
    pub fn day(mut self, day: &str) -> Test {
        self.day = day.to_string();
        self
    }

    /// Runs without the variable `key`, even one this builder sets.
    pub fn env_remove(mut self, key: &str) -> Test {
        self.env_remove.push(key.to_string());
        self
    }

    /// The exit status to expect.
    pub fn status(mut self, code: i32) -> Test {
        self.status = Some(code);
        self
    }

    /// Any exit status will do (the caller judges the output).
    pub fn any_status(mut self) -> Test {
        self.status = None;
        self
    }

    // The checks of what the run printed, as many as wanted: `run` asserts
    // them all with the status, so one failure names every miss.

    pub fn stdout_has(self, text: impl Into<String>) -> Test {
        self.check(false, true, text.into())
    }

    pub fn stdout_lacks(self, text: impl Into<String>) -> Test {
        self.check(false, false, text.into())
    }

    pub fn stderr_has(self, text: impl Into<String>) -> Test {
        self.check(true, true, text.into())
    }

    pub fn stderr_lacks(self, text: impl Into<String>) -> Test {
        self.check(true, false, text.into())
    }

    fn check(mut self, stderr: bool, present: bool, text: String) -> Test {
        self.checks.push(Check {
            stderr,
            present,
            text,
        });
        self
    }

    /// Runs mailsetup and asserts the status and every check; the output is
    /// returned for checks the builder does not make (counts, parsing).
    #[track_caller]
    pub fn run(self) -> Output {
        let epoch = format!("{}T12:00:00Z", self.day)
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_second();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailsetup"));
        cmd.args(&self.args)
            .env("NO_COLOR", "1")
            .env("SOURCE_DATE_EPOCH", epoch.to_string())
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        let out = cmd.output().expect("run mailsetup");
        let out = Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let mut wrong = Vec::new();
        if let Some(status) = self.status
            && out.code != status
        {
            wrong.push(format!("exited {}, not {status}", out.code));
        }
        for c in &self.checks {
            let (name, text) = if c.stderr {
                ("stderr", &out.stderr)
            } else {
                ("stdout", &out.stdout)
            };
            if text.contains(&c.text) != c.present {
                let verb = if c.present { "lacks" } else { "has" };
                wrong.push(format!("{name} {verb} {:?}", c.text));
            }
        }
        assert!(
            wrong.is_empty(),
            "mailsetup {:?} on {}: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.args,
            self.day,
            wrong.join("; "),
            out.stdout,
            out.stderr
        );
        out
    }
}

pub fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Every spec in examples/, so a new example is tested without listing it here.
pub fn examples() -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
    names.sort();
    names
}

/// An empty target root, with the relay password file the smart-host example reads.
pub fn root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc/mailsetup")).unwrap();
    write_password(
        &root.path().join("etc/mailsetup/relay-password"),
        RELAY_PASSWORD,
    );
    root
}

/// A relay password file as the operator makes it: one line, mode 0600.
pub fn write_password(file: &Path, password: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(file, format!("{password}\n")).unwrap();
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every regular file under `dir`, by path relative to it.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ty = entry.file_type().unwrap();
            if ty.is_dir() {
                stack.push(entry.path());
            } else if ty.is_file() {
                let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    out
}

/// Whether a test can run: `present`, or else (with a note saying what is
/// missing) it returns early — except in CI (`CI=true`), where that is a failure.
pub fn available(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI needs {what} (tests/run.sh installs it; the tests run as root)"
        );
        eprintln!("skipping: needs {what} (tests/run.sh installs it)");
    }
    present
}

/// True (with a note) when one of `programs` is not installed, so a test that
/// needs it can return early — except in CI, where that is a failure.
pub fn missing_in_ci(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs.iter().copied().filter(|p| !installed(p)).collect();
    !available(missing.is_empty(), &format!("{missing:?}"))
}

/// Whether a program is installed: in PATH or one of the system's bin directories.
pub fn installed(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .any(|dir| dir.join(program).is_file())
}

/// Runs a program a test needs and asserts it succeeded (naming it, with its
/// output, when not); returns its standard output.
#[track_caller]
pub fn succeed(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether the tests run as root (named, systemd-nspawn and namespaces need it).
pub fn root_or_skip() -> bool {
    available(nix::unistd::geteuid().is_root(), "root")
}

/// A tool tests/run.sh installs from PyPI into the tests' own virtual
/// environment; `None` (with a note) when it is missing outside CI.
pub fn test_tool(name: &str) -> Option<PathBuf> {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tools/bin")
        .join(name);
    available(tool.exists(), &tool.display().to_string()).then_some(tool)
}

/// The .deb as the README's Packaging section makes it, from the binary under
/// test (dev profile: no second, release build in the test run), built once
/// per test run; `None` (with a note) without cargo-deb outside CI.
pub fn deb() -> Option<&'static Path> {
    static DEB: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DEB.get_or_init(|| {
        let cargo_deb = Command::new("cargo")
            .args(["deb", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !available(cargo_deb, "cargo-deb") {
            return None;
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let assets = manifest.join("target/assets");
        std::fs::create_dir_all(&assets).unwrap();
        Test::new()
            .args(&["man", "--out", assets.join("man").to_str().unwrap()])
            .run();
        for (args, file) in [
            (&["completions", "bash"][..], "mailsetup.bash"),
            (&["completions", "zsh"][..], "_mailsetup"),
            (&["completions", "fish"][..], "mailsetup.fish"),
        ] {
            std::fs::write(assets.join(file), Test::new().args(args).run().stdout).unwrap();
        }
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deb");
        let _ = std::fs::remove_dir_all(&out);
        succeed(
            Command::new("cargo")
                .args([
                    "deb",
                    "--no-build",
                    "--profile",
                    "dev",
                    "--fast",
                    "--output",
                ])
                .arg(&out)
                .current_dir(manifest),
        );
        let deb = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("cargo deb wrote a .deb");
        Some(deb)
    })
    .as_deref()
}

/// Runs a test script of tests/ with bash, prints what it said, and asserts
/// it succeeded and said `done` (its last step).
pub fn run_script(script: &str, args: &[&str], done: &str) {
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(done), "{stdout}");
}

/// One thing to apply: an example, or one host of a fleet example.
pub struct Target {
    /// `guide`, or `fleet-mta01` for a fleet host.
    pub label: String,
    pub spec: String,
    pub host: Option<String>,
}

impl Target {
    /// `mailsetup CMD SPEC [--host H] --root ROOT EXTRA…`
    pub fn args<'a>(&'a self, cmd: &'a str, root: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![cmd, self.spec.as_str()];
        if let Some(h) = &self.host {
            args.extend(["--host", h.as_str()]);
        }
        args.extend(["--root", root]);
        args.extend_from_slice(extra);
        args
    }
}

/// Every example, with each host of a fleet example as a target of its own.
pub fn targets() -> Vec<Target> {
    let mut out = Vec::new();
    for name in examples() {
        let spec = example(&name);
        let stem = name.trim_end_matches(".yaml");
        let (parsed, _) = mailsetup::spec::load(Path::new(&spec)).unwrap();
        if parsed.hosts.is_empty() {
            out.push(Target {
                label: stem.to_string(),
                spec,
                host: None,
            });
            continue;
        }
        for host in parsed.hosts.keys() {
            out.push(Target {
                label: format!("{stem}-{host}"),
                spec: spec.clone(),
                host: Some(host.to_string()),
            });
        }
    }
    out
}

/// Held by the end-to-end suite and the fresh-host test, which each start a
/// whole mail stack with timeouts of their own, so they do not compete for
/// the CI machine's two cores. (The suite's check for daemons escaping its
/// namespaces ignores other PID namespaces and the tests' own processes.)
pub static DAEMONS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The members of a bundle (a .tar.gz), name and content, in archive order.
pub fn members(bundle: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let bytes = std::fs::read(bundle).unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Everything under `dir` (files with content, directories, symlinks) with its
/// mode: a refused input must leave this unchanged.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let meta = entry.path().symlink_metadata().unwrap();
            let rel = entry.path().strip_prefix(dir).unwrap().to_path_buf();
            let content = if meta.is_file() {
                std::fs::read(entry.path()).unwrap()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(entry.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
                    .into_bytes()
            } else {
                Vec::new()
            };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.insert(rel, (std::os::unix::fs::MetadataExt::mode(&meta), content));
        }
    }
    out
}

/// Asserts two snapshots are equal, naming the paths that differ.
pub fn assert_unchanged(
    before: &BTreeMap<PathBuf, (u32, Vec<u8>)>,
    after: &BTreeMap<PathBuf, (u32, Vec<u8>)>,
    what: &str,
) {
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "{what}: {changed:?}");
}

/// `apply --bundle BUNDLE EXTRA…` into a new root, expecting `expect`; a refused
/// bundle must leave the root exactly as it was.
pub fn apply_bundle_to_a_new_root(bundle: &Path, extra: &[&str], expect: i32) -> Output {
    let host = root();
    let before = snapshot(host.path());
    let out = Test::new()
        .args(&[
            "apply",
            "--bundle",
            path_str(bundle),
            "--root",
            path_str(host.path()),
        ])
        .args(extra)
        .status(expect)
        .run();
    if expect != 0 {
        assert_unchanged(
            &before,
            &snapshot(host.path()),
            "a refused bundle wrote files",
        );
    }
    out
}

/// The commands a run suggested — `mailsetup …` in backquotes — as their
/// arguments, read as a shell would (single quotes), without `mailsetup`.
pub fn hints(said: &str) -> Vec<Vec<String>> {
    said.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|cmd| cmd.strip_prefix("mailsetup "))
        .map(|cmd| {
            let (mut words, mut word, mut quoted) = (Vec::new(), String::new(), false);
            for c in cmd.chars() {
                match c {
                    '\'' => quoted = !quoted,
                    ' ' if !quoted => words.push(std::mem::take(&mut word)),
                    c => word.push(c),
                }
            }
            words.push(word);
            words.into_iter().filter(|w| !w.is_empty()).collect()
        })
        .collect()
}

/// The one command a run suggested that starts with `sub`, ready to run as
/// printed (the caller sets the status and checks).
#[track_caller]
pub fn hinted(said: &str, sub: &str) -> Test {
    let all = hints(said);
    let found = all
        .iter()
        .find(|h| h.join(" ").starts_with(sub))
        .unwrap_or_else(|| panic!("no `mailsetup {sub} …` suggested in: {said}"));
    let args: Vec<&str> = found.iter().map(String::as_str).collect();
    Test::new().args(&args)
}
