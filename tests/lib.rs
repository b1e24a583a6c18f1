//! The end-to-end suite lives in `api/`: one test binary that drives `strata-web` over HTTP.
//! The library holds only the text that `cargo xtask bench`'s HTTP workloads write and read
//! (`bench/http/text.rs`), so that its unit tests run: the bench target has no test harness.

#[path = "bench/http/text.rs"]
pub mod bench_text;
