//! One blocking HTTP client configuration for the harness: statuses are values, not errors,
//! so callers can assert on 404s and 401s.

use std::time::Duration;

/// An agent that returns every HTTP status as a response and gives up after 60 s.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_mins(1)))
        .build()
        .into()
}
