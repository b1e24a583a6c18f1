//! How a connection URL is shown in logs, errors and `Debug`: with its password hidden. Every
//! adapter that takes a URL (a database, a search cluster) and both binaries show it this way.

/// `url` with the password of its user part (`scheme://user:***@host/…`) and the value of any
/// `password` or `sslpassword` query parameter hidden. Everything up to the last `@` before
/// the query is the user part, so a password holding `/` is hidden too. A URL without a password
/// comes back as it is.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let query_at = rest.find(['?', '#']).unwrap_or(rest.len());
    let (before_query, tail) = rest.split_at(query_at);
    let before_query = match before_query.rfind('@') {
        Some(at) => {
            let (user_info, from_host) = before_query.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:***{from_host}"),
                None => before_query.to_owned(),
            }
        }
        None => before_query.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((fragment, query)) => {
            let parameters: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("password")
                            || name.eq_ignore_ascii_case("sslpassword") =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{fragment}?{}", parameters.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{before_query}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_what_is_shown_of_a_url() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/strata",
                "postgres://app:***@db:5432/strata",
            ),
            (
                "postgres://app:s3cret@db/strata?sslmode=require&password=s3cret",
                "postgres://app:***@db/strata?sslmode=require&password=***",
            ),
            (
                "postgres://app:pa/s3cret@db/strata",
                "postgres://app:***@db/strata",
            ),
            (
                "https://elastic:s3cret@es:9200",
                "https://elastic:***@es:9200",
            ),
            (
                "http://elastic:s3cret@es:99999",
                "http://elastic:***@es:99999",
            ),
            ("mysql://u:s3cret@h/db", "mysql://u:***@h/db"),
            ("postgres://app@db/strata", "postgres://app@db/strata"),
            ("http://localhost:9200", "http://localhost:9200"),
            ("sqlite://data/strata.db", "sqlite://data/strata.db"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact_url(url), shown);
            assert!(!redact_url(url).contains("s3cret"), "{url}");
        }
    }
}
