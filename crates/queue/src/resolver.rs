//! Where mail for a domain goes: MX lookup (RFC 5321 section 5.1), the implicit MX (the
//! domain's own A/AAAA when it has no MX), and the null MX (RFC 7505).
//!
//! Delivery asks a [`Resolver`]: [`HickoryResolver`] in production, [`MapResolver`] (a map in
//! memory, after mox's mock resolver) in tests, so tests never need the network.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use hickory_resolver::proto::rr::RData;
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

pub trait Resolver: Send + Sync {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>>;
    fn ip<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>>;
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

/// A resolver made of maps, for tests: domain → MX records, host → addresses.
#[derive(Debug, Clone, Default)]
pub struct MapResolver {
    pub mx: HashMap<String, Vec<Mx>>,
    pub ip: HashMap<String, Vec<IpAddr>>,
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
}

impl Resolver for MapResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> Lookup<'a, Vec<Mx>> {
        let found = self.mx.get(&domain.to_ascii_lowercase()).cloned();
        Box::pin(async move { found.ok_or(DnsError::NoRecords) })
    }

    fn ip<'a>(&'a self, host: &'a str) -> Lookup<'a, Vec<IpAddr>> {
        let found = self.ip.get(&host.to_ascii_lowercase()).cloned();
        Box::pin(async move { found.ok_or(DnsError::NoRecords) })
    }
}

/// The system's DNS (`/etc/resolv.conf`) through hickory.
#[derive(Clone)]
pub struct HickoryResolver {
    resolver: Arc<TokioResolver>,
}

impl HickoryResolver {
    pub fn from_system_conf() -> Result<HickoryResolver, DnsError> {
        let resolver = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|error| DnsError::Temporary(error.to_string()))?;
        Ok(HickoryResolver {
            resolver: Arc::new(resolver),
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
