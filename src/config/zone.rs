//! The zone section: the registry domain, the local datacenter and the TTLs of registry
//! answers, validated into the snapshot builder's [`ZoneOptions`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use clap::Args;
use hickory_proto::rr::Name;
use serde::{Deserialize, Serialize};

use super::nameservers::name_servers;
use super::service_ttls::service_ttls;
use super::values::ttl;
use super::ConfigError;
use crate::snapshot::{HealthFilter, ZoneOptions};

/// Flags (and file keys) of the zone section.
#[derive(Clone, Debug, Default, Args, Deserialize, Serialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct ZoneArgs {
    /// The registry domain. [default: consul.]
    #[arg(long, value_name = "NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,

    /// The local datacenter: names without a datacenter label mean this one, and the one
    /// Consul is asked about. [default: dc1]
    #[arg(long, value_name = "DC")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<String>,

    /// TTL of service answers (A, AAAA, CNAME, SRV and their additional records), e.g. `0s`,
    /// `10s`. [default: 0s, as Consul]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_ttl: Option<String>,

    /// TTL of the answers of one service, `NAME=DURATION`, or of every service whose name
    /// starts with a prefix, `PREFIX*=DURATION` (`*` alone: every service), over
    /// `--service-ttl`; repeatable. An exact name wins, then the longest prefix (Consul's
    /// `service_ttl`). The file may also hold a `[service_ttl]` table of `NAME = "DURATION"`.
    #[arg(long, value_name = "NAME=DURATION")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub service_ttl_for: Vec<String>,

    /// The file's `[service_ttl]` table (no flag: `--service-ttl-for` is its flag form).
    #[arg(skip)]
    #[serde(rename = "service_ttl", skip_serializing_if = "BTreeMap::is_empty")]
    pub service_ttl_table: BTreeMap<String, String>,

    /// Also serve instances whose worst check is `warning` (Consul's default,
    /// `only_passing = false`); critical and maintenance never. [default: passing only]
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub serve_warning: bool,

    /// TTL of node and addr answers and of NS records. [default: 0s, as Consul]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_ttl: Option<String>,

    /// SOA minimum and TTL, i.e. how long resolvers cache NXDOMAIN/NODATA from the registry
    /// zone (RFC 2308). [default: 0s, as Consul's soa.min_ttl]
    #[arg(long, value_name = "DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_ttl: Option<String>,

    /// A name server of the registry domain, `NAME=IP`; repeatable (a name with several
    /// addresses is given once per address). The apex NS lists every name, the SOA names the
    /// first, names inside the domain get their addresses as glue and answers. Give every
    /// replica the same list. [default: ns.<domain> with the listen addresses]
    #[arg(long, value_name = "NAME=IP")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameserver: Vec<String>,

    /// SRV answers also carry each target node's metadata as TXT records in the additional
    /// section (Consul's `enable_additional_node_meta_txt`). Off by default: it grows answers
    /// that 512-byte clients and HAProxy read.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub srv_node_meta_txt: bool,
}

impl ZoneArgs {
    /// Validates the zone section; without `--nameserver`, `ns.<domain>` names the `listen`
    /// addresses.
    pub fn validate(&self, listen: &[SocketAddr]) -> Result<ZoneOptions, ConfigError> {
        let domain_text = self.domain.as_deref().unwrap_or("consul.");
        let mut domain = Name::from_ascii(domain_text)
            .map_err(|e| {
                ConfigError::new(
                    "domain",
                    format!("{domain_text:?} is not a domain name: {e}"),
                )
            })?
            .to_lowercase();
        domain.set_fqdn(true);
        if domain.is_root() {
            return Err(ConfigError::new(
                "domain",
                "the registry domain cannot be the root",
            ));
        }
        let datacenter = self
            .datacenter
            .as_deref()
            .unwrap_or("dc1")
            .to_ascii_lowercase();
        if datacenter.is_empty()
            || datacenter.contains('.')
            || Name::from_ascii(&datacenter).is_err()
        {
            return Err(ConfigError::new(
                "datacenter",
                format!("{datacenter:?} is not a single DNS label"),
            ));
        }
        Ok(ZoneOptions {
            datacenter,
            service_ttl: ttl("service-ttl", self.service_ttl.as_deref())?,
            service_ttls: service_ttls(&self.service_ttl_for, &self.service_ttl_table)?,
            health: if self.serve_warning {
                HealthFilter::PassingOrWarning
            } else {
                HealthFilter::PassingOnly
            },
            node_ttl: ttl("node-ttl", self.node_ttl.as_deref())?,
            negative_ttl: ttl("negative-ttl", self.negative_ttl.as_deref())?,
            nameservers: name_servers(&self.nameserver, &domain, listen)?,
            domain,
            srv_node_meta_txt: self.srv_node_meta_txt,
        })
    }
}
