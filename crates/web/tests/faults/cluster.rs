//! A throwaway PostgreSQL cluster in a temporary directory on a free port, which a test may
//! restart; stopped and deleted when dropped (on a panic too). `initdb` refuses to run as
//! root, so as root the cluster belongs to the `postgres` user (through `runuser`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A running private cluster.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    /// Owned by the cluster's user: the data directory, the socket and the log.
    dir: TempDir,
    pub port: u16,
    /// The server's options (`pg_ctl start -o`).
    options: String,
    /// The user to run the PostgreSQL tools as, when this process is root.
    run_as: Option<String>,
}

impl Cluster {
    /// Starts a cluster, or says why it cannot (then the caller skips).
    pub fn start() -> Result<Self, String> {
        let bin = postgres_bin().ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let root = output(Command::new("id").arg("-u"))?.trim() == "0";
        let run_as = if root {
            let uid = output(Command::new("id").args(["-u", "postgres"]))
                .map_err(|_| "running as root and there is no postgres user".to_owned())?;
            let gid = output(Command::new("id").args(["-g", "postgres"]))?;
            let (uid, gid) = (uid.trim().parse().ok(), gid.trim().parse().ok());
            std::os::unix::fs::chown(dir.path(), uid, gid)
                .map_err(|e| format!("cannot give the directory to postgres: {e}"))?;
            Some("postgres".to_owned())
        } else {
            None
        };
        let port = crate::support::free_address().port();
        let options = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=100",
            dir.path().display()
        );
        let cluster = Self {
            bin,
            dir,
            port,
            options,
            run_as,
        };
        let data = cluster.data();
        let initdb = ["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"];
        cluster.run("initdb", &initdb)?;
        cluster.pg_ctl(&["start", "-o", &cluster.options])?;
        Ok(cluster)
    }

    /// The URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl restart -m MODE`: `fast` ends the sessions and checkpoints, `immediate` aborts
    /// them all (crash recovery at the start). Returns once the cluster accepts connections.
    pub fn restart(&self, mode: &str) {
        self.pg_ctl(&["restart", "-m", mode])
            .unwrap_or_else(|e| panic!("pg_ctl restart -m {mode}: {e}"));
    }

    /// `pg_ctl stop -m MODE`: the database is down until [`Self::start_again`].
    pub fn stop(&self, mode: &str) {
        self.pg_ctl(&["stop", "-m", mode])
            .unwrap_or_else(|e| panic!("pg_ctl stop -m {mode}: {e}"));
    }

    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-o", &self.options])
            .unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
    }

    /// The postmaster's process id (changes with each restart).
    pub fn postmaster_pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(Path::new(&self.data()).join("postmaster.pid")).ok()?;
        pid.lines().next().map(str::to_owned)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data();
        let mut all = vec!["-D", &data, "-l", &log, "-w", "-t", "60"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    /// Runs a PostgreSQL tool as the cluster's user; its output must not be inherited by the
    /// server it starts (a pipe held open by the postmaster would never end).
    fn run(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(self.dir.path());
        output(&mut command).map_err(|e| format!("{tool} {}: {e}", args.join(" ")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["stop", "-m", "immediate"]);
    }
}

/// The newest PostgreSQL's programs.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Runs a command to its end with its output captured (files, not pipes, for a daemon's sake).
fn output(command: &mut Command) -> Result<String, String> {
    let out = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let file = out.reopen().map_err(|e| e.to_string())?;
    let status = command
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(|e| e.to_string())?)
        .stderr(file)
        .status()
        .map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    if status.success() {
        Ok(text)
    } else {
        Err(format!("{status}: {}", text.trim()))
    }
}
