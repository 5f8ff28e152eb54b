//! Sync from Consul (issue #3): snapdns against the Consul stand-in
//! ([`crate::support::standin`]), through changes, every kind of registry fault, restarts from
//! disk, self-preservation, SOA serials, ACL tokens and TLS.

mod changes;
mod cluster;
mod crash;
mod disk;
mod outages;
mod security;
mod startup;
mod watches;
