//! The network side of `dns --push`: TXT queries and one TSIG-signed RFC 2136
//! update per zone, over TCP to the zone's primary, with hickory's client.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, stream};
use hickory_net::client::Client;
use hickory_net::proto::op::{
    DnsRequest, DnsRequestOptions, DnsResponse, Message, MessageType, OpCode, Query, ResponseCode,
    UpdateMessage,
};
use hickory_net::proto::rr::rdata::TXT;
use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm;
use hickory_net::proto::rr::{DNSClass, Name, RData, Record, RecordType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsHandle, DnsMultiplexer};

use super::tsig::Algorithm;
use super::{Txt, Zone, ZoneChange};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Queries in flight at once on the one connection.
const IN_FLIGHT: usize = 64;
/// TSIG's allowed clock difference (RFC 8945 recommends 300 s).
const FUDGE: u16 = 300;

/// A connection to one zone's primary server.
pub struct Primary {
    runtime: tokio::runtime::Runtime,
    client: Client<TokioRuntimeProvider>,
    zone: String,
    server: std::net::SocketAddr,
}

impl Primary {
    pub fn connect(zone: &Zone) -> Result<Primary> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("start the DNS runtime")?;
        let signer = TSigner::new(
            zone.key.secret.to_vec(),
            match zone.key.algorithm {
                Algorithm::HmacSha256 => TsigAlgorithm::HmacSha256,
                Algorithm::HmacSha384 => TsigAlgorithm::HmacSha384,
                Algorithm::HmacSha512 => TsigAlgorithm::HmacSha512,
            },
            name(&zone.key.name)?,
            FUDGE,
        )
        .map_err(|e| anyhow!("TSIG key {}: {e}", zone.key.name))?;
        let client = runtime.block_on(async {
            let (stream, handle) = TcpClientStream::new(
                zone.server,
                None,
                Some(TIMEOUT),
                TokioRuntimeProvider::default(),
            );
            let stream = tokio::time::timeout(TIMEOUT, stream)
                .await
                .map_err(|_| anyhow!("no connection within {} s", TIMEOUT.as_secs()))?
                .map_err(|e| anyhow!("{e}"))?;
            // Ours fires first (see `send`), so a silent server is named as one.
            let multiplexer = DnsMultiplexer::new(stream, handle)
                .with_timeout(TIMEOUT * 2)
                .with_signer(signer);
            let (client, background) = Client::<TokioRuntimeProvider>::from_sender(multiplexer);
            tokio::spawn(background);
            Ok::<_, anyhow::Error>(client)
        });
        let client = client.with_context(|| {
            format!(
                "zone {}: cannot reach its primary server {}",
                zone.name, zone.server
            )
        })?;
        Ok(Primary {
            runtime,
            client,
            zone: zone.name.clone(),
            server: zone.server,
        })
    }

    /// The TXT records at each name, in order. Only answers for the name itself
    /// count; a CNAME there is refused (an update cannot go through an alias).
    pub fn txt_sets<'a>(&self, names: impl Iterator<Item = &'a str>) -> Result<Vec<Vec<Txt>>> {
        let queries: Vec<(String, Message)> = names
            .map(|n| {
                let mut message = Message::query();
                message.add_query(Query::query(name(n)?, RecordType::TXT));
                Ok((n.to_string(), message))
            })
            .collect::<Result<_>>()?;
        self.runtime.block_on(async {
            stream::iter(queries)
                .map(|(n, message)| async move {
                    let response = self.send(message).await?;
                    match response.metadata.response_code {
                        ResponseCode::NoError | ResponseCode::NXDomain => {
                            txt_records(&response, &n)
                                .map_err(|e| anyhow!("zone {}: {e}", self.zone))
                        }
                        ResponseCode::Refused => bail!(
                            "zone {0}: the primary {1} refused to answer for {n} TXT (REFUSED): \
                             is it the primary server of {0}?",
                            self.zone,
                            self.server
                        ),
                        code => bail!(
                            "zone {}: the primary {} answered {code} for {n} TXT",
                            self.zone,
                            self.server
                        ),
                    }
                })
                .buffered(IN_FLIGHT)
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect()
        })
    }

    /// Sends one update for the zone: prerequisites are the TXT sets as read.
    pub fn update(&self, change: &ZoneChange) -> Result<()> {
        let ttl = change.ttl;
        let mut message = Message::new(0, MessageType::Query, OpCode::Update);
        message.metadata.recursion_desired = false;
        let mut zone = Query::new();
        zone.set_name(name(&self.zone)?)
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        message.add_zone(zone);
        for c in &change.changes {
            let owner = name(&c.name)?;
            if c.served.is_empty() {
                // RFC 2136 2.4.3: RRset does not exist.
                let mut none = Record::update0(owner.clone(), 0, RecordType::TXT);
                none.dns_class = DNSClass::NONE;
                message.add_pre_requisite(none);
            } else {
                // 2.4.2: RRset exists, value dependent: exactly what was read.
                for t in &c.served {
                    message.add_pre_requisite(txt(&owner, 0, DNSClass::IN, &t.strings));
                }
            }
            for t in &c.remove {
                // 2.5.4: delete an RR from an RRset, its strings as served.
                message.add_update(txt(&owner, 0, DNSClass::NONE, &t.strings));
            }
            for v in &c.add {
                // Strings of at most 255 bytes, as the zone output splits them.
                let strings: Vec<Vec<u8>> = v.as_bytes().chunks(255).map(<[u8]>::to_vec).collect();
                message.add_update(txt(&owner, ttl, DNSClass::IN, &strings));
            }
        }
        let response = match self.runtime.block_on(self.send(message)) {
            Ok(response) => response,
            // A server that rejects the signature answers with a TSIG record
            // hickory cannot verify (an empty MAC): that is BADKEY or BADSIG.
            Err(e) if format!("{e:#}").to_ascii_lowercase().contains("tsig") => bail!(
                "zone {}: the primary {} did not accept the TSIG signature of key {}: the server \
                 does not know a key of that name, or its secret or algorithm differs, or the \
                 clocks are more than {FUDGE} s apart",
                self.zone,
                self.server,
                change.zone.key.name
            ),
            Err(e) => return Err(e),
        };
        let problem = match response.metadata.response_code {
            ResponseCode::NoError => return Ok(()),
            ResponseCode::NotAuth => format!(
                "NOTAUTH: the server is not authoritative for {0}, or does not take the TSIG key \
                 {1} (unknown name, wrong secret or algorithm, or clocks more than {FUDGE} s apart)",
                self.zone, change.zone.key.name
            ),
            ResponseCode::Refused => format!(
                "REFUSED: the server's allow-update (or update-policy) for {} does not grant key {}",
                self.zone, change.zone.key.name
            ),
            ResponseCode::NotZone => format!("NOTZONE: a name is outside zone {}", self.zone),
            code @ (ResponseCode::YXRRSet
            | ResponseCode::NXRRSet
            | ResponseCode::YXDomain
            | ResponseCode::NXDomain) => format!(
                "{} ({code}): the records changed on the server while mailsetup read them; \
                 nothing was changed, run the push again",
                format!("{code:?}").to_ascii_uppercase()
            ),
            code => format!("{code}"),
        };
        bail!(
            "zone {}: the primary {} refused the update: {problem}",
            self.zone,
            self.server
        )
    }

    async fn send(&self, message: Message) -> Result<DnsResponse> {
        let mut options = DnsRequestOptions::default();
        options.use_edns = true;
        let mut responses = self.client.send(DnsRequest::new(message, options));
        match tokio::time::timeout(TIMEOUT, responses.next()).await {
            Ok(Some(Ok(response))) => Ok(response),
            Ok(Some(Err(e))) => Err(anyhow!(
                "zone {}: the primary {} did not answer: {e}",
                self.zone,
                self.server
            )),
            Ok(None) => Err(anyhow!(
                "zone {}: the primary {} closed the connection",
                self.zone,
                self.server
            )),
            Err(_) => Err(anyhow!(
                "zone {}: the primary {} did not answer within {} s (it accepted the \
                 connection: a firewall, or a server that does not speak DNS on that port?)",
                self.zone,
                self.server,
                TIMEOUT.as_secs()
            )),
        }
    }
}

fn name(s: &str) -> Result<Name> {
    Name::from_ascii(format!("{}.", s.trim_end_matches('.')))
        .map_err(|e| anyhow!("`{s}` is not a DNS name: {e}"))
}

/// A TXT record of these strings.
fn txt(owner: &Name, ttl: u32, class: DNSClass, strings: &[Vec<u8>]) -> Record {
    let strings = strings.iter().map(Vec::as_slice).collect();
    let mut record = Record::from_rdata(owner.clone(), ttl, RData::TXT(TXT::from_bytes(strings)));
    record.dns_class = class;
    record
}

/// The TXT records of `name` in an answer: a CNAME at the name is an error,
/// answers for other names (a CNAME's target) are not the name's.
fn txt_records(response: &Message, name: &str) -> Result<Vec<Txt>> {
    let owner = |r: &Record| {
        r.name
            .to_ascii()
            .trim_end_matches('.')
            .eq_ignore_ascii_case(name)
    };
    if response
        .answers
        .iter()
        .any(|r| owner(r) && matches!(r.data, RData::CNAME(_)))
    {
        bail!(
            "{name} is a CNAME: mailsetup does not update records through an alias; publish \
             at its target, or remove the CNAME"
        );
    }
    Ok(response
        .answers
        .iter()
        .filter(|r| owner(r))
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(Txt::from_strings(
                txt.txt_data.iter().map(|s| s.to_vec()).collect(),
            )),
            _ => None,
        })
        .collect())
}
