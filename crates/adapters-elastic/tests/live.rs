//! The same scenarios against a real cluster when `ELASTICSEARCH_URL` is set (each test uses
//! its own index prefix and deletes its indices); skipped, with a message, otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

scenario_tests!(live:
    the_live_index_has_an_explicit_strict_mapping,
    a_finished_rebuild_replaces_the_live_index_and_deletes_the_old_one,
    starting_a_rebuild_again_drops_the_unfinished_one,
    older_versions_never_overwrite_newer_ones_and_count_as_written,
    every_filter_and_the_words_narrow_the_matches,
    facets_count_statuses_for_every_criterion_but_status,
    cursors_walk_every_match_once_newest_first_without_words,
    cursors_walk_every_match_once_with_words,
    a_full_last_page_is_followed_by_an_empty_one,
    the_shared_search_suite_passes,
);
