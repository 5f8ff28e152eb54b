//! Why a registry request failed: the error, its kind for health and logs, and messages
//! that never show the token or the URL's user info.

use std::time::Duration;

use reqwest::StatusCode;

/// Why a Consul request failed. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    /// The client could not be set up (bad CA or client certificate).
    #[error("cannot set up the Consul client: {0}")]
    Setup(String),
    /// No connection could be made, or it broke before a status line arrived.
    #[error("{path}: registry unreachable: {message}")]
    Unreachable {
        /// The API path asked for.
        path: String,
        /// The transport error, with its causes.
        message: String,
    },
    /// No complete answer within the timeout.
    #[error("{path}: no answer within {timeout:?}")]
    Timeout {
        /// The API path asked for.
        path: String,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// Consul answered with an error status; `body` is its plain-text message.
    #[error("{path}: consul answered {status}: {body}")]
    Status {
        /// The API path asked for.
        path: String,
        /// The HTTP status.
        status: StatusCode,
        /// The first line of the body, trimmed.
        body: String,
    },
    /// The body could not be read or decoded (truncated, malformed, not gzip).
    #[error("{path}: bad response: {message}")]
    BadResponse {
        /// The API path asked for.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A kind of registry fault, for health and for logging once per change of state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// Connection refused, reset, DNS failure.
    Unreachable,
    /// A request timed out.
    Timeout,
    /// `500 No cluster leader` (only without `?stale`).
    NoLeader,
    /// 403: the token is unknown or may not read.
    AclDenied,
    /// 429 or 503: rate limited, retry later or elsewhere.
    RateLimited,
    /// Any other 5xx.
    ServerError,
    /// Any other status, or a body that does not decode.
    BadResponse,
    /// The registry index went backwards (snapshot restore, or a lagging server).
    IndexBackwards,
    /// The client cannot be set up.
    Setup,
}

impl FaultKind {
    /// The name used in health output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::NoLeader => "no_leader",
            Self::AclDenied => "acl_denied",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::BadResponse => "bad_response",
            Self::IndexBackwards => "index_backwards",
            Self::Setup => "setup",
        }
    }
}

impl ConsulError {
    /// The kind of fault, for health and log deduplication.
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::Setup(_) => FaultKind::Setup,
            Self::Unreachable { .. } => FaultKind::Unreachable,
            Self::Timeout { .. } => FaultKind::Timeout,
            Self::BadResponse { .. } => FaultKind::BadResponse,
            Self::Status { status, body, .. } => match status.as_u16() {
                403 => FaultKind::AclDenied,
                429 | 503 => FaultKind::RateLimited,
                500 if body.contains("No cluster leader") => FaultKind::NoLeader,
                500..=599 => FaultKind::ServerError,
                _ => FaultKind::BadResponse,
            },
        }
    }

    /// Whether retrying the same request soon may succeed (not for ACL or parameter errors).
    pub fn is_retryable(&self) -> bool {
        !matches!(self.kind(), FaultKind::AclDenied | FaultKind::Setup)
            && !matches!(self, Self::Status { status, .. } if status.is_client_error() && status.as_u16() != 429)
    }
}

pub(super) fn transport_error(path: &str, error: &reqwest::Error) -> ConsulError {
    let message = error_chain(error);
    if error.is_body() || error.is_decode() {
        ConsulError::BadResponse {
            path: path.to_string(),
            message,
        }
    } else {
        ConsulError::Unreachable {
            path: path.to_string(),
            message,
        }
    }
}

/// `url` with its user info (`user:password@`) replaced by `***@`: what logs, errors and
/// `/health` show of a registry URL.
pub fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// The error and its sources on one line (reqwest's own message names the URL, never the token;
/// the URL's user info is taken out).
pub(super) fn error_chain(error: &reqwest::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    let message = parts.join(": ");
    match error.url() {
        Some(url) if !url.username().is_empty() || url.password().is_some() => {
            let mut bare = url.clone();
            let _ = bare.set_username("");
            let _ = bare.set_password(None);
            let shown = redacted(url.as_str());
            // reqwest prints the URL as given; take the user info out of every spelling.
            message
                .replace(url.as_str(), &shown)
                .replace(bare.as_str(), &shown)
        }
        _ => message,
    }
}
