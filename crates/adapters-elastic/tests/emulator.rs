//! The adapter against `osmem-server`, an in-memory emulator of the OpenSearch REST API (one
//! per test). Skipped, with a message, when the `osmem-server` Python package is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

// `cursors_walk_every_match_once_with_words` runs against real clusters only (see there).

scenario_tests!(emulator:
    the_live_index_has_an_explicit_strict_mapping,
    a_finished_rebuild_replaces_the_live_index_and_deletes_the_old_one,
    starting_a_rebuild_again_drops_the_unfinished_one,
    older_versions_never_overwrite_newer_ones_and_count_as_written,
    every_filter_and_the_words_narrow_the_matches,
    facets_count_statuses_for_every_criterion_but_status,
    cursors_walk_every_match_once_newest_first_without_words,
    a_full_last_page_is_followed_by_an_empty_one,
    the_shared_search_suite_passes,
);
