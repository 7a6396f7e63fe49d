//! Handshake credentials in the plan: `Secret` (an env reference, or a typed-in value
//! stored as `REDACTED`), where tokens come from (`TokenSource`), how connections share
//! them (`TokenPolicy`) and `Auth`, which ties them to a header and a refresh margin.

use super::*;

/// A secret: `{"env": "NAME"}` is read from the environment when the run starts (and
/// stored as that reference); a plain string is used for this run only and stored as
/// `"<redacted>"`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Env { env: String },
    Value(String),
}

/// Marker stored instead of a typed-in secret.
pub const REDACTED: &str = "<redacted>";

impl Secret {
    /// The secret's value (`None` when an env reference is unset or it was redacted).
    pub fn resolve(&self) -> Option<String> {
        match self {
            Secret::Env { env } => std::env::var(env).ok(),
            Secret::Value(v) if v == REDACTED => None,
            Secret::Value(v) => Some(v.clone()),
        }
    }
    pub(crate) fn redact(&mut self) {
        if let Secret::Value(v) = self {
            *v = REDACTED.into();
        }
    }
    /// A typed-in value that an answer redacted (it was not stored with the run).
    pub fn is_redacted(&self) -> bool {
        matches!(self, Secret::Value(v) if v == REDACTED)
    }
    /// Why it cannot be used right now, if it cannot (validation's message).
    pub fn problem(&self) -> Option<String> {
        match self {
            Secret::Env { env } if std::env::var(env).is_err() => {
                Some(format!("environment variable `{env}` is not set on the server"))
            }
            _ if self.is_redacted() => Some(
                "was typed in for an earlier run and not stored; type it again or use {\"env\": \"NAME\"}".into(),
            ),
            _ => None,
        }
    }
}

/// Where tokens come from.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenSource {
    /// A fixed list (a pool): slot `i` uses `tokens[i % len]`.
    Static { tokens: Vec<Secret> },
    /// OAuth2 client credentials (RFC 6749 §4.4), fetched and refreshed by the engine.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: Secret,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
    },
}

/// How connections share tokens.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum TokenPolicy {
    /// One token for every connection.
    #[default]
    Shared,
    /// `size` tokens, connections assigned round-robin.
    Pool { size: u32 },
    /// A new token for every `connections` connections, in order (0..n-1 share token 0).
    PerConnections { connections: u32 },
    /// A fresh token for every connection attempt.
    PerConnection,
}

fn default_auth_header() -> String {
    "Authorization".into()
}
fn default_auth_value() -> String {
    "Bearer {{token}}".into()
}
fn default_refresh_before() -> Dur {
    Dur::secs(30)
}

/// Tokens for the handshake.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub source: TokenSource,
    #[serde(default)]
    pub policy: TokenPolicy,
    /// Header the token goes in (empty: none; use `{{token}}` in the URL instead).
    #[serde(default = "default_auth_header")]
    pub header: String,
    #[serde(default = "default_auth_value")]
    pub value: String,
    /// Fetch a new OAuth2 token this long before `expires_in` runs out.
    #[serde(default = "default_refresh_before")]
    pub refresh_before: Dur,
    /// What a live connection does when its token is about to expire (`refresh_before`
    /// ahead): nothing (the default; the target may close it), re-authenticate on the
    /// open socket, or reconnect with the new token (see `plan/rotation.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

impl Auth {
    /// Tokens from `source` shared by `policy`, with a plan file's defaults for the rest
    /// (`Authorization: Bearer {{token}}`, refresh 30 s ahead).
    pub fn new(source: TokenSource, policy: TokenPolicy) -> Self {
        Auth {
            source,
            policy,
            header: default_auth_header(),
            value: default_auth_value(),
            refresh_before: default_refresh_before(),
            rotation: None,
        }
    }

    /// Number of token slots for `peak` connections (`None`: one per attempt).
    pub fn slots(&self, peak: u32) -> Option<u32> {
        match self.policy {
            TokenPolicy::Shared => Some(1),
            TokenPolicy::Pool { size } => Some(size.max(1)),
            TokenPolicy::PerConnections { connections } => {
                Some(peak.div_ceil(connections.max(1)).max(1))
            }
            TokenPolicy::PerConnection => None,
        }
    }
}
