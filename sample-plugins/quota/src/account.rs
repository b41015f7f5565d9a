//! Accounts: the name rule and the plugin data that carries a name, `{"account": NAME}`.

use ciborium::Value;

/// The one key of the plugin data map.
pub const ACCOUNT_KEY: &str = "account";

/// What a rejection tells a client that sent no account; quota-py sends the same text.
pub(crate) const NO_ACCOUNT: &str = "allocations here need plugin data {\"account\": NAME}, \
     NAME 1 to 64 of A-Z a-z 0-9 _ . -";

/// A checked account name: 1 to 64 bytes of `A-Z a-z 0-9 _ . -`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Account(String);

impl Account {
    /// The name, if it follows the rule.
    pub fn parse(name: &str) -> Option<Account> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        ((1..=64).contains(&name.len()) && name.bytes().all(allowed))
            .then(|| Account(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The account in a client's plugin data, or `None` for anything but one CBOR map
/// `{"account": NAME}` with nothing after it. Never panics, whatever the bytes.
pub fn account_of(data: &[u8]) -> Option<Account> {
    let mut rest = data;
    // ciborium caps nesting depth, so deeply nested input is an error, not a stack overflow.
    let value: Value = ciborium::from_reader(&mut rest).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let Value::Map(entries) = value else {
        return None;
    };
    // Only the one key. A map that repeats it counts as its last value: quota-py decodes
    // the map into a Python dict, which keeps the last, and the twins must agree.
    if !entries
        .iter()
        .all(|(key, _)| key.as_text() == Some(ACCOUNT_KEY))
    {
        return None;
    }
    match entries.into_iter().last()? {
        (_, Value::Text(name)) => Account::parse(&name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use gbs_plugin_interface::to_cbor;

    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn map(entries: Vec<(Value, Value)>) -> Vec<u8> {
        to_cbor(&Value::Map(entries))
    }

    #[test]
    fn names_follow_the_rule() {
        for good in ["a", "alice", "A-Z_a.z-09", &"x".repeat(64)] {
            assert!(Account::parse(good).is_some(), "{good:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a/b",
            "é",
            "a\n",
            "a%20b",
            "a+b",
        ] {
            assert!(Account::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn plugin_data_names_the_account() {
        let data = map(vec![(text(ACCOUNT_KEY), text("alice"))]);
        assert_eq!(account_of(&data).unwrap().as_str(), "alice");
    }

    #[test]
    fn a_repeated_key_counts_as_its_last_value() {
        let data = map(vec![
            (text(ACCOUNT_KEY), text("first")),
            (text(ACCOUNT_KEY), text("last")),
        ]);
        assert_eq!(account_of(&data).unwrap().as_str(), "last");
    }

    #[test]
    fn data_of_any_other_shape_names_no_account() {
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100_000).chain([0x00]).collect();
        let mut trailing = map(vec![(text(ACCOUNT_KEY), text("a"))]);
        trailing.push(0x00);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("not CBOR", vec![0xff]),
            ("100000 nested arrays", deep),
            ("bytes after the map", trailing),
            ("an array", to_cbor(&Value::Array(vec![text(ACCOUNT_KEY)]))),
            ("an empty map", map(vec![])),
            ("another key", map(vec![(text("acct"), text("a"))])),
            (
                "a second key",
                map(vec![
                    (text(ACCOUNT_KEY), text("a")),
                    (text("x"), Value::Integer(1.into())),
                ]),
            ),
            (
                "a byte-string name",
                map(vec![(text(ACCOUNT_KEY), Value::Bytes(b"a".to_vec()))]),
            ),
            (
                "a byte-string key",
                map(vec![(Value::Bytes(b"account".to_vec()), text("a"))]),
            ),
            ("a bad name", map(vec![(text(ACCOUNT_KEY), text("a b"))])),
            (
                "a tagged name",
                map(vec![(
                    text(ACCOUNT_KEY),
                    Value::Tag(32, Box::new(text("a"))),
                )]),
            ),
        ];
        for (what, data) in cases {
            assert_eq!(account_of(&data), None, "{what}");
        }
    }
}
