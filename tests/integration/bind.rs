//! A real BIND 9 (`named`) on 127.0.0.1 for the DNS push tests: primary for the
//! zones a test names, updates allowed with a TSIG key made by `tsig-keygen`.
//! Each server has its own directory and port and stops when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Bind {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Bind {
    /// Starts named serving `zones` (each with SOA, NS and an A record), or
    /// `None` when BIND is not installed outside CI.
    pub fn start(zones: &[&str]) -> Option<Bind> {
        if crate::support::missing_in_ci(&["named", "tsig-keygen", "dig", "nsupdate"]) {
            return None;
        }
        // named runs as root here (`-u root`), as tests/run.sh runs the tests.
        if !crate::support::root_or_skip() {
            return None;
        }
        for _ in 0..20 {
            if let Some(bind) = Bind::try_start(zones) {
                return Some(bind);
            }
        }
        panic!("named did not start on any port");
    }

    fn try_start(zones: &[&str]) -> Option<Bind> {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // A port free now; named reports (and we retry) if it is taken meanwhile.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let key = Command::new("tsig-keygen")
            .args(["-a", "hmac-sha256", "mailsetup"])
            .output()
            .expect("tsig-keygen");
        assert!(key.status.success());
        std::fs::write(dir.path().join("tsig.key"), &key.stdout).unwrap();
        let token = format!("{d}:{port}");
        let mut conf = format!(
            "include \"{d}/tsig.key\";\n\
             options {{ directory \"{d}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }};\n\
             pid-file \"{d}/named.pid\"; lock-file \"{d}/named.lock\"; session-keyfile \"{d}/session.key\";\n\
             managed-keys-directory \"{d}\"; bindkeys-file \"{d}/bind.keys\"; dump-file \"{d}/dump.db\";\n\
             recursion no; dnssec-validation no; notify no; server-id \"{token}\"; reuseport no; }};\n\
             controls {{ }};\n"
        );
        for zone in zones {
            std::fs::write(
                dir.path().join(format!("{zone}.zone")),
                format!(
                    "$TTL 300\n@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n\
                     @ NS ns1.{zone}.\n@ A 192.0.2.25\nns1 A 127.0.0.1\n"
                ),
            )
            .unwrap();
            conf += &format!(
                "zone \"{zone}\" {{ type primary; file \"{zone}.zone\"; \
                 allow-update {{ key mailsetup; }}; }};\n"
            );
        }
        std::fs::write(dir.path().join("named.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.path().join("named.log")).unwrap();
        let child = Command::new("named")
            .args(["-g", "-4", "-n", "1", "-u", "root", "-c"])
            .arg(dir.path().join("named.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start named");
        let mut bind = Bind { port, dir, child };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            let log =
                std::fs::read_to_string(bind.dir.path().join("named.log")).unwrap_or_default();
            if log.contains("address in use") {
                return None; // dropped: stopped; the caller tries another port
            }
            if let Ok(Some(status)) = bind.child.try_wait() {
                panic!("named exited ({status}):\n{log}");
            }
            if bind.dig(&["+tcp", "CH", "TXT", "id.server"]) == format!("\"{token}\"\n")
                && log.contains("running")
            {
                return Some(bind);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("named did not answer within 20 s");
    }

    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("tsig.key")
    }

    /// `dig +short` against this server.
    pub fn dig(&self, args: &[&str]) -> String {
        let out = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &self.port.to_string(),
                "+short",
                "+tries=1",
                "+time=2",
            ])
            .args(args)
            .output()
            .expect("run dig");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The TXT values at `name`, each record's strings joined.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = self.dig(&["TXT", name]).lines().map(join_strings).collect();
        values.sort();
        values
    }

    /// Runs nsupdate with the server's key: `commands` between `zone` and `send`.
    pub fn nsupdate(&self, zone: &str, commands: &str) {
        use std::io::Write;
        let mut child = Command::new("nsupdate")
            .arg("-k")
            .arg(self.key_file())
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nsupdate");
        write!(
            child.stdin.take().unwrap(),
            "server 127.0.0.1 {}\nzone {zone}\n{commands}\nsend\n",
            self.port
        )
        .unwrap();
        assert!(child.wait().unwrap().success(), "nsupdate failed");
    }
}

/// dig's `"a" "b"` as the value `ab`.
fn join_strings(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    let mut inside = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => inside = !inside,
            '\\' if inside => out.extend(chars.next()),
            c if inside => out.push(c),
            _ => {}
        }
    }
    out
}

impl Drop for Bind {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}
