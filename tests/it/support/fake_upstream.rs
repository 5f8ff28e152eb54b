//! A fake UDP upstream on 127.0.0.1, for what a real one (Knot) cannot be made to show: a
//! reply for another question, a query held until the test lets it go, how many queries
//! arrive and from which ports.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record};

/// How the fake upstream replies. Every answer is one A record with the upstream's address,
/// TTL 300.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// At once.
    Answer,
    /// After a delay.
    AnswerAfter(Duration),
    /// Only once [`FakeUpstream::release`] has named the question.
    AnswerWhenReleased,
    /// First a reply for another name with the right ID, then one with a wrong ID, then the
    /// right answer.
    MismatchFirst,
    /// Only the forged replies.
    OnlyMismatches,
}

/// Queries seen: (ID, source port, name).
type Seen = Arc<Mutex<Vec<(u16, u16, String)>>>;

/// A UDP "resolver" that records what it is asked. Stops on drop.
pub struct FakeUpstream {
    /// Its address.
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Seen,
    released: Arc<Mutex<Vec<String>>>,
}

impl FakeUpstream {
    /// Starts one that replies as `behaviour` says, with `answer` as the A record.
    pub fn start(behaviour: Behaviour, answer: [u8; 4]) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let released: Arc<Mutex<Vec<String>>> = Arc::default();
        let (flag, log, go) = (stop.clone(), seen.clone(), released.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !flag.load(Ordering::Relaxed) {
                let Ok((len, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let name = query.queries[0].name().clone();
                log.lock()
                    .unwrap()
                    .push((query.metadata.id, peer.port(), name.to_string()));
                let socket = socket.try_clone().unwrap();
                let (flag, go) = (flag.clone(), go.clone());
                std::thread::spawn(move || {
                    if matches!(behaviour, Behaviour::AnswerWhenReleased) {
                        let name = name.to_string();
                        while !go.lock().unwrap().contains(&name) {
                            if flag.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    reply(&socket, peer, &query, behaviour, answer);
                });
            }
        });
        Self {
            addr,
            stop,
            seen,
            released,
        }
    }

    /// Every query so far: (ID, source port, name).
    pub fn seen(&self) -> Vec<(u16, u16, String)> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether `name` was asked.
    pub fn was_asked(&self, name: &str) -> bool {
        self.seen.lock().unwrap().iter().any(|(_, _, n)| n == name)
    }

    /// Answers `name` from now on, held queries for it included
    /// ([`Behaviour::AnswerWhenReleased`]).
    pub fn release(&self, name: &str) {
        self.released.lock().unwrap().push(name.to_string());
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn reply(
    socket: &UdpSocket,
    peer: SocketAddr,
    query: &Message,
    behaviour: Behaviour,
    answer: [u8; 4],
) {
    let answer_for = |name: &Name, id: u16| -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Response, query.metadata.op_code);
        message.metadata.recursion_desired = true;
        message.metadata.recursion_available = true;
        let mut question = query.queries[0].clone();
        question.set_name(name.clone());
        message.add_query(question);
        message.add_answer(Record::from_rdata(
            name.clone(),
            300,
            RData::A(A::from(Ipv4Addr::from(answer))),
        ));
        message.to_vec().unwrap()
    };
    let name = query.queries[0].name().clone();
    let id = query.metadata.id;
    let forged = Name::from_ascii("forged.example.test.").unwrap();
    match behaviour {
        Behaviour::Answer | Behaviour::AnswerWhenReleased => {}
        Behaviour::AnswerAfter(delay) => std::thread::sleep(delay),
        Behaviour::MismatchFirst | Behaviour::OnlyMismatches => {
            let _ = socket.send_to(&answer_for(&forged, id), peer);
            let _ = socket.send_to(&answer_for(&name, id.wrapping_add(1)), peer);
            if matches!(behaviour, Behaviour::OnlyMismatches) {
                return;
            }
        }
    }
    let _ = socket.send_to(&answer_for(&name, id), peer);
}
