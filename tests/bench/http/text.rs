//! The text the HTTP workloads of `cargo xtask bench` write and read: wrk's Lua scripts, the
//! summary line those scripts print, and samples of the server's Prometheus text. Pure text in,
//! text out, so that it is unit-tested (`cargo test -p strata-tests --lib`): the bench target
//! itself has no test harness.

use std::collections::BTreeMap;

/// What a wrk script's `done` printed: its `STRATA` line, and its `STRATA-STATUS` line when the
/// script counted answers by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub requests: u64,
    /// Answers with a status of 400 or more (wrk's own count).
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub duration_us: u64,
    /// Answers by status other than 2xx, when the script counted them.
    pub statuses: BTreeMap<u16, u64>,
}

/// Parses the summary out of wrk's stdout.
///
/// # Errors
/// No `STRATA` line, or one that is not six numbers, or a malformed `STRATA-STATUS` entry.
pub fn parse_summary(stdout: &str) -> Result<Summary, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("STRATA "))
        .ok_or("wrk printed no summary")?;
    let figures: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("unexpected wrk summary {line:?}: {e}"))?;
    let mut statuses = BTreeMap::new();
    if let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("STRATA-STATUS")) {
        for entry in line.split_whitespace() {
            let parsed = entry
                .split_once('=')
                .and_then(|(status, count)| Some((status.parse().ok()?, count.parse().ok()?)));
            let (status, count) = parsed.ok_or_else(|| format!("unexpected status {entry:?}"))?;
            statuses.insert(status, count);
        }
    }
    let figures: [u64; 6] = figures
        .try_into()
        .map_err(|_| format!("unexpected wrk summary {line:?}"))?;
    let [requests, non_2xx, socket_errors, p50, p99, duration] = figures;
    Ok(Summary {
        requests,
        non_2xx,
        socket_errors,
        p50_us: p50,
        p99_us: p99,
        duration_us: duration,
        statuses,
    })
}

/// The sum of every sample of the counter `name` (whatever its labels) in Prometheus text; 0
/// when there is none, as a counter not incremented yet is not rendered. The `metrics` crate's
/// counters are integers, and render as such.
///
/// # Errors
/// A sample of `name` whose value is not an integer: read as 0, it would pass for a measured
/// "no retries".
pub fn counter_sum(text: &str, name: &str) -> Result<u64, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            series
                .strip_prefix(name)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
        })
        .map(|(series, value)| {
            value
                .parse::<u64>()
                .map_err(|e| format!("{series} has the value {value:?}, not a count: {e}"))
        })
        .sum()
}

/// What each request of a script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// 80% `GET /v1/orders/{id}`, 20% `AddItem`, over orders.
    ReadMostly,
    /// Deposits only, over accounts; each with a unique `Idempotency-Key` if `keys`.
    Deposits { keys: bool },
}

/// The wrk script: each request picks one of `ids` at random and sends it with `token`.
/// Deposits with keys send `{key_prefix}-{thread}-{counter}`; every script but the read-mostly
/// one (kept as it was measured before) also counts the answers by status.
#[must_use]
pub fn wrk_script(mix: Mix, ids: &[String], token: &str, key_prefix: &str) -> String {
    let ids: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let mut script = format!(
        r#"local ids = {{ {ids} }}
local auth = "Bearer {token}"
local threads = {{}}
function setup(thread)
  table.insert(threads, thread)
  thread:set("seed", #threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + seed)
end
"#,
        ids = ids.join(", ")
    );
    let request = match mix {
        Mix::ReadMostly => r#"function request()
  local id = ids[math.random(#ids)]
  if math.random(100) <= 20 then
    local body = '{"productId":"sku-' .. math.random(20) .. '","quantity":1,"unitPriceCents":100}'
    return wrk.format("POST", "/v1/orders/" .. id .. "/items",
      { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
  end
  return wrk.format("GET", "/v1/orders/" .. id, { ["Authorization"] = auth })
end
"#
        .to_owned(),
        Mix::Deposits { keys } => {
            // Unique across runs (the prefix), threads (their number) and requests (a counter).
            let key = if keys {
                format!(
                    r#"  sent = sent + 1
  headers["Idempotency-Key"] = "{key_prefix}-" .. seed .. "-" .. sent
"#
                )
            } else {
                String::new()
            };
            format!(
                r#"local sent = 0
local body = '{{"amountCents":100,"reference":"bench deposit"}}'
function request()
  local id = ids[math.random(#ids)]
  local headers = {{ ["Authorization"] = auth, ["Content-Type"] = "application/json" }}
{key}  return wrk.format("POST", "/v1/accounts/" .. id .. "/deposits", headers, body)
end
statuses = {{}}
function response(status, headers, body)
  if status >= 300 then
    statuses[status] = (statuses[status] or 0) + 1
  end
end
"#
            )
        }
    };
    script.push_str(&request);
    script.push_str(
        r#"function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("STRATA %d %d %d %d %d %d\n", summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99),
    summary.duration))
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  io.write("STRATA-STATUS")
  for status, n in pairs(counts) do
    io.write(string.format(" %d=%d", status, n))
  end
  io.write("\n")
end
"#,
    );
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "header.payload.signature";

    fn ids() -> Vec<String> {
        vec!["0193a1b2-0000-7000-8000-000000000001".to_owned()]
    }

    #[test]
    fn a_summary_with_statuses_parses_into_its_figures() {
        let stdout =
            "Running 10s test\nSTRATA 1200 18 1 2500 9100 10000123\nSTRATA-STATUS 409=17 503=1\n";

        let summary = parse_summary(stdout).unwrap();

        assert_eq!(
            summary,
            Summary {
                requests: 1200,
                non_2xx: 18,
                socket_errors: 1,
                p50_us: 2500,
                p99_us: 9100,
                duration_us: 10_000_123,
                statuses: BTreeMap::from([(409, 17), (503, 1)]),
            }
        );
    }

    #[test]
    fn a_summary_without_statuses_has_none_and_a_broken_one_is_refused() {
        let summary = parse_summary("STRATA 5 0 0 1 2 3\nSTRATA-STATUS\n").unwrap();
        assert!(summary.statuses.is_empty());
        assert_eq!(parse_summary("STRATA 5 0 0 1 2 3\n").unwrap(), summary);

        assert!(parse_summary("nothing").is_err());
        assert!(parse_summary("STRATA 5 0 0 1 2\n").is_err());
        assert!(parse_summary("STRATA 5 0 0 1 2 3\nSTRATA-STATUS 409:2\n").is_err());
    }

    #[test]
    fn a_counter_is_summed_over_its_labels_and_absent_is_zero() {
        let text = "# HELP strata_command_retries_total Races lost and retried.\n\
                    # TYPE strata_command_retries_total counter\n\
                    strata_command_retries_total{category=\"account\"} 41\n\
                    strata_command_retries_total{category=\"order\"} 1\n\
                    strata_command_retries_total_other 1000\n\
                    strata_events_appended_total{category=\"account\"} 99\n";

        assert_eq!(counter_sum(text, "strata_command_retries_total"), Ok(42));
        assert_eq!(counter_sum(text, "strata_command_contention_total"), Ok(0));
        let float = "strata_command_retries_total{category=\"account\"} 4.5\n";
        assert!(counter_sum(float, "strata_command_retries_total").is_err());
    }

    /// The key a keyed script sends: the prefix, the thread's number and the request counter.
    fn key_expression(script: &str) -> &str {
        script
            .lines()
            .find_map(|l| l.trim().strip_prefix(r#"headers["Idempotency-Key"] = "#))
            .expect("no Idempotency-Key header in the script")
    }

    #[test]
    fn keyed_deposits_send_a_valid_key_unique_per_run_thread_and_request() {
        let prefix = "bench-0193a1b2c3d4e5f6";

        let script = wrk_script(Mix::Deposits { keys: true }, &ids(), TOKEN, prefix);

        // Unique: the run's prefix, the thread's number, the counter incremented per request.
        assert_eq!(
            key_expression(&script),
            format!(r#""{prefix}-" .. seed .. "-" .. sent"#)
        );
        assert!(
            script.contains("thread:set(\"seed\", #threads)"),
            "{script}"
        );
        assert!(script.contains("  sent = sent + 1\n"), "{script}");
        // Valid, as the server reads it, even at its longest: the thread number and the counter
        // print as at most 14 digits each (Lua's %.14g).
        let longest = format!("{prefix}-{}-{}", "9".repeat(14), "9".repeat(14));
        assert!(
            strata_web::extract::is_valid_idempotency_key(&longest),
            "{longest}"
        );
        assert!(script.contains("/deposits"), "{script}");
    }

    #[test]
    fn deposits_without_keys_send_none_and_count_statuses() {
        let script = wrk_script(Mix::Deposits { keys: false }, &ids(), TOKEN, "unused");

        assert!(!script.contains("Idempotency-Key"), "{script}");
        assert!(!script.contains("unused"), "{script}");
        assert!(script.contains("function response(status"), "{script}");
        assert!(script.contains(&format!("\"Bearer {TOKEN}\"")), "{script}");
    }

    #[test]
    fn the_read_mostly_script_keeps_wrk_fast_without_a_response_hook() {
        let script = wrk_script(Mix::ReadMostly, &ids(), TOKEN, "unused");

        // A `response` function makes wrk parse every answer: `http` was measured without one.
        assert!(!script.contains("function response"), "{script}");
        assert!(script.contains("/items"), "{script}");
        assert!(script.contains(&ids()[0]), "{script}");
    }
}
