//! A real authoritative DNS server (hickory-server) on 127.0.0.1, UDP and TCP on
//! one ephemeral port, serving the records a test gives until it is dropped.
//! `rotate activate` and `check` are pointed at it with `--resolver`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_server::Server;
use hickory_server::proto::rr::rdata::{A, AAAA, PTR, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

/// One record to serve.
#[derive(Clone, Debug)]
pub enum Rec {
    Txt(String, String),
    Addr(String, IpAddr),
    Ptr(Ipv4Addr, String),
}

impl Rec {
    pub fn txt(name: &str, value: &str) -> Rec {
        Rec::Txt(name.into(), value.into())
    }
    pub fn addr(name: &str, ip: &str) -> Rec {
        Rec::Addr(name.into(), ip.parse().unwrap())
    }
    pub fn ptr(ip: &str, name: &str) -> Rec {
        Rec::Ptr(ip.parse().unwrap(), name.into())
    }
}

fn fqdn(name: &str) -> Name {
    Name::from_ascii(format!("{name}.")).unwrap()
}

fn record(rec: &Rec) -> Record {
    let (name, data) = match rec {
        // DNS character strings are at most 255 bytes; long values are split.
        Rec::Txt(name, value) => (
            fqdn(name),
            RData::TXT(TXT::from_bytes(value.as_bytes().chunks(255).collect())),
        ),
        Rec::Addr(name, IpAddr::V4(v4)) => (fqdn(name), RData::A(A(*v4))),
        Rec::Addr(name, IpAddr::V6(v6)) => (fqdn(name), RData::AAAA(AAAA(*v6))),
        Rec::Ptr(ip, name) => {
            let [a, b, c, d] = ip.octets();
            let reversed = format!("{d}.{c}.{b}.{a}.in-addr.arpa");
            (fqdn(&reversed), RData::PTR(PTR(fqdn(name))))
        }
    };
    Record::from_rdata(name, 60, data)
}

pub struct DnsServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DnsServer {
    /// Serves `records` as the authority for every name (the root zone).
    pub fn start(records: &[Rec]) -> DnsServer {
        let mut zone: InMemoryZoneHandler =
            InMemoryZoneHandler::empty(Name::root(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            fqdn("ns.test"),
            fqdn("hostmaster.test"),
            1,
            3600,
            600,
            86400,
            60,
        );
        assert!(zone.upsert_mut(Record::from_rdata(Name::root(), 60, RData::SOA(soa)), 1));
        for rec in records {
            assert!(zone.upsert_mut(record(rec), 1), "{rec:?}");
        }
        let (ready, addr) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut catalog = Catalog::new();
                catalog.upsert(LowerName::from(Name::root()), vec![Arc::new(zone)]);
                let mut server = Server::new(catalog);
                // Large TXT answers may come over TCP: the same port for both.
                let (udp, tcp) = loop {
                    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
                    let port = udp.local_addr().unwrap().port();
                    if let Ok(tcp) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                        break (udp, tcp);
                    }
                };
                ready.send(udp.local_addr().unwrap()).unwrap();
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 64);
                let _ = stopped.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        DnsServer {
            addr: addr.recv().unwrap(),
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The `--resolver` argument that points at this server.
    pub fn resolver(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The records `mailsetup dns --format json` prints, as (kind, name, value).
pub fn published(json: &str) -> Vec<(String, String, String)> {
    let records: Vec<serde_json::Value> = serde_json::from_str(json).unwrap();
    records
        .iter()
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap().to_string();
            (field("kind"), field("name"), field("value"))
        })
        .collect()
}
