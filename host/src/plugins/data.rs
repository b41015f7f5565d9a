//! Plugin data on the wire (design §3): request headers
//! `X-Tahoe-Plugin-Data: <plugin-name> <base64url CBOR>`, one per plugin, at most 64 KiB in
//! all. Parsed and checked here, before any plugin sees it; encoded here for the client.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The request header that carries one plugin's data.
pub const PLUGIN_DATA_HEADER: &str = "x-tahoe-plugin-data";
/// The response header naming the plugin that refused a request.
pub const PLUGIN_REJECTED_HEADER: &str = "x-tahoe-plugin-rejected";
/// On `GET /storage/v1/plugins`: the plugin interface version the server hosts, `1.0`.
pub const PLUGIN_INTERFACE_HEADER: &str = "x-tahoe-plugin-interface";
/// The most plugin data one request may carry, counting every header value.
pub const MAX_PLUGIN_DATA: usize = 64 * 1024;

/// The plugin data of one request: CBOR bytes by plugin name. Empty for stock clients,
/// which costs nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginData(Vec<(String, Vec<u8>)>);

/// Why a request's plugin data was refused (always 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginDataError {
    /// Over [`MAX_PLUGIN_DATA`] in all.
    #[error("plugin data exceeds {MAX_PLUGIN_DATA} bytes")]
    TooLarge,
    /// Not `<name> <base64>`.
    #[error("an X-Tahoe-Plugin-Data header is not `<plugin-name> <base64url CBOR>`")]
    Malformed,
    /// The data part is not unpadded base64url.
    #[error("plugin data for {0} is not base64url")]
    BadBase64(String),
    /// The decoded data is not one CBOR item.
    #[error("plugin data for {0} is not CBOR")]
    NotCbor(String),
    /// No loaded plugin has that name.
    #[error("no storage plugin named {0} is loaded here")]
    UnknownPlugin(String),
    /// Two headers for one plugin.
    #[error("more than one X-Tahoe-Plugin-Data header for {0}")]
    Duplicate(String),
}

/// Plugin names as they may appear on the wire: short, visible ASCII.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.bytes().all(|b| b.is_ascii_graphic())
}

/// A name from the client, fit for an error message.
fn shown(name: &str) -> String {
    super::host_api::clip(name, 64).to_owned()
}

/// Whether `bytes` is exactly one well-formed CBOR item. Public for the fuzz targets.
#[doc(hidden)]
pub fn is_one_cbor_item(bytes: &[u8]) -> bool {
    let mut reader = bytes;
    // Longer strings than the scratch get memory of their own; `ciborium::from_reader`
    // would clear 4 KiB of scratch on every call, for every request with plugin data.
    let mut scratch = [0u8; 256];
    ciborium::de::from_reader_with_buffer::<ciborium::Value, _>(&mut reader, &mut scratch).is_ok()
        && reader.is_empty()
}

impl PluginData {
    /// Parses every `X-Tahoe-Plugin-Data` value of a request; `known` says which plugin
    /// names are loaded.
    pub fn parse<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
        known: impl Fn(&str) -> bool,
    ) -> Result<Self, PluginDataError> {
        let mut total = 0usize;
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        for value in values {
            total = total.saturating_add(value.len());
            if total > MAX_PLUGIN_DATA {
                return Err(PluginDataError::TooLarge);
            }
            let text = std::str::from_utf8(value).map_err(|_| PluginDataError::Malformed)?;
            let (name, data) = text
                .trim()
                .split_once(' ')
                .ok_or(PluginDataError::Malformed)?;
            let data = data.trim();
            if !valid_name(name) {
                return Err(PluginDataError::Malformed);
            }
            if !known(name) {
                return Err(PluginDataError::UnknownPlugin(shown(name)));
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(PluginDataError::Duplicate(shown(name)));
            }
            let bytes = URL_SAFE_NO_PAD
                .decode(data)
                .map_err(|_| PluginDataError::BadBase64(shown(name)))?;
            if !is_one_cbor_item(&bytes) {
                return Err(PluginDataError::NotCbor(shown(name)));
            }
            entries.push((name.to_owned(), bytes));
        }
        Ok(Self(entries))
    }

    /// The data for `plugin`, if the request carried any.
    pub fn get(&self, plugin: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n == plugin)
            .map(|(_, d)| d.as_slice())
    }

    /// Whether the request carried no plugin data.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The header value that carries `cbor` for `plugin`.
    pub fn header_value(plugin: &str, cbor: &[u8]) -> String {
        format!("{plugin} {}", URL_SAFE_NO_PAD.encode(cbor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<PluginData, PluginDataError> {
        PluginData::parse(values.iter().map(|v| v.as_bytes()), |n| {
            n == "allow-list" || n == "access-log"
        })
    }

    #[test]
    fn well_formed_data_round_trips() {
        let cbor = gbs_plugin_interface::to_cbor(&"token");
        let header = PluginData::header_value("allow-list", &cbor);
        let data = parse(&[&header]).unwrap();
        assert_eq!(data.get("allow-list"), Some(cbor.as_slice()));
        assert_eq!(data.get("access-log"), None);
        assert!(parse(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_data_is_refused_before_any_plugin_sees_it() {
        let cbor = gbs_plugin_interface::to_cbor(&1u8);
        let good = PluginData::header_value("allow-list", &cbor);
        // No space between name and data.
        assert_eq!(parse(&["allow-list"]), Err(PluginDataError::Malformed));
        // Padding and `+` are not base64url without padding.
        assert_eq!(
            parse(&["allow-list AQ=="]),
            Err(PluginDataError::BadBase64("allow-list".into()))
        );
        // 0xff alone is a CBOR "break", not an item; two items are not one.
        assert_eq!(
            parse(&["allow-list _w"]),
            Err(PluginDataError::NotCbor("allow-list".into()))
        );
        assert_eq!(
            parse(&["allow-list AQE"]),
            Err(PluginDataError::NotCbor("allow-list".into()))
        );
        assert_eq!(
            parse(&[&PluginData::header_value("zkap", &cbor)]),
            Err(PluginDataError::UnknownPlugin("zkap".into()))
        );
        assert_eq!(
            parse(&[&good, &good]),
            Err(PluginDataError::Duplicate("allow-list".into()))
        );
    }

    #[test]
    fn more_than_64_kib_in_all_is_refused() {
        let big = gbs_plugin_interface::to_cbor(&serde_bytes_value(40_000));
        let one = PluginData::header_value("allow-list", &big);
        let two = PluginData::header_value("access-log", &big);
        assert!(parse(&[&one]).is_ok());
        assert_eq!(parse(&[&one, &two]), Err(PluginDataError::TooLarge));
    }

    fn serde_bytes_value(len: usize) -> ciborium::Value {
        ciborium::Value::Bytes(vec![7; len])
    }
}
