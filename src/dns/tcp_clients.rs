//! Admission of TCP clients: at most `total` connections at once, and at most `per_address`
//! from any one address, so a single client cannot take every slot and the process keeps
//! descriptors for UDP forwarding and the HTTP endpoint. Checked once per connection, never
//! per query.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The open TCP connections, by client address.
#[derive(Debug)]
pub struct TcpClients {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    count: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its slot.
#[derive(Debug)]
pub struct Admitted {
    clients: Arc<TcpClients>,
    address: IpAddr,
}

impl TcpClients {
    /// Room for `total` connections, `per_address` of them from one address.
    pub fn new(total: usize, per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            per_address,
            open: Mutex::default(),
        })
    }

    /// A slot for a connection from `address`, or `None` when the total or that address's
    /// share is taken.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let from_address = open.by_address.get(&address).copied().unwrap_or(0);
        if open.count >= self.total || from_address >= self.per_address {
            return None;
        }
        open.count += 1;
        open.by_address.insert(address, from_address + 1);
        Some(Admitted {
            clients: self.clone(),
            address,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).count
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        open.count -= 1;
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_total_and_each_address_share() {
        let clients = TcpClients::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = clients.admit(a).unwrap();
        let _second = clients.admit(a).unwrap();
        assert!(clients.admit(a).is_none(), "a's share is two");
        let _third = clients.admit(b).unwrap();
        assert!(clients.admit(b).is_none(), "the total is three");
        drop(first);
        assert_eq!(clients.open(), 2);
        assert!(clients.admit(b).is_some());
    }
}
