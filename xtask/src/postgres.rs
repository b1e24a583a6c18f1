//! Where PostgreSQL is, according to a database URL, whether it answers there, and scratch
//! databases that live as long as one task.

use std::net::{TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// The development database the service uses by default.
pub const DEV_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/strata";

/// The server the tests connect to; they create a fresh database per test themselves.
pub const TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const DEFAULT_PORT: u16 = 5432;

/// `DATABASE_URL` when set and not empty, else `default`.
pub fn database_url_or(default: &str) -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The host and port of a `postgres://` URL; `None` when it names no TCP host
/// (a Unix socket, or a form this small parser does not know).
pub fn host_and_port(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    // Several hosts may be listed; the first is the one tried first.
    let host_port = host_port.split(',').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() || host.starts_with('%') {
        return None;
    }
    let port = match port {
        Some(port) if !port.is_empty() => port.parse().ok()?,
        _ => DEFAULT_PORT,
    };
    Some((host.to_owned(), port))
}

/// The URL with any password replaced by `***`, for printing.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Fails with instructions when nothing accepts TCP connections at the URL's host and port.
pub fn ensure_reachable(url: &str) -> anyhow::Result<()> {
    let Some((host, port)) = host_and_port(url) else {
        eprintln!(
            "note: DATABASE_URL names no TCP host ({}); not checking that PostgreSQL is up",
            redact(url)
        );
        return Ok(());
    };
    let addresses = match (host.as_str(), port).to_socket_addrs() {
        Ok(addresses) => addresses.collect::<Vec<_>>(),
        Err(error) => bail!("cannot resolve PostgreSQL host {host}: {error}"),
    };
    let timeout = Duration::from_secs(3);
    let mut last_error = None;
    for address in &addresses {
        match TcpStream::connect_timeout(address, timeout) {
            Ok(_) => return Ok(()),
            Err(error) => last_error = Some(error),
        }
    }
    let reason = last_error.map_or_else(|| "no address".to_owned(), |error| error.to_string());
    bail!(
        "PostgreSQL is not reachable at {host}:{port} ({reason})\n\
         DATABASE_URL={}\n\
         start it, for example:\n  \
         sudo pg_ctlcluster 15 main start          # Debian/Ubuntu package (see `ls /etc/postgresql`)\n  \
         docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15\n\
         or point DATABASE_URL at a running server (the role needs CREATEDB); `.ci/run` does all of this",
        redact(url)
    )
}

/// The URL with its database part replaced by `database` (query parameters kept).
pub fn with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let (address, query) = match url.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (url, None),
    };
    let Some((scheme, rest)) = address.split_once("://") else {
        bail!("not a database URL: {}", redact(url));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let mut replaced = format!("{scheme}://{authority}/{database}");
    if let Some(query) = query {
        replaced.push('?');
        replaced.push_str(query);
    }
    Ok(replaced)
}

/// A database of its own for one task, on the server of a URL; dropped with this value, also
/// when the task fails. The xtask talks to PostgreSQL through `psql` (the client `.ci/run`
/// uses too) rather than a driver, so that building the task runner stays light.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    /// The new database's URL.
    pub url: String,
}

impl ScratchDatabase {
    /// Creates the database `name` (letters, digits and `_` only) on the server of `server_url`.
    pub fn create(server_url: &str, name: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "unsafe database name {name:?}"
        );
        let url = with_database(server_url, name)?;
        psql(server_url, &format!("CREATE DATABASE \"{name}\""))
            .with_context(|| format!("could not create database {name}"))?;
        eprintln!("==> created database {name}");
        Ok(Self {
            server_url: server_url.to_owned(),
            name: name.to_owned(),
            url,
        })
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        // FORCE: a server killed a moment ago may leave sessions the server has not reaped yet.
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        match psql(&self.server_url, &sql) {
            Ok(()) => eprintln!("==> dropped database {}", self.name),
            Err(error) => eprintln!("warning: could not drop database {}: {error:#}", self.name),
        }
    }
}

/// Runs SQL (one statement or a script of several) with `psql`, never prompting for a password.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let output = Command::new("psql")
        .args(["-w", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .context(
            "could not run psql, the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client)",
        )?;
    if !output.status.success() {
        bail!(
            "psql at {} failed: {}",
            redact(url),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_part_of_a_url_is_replaced_and_its_parameters_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5433", "x").unwrap(),
            "postgres://h:5433/x"
        );
        assert!(with_database("strata.db", "x").is_err());
    }

    #[test]
    fn host_and_port_come_from_the_authority() {
        assert_eq!(
            host_and_port("postgres://postgres@127.0.0.1:5432/postgres"),
            Some(("127.0.0.1".into(), 5432))
        );
        assert_eq!(
            host_and_port("postgresql://u:p@db.example:6543/x?sslmode=disable"),
            Some(("db.example".into(), 6543))
        );
    }

    #[test]
    fn port_defaults_to_5432() {
        assert_eq!(
            host_and_port("postgres://localhost/strata"),
            Some(("localhost".into(), 5432))
        );
        assert_eq!(
            host_and_port("postgres://u@localhost:/strata"),
            Some(("localhost".into(), 5432))
        );
    }

    #[test]
    fn bracketed_ipv6_hosts_are_understood() {
        assert_eq!(
            host_and_port("postgres://u@[::1]:5433/db"),
            Some(("::1".into(), 5433))
        );
        assert_eq!(
            host_and_port("postgres://[::1]/db"),
            Some(("::1".into(), 5432))
        );
    }

    #[test]
    fn socket_urls_and_other_schemes_name_no_tcp_host() {
        assert_eq!(
            host_and_port("postgres:///strata?host=/var/run/postgresql"),
            None
        );
        assert_eq!(
            host_and_port("postgres://%2Fvar%2Frun%2Fpostgresql/strata"),
            None
        );
        assert_eq!(host_and_port("mysql://localhost/strata"), None);
        assert_eq!(host_and_port("postgres://localhost:notaport/strata"), None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:1/db"),
            "postgres://u:***@h:1/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact("postgres://h/db?user=a:b@c"),
            "postgres://h/db?user=a:b@c"
        );
    }
}
