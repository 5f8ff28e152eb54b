//! Who may transfer a zone: the `--allow-transfer` networks and the `--tsig-key` transfers
//! must be signed with (RFC 8945), and the check of one request against them.

use std::fmt;
use std::net::IpAddr;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::tsig::{TsigAlgorithm, TsigError};
use hickory_proto::rr::{Name, TSigResponseContext, TSigner};
use ipnet::IpNet;

/// Clock skew allowed between a signer and us, in seconds (RFC 8945 §10 recommends 300).
pub(super) const FUDGE: u16 = 300;

/// The transfer access policy, part of the answering policy (SIGHUP replaces it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferPolicy {
    /// Clients that may transfer; none by default.
    pub allow: Vec<IpNet>,
    /// When set, transfer requests must be signed with this key, and responses and NOTIFY
    /// messages are signed with it.
    pub key: Option<TsigKey>,
}

/// A TSIG key: its name, algorithm and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The algorithms hickory-proto signs with, by the names BIND, Knot and NSD give them.
const ALGORITHMS: [(&str, TsigAlgorithm); 3] = [
    ("hmac-sha256", TsigAlgorithm::HmacSha256),
    ("hmac-sha384", TsigAlgorithm::HmacSha384),
    ("hmac-sha512", TsigAlgorithm::HmacSha512),
];

impl TsigKey {
    /// Parses `NAME:ALGORITHM:BASE64`, the form `--tsig-key` takes (Knot's and `dig -y`'s
    /// order).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.splitn(3, ':');
        let (Some(name), Some(algorithm), Some(secret)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err("expected NAME:ALGORITHM:BASE64".into());
        };
        let name = Some(name)
            .filter(|name| !name.is_empty() && *name != ".")
            .and_then(|name| Name::from_ascii(name).ok())
            .filter(|name| !name.is_wildcard())
            .ok_or_else(|| format!("{name:?} is not a key name"))?;
        let algorithm = ALGORITHMS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(algorithm))
            .map(|(_, algorithm)| algorithm.clone())
            .ok_or_else(|| {
                format!(
                    "algorithm {algorithm:?} is not one of hmac-sha256, hmac-sha384, hmac-sha512"
                )
            })?;
        let secret = data_encoding::BASE64
            .decode(secret.as_bytes())
            .map_err(|_| "the secret is not valid base64".to_string())?;
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        let mut name = name.to_lowercase();
        name.set_fqdn(true);
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &Name {
        &self.name
    }

    /// hickory-proto's signer for this key.
    pub(super) fn signer(&self) -> TSigner {
        TSigner::new(
            self.secret.clone(),
            self.algorithm.clone(),
            self.name.clone(),
            FUDGE,
        )
        .expect("only supported algorithms are parsed")
    }
}

/// What the access check decided for one transfer request.
pub(super) enum Access {
    /// Transfer, signing each message when the request was signed.
    Granted(Option<Signed>),
    /// REFUSED: the client is not allowed.
    Refused,
    /// NOTAUTH: a key is set and the request is unsigned, no key is set and it is signed, or
    /// its signature does not verify; with the TSIG record to return when there is one
    /// (BADKEY and BADSIG unsigned, BADTIME signed: RFC 8945 §5.2).
    NotAuth(Option<TSigResponseContext>),
}

/// A verified request: the signer and the request's MAC that the first response signs over.
pub(super) struct Signed {
    pub signer: TSigner,
    pub request_mac: Vec<u8>,
}

impl TransferPolicy {
    /// Checks `request` (its bytes and decoded message) from `client` at `now` (seconds since
    /// the epoch).
    pub(super) fn check(
        &self,
        client: IpAddr,
        request: &[u8],
        message: &Message,
        now: u64,
    ) -> Access {
        let client = super::super::respond::canonical(client);
        if !self.allow.iter().any(|net| net.contains(&client)) {
            return Access::Refused;
        }
        match (&self.key, message.signature.as_deref()) {
            (None, None) => Access::Granted(None),
            (Some(_), None) => Access::NotAuth(None),
            (None, Some(tsig)) => Access::NotAuth(Some(TSigResponseContext::unknown_key(
                message.id,
                now,
                tsig.name.clone(),
            ))),
            (Some(key), Some(_)) => match key.verify(request, message, now) {
                Ok(signed) => Access::Granted(Some(signed)),
                Err(context) => Access::NotAuth(context),
            },
        }
    }
}

impl TsigKey {
    /// Verifies the TSIG record of `request` (bytes and decoded) against this key at `now`:
    /// the signer and request MAC to sign the answer with, or the TSIG error to answer with
    /// (`None` when the request is not signed at all).
    pub(super) fn verify(
        &self,
        request: &[u8],
        message: &Message,
        now: u64,
    ) -> Result<Signed, Option<TSigResponseContext>> {
        let id = message.id;
        let Some(tsig) = message.signature.as_deref() else {
            return Err(None);
        };
        if tsig.name.to_lowercase() != self.name {
            return Err(Some(TSigResponseContext::unknown_key(
                id,
                now,
                tsig.name.clone(),
            )));
        }
        let signer = self.signer();
        match signer.verify_message_byte(request, None, true) {
            Ok((request_mac, _, window)) if window.contains(&now) => Ok(Signed {
                signer,
                request_mac,
            }),
            Ok((request_mac, _, _)) => Err(Some(TSigResponseContext::new(
                id,
                now,
                signer,
                request_mac,
                Some(TsigError::BadTime),
            ))),
            Err(_) => Err(Some(TSigResponseContext::bad_signature(id, now, signer))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_the_name_algorithm_secret_form() {
        let key = TsigKey::parse("xfr-key:hmac-sha256:c2VjcmV0c2VjcmV0").unwrap();
        assert_eq!(key.name().to_ascii(), "xfr-key.");
        assert_eq!(key.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key.secret, b"secretsecret");
        assert!(!format!("{key:?}").contains("c2Vj"), "no secret in Debug");
        for bad in [
            "xfr-key:hmac-sha256",
            "xfr-key:hmac-md5:c2VjcmV0",
            "xfr-key:hmac-sha256:not base64!",
            "xfr-key:hmac-sha256:",
            ":hmac-sha256:c2VjcmV0",
        ] {
            assert!(TsigKey::parse(bad).is_err(), "{bad}");
        }
    }
}
