//! Sending one request and reading its whole answer, so that every call site sees a status and
//! a body (or a `SearchError` when none came).

use elasticsearch::http::response::Response;
use serde_json::Value;
use strata_ports::SearchError;

use crate::error::{from_client, from_status};

/// A complete answer: its status and its body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    /// Reads the answer to a sent request.
    pub async fn of(sent: Result<Response, elasticsearch::Error>) -> Result<Self, SearchError> {
        let response = sent.map_err(|e| from_client(&e))?;
        let status = response.status_code().as_u16();
        let body = response.text().await.map_err(|e| from_client(&e))?;
        Ok(Self { status, body })
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The JSON body of a successful answer; an error status becomes a `SearchError`.
    pub fn json(self, what: &str) -> Result<Value, SearchError> {
        if !self.is_success() {
            return Err(from_status(self.status, &self.body, what));
        }
        serde_json::from_str(&self.body)
            .map_err(|e| SearchError::Protocol(format!("{what}: body is not json: {e}")))
    }
}
