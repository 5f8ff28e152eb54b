//! DNS probes of one replica: a UDP query and the condition a change must make true.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

/// What the answer for a service name must show once a change is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cond {
    /// The A answer holds this address (a check went back to passing).
    Has(Ipv4Addr),
    /// The A answer lacks this address but is not empty (a check went critical).
    Lacks(Ipv4Addr),
    /// The A answer has exactly this many addresses (an instance came or went).
    Count(usize),
    /// An SRV record has this port (an instance moved).
    Port(u16),
    /// The name answers with at least one address (a new service).
    Resolves,
}

impl Cond {
    fn qtype(self) -> RecordType {
        match self {
            Self::Port(_) => RecordType::SRV,
            _ => RecordType::A,
        }
    }
}

/// The addresses (A) or ports (SRV) of an answer; None when no answer came.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub(crate) addrs: Vec<Ipv4Addr>,
    pub(crate) ports: Vec<u16>,
}

/// A UDP client bound to one replica.
#[derive(Debug)]
pub(crate) struct Probe {
    socket: UdpSocket,
    server: SocketAddr,
    next_id: u16,
}

impl Probe {
    /// A client socket for `server`; replies are awaited at most 500 ms.
    pub(crate) fn new(server: SocketAddr) -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        Ok(Self {
            socket,
            server,
            next_id: 1,
        })
    }

    /// The answer to `name`/`qtype` (None on timeout or an error code other than NXDOMAIN).
    pub(crate) fn ask(&mut self, name: &str, qtype: RecordType) -> Option<Answer> {
        self.next_id = self.next_id.wrapping_add(1);
        let id = self.next_id;
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.add_query(Query::query(Name::from_ascii(name).ok()?, qtype));
        self.socket
            .send_to(&query.to_vec().ok()?, self.server)
            .ok()?;
        let mut buf = [0u8; 4096];
        // Skip late replies to earlier (timed-out) queries.
        let reply = loop {
            let (len, _) = self.socket.recv_from(&mut buf).ok()?;
            let reply = Message::from_vec(&buf[..len]).ok()?;
            if reply.metadata.id == id {
                break reply;
            }
        };
        match reply.metadata.response_code {
            ResponseCode::NoError | ResponseCode::NXDomain => {}
            _ => return None,
        }
        let mut answer = Answer::default();
        for record in &reply.answers {
            match &record.data {
                RData::A(a) => answer.addrs.push(a.0),
                RData::SRV(srv) => answer.ports.push(srv.port),
                _ => {}
            }
        }
        Some(answer)
    }

    /// Whether `cond` holds now for `name`.
    pub(crate) fn holds(&mut self, name: &str, cond: Cond) -> bool {
        let Some(a) = self.ask(name, cond.qtype()) else {
            return false;
        };
        match cond {
            Cond::Has(ip) => a.addrs.contains(&ip),
            Cond::Lacks(ip) => !a.addrs.is_empty() && !a.addrs.contains(&ip),
            Cond::Count(n) => a.addrs.len() == n,
            Cond::Port(p) => a.ports.contains(&p),
            Cond::Resolves => !a.addrs.is_empty(),
        }
    }
}
