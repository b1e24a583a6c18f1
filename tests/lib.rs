//! The end-to-end suite lives in `api/`: one test binary that drives `strata-web` over HTTP.
