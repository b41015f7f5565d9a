//! The CBOR of the out-of-process protocol (`plugin-interface/docs/out-of-process.md`):
//! request envelopes around already-encoded operations, and checked answers.

use abi_stable::std_types::RVec;
use ciborium::Value;
use gbs_plugin_interface::ffi::{
    Interests, OperationKind, Rejection, Roles, RouteResponse, ServerHooks,
};
use gbs_plugin_interface::to_cbor;

use crate::plugins::data::is_one_cbor_item;
use crate::plugins::dispatch::HOOK_NAMES;

/// The protocol major version this host speaks.
pub const PROTOCOL: u64 = 1;

/// The operation kinds by their names in `interests`.
const KINDS: [(&str, OperationKind); 12] = [
    ("version", OperationKind::VERSION),
    ("allocate", OperationKind::ALLOCATE),
    ("upload", OperationKind::UPLOAD),
    ("abort", OperationKind::ABORT),
    ("list-immutable", OperationKind::LIST_IMMUTABLE),
    ("read-immutable", OperationKind::READ_IMMUTABLE),
    ("corrupt-immutable", OperationKind::CORRUPT_IMMUTABLE),
    ("lease", OperationKind::LEASE),
    ("read-test-write", OperationKind::READ_TEST_WRITE),
    ("read-mutable", OperationKind::READ_MUTABLE),
    ("list-mutable", OperationKind::LIST_MUTABLE),
    ("corrupt-mutable", OperationKind::CORRUPT_MUTABLE),
];

/// The roles by their names in `roles`.
const ROLES: [(&str, Roles); 2] = [("server", Roles::SERVER), ("client", Roles::CLIENT)];

/// One value of a request envelope.
pub(super) enum Item<'a> {
    /// Bytes that already are one CBOR item (an operation, an outcome).
    Encoded(&'a [u8]),
    /// A byte string.
    Bytes(&'a [u8]),
    Null,
    Value(Value),
}

/// A CBOR map of `entries`, copying encoded items as they are.
pub(super) fn envelope(entries: &[(&str, Item<'_>)]) -> Vec<u8> {
    let mut out = Vec::new();
    head(&mut out, 5, entries.len() as u64);
    for (key, item) in entries {
        head(&mut out, 3, key.len() as u64);
        out.extend_from_slice(key.as_bytes());
        match item {
            Item::Encoded(bytes) => out.extend_from_slice(bytes),
            Item::Bytes(bytes) => {
                head(&mut out, 2, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Item::Null => out.push(0xf6),
            Item::Value(value) => out.extend_from_slice(&to_cbor(value)),
        }
    }
    out
}

/// A CBOR head: major type and argument, in its shortest form.
fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xff => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xffff => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

/// What a plugin says about itself in `describe`.
#[derive(Debug, Clone)]
pub struct Description {
    pub protocol: u64,
    pub name: String,
    pub version: String,
    pub roles: Roles,
    pub interests: Interests,
    /// The server hooks it implements; both unless it says otherwise.
    pub hooks: ServerHooks,
    pub announcement: Value,
}

/// A decoded answer: one CBOR map, with typed field access that says what is wrong.
pub(super) struct Map(Vec<(Value, Value)>);

impl Map {
    pub(super) fn decode(body: &[u8]) -> Result<Self, String> {
        if !is_one_cbor_item(body) {
            return Err("the answer is not one CBOR item".into());
        }
        match ciborium::from_reader::<Value, _>(body) {
            Ok(Value::Map(entries)) => Ok(Self(entries)),
            Ok(_) => Err("the answer is not a CBOR map".into()),
            Err(e) => Err(format!("the answer is not CBOR: {e}")),
        }
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(k, _)| k.as_text() == Some(key))
            .map(|(_, v)| v)
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k.as_text() == Some(key))?;
        Some(self.0.swap_remove(at).1)
    }

    pub(super) fn text(&self, key: &str) -> Result<String, String> {
        match self.get(key) {
            Some(Value::Text(text)) => Ok(text.clone()),
            _ => Err(format!("{key:?} is not a text string")),
        }
    }

    pub(super) fn uint(&self, key: &str) -> Result<u64, String> {
        self.get(key)
            .and_then(|v| v.as_integer())
            .and_then(|i| u64::try_from(i).ok())
            .ok_or_else(|| format!("{key:?} is not an unsigned integer"))
    }

    pub(super) fn bool(&self, key: &str) -> Result<bool, String> {
        self.get(key)
            .and_then(Value::as_bool)
            .ok_or_else(|| format!("{key:?} is not a boolean"))
    }

    /// The values that the names in the array at `key` have in `table`; `None` when the key
    /// is absent or null. An unknown name is an error, not skipped: a misspelt hook or
    /// operation would otherwise go uncalled.
    fn names<T: Copy>(&mut self, key: &str, table: &[(&str, T)]) -> Result<Option<Vec<T>>, String> {
        let items = match self.take(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(format!("{key:?} is not an array")),
        };
        let named = items.iter().map(|item| {
            table
                .iter()
                .find(|(name, _)| item.as_text() == Some(name))
                .map(|(_, value)| *value)
                .ok_or_else(|| {
                    let known: Vec<&str> = table.iter().map(|(name, _)| *name).collect();
                    match item.as_text() {
                        Some(text) => format!(
                            "unknown name {text:?} in {key:?} (known: {})",
                            known.join(", ")
                        ),
                        None => format!("{key:?} holds an item that is not text"),
                    }
                })
        });
        named.collect::<Result<_, _>>().map(Some)
    }

    /// A byte string, or `None` for null.
    pub(super) fn optional_bytes(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        match self.take(key) {
            Some(Value::Bytes(bytes)) => Ok(Some(bytes)),
            Some(Value::Null) => Ok(None),
            _ => Err(format!("{key:?} is not a byte string or null")),
        }
    }
}

/// Checks a `describe` answer.
pub fn description(body: &[u8]) -> Result<Description, String> {
    let mut map = Map::decode(body)?;
    let protocol = map.uint("protocol")?;
    let name = map.text("name")?;
    let version = map.text("version")?;
    let roles = map
        .names("roles", &ROLES)?
        .ok_or("\"roles\" is not an array")?
        .into_iter()
        .fold(Roles(0), Roles::union);
    let interests = map
        .names("interests", &KINDS)?
        .unwrap_or_default()
        .into_iter()
        .fold(Interests(0), Interests::with);
    let hooks = map
        .names("hooks", &HOOK_NAMES)?
        .map_or(ServerHooks::ALL, |named| {
            named.into_iter().fold(ServerHooks(0), ServerHooks::union)
        });
    Ok(Description {
        protocol,
        name,
        version,
        roles,
        interests,
        hooks,
        announcement: map.take("announcement").unwrap_or(Value::Null),
    })
}

/// Checks an `admit` answer: `None` admits. Public for the fuzz targets.
#[doc(hidden)]
pub fn admission(body: &[u8]) -> Result<Option<Rejection>, String> {
    let mut map = Map::decode(body)?;
    if map.bool("admit")? {
        return Ok(None);
    }
    match map.take("rejection") {
        Some(Value::Map(entries)) => rejection(Map(entries)).map(Some),
        _ => Err("\"admit\" is false and \"rejection\" is not a map".into()),
    }
}

fn rejection(mut map: Map) -> Result<Rejection, String> {
    let status = u16::try_from(map.uint("status")?).map_err(|e| e.to_string())?;
    let details = match map.take("details") {
        None | Some(Value::Null) => RVec::new(),
        Some(value) => to_cbor(&value).into(),
    };
    Ok(Rejection {
        status,
        code: map.text("code")?.into(),
        message: map.text("message")?.into(),
        details,
    })
}

/// Checks a `route` answer. Public for the fuzz targets.
#[doc(hidden)]
pub fn route_response(body: &[u8]) -> Result<RouteResponse, String> {
    let mut map = Map::decode(body)?;
    let status = u16::try_from(map.uint("status")?).map_err(|e| e.to_string())?;
    let content_type = map.text("content-type")?;
    let body = map.optional_bytes("body")?.ok_or("\"body\" is null")?;
    Ok(RouteResponse {
        status,
        content_type: content_type.into(),
        body: body.into(),
    })
}

/// The message of an error answer (`{"error": tstr}`), or a description of the answer.
/// Public for the fuzz targets.
#[doc(hidden)]
pub fn error_message(status: u16, body: &[u8]) -> String {
    let said = Map::decode(body)
        .ok()
        .and_then(|map| map.text("error").ok())
        .map(|message| message.chars().take(1024).collect::<String>());
    match said {
        Some(message) => format!("status {status}: {message}"),
        None => format!("status {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(value: &Value) -> Vec<u8> {
        to_cbor(value)
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        )
    }

    #[test]
    fn envelopes_embed_encoded_items_as_they_are() {
        let operation = to_cbor(&gbs_plugin_interface::Operation::Version);
        let long = vec![7u8; 300];
        let bytes = envelope(&[
            ("operation", Item::Encoded(&operation)),
            ("data", Item::Bytes(&long)),
            ("none", Item::Null),
        ]);
        let decoded: Value = ciborium::from_reader(bytes.as_slice()).expect("CBOR");
        assert_eq!(
            decoded,
            map(vec![
                (
                    "operation",
                    map(vec![("operation", Value::Text("version".into()))])
                ),
                ("data", Value::Bytes(long)),
                ("none", Value::Null),
            ])
        );
    }

    #[test]
    fn descriptions_are_checked() {
        let good = map(vec![
            ("protocol", Value::Integer(1.into())),
            ("name", Value::Text("quota".into())),
            ("version", Value::Text("1.0.0".into())),
            ("roles", Value::Array(vec![Value::Text("server".into())])),
            (
                "interests",
                Value::Array(vec![Value::Text("allocate".into())]),
            ),
            ("future-field", Value::Bool(true)),
        ]);
        let description = description(&cbor(&good)).expect("valid");
        assert_eq!(description.name, "quota");
        assert!(description.interests.contains(OperationKind::ALLOCATE));
        assert!(!description.interests.contains(OperationKind::VERSION));
        assert!(description.roles.contains(Roles::SERVER));
        assert_eq!(description.hooks, ServerHooks::ALL, "both unless it says");
        assert_eq!(description.announcement, Value::Null);

        // Tried: hooks declared, then a misspelt one.
        let declared = |hooks: &[&str]| {
            let mut entries = match good.clone() {
                Value::Map(entries) => entries,
                _ => unreachable!(),
            };
            let names = hooks.iter().map(|h| Value::Text((*h).into())).collect();
            entries.push((Value::Text("hooks".into()), Value::Array(names)));
            super::description(&cbor(&Value::Map(entries)))
        };
        assert_eq!(
            declared(&["admit"]).expect("valid").hooks,
            ServerHooks::ADMIT
        );
        assert_eq!(declared(&[]).expect("valid").hooks, ServerHooks(0));
        let error = declared(&["comitted"]).expect_err("misspelt");
        // The name as written and the names known, not a CBOR value's debug form.
        assert_eq!(
            error,
            "unknown name \"comitted\" in \"hooks\" (known: admit, committed)"
        );

        let unknown = map(vec![
            ("protocol", Value::Integer(1.into())),
            ("name", Value::Text("q".into())),
            ("version", Value::Text("1".into())),
            ("roles", Value::Array(vec![Value::Text("server".into())])),
            (
                "interests",
                Value::Array(vec![Value::Text("everything".into())]),
            ),
        ]);
        let error = super::description(&cbor(&unknown)).expect_err("unknown kind");
        assert!(
            error.starts_with("unknown name \"everything\" in \"interests\" (known: "),
            "{error}"
        );
        assert!(error.contains("list-immutable"), "{error}");
        // Tried: trailing bytes after the map, and a list instead of a map.
        let mut trailing = cbor(&good);
        trailing.push(0);
        assert!(super::description(&trailing).is_err());
        assert!(super::description(&cbor(&Value::Array(vec![]))).is_err());
    }

    #[test]
    fn admissions_and_rejections() {
        let admit = map(vec![("admit", Value::Bool(true))]);
        assert!(admission(&cbor(&admit)).expect("valid").is_none());
        let reject = map(vec![
            ("admit", Value::Bool(false)),
            (
                "rejection",
                map(vec![
                    ("status", Value::Integer(413.into())),
                    ("code", Value::Text("quota-exceeded".into())),
                    ("message", Value::Text("over".into())),
                    ("details", map(vec![("used", Value::Integer(5.into()))])),
                ]),
            ),
        ]);
        let rejection = admission(&cbor(&reject)).expect("valid").expect("rejected");
        assert_eq!(rejection.status, 413);
        assert_eq!(rejection.code.as_str(), "quota-exceeded");
        assert!(is_one_cbor_item(&rejection.details));
        // Tried: admit as a string, and a rejection with no code.
        let bad = map(vec![("admit", Value::Text("yes".into()))]);
        assert!(admission(&cbor(&bad)).is_err());
        let no_code = map(vec![
            ("admit", Value::Bool(false)),
            (
                "rejection",
                map(vec![("status", Value::Integer(403.into()))]),
            ),
        ]);
        assert!(admission(&cbor(&no_code)).is_err());
    }

    #[test]
    fn route_answers_need_a_byte_string_body() {
        let answer = |body: Option<Value>| {
            let mut entries = vec![
                ("status", Value::Integer(200.into())),
                ("content-type", Value::Text("text/plain".into())),
            ];
            entries.extend(body.map(|body| ("body", body)));
            route_response(&cbor(&map(entries)))
        };
        let good = answer(Some(Value::Bytes(b"hi".to_vec()))).expect("valid");
        assert_eq!((good.status, good.body.as_slice()), (200, &b"hi"[..]));
        // Tried: a null body, a text body and no body at all (the CDDL says bstr).
        assert_eq!(
            answer(Some(Value::Null)).expect_err("null"),
            "\"body\" is null"
        );
        assert!(answer(Some(Value::Text("hi".into()))).is_err());
        assert!(answer(None).is_err());
    }
}
