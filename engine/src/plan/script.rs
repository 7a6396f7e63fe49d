//! A VU's script as the plan says it: `Step`s (send, expect, wait, repeat), the reply
//! matcher `Expect`, and `HttpStep`, an HTTP request made before the handshake. Plan
//! model only (serde + schema); `conn` runs them, `validate.rs` checks them.

use super::*;

/// A reply matcher with a timeout. With no matcher, any message matches.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The reply is exactly this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The reply starts with this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The reply contains this text (templated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The reply matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The reply is JSON (or framed JSON such as Socket.IO's `42["chat",{…}]`, read from
    /// its first `{` or `[`) with a value at this path (`type`, `$.body.id`,
    /// `[1].from`) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_field: Option<String>,
    /// ... equal to this value. A string is a template (`{{var.guest}}`: correlate the
    /// reply with what this session sent) and also matches a number or boolean written
    /// that way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<serde_json::Value>,
    /// Variables to keep from the matching reply for later steps (`{{var.NAME}}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, Capture>,
    /// How long to wait for the reply (default 5s). A timeout is counted, then the
    /// script goes on. Messages that arrive meanwhile and do not match (nor a responder)
    /// are skipped and counted (`msgs_skipped`); the reply's RTT is timed from the send
    /// before this step.
    #[serde(default = "default_expect_timeout")]
    pub timeout: Dur,
}

fn default_expect_timeout() -> Dur {
    Dur::secs(5)
}

/// A block repeated every `every` (e.g. heartbeats), `times` times or until the end.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub every: Dur,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    pub steps: Vec<Step>,
}

/// A wait, fixed or with uniform jitter `[duration, duration + jitter]`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Wait {
    Fixed(Dur),
    Jittered { duration: Dur, jitter: Dur },
}

/// One step of the per-connection script.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Send a text message (templated).
    Send(String),
    /// Send a binary message given as hex (templated, then hex-decoded).
    SendBinary(String),
    /// Wait for a matching reply and time it from the scheduled send.
    Expect(Expect),
    /// Pause.
    Wait(Wait),
    /// Send a ping and require a pong within the timeout; the RTT is `ws_ping`.
    Ping(Dur),
    /// Repeat a block of steps.
    Repeat(Repeat),
    /// Close the connection (normal closure). Without it, connections are held to the end.
    Close,
}

/// One HTTP request before the handshake.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    #[serde(default = "default_method")]
    pub method: String,
    /// `http(s)://...` (templated).
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body (templated), sent as JSON when it parses as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Variable name -> top-level field of the JSON reply (`a.b` for nested fields).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capture: BTreeMap<String, String>,
}

fn default_method() -> String {
    "POST".into()
}
