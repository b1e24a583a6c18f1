//! Unit tests of the settings: defaults, what each flag sets, and what is refused at start-up.

use super::*;

fn args(secret: Option<&str>, dev: bool) -> ServeArgs {
    let mut cli = Cli::parse_from(["strata-web"]).serve;
    // The environment of a test run may name a database: these tests choose their own.
    cli.database_url = None;
    cli.data_dir = PathBuf::from("data");
    cli.jwt_secret = secret.map(Secret::from);
    cli.dev = dev;
    cli
}

#[test]
fn without_a_secret_the_server_refuses_to_start_unless_in_development_mode() {
    assert!(matches!(
        Settings::from_args(args(None, false)),
        Err(SettingsError::MissingJwtSecret)
    ));
    let dev = Settings::from_args(args(None, true)).unwrap();
    assert!(dev.using_development_secret);
    assert_eq!(dev.jwt_secret.expose(), DEVELOPMENT_JWT_SECRET);
}

#[test]
fn queries_wait_five_seconds_and_the_projector_runs_elsewhere_by_default_on_postgres() {
    let mut on_postgres = args(None, true);
    on_postgres.database_url = Some("postgres://db/strata".into());
    let settings = Settings::from_args(on_postgres).unwrap();
    assert_eq!(settings.read_wait, Duration::from_secs(5));
    assert!(!settings.with_projector);

    let cli = Cli::parse_from([
        "strata-web",
        "--dev",
        "--with-projector",
        "--read-wait-ms",
        "250",
    ]);
    let settings = Settings::from_args(cli.serve).unwrap();
    assert_eq!(settings.read_wait, Duration::from_millis(250));
    assert!(settings.with_projector);
}

#[test]
fn without_a_database_url_everything_is_stored_in_sqlite_in_the_data_directory() {
    let settings = Settings::from_args(args(None, true)).unwrap();
    assert_eq!(
        settings.storage,
        Storage::Sqlite(PathBuf::from("data/strata.db"))
    );
    assert!(
        settings.with_projector,
        "the embedded deployment is one process"
    );
}

#[test]
fn a_database_url_of_another_database_is_refused() {
    let mut mysql = args(None, true);
    mysql.database_url = Some("mysql://db/strata".into());
    let refused = Settings::from_args(mysql).unwrap_err();
    assert!(refused.to_string().contains("postgres://"), "{refused}");
}

#[test]
fn an_explicit_secret_wins_even_in_development_mode() {
    let settings = Settings::from_args(args(Some(SECRET), true)).unwrap();
    assert!(!settings.using_development_secret);
    assert_eq!(settings.jwt_secret.expose(), SECRET);
}

/// A 40-character secret as `openssl rand -hex 20` gives.
const SECRET: &str = "6f1c2a9e4b7d03f58e2a91c4d7b60e3f2a8c5d19";

fn weakness(secret: &str) -> Option<String> {
    match Settings::from_args(args(Some(secret), false)) {
        Ok(_) => None,
        Err(SettingsError::WeakJwtSecret { which, why }) => Some(format!("{which}: {why}")),
        Err(other) => panic!("{secret:?} refused for another reason: {other}"),
    }
}

#[test]
fn a_short_secret_is_refused_at_start_up() {
    let refused = weakness(&SECRET[..31]).unwrap();
    assert!(refused.contains("STRATA_JWT_SECRET"), "{refused}");
    assert!(refused.contains("32 bytes"), "{refused}");
    assert_eq!(weakness(&SECRET[..32]), None);
}

#[test]
fn a_long_secret_of_few_distinct_bytes_is_refused_at_start_up() {
    for placeholder in [
        "x".repeat(40),
        "ab".repeat(32),
        "changeme".repeat(5), // 7 distinct bytes
        "0123456".repeat(10),
    ] {
        let refused = weakness(&placeholder).unwrap_or_else(|| panic!("{placeholder} passed"));
        assert!(refused.contains("8 distinct bytes"), "{refused}");
        assert!(
            !refused.contains(&placeholder),
            "the secret is never quoted: {refused}"
        );
    }
    assert_eq!(
        weakness("01234567-abcdefgh-01234567-ABCDEFGH"),
        None,
        "8 distinct bytes pass, unless a short pattern repeats"
    );
}

#[test]
fn previous_secrets_are_read_comma_separated_and_checked_like_the_current_one() {
    let other = "9d3e7a0c5f1b84e26a9d0c3f7e15b4a8c2d6f0e1";
    let cli = Cli::parse_from([
        "strata-web",
        "--jwt-secret",
        SECRET,
        "--jwt-previous-secrets",
        &format!("{other},{SECRET},"),
    ]);
    let settings = Settings::from_args(cli.serve).unwrap();
    let previous: Vec<&str> = settings
        .jwt_previous_secrets
        .iter()
        .map(Secret::expose)
        .collect();
    assert_eq!(previous, [other, SECRET]);

    for weak in ["short", "y".repeat(40).as_str()] {
        let mut with_weak = args(Some(SECRET), false);
        with_weak.jwt_previous_secrets = vec![Secret::from(other), Secret::from(weak)];
        let refused = Settings::from_args(with_weak).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("STRATA_JWT_PREVIOUS_SECRETS (entry 2)"),
            "{refused}"
        );
    }
}

#[test]
fn tokens_live_a_day_at_most_and_name_no_issuer_or_audience_by_default() {
    let settings = Settings::from_args(args(Some(SECRET), false)).unwrap();
    assert_eq!(settings.jwt_max_lifetime, Duration::from_secs(86_400));
    assert_eq!(settings.jwt_issuer, None);
    assert_eq!(settings.jwt_audience, None);
    assert!(settings.jwt_previous_secrets.is_empty());

    let cli = Cli::parse_from([
        "strata-web",
        "--dev",
        "--jwt-max-lifetime-secs",
        "900",
        "--jwt-issuer",
        "https://idp.example",
        "--jwt-audience",
        " ",
    ]);
    let settings = Settings::from_args(cli.serve).unwrap();
    assert_eq!(settings.jwt_max_lifetime, Duration::from_secs(900));
    assert_eq!(settings.jwt_issuer.as_deref(), Some("https://idp.example"));
    assert_eq!(settings.jwt_audience, None, "blank means unset");
    let blank_issuer = Cli::parse_from(["strata-web", "--dev", "--jwt-issuer", ""]);
    assert_eq!(
        Settings::from_args(blank_issuer.serve).unwrap().jwt_issuer,
        None
    );
    assert!(
        Cli::try_parse_from(["strata-web", "--jwt-max-lifetime-secs", "0"]).is_err(),
        "a lifetime of 0 would refuse every token"
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let previous = "9d3e7a0c5f1b84e26a9d0c3f7e15b4a8c2d6f0e1";
    let cli = Cli::parse_from([
        "strata-web",
        "--jwt-secret",
        SECRET,
        "--jwt-previous-secrets",
        previous,
    ]);
    let cli_debug = format!("{cli:?}");
    let args_debug = format!("{:?}", cli.serve);
    let settings_debug = format!("{:?}", Settings::from_args(cli.serve).unwrap());

    for debug in [cli_debug, args_debug, settings_debug] {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(!debug.contains(previous), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }
}

#[test]
fn the_edge_limits_default_to_what_the_readme_says_and_can_be_set() {
    let defaults = Settings::from_args(args(None, true)).unwrap().limits;
    assert_eq!(defaults, EdgeLimits::default());
    assert_eq!(
        defaults.connections.header_read_timeout,
        Duration::from_secs(10)
    );
    assert_eq!(defaults.connections.max_connections, 512);
    assert_eq!(defaults.request_timeout, Duration::from_secs(30));
    assert_eq!(defaults.max_in_flight, 512);
    assert_eq!(defaults.rate.commands_per_second, 100);
    assert_eq!(defaults.rate.queries_per_second, 500);

    let cli = Cli::parse_from([
        "strata-web",
        "--dev",
        "--header-read-timeout-ms",
        "2500",
        "--max-connections",
        "64",
        "--request-timeout-ms",
        "6000",
        "--max-in-flight",
        "8",
        "--rate-limit-commands",
        "0",
        "--rate-limit-queries",
        "7",
    ]);
    let limits = Settings::from_args(cli.serve).unwrap().limits;
    assert_eq!(
        limits.connections.header_read_timeout,
        Duration::from_millis(2500)
    );
    assert_eq!(limits.connections.max_connections, 64);
    assert_eq!(limits.request_timeout, Duration::from_secs(6));
    assert_eq!(limits.max_in_flight, 8);
    assert_eq!(limits.rate.commands_per_second, 0);
    assert_eq!(limits.rate.queries_per_second, 7);
    for zero in [
        "--max-connections",
        "--max-in-flight",
        "--request-timeout-ms",
    ] {
        assert!(
            Cli::try_parse_from(["strata-web", zero, "0"]).is_err(),
            "{zero}"
        );
    }
}

#[test]
fn a_request_timeout_no_longer_than_the_read_wait_is_refused() {
    let cli = Cli::parse_from([
        "strata-web",
        "--dev",
        "--request-timeout-ms",
        "5000",
        "--read-wait-ms",
        "5000",
    ]);
    assert!(matches!(
        Settings::from_args(cli.serve),
        Err(SettingsError::RequestTimeoutTooShort { .. })
    ));
}

#[test]
fn development_mode_is_refused_on_any_address_but_loopback() {
    for (address, allowed) in [
        ("127.0.0.1:8080", true),
        ("[::1]:8080", true),
        ("0.0.0.0:8080", false),
        ("192.168.1.10:8080", false),
    ] {
        let cli = Cli::parse_from(["strata-web", "--dev", "--http-addr", address]);
        let settings = Settings::from_args(cli.serve);
        assert_eq!(settings.is_ok(), allowed, "{address}");
        if !allowed {
            assert!(matches!(
                settings,
                Err(SettingsError::DevelopmentModeNotOnLoopback(_))
            ));
        }
    }
    let production = Cli::parse_from([
        "strata-web",
        "--http-addr",
        "0.0.0.0:8080",
        "--jwt-secret",
        SECRET,
    ]);
    assert!(Settings::from_args(production.serve).is_ok());
}

#[test]
fn swagger_ui_is_on_and_metrics_share_the_api_address_unless_set() {
    let defaults = Settings::from_args(args(None, true)).unwrap();
    assert!(defaults.docs);
    assert_eq!(defaults.metrics_addr, None);
    let cli = Cli::parse_from([
        "strata-web",
        "--dev",
        "--docs",
        "false",
        "--metrics-addr",
        "127.0.0.1:9100",
    ]);
    let settings = Settings::from_args(cli.serve).unwrap();
    assert!(!settings.docs);
    assert_eq!(
        settings.metrics_addr,
        Some("127.0.0.1:9100".parse().unwrap())
    );
}

#[test]
fn the_published_development_secret_and_repeated_patterns_are_refused() {
    for (secret, dev) in [
        (DEVELOPMENT_JWT_SECRET, false),
        ("changeme-changeme-changeme-changeme-", true),
        ("password1password1password1password1", false),
        ("0123456789abcdef0123456789abcdef", false),
    ] {
        assert!(
            matches!(
                Settings::from_args(args(Some(secret), dev)),
                Err(SettingsError::WeakJwtSecret { .. })
            ),
            "{secret} (dev: {dev})"
        );
    }
    let mut previous = args(Some(SECRET), false);
    previous.jwt_previous_secrets = vec![Secret::from(DEVELOPMENT_JWT_SECRET)];
    assert!(Settings::from_args(previous).is_err());
    // Development mode on loopback may name it explicitly.
    assert!(Settings::from_args(args(Some(DEVELOPMENT_JWT_SECRET), true)).is_ok());
}
