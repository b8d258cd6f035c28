//! Where mail for a domain goes: MX lookup (RFC 5321 section 5.1), the implicit MX (the
//! domain's own A/AAAA when it has no MX), and the null MX (RFC 7505).
//!
//! Besides MX and addresses, delivery asks for TXT records (the MTA-STS announcement, RFC 8461
//! section 3.1) and TLSA records (DANE, RFC 7672), the latter with whether the answer was
//! DNSSEC-validated: unvalidated TLSA records are ignored, as RFC 7672 section 2.2 requires.
//!
//! Delivery asks a [`Resolver`]: [`HickoryResolver`] in production, [`MapResolver`] (a map in
//! memory, after mox's mock resolver) in tests, so tests never need the network.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;

/// MX hosts of one domain tried at most: RFC 5321 section 5.1 lets a sender bound the list, and
/// a domain with more is misconfigured or hostile.
pub const MX_HOSTS_MAX: usize = 10;
/// Addresses of one host tried at most.
pub const ADDRESSES_PER_HOST_MAX: usize = 4;

pub type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

/// A failed lookup. `NoRecords` (NXDOMAIN or NODATA) is an answer; the rest is temporary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("no such records")]
    NoRecords,
    #[error("DNS lookup failed: {0}")]
    Temporary(String),
}

/// One MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    pub preference: u16,
    /// The exchange, lowercase, without the trailing dot; `""` for the null MX `.`.
    pub exchange: String,
}

/// TXT strings of one name kept at most, and the longest kept (a TXT record is at most 64 KiB
/// on the wire; the ones looked up here are a line).
pub const TXT_RECORDS_MAX: usize = 20;
pub const TXT_RECORD_LENGTH_MAX_BYTES: usize = 4096;
/// TLSA records of one host kept at most.
pub const TLSA_RECORDS_MAX: usize = 20;

/// One TLSA record (RFC 6698 section 2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsaRecord {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 the full certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    pub data: Vec<u8>,
}

/// The TLSA records of a host and whether the answer was DNSSEC-validated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsaAnswer {
    pub records: Vec<TlsaRecord>,
    pub secure: bool,
}

pub trait Resolver: Send + Sync {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>>;
    fn ip<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>>;
    /// The TXT records at `name`, each one's strings joined.
    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>>;
    /// The TLSA records at `name` (`_25._tcp.mx.example.org`).
    fn tlsa<'a>(&'a self, name: &'a str) -> Lookup<'a, TlsaAnswer>;
}

/// The hosts to try for `domain`, best first, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Hosts(Vec<String>),
    /// RFC 7505: the domain says it accepts no mail.
    NullMx,
    /// RFC 5321 section 5.1: no MX and no address: the domain receives no mail.
    NoHost,
}

/// RFC 5321 section 5.1: MX records by preference (ties in random order); with no MX, the
/// domain itself is the one host (the implicit MX).
pub async fn route(resolver: &dyn Resolver, domain: &str) -> Result<Route, DnsError> {
    match resolver.mx(domain).await {
        Ok(mut records) if !records.is_empty() => {
            if records.iter().any(|record| record.exchange.is_empty()) {
                return Ok(Route::NullMx);
            }
            // Shuffle before the stable sort so equal preferences share the load.
            shuffle(&mut records);
            records.sort_by_key(|record| record.preference);
            let mut hosts: Vec<String> = Vec::new();
            for record in records {
                if !hosts.contains(&record.exchange) {
                    hosts.push(record.exchange);
                }
            }
            hosts.truncate(MX_HOSTS_MAX);
            Ok(Route::Hosts(hosts))
        }
        Ok(_) | Err(DnsError::NoRecords) => match resolver.ip(domain).await {
            Ok(addresses) if !addresses.is_empty() => Ok(Route::Hosts(vec![domain.to_string()])),
            Ok(_) | Err(DnsError::NoRecords) => Ok(Route::NoHost),
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    }
}

fn shuffle<T>(items: &mut [T]) {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for index in (1..items.len()).rev() {
        let other = rng.gen_range(0..=index);
        items.swap(index, other);
    }
}

/// A resolver made of maps, for tests: domain → MX records, host → addresses, name → TXT
/// records, name → TLSA answer. A name not in a map has no records; a name in `failing` fails
/// every lookup with a temporary error (an unreachable DNS server).
#[derive(Debug, Clone, Default)]
pub struct MapResolver {
    pub mx: HashMap<String, Vec<Mx>>,
    pub ip: HashMap<String, Vec<IpAddr>>,
    pub txt: HashMap<String, Vec<String>>,
    pub tlsa: HashMap<String, TlsaAnswer>,
    pub failing: Vec<String>,
}

impl MapResolver {
    pub fn with_mx(mut self, domain: &str, preference: u16, exchange: &str) -> MapResolver {
        self.mx
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .push(Mx {
                preference,
                exchange: exchange.trim_end_matches('.').to_ascii_lowercase(),
            });
        self
    }

    pub fn with_ip(mut self, host: &str, address: IpAddr) -> MapResolver {
        self.ip
            .entry(host.to_ascii_lowercase())
            .or_default()
            .push(address);
        self
    }

    pub fn with_txt(mut self, name: &str, text: &str) -> MapResolver {
        self.txt
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(text.to_string());
        self
    }

    pub fn with_tlsa(mut self, name: &str, secure: bool, record: TlsaRecord) -> MapResolver {
        let answer = self.tlsa.entry(name.to_ascii_lowercase()).or_default();
        answer.secure = secure;
        answer.records.push(record);
        self
    }

    pub fn failing(mut self, name: &str) -> MapResolver {
        self.failing.push(name.to_ascii_lowercase());
        self
    }

    fn answer<T: Clone + Send + 'static>(
        &self,
        map: &HashMap<String, T>,
        name: &str,
    ) -> Lookup<'static, T> {
        let name = name.to_ascii_lowercase();
        let found = if self.failing.contains(&name) {
            Err(DnsError::Temporary(format!("no answer for {name}")))
        } else {
            map.get(&name).cloned().ok_or(DnsError::NoRecords)
        };
        Box::pin(async move { found })
    }
}

impl Resolver for MapResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>> {
        self.answer(&self.mx, domain)
    }

    fn ip<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>> {
        self.answer(&self.ip, host)
    }

    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        self.answer(&self.txt, name)
    }

    fn tlsa<'a>(&'a self, name: &'a str) -> Lookup<'a, TlsaAnswer> {
        self.answer(&self.tlsa, name)
    }
}

/// The system's DNS (`/etc/resolv.conf`) through hickory.
///
/// hickory does not validate DNSSEC itself here; a TLSA answer counts as validated when the
/// recursive resolver set the AD bit and every configured resolver is on loopback (a validating
/// resolver on the machine, such as unbound, as Postfix's DANE support also requires: an AD bit
/// that crossed a network proves nothing). Otherwise TLSA records are never trusted and DANE is
/// not applied.
#[derive(Clone)]
pub struct HickoryResolver {
    resolver: Arc<TokioResolver>,
    ad_bit_trusted: bool,
}

impl HickoryResolver {
    pub fn from_system_conf() -> Result<HickoryResolver, DnsError> {
        let ad_bit_trusted = match hickory_resolver::system_conf::read_system_conf() {
            Ok((config, _)) => {
                let servers = config.name_servers();
                !servers.is_empty() && servers.iter().all(|server| server.ip.is_loopback())
            }
            Err(_) => false,
        };
        let resolver = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|error| DnsError::Temporary(error.to_string()))?;
        Ok(HickoryResolver {
            resolver: Arc::new(resolver),
            ad_bit_trusted,
        })
    }
}

fn dns_error(error: hickory_resolver::net::NetError) -> DnsError {
    if error.is_no_records_found() {
        DnsError::NoRecords
    } else {
        DnsError::Temporary(error.to_string())
    }
}

/// A name as hickory wants it: fully qualified, so no search domain is ever appended.
fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

impl Resolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .mx_lookup(fqdn(domain))
                .await
                .map_err(dns_error)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::MX(mx) => Some(Mx {
                        preference: mx.preference,
                        exchange: mx
                            .exchange
                            .to_lowercase()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_string(),
                    }),
                    _ => None,
                })
                .collect())
        })
    }

    fn ip<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .lookup_ip(fqdn(host))
                .await
                .map_err(dns_error)?;
            Ok(lookup.iter().take(ADDRESSES_PER_HOST_MAX).collect())
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> Lookup<'a, Vec<String>> {
        Box::pin(async move {
            let lookup = self
                .resolver
                .txt_lookup(fqdn(name))
                .await
                .map_err(dns_error)?;
            Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => {
                        let mut joined = Vec::new();
                        for part in txt.txt_data.iter() {
                            joined.extend_from_slice(part);
                        }
                        joined.truncate(TXT_RECORD_LENGTH_MAX_BYTES);
                        Some(String::from_utf8_lossy(&joined).into_owned())
                    }
                    _ => None,
                })
                .take(TXT_RECORDS_MAX)
                .collect())
        })
    }

    fn tlsa<'a>(&'a self, name: &'a str) -> Lookup<'a, TlsaAnswer> {
        Box::pin(async move {
            // Without a resolver whose AD bit can be trusted no answer could count, so none is
            // asked for: a failing TLSA query must not hold mail back on such a machine.
            if !self.ad_bit_trusted {
                return Ok(TlsaAnswer::default());
            }
            let lookup = self
                .resolver
                .lookup(fqdn(name), RecordType::TLSA)
                .await
                .map_err(dns_error)?;
            let records = lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TLSA(tlsa) => Some(TlsaRecord {
                        usage: u8::from(tlsa.cert_usage),
                        selector: u8::from(tlsa.selector),
                        matching: u8::from(tlsa.matching),
                        data: tlsa.cert_data.clone(),
                    }),
                    _ => None,
                })
                .take(TLSA_RECORDS_MAX)
                .collect();
            Ok(TlsaAnswer {
                records,
                secure: self.ad_bit_trusted && lookup.message().metadata.authentic_data,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn mx_by_preference_then_implicit_mx_then_null_mx() {
        let resolver = MapResolver::default()
            .with_mx("a.test", 20, "backup.a.test")
            .with_mx("a.test", 10, "mx.a.test.")
            .with_ip("b.test", "192.0.2.1".parse().expect("ip"))
            .with_mx("null.test", 0, ".");
        assert_eq!(
            block_on(route(&resolver, "a.test")),
            Ok(Route::Hosts(vec![
                "mx.a.test".into(),
                "backup.a.test".into()
            ]))
        );
        assert_eq!(
            block_on(route(&resolver, "b.test")),
            Ok(Route::Hosts(vec!["b.test".into()]))
        );
        assert_eq!(block_on(route(&resolver, "null.test")), Ok(Route::NullMx));
        assert_eq!(block_on(route(&resolver, "none.test")), Ok(Route::NoHost));
    }
}
