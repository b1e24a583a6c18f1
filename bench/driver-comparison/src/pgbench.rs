//! The database's own ceiling: pgbench running the same append transaction against the same
//! schema, one statement per round trip (`pgbench-seq`) and all of it in one pipeline
//! (`pgbench-pipelined`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio::process::Command;

use crate::{Sample, Variant};

/// The adapter's transaction, statement for statement (5 round trips: BEGIN, lock, set stream
/// version, head counter + insert, END). Each client appends to 8 streams of its own, and reads
/// the stream version under the lock, as our clients do.
const SEQUENTIAL: &str = r#"\set sid :client_id * 1000 + random(0, 7)
BEGIN;
INSERT INTO streams (stream_id, version) VALUES ('pgbench-' || :sid::text, 0)
    ON CONFLICT (stream_id) DO UPDATE SET version = streams.version
    RETURNING version AS current \gset
\set next :current + 1
UPDATE streams SET version = :next WHERE stream_id = 'pgbench-' || :sid::text;
WITH head AS (UPDATE event_log_head SET position = position + 1 RETURNING position)
INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                    schema_version, data, metadata, recorded_at)
SELECT head.position, gen_random_uuid(), 'pgbench-' || :sid::text, :next, 'BenchEventRecorded',
       1, '{"amount": 42, "currency": "EUR", "note": "driver comparison"}'::jsonb,
       '{"correlationId": "pgbench"}'::jsonb, now()
FROM head;
END;
"#;

/// The same statements in one pipeline (1 round trip). pgbench cannot read a result inside a
/// pipeline, so the new stream version is computed in SQL instead of checked by the client.
const PIPELINED: &str = r#"\set sid :client_id * 1000 + random(0, 7)
\startpipeline
BEGIN;
INSERT INTO streams (stream_id, version) VALUES ('pgbench-' || :sid::text, 0)
    ON CONFLICT (stream_id) DO UPDATE SET version = streams.version
    RETURNING version;
UPDATE streams SET version = version + 1 WHERE stream_id = 'pgbench-' || :sid::text;
WITH head AS (UPDATE event_log_head SET position = position + 1 RETURNING position)
INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
                    schema_version, data, metadata, recorded_at)
SELECT head.position, gen_random_uuid(), 'pgbench-' || :sid::text,
       (SELECT version FROM streams WHERE stream_id = 'pgbench-' || :sid::text),
       'BenchEventRecorded',
       1, '{"amount": 42, "currency": "EUR", "note": "driver comparison"}'::jsonb,
       '{"correlationId": "pgbench"}'::jsonb, now()
FROM head;
END;
\endpipeline
"#;

/// Where and how to run pgbench.
#[derive(Debug, Clone)]
pub struct Pgbench {
    pub program: PathBuf,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A scratch directory for the scripts and the per-transaction logs.
    pub work_dir: PathBuf,
}

impl Pgbench {
    /// Runs `appends` transactions split over `clients` clients against `database`.
    pub async fn run(
        &self,
        variant: Variant,
        database: &str,
        clients: usize,
        appends: usize,
    ) -> anyhow::Result<Sample> {
        let script = match variant {
            Variant::PgbenchSeq => SEQUENTIAL,
            Variant::PgbenchPipelined => PIPELINED,
            other => bail!("{other:?} is not a pgbench variant"),
        };
        let dir = self.work_dir.join(format!("{}-c{clients}", variant.name()));
        if dir.exists() {
            tokio::fs::remove_dir_all(&dir).await?;
        }
        tokio::fs::create_dir_all(&dir).await?;
        let script_path = dir.join("append.sql");
        tokio::fs::write(&script_path, script).await?;

        let per_client = appends.div_ceil(clients);
        let output = Command::new(&self.program)
            .args([
                "-h",
                &self.host,
                "-p",
                &self.port.to_string(),
                "-U",
                &self.user,
            ])
            // No vacuum of pgbench's own tables (there are none); prepared statements, as our
            // clients use; at most one thread per core.
            .args(["-n", "-M", "prepared"])
            .args([
                "-c",
                &clients.to_string(),
                "-j",
                &clients.min(2).to_string(),
            ])
            .args(["-t", &per_client.to_string()])
            .arg("-f")
            .arg(&script_path)
            .arg("-l")
            .arg("--log-prefix")
            .arg(dir.join("log"))
            .arg(database)
            .output()
            .await
            .with_context(|| format!("running {}", self.program.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "pgbench failed ({}): {stdout}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let tps = stdout
            .lines()
            .find_map(|line| {
                line.strip_prefix("tps = ")
                    .filter(|rest| rest.contains("without initial connection time"))
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|n| n.parse::<f64>().ok())
            })
            .with_context(|| format!("no tps line in pgbench's output: {stdout}"))?;
        let mut latencies = read_latencies(&dir).await?;
        anyhow::ensure!(
            latencies.len() == per_client * clients,
            "pgbench logged {} transactions, expected {}",
            latencies.len(),
            per_client * clients
        );
        Ok(Sample::new(tps, &mut latencies))
    }
}

/// The per-transaction latencies (µs) of every `log.*` file pgbench wrote in `dir`: the third
/// field of each line.
async fn read_latencies(dir: &Path) -> anyhow::Result<Vec<u64>> {
    let mut latencies = Vec::new();
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        if !entry.file_name().to_string_lossy().starts_with("log.") {
            continue;
        }
        let text = tokio::fs::read_to_string(entry.path()).await?;
        for line in text.lines() {
            let micros = line
                .split_whitespace()
                .nth(2)
                .and_then(|field| field.parse::<u64>().ok())
                .with_context(|| format!("unexpected pgbench log line {line:?}"))?;
            latencies.push(micros);
        }
    }
    Ok(latencies)
}
