//! The API document against the rules of the contract, and its patterns against the code that
//! enforces them: what the document calls valid is accepted, what it calls invalid is refused.

use std::collections::BTreeSet;

use proptest::prelude::*;
use regex::Regex;
use serde_json::Value;
use strata_domain::values::{CustomerId, ShippingAddress, TrackingNumber};
use utoipa::OpenApi;

use super::ApiDoc;
use crate::routes::common::{FREE_TEXT_PATTERN, IDENTIFIER_PATTERN};

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    all
}

#[test]
fn every_response_is_described_and_every_error_is_a_problem_with_an_example() {
    let document = document();
    for (path, method, operation) in operations(&document) {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let at = format!("{method} {path} {status}");
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{at}: no description"
            );
            assert!(
                response["headers"]["X-Request-Id"].is_object(),
                "{at}: no X-Request-Id"
            );
            if status.as_str() >= "400" {
                let content = response["content"].as_object().unwrap();
                assert_eq!(
                    content.keys().collect::<Vec<_>>(),
                    ["application/problem+json"],
                    "{at}"
                );
                let example = &content["application/problem+json"]["example"];
                assert_eq!(example["status"].to_string(), *status, "{at}: {example}");
            }
        }
    }
}

#[test]
fn operation_ids_are_unique_camel_case_and_path_parameters_too() {
    let document = document();
    let camel = Regex::new("^[a-z][A-Za-z0-9]*$").unwrap();
    let parameter = Regex::new(r"\{([^}]*)\}").unwrap();
    let mut ids = BTreeSet::new();
    for (path, method, operation) in operations(&document) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(camel.is_match(&id), "{method} {path}: operationId {id:?}");
        assert!(ids.insert(id.clone()), "operationId {id} used twice");
        for name in parameter.captures_iter(&path) {
            assert!(camel.is_match(&name[1]), "{path}: parameter {}", &name[1]);
        }
    }
}

#[test]
fn every_link_names_an_operation_and_its_parameters() {
    let document = document();
    let all = operations(&document);
    let mut links = 0;
    for (path, method, operation) in &all {
        for response in operation["responses"].as_object().unwrap().values() {
            let Some(found) = response["links"].as_object() else {
                continue;
            };
            for (name, link) in found {
                links += 1;
                let target = link["operationId"].as_str().unwrap();
                let (_, _, target_operation) = all
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == target)
                    .unwrap_or_else(|| panic!("{method} {path}: link {name} to {target}"));
                for qualified in link["parameters"].as_object().unwrap().keys() {
                    let (place, parameter) = qualified.split_once('.').unwrap();
                    let known = target_operation["parameters"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p["in"] == place && p["name"] == parameter);
                    assert!(
                        known,
                        "{method} {path}: link {name} sets {qualified}, unknown to {target}"
                    );
                }
            }
        }
    }
    assert!(links > 20, "{links} links");
}

#[test]
fn the_header_patterns_are_those_the_parsers_apply() {
    let document = document();
    let confirm = &document["paths"]["/v1/orders/{id}/confirm"]["post"]["parameters"];
    let pattern = |name: &str| {
        let parameter = confirm
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        parameter["schema"]["pattern"].as_str().unwrap().to_owned()
    };
    assert_eq!(pattern("If-Match"), crate::extract::IF_MATCH_PATTERN);
    assert_eq!(
        pattern("Idempotency-Key"),
        crate::extract::IDEMPOTENCY_KEY_PATTERN
    );
}

/// Strings near the edges of the rules: the identifier alphabet and a few neighbours, white
/// space, and the forbidden characters.
fn edgy_text() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        6 => proptest::sample::select(vec!['a', 'Z', '0', '9', '.', '_', ':', '-']),
        2 => proptest::char::range('!', '~'),
        1 => Just(' '),
        1 => Just('\u{a0}'),
        1 => Just('\t'),
        1 => Just('\n'),
        1 => Just('\u{0}'),
        1 => Just('\u{85}'),
        1 => Just('\u{2028}'),
        1 => Just('\u{202e}'),
        1 => Just('\u{2067}'),
        1 => Just('é'),
        1 => Just('\u{feff}'),
    ];
    proptest::collection::vec(chars, 0..6).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn the_identifier_pattern_accepts_exactly_what_the_domain_accepts(text in edgy_text()) {
        let pattern = Regex::new(IDENTIFIER_PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), CustomerId::new(text.clone()).is_ok(), "{:?}", text);
    }

    #[test]
    fn the_free_text_pattern_accepts_exactly_what_the_domain_accepts(text in edgy_text()) {
        let pattern = Regex::new(FREE_TEXT_PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), ShippingAddress::new(text.clone()).is_ok(), "{:?}", text);
        prop_assert_eq!(pattern.is_match(&text), TrackingNumber::new(text.clone()).is_ok(), "{:?}", text);
    }

    #[test]
    fn the_if_match_pattern_accepts_exactly_what_the_parser_accepts(text in "[\"0-9+ W/]{0,22}") {
        let pattern = Regex::new(crate::extract::IF_MATCH_PATTERN).unwrap();
        prop_assert_eq!(pattern.is_match(&text), crate::extract::parse_if_match(&text).is_ok(), "{:?}", text);
    }
}
