//! Redis as a service reaches it: one server or a Redis Cluster. [`RedisTarget`] is where Redis
//! is, parsed at start from `REDIS_URL` or `REDIS_CLUSTER_NODES`; [`Redis`] is a connection to
//! either, through which every command goes (`query_async`, `invoke_async`), so that no caller
//! needs to know which it is.
//!
//! Both kinds fail fast: a connection attempt gives up after 1 s and a command after 2 s, with few
//! retries, so that an outage answers 503 quickly instead of hanging requests. Both reconnect by
//! themselves; a cluster connection also follows the cluster's slot map (`MOVED`, failovers).

use crate::config::ConfigError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// One local server, when `REDIS_URL` is not set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The forms `REDIS_URL` takes, for error messages.
const URL_FORMS: &str = "redis://host:port, redis+unix:///path/to/socket \
                         or redis+cluster://host:port[,host:port...]";

/// How a single-server connection is made: short timeouts and one retry (see the module's
/// documentation); the connection manager reconnects by itself.
pub fn connection_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECTION_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
}

/// Where Redis is: one server, or a cluster known by its seed nodes (the client learns the other
/// nodes and the slot map from them).
#[derive(Clone, Debug)]
pub enum RedisTarget {
    Single(redis::Client),
    Cluster {
        /// The seed nodes, for logs (no credentials).
        nodes: Vec<ConnectionAddr>,
        /// Boxed: a cluster client is several times the size of a single server's.
        client: Box<ClusterClient>,
    },
}

impl RedisTarget {
    /// From the environment: the cluster named by `REDIS_CLUSTER_NODES` when it is set (it then
    /// takes precedence over `REDIS_URL`), else `REDIS_URL` (default [`DEFAULT_URL`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let nodes = std::env::var("REDIS_CLUSTER_NODES")
            .ok()
            .filter(|s| !s.trim().is_empty());
        Self::parse(
            &crate::config::string_or("REDIS_URL", DEFAULT_URL),
            nodes.as_deref(),
        )
    }

    /// Parses `REDIS_URL` (`url`) and `REDIS_CLUSTER_NODES` (`cluster_nodes`, when set):
    ///
    /// - `cluster_nodes`, `host:port[,host:port...]` (an entry may also be a whole `redis://` or
    ///   `rediss://` URL, to carry credentials): a cluster with those seed nodes;
    /// - `redis+cluster://[user:password@]host:port[,host:port...]` (or `rediss+cluster://`, with
    ///   TLS): a cluster with those seed nodes, each with the URL's credentials;
    /// - `redis://`, `rediss://`, `redis+unix://`, `unix://`: one server.
    ///
    /// The TLS forms are refused for now: the redis crate is built without TLS.
    ///
    /// An error names the variable and never repeats credentials.
    pub fn parse(url: &str, cluster_nodes: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(list) = cluster_nodes {
            let nodes = list
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    if entry.contains("://") {
                        entry.to_string()
                    } else {
                        format!("redis://{entry}")
                    }
                })
                .collect();
            return Self::cluster(
                "REDIS_CLUSTER_NODES",
                nodes,
                "REDIS_CLUSTER_NODES=host:port[,host:port...]",
            );
        }
        let url = url.trim();
        for (scheme, node_scheme) in [("redis+cluster", "redis"), ("rediss+cluster", "rediss")] {
            if let Some(rest) = strip_scheme(url, scheme) {
                return Self::cluster("REDIS_URL", cluster_node_urls(node_scheme, rest), URL_FORMS);
            }
        }
        let info = url
            .into_connection_info()
            .map_err(|e| invalid("REDIS_URL", &e.to_string(), URL_FORMS))?;
        let client = redis::Client::open(info)
            .map_err(|e| invalid("REDIS_URL", &e.to_string(), URL_FORMS))?;
        Ok(RedisTarget::Single(client))
    }

    /// A cluster of the seed nodes `urls`, read from `var`.
    fn cluster(var: &str, urls: Vec<String>, forms: &str) -> Result<Self, ConfigError> {
        if urls.is_empty() {
            return Err(invalid(var, "it names no node", forms));
        }
        let mut infos = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let info = url
                .as_str()
                .into_connection_info()
                .map_err(|e| invalid(var, &format!("node {}: {e}", i + 1), forms))?;
            if matches!(info.addr(), ConnectionAddr::Unix(_)) {
                // The cluster tells its clients where the other nodes are by host and port.
                return Err(invalid(
                    var,
                    &format!(
                        "node {}: a cluster is reached over TCP, not a socket",
                        i + 1
                    ),
                    forms,
                ));
            }
            infos.push(info);
        }
        let nodes = infos.iter().map(|info| info.addr().clone()).collect();
        // A redirect (`MOVED`, a failover) takes one retry, a reconnect another; beyond that, and
        // past the 2 s response timeout (which bounds a command with its retries), the request is
        // answered 503 rather than kept waiting for the cluster to heal.
        let client = ClusterClientBuilder::new(infos)
            .connection_timeout(CONNECTION_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(2)
            .min_retry_wait(50)
            .max_retry_wait(500)
            .build()
            .map_err(|e| invalid(var, &e.to_string(), forms))?;
        Ok(RedisTarget::Cluster {
            nodes,
            client: Box::new(client),
        })
    }

    /// What the target is, for logs: an address or the seed nodes, never credentials.
    pub fn describe(&self) -> String {
        match self {
            RedisTarget::Single(client) => client.get_connection_info().addr().to_string(),
            RedisTarget::Cluster { nodes, .. } => {
                let nodes: Vec<String> = nodes.iter().map(ToString::to_string).collect();
                format!("cluster via {}", nodes.join(","))
            }
        }
    }

    /// Opens a connection; it fails when Redis (for a cluster: every seed node) cannot be reached.
    pub async fn connect(&self) -> redis::RedisResult<Redis> {
        match self {
            RedisTarget::Single(client) => {
                ConnectionManager::new_with_config(client.clone(), connection_config())
                    .await
                    .map(|c| Redis(Connection::Single(c)))
            }
            RedisTarget::Cluster { client, .. } => client
                .get_async_connection()
                .await
                .map(|c| Redis(Connection::Cluster(c))),
        }
    }
}

/// `url` without `scheme://`, the scheme compared without regard to case (as URLs do).
fn strip_scheme<'a>(url: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = url.split_once("://")?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// The seed nodes of `[user:password@]host:port[,host:port...][/db][?query]` as one URL each,
/// each with the credentials and what follows the hosts.
fn cluster_node_urls(scheme: &str, rest: &str) -> Vec<String> {
    let (authority, suffix) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    hosts
        .split(',')
        .map(str::trim)
        .filter(|host| !host.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}{suffix}"))
        .collect()
}

fn invalid(var: &str, why: &str, forms: &str) -> ConfigError {
    ConfigError(format!("{var} is invalid: {why} (expected {forms})"))
}

/// A connection to one Redis server or to a cluster. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct Redis(Connection);

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Redis {
    /// Whether Redis answers: the server's `PING`, or for a cluster a `PING` to the master of
    /// every slot range (as `CLUSTER SLOTS` names them), so that a lost master makes the check
    /// fail. A plain `PING` to a cluster goes to the masters the connection is connected to and
    /// would pass without the one it lost.
    pub async fn ping(&mut self) -> redis::RedisResult<()> {
        match &mut self.0 {
            Connection::Single(c) => redis::cmd("PING").query_async::<String>(c).await.map(drop),
            Connection::Cluster(c) => {
                let random = RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random);
                let slots = c
                    .route_command(redis::cmd("CLUSTER").arg("SLOTS").clone(), random)
                    .await?;
                let masters = masters(&slots);
                if masters.is_empty() {
                    return Err((ErrorKind::Client, "the cluster names no master").into());
                }
                let pings = masters.into_iter().map(|(host, port)| {
                    let mut c = c.clone();
                    let to =
                        RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                    async move { c.route_command(redis::cmd("PING"), to).await }
                });
                futures_util::future::try_join_all(pings).await.map(drop)
            }
        }
    }
}

/// The masters a `CLUSTER SLOTS` answer names, once each: every range is `[start, end, [host,
/// port, id, ...], replicas...]`. A master whose endpoint is unknown (an empty host, or `?`) is
/// left out: it can be reached only through the node that answered.
fn masters(slots: &Value) -> Vec<(String, u16)> {
    let Value::Array(ranges) = slots else {
        return Vec::new();
    };
    let mut masters = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let Some(Value::Array(master)) = fields.get(2) else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(text)) => text.clone(),
            _ => continue,
        };
        let Some(Ok(port)) = master.get(1).and_then(|port| match port {
            Value::Int(n) => Some(u16::try_from(*n)),
            _ => None,
        }) else {
            continue;
        };
        if host.is_empty() || host == "?" || masters.contains(&(host.clone(), port)) {
            continue;
        }
        masters.push((host, port));
    }
    masters
}

/// Commands are sent as on either connection: a cluster connection routes each to the master of
/// its key's slot (keyless ones such as `PING` and `SCRIPT LOAD` to every master).
impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, nodes: Option<&str>) -> Result<RedisTarget, String> {
        RedisTarget::parse(url, nodes).map_err(|e| e.to_string())
    }

    fn seeds(target: &RedisTarget) -> Vec<String> {
        match target {
            RedisTarget::Cluster { nodes, .. } => nodes.iter().map(ToString::to_string).collect(),
            RedisTarget::Single(_) => panic!("not a cluster: {target:?}"),
        }
    }

    #[test]
    fn single_server_urls_are_as_before() {
        for (url, addr) in [
            ("redis://127.0.0.1:6379", "127.0.0.1:6379"),
            ("redis://redis", "redis:6379"),
            ("redis://:secret@10.0.0.5:7000/2", "10.0.0.5:7000"),
            ("redis+unix:///run/redis.sock", "/run/redis.sock"),
            ("unix:///run/redis.sock", "/run/redis.sock"),
        ] {
            let target = parse(url, None).unwrap();
            assert!(matches!(target, RedisTarget::Single(_)), "{url}");
            assert_eq!(target.describe(), addr, "{url}");
        }
    }

    #[test]
    fn a_cluster_url_names_its_seed_nodes() {
        let target = parse(
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001, redis:7002",
            None,
        );
        assert_eq!(
            seeds(&target.unwrap()),
            ["127.0.0.1:7000", "127.0.0.1:7001", "redis:7002"]
        );
        let one = parse("REDIS+CLUSTER://user:pw@10.0.0.1:7000", None).unwrap();
        assert_eq!(seeds(&one), ["10.0.0.1:7000"]);
        assert_eq!(
            one.describe(),
            "cluster via 10.0.0.1:7000",
            "no credentials"
        );
        // Blank entries are dropped, like in every list of the configuration.
        let blanks = parse("redis+cluster://a:1,,b:2,", None).unwrap();
        assert_eq!(seeds(&blanks), ["a:1", "b:2"]);
    }

    #[test]
    fn cluster_nodes_take_precedence_over_the_url() {
        let target = parse(
            "redis://127.0.0.1:6379",
            Some("127.0.0.1:7000, 127.0.0.1:7001,redis://:pw@127.0.0.1:7002"),
        )
        .unwrap();
        assert_eq!(
            seeds(&target),
            ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
        );
    }

    #[test]
    fn bad_urls_are_refused_naming_the_variable_without_credentials() {
        for url in [
            "",
            "not a url",
            "http://127.0.0.1:6379",
            "redis://127.0.0.1:notaport",
            "redis+cluster://",
            "redis+cluster://,,",
            "redis+cluster://:hunter2@127.0.0.1:notaport",
            "redis+cluster://0.0.0.0:7000",
            // Understood, but the services are built without TLS.
            "rediss://127.0.0.1:6379",
            "rediss+cluster://127.0.0.1:7000",
        ] {
            let e = parse(url, None).unwrap_err();
            assert!(e.contains("REDIS_URL is invalid"), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
        for nodes in [
            ",",
            "127.0.0.1:x",
            "unix:///run/redis.sock",
            "redis://:a@h:1,redis://:b@h:2",
        ] {
            let e = parse(DEFAULT_URL, Some(nodes)).unwrap_err();
            assert!(e.contains("REDIS_CLUSTER_NODES is invalid"), "{nodes}: {e}");
        }
    }

    #[test]
    fn the_masters_of_cluster_slots_are_named_once() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let range = |start: i64, end: i64, nodes: Vec<Value>| {
            Value::Array([vec![Value::Int(start), Value::Int(end)], nodes].concat())
        };
        let slots = Value::Array(vec![
            range(
                0,
                5460,
                vec![node("10.0.0.1", 7000), node("10.0.0.4", 7003)],
            ),
            range(5461, 10922, vec![node("10.0.0.2", 7001)]),
            range(10923, 12000, vec![node("10.0.0.3", 7002)]),
            range(12001, 16383, vec![node("10.0.0.3", 7002)]),
            range(0, 0, vec![node("", 7005)]),
            range(0, 0, vec![node("?", 7006)]),
        ]);
        assert_eq!(
            masters(&slots),
            [
                ("10.0.0.1".to_string(), 7000),
                ("10.0.0.2".to_string(), 7001),
                ("10.0.0.3".to_string(), 7002)
            ]
        );
        assert!(masters(&Value::Nil).is_empty());
    }

    #[test]
    fn cluster_urls_keep_credentials_and_options_for_every_node() {
        assert_eq!(
            cluster_node_urls("redis", "u:p@a:1,b:2/0?protocol=resp3"),
            [
                "redis://u:p@a:1/0?protocol=resp3",
                "redis://u:p@b:2/0?protocol=resp3"
            ]
        );
        assert_eq!(cluster_node_urls("rediss", "a:1"), ["rediss://a:1"]);
    }
}
