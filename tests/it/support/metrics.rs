//! snapdns's `/metrics`, scraped over real HTTP, and the samples in it.

use super::http::get;
use super::server::Server;

/// snapdns's `/metrics` body (asserting 200 and the OpenMetrics content type).
pub fn scrape(server: &Server) -> String {
    let response = get(server.http.expect("http address"), "/metrics");
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    response.body
}

/// The value of one sample, `name` or `name{labels}` exactly as exposed.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// [`sample`] of a fresh scrape.
pub fn metric(server: &Server, series: &str) -> Option<f64> {
    sample(&scrape(server), series)
}
