//! TCP through hickory-server: its `Server` owns the listeners, framing and idle timeouts;
//! this handler answers each request with the same [`Responder`] as the UDP path.
//!
//! hickory-server sends records, not bytes, so the prepared response is decoded into a
//! `Message` and handed to its response builder. TCP carries the rare large answers and
//! truncation retries; the extra decode is not on the UDP fast path.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, ResponseCode};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tracing::debug;

use super::respond::{Outcome, Responder, Scratch, Transport};
use super::Forwarding;
use crate::metrics::Metrics;
use crate::zone::MAX_MESSAGE_LEN;

/// Answers DNS over TCP.
pub struct TcpHandler {
    responder: Responder,
    forwarding: Forwarding,
    metrics: Arc<Metrics>,
}

impl TcpHandler {
    /// A handler over the shared responder and forwarder.
    pub fn new(responder: Responder, forwarding: Forwarding, metrics: Arc<Metrics>) -> Self {
        Self {
            responder,
            forwarding,
            metrics,
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for TcpHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let mut bytes = Vec::with_capacity(512);
        let outcome = {
            let mut scratch = Scratch::default();
            self.responder.respond(
                request.as_slice(),
                request.src().ip(),
                Transport::Tcp,
                &mut bytes,
                &mut scratch,
            )
        };
        let bytes = match outcome {
            Outcome::Reply => bytes,
            Outcome::Ignore => return servfail_info(request),
            Outcome::Forward => match self
                .forwarding
                .resolve(request.as_slice(), MAX_MESSAGE_LEN)
                .await
            {
                Some(bytes) => bytes,
                None => return servfail_info(request),
            },
        };
        self.metrics.observe_answer(&bytes, started);
        let message = match Message::from_vec(&bytes) {
            Ok(message) => message,
            Err(error) => {
                debug!(%error, "prepared response did not decode");
                return servfail_info(request);
            }
        };
        let mut builder = MessageResponseBuilder::from_message_request(request);
        let edns: Option<Edns> = message.edns.clone();
        if let Some(edns) = &edns {
            builder.edns(edns);
        }
        let response = builder.build(
            message.metadata,
            message.answers.iter(),
            message.authorities.iter(),
            std::iter::empty(),
            message.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                debug!(%error, "tcp send failed");
                servfail_info(request)
            }
        }
    }
}

fn servfail_info(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    metadata.response_code = ResponseCode::ServFail;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
    .into()
}
