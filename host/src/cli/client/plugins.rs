//! `gbs client plugins` and `gbs client plugin-route`, and how a plugin's rejection is shown.

use std::path::PathBuf;

use anyhow::Context as _;
use base64::Engine as _;
use gbs_plugin_interface::{RouteRequest, RouteResponse};
use serde_json::json;

use super::{connect, Output};
use crate::client::PluginRejection;
use crate::plugins::ClientPluginHandle;
use crate::protocol::{paths, Nurl};

#[derive(Debug, clap::Args)]
pub(super) struct RouteArgs {
    /// The server's NURL
    nurl: Nurl,
    #[command(flatten)]
    call: RouteCall,
}

#[derive(Debug, clap::Args)]
pub(super) struct ClientRouteArgs {
    #[command(flatten)]
    call: RouteCall,
}

/// One call of a plugin route, as typed.
#[derive(Debug, clap::Args)]
struct RouteCall {
    /// The plugin's name
    name: String,
    /// The path under the plugin's route (a query may follow `?`)
    path: String,
    /// HTTP method
    #[arg(long, default_value = "GET")]
    method: String,
    /// Send this file as the request body ("-" for stdin)
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
    /// The body's Content-Type
    #[arg(long)]
    content_type: Option<String>,
}

/// `gbs client plugins NURL`: the server's plugin announcements.
pub(super) async fn list(nurl: &Nurl, output: Output) -> anyhow::Result<()> {
    let announced = connect(nurl)?.announced_plugins().await?;
    let plugins = &announced.plugins;
    let mut lines: Vec<String> = announced
        .interface
        .iter()
        .map(|version| format!("plugin interface {version}"))
        .collect();
    if plugins.is_empty() {
        lines.push("no storage plugins announced".to_owned());
    }
    lines.extend(plugins.iter().map(|p| {
        format!(
            "{} {}: {}",
            p.name.escape_debug(),
            p.version.escape_debug(),
            cbor_json(&p.announcement)
        )
    }));
    let text = lines.join("\n");
    let value = json!({
        "interface": announced.interface,
        "plugins": plugins
            .iter()
            .map(|p| json!({
                "name": p.name,
                "version": p.version,
                "announcement": cbor_json(&p.announcement),
            }))
            .collect::<Vec<_>>(),
    });
    output.print(&text, value);
    Ok(())
}

/// `gbs client plugin-route NURL NAME PATH`: the body goes to stdout as it came (text
/// mode); a status of 400 or more is an error after it is printed.
pub(super) async fn route(args: &RouteArgs, output: Output) -> anyhow::Result<()> {
    let request = args.call.request()?;
    // The server's answer, which its plugin gave or (no such plugin, a bad path) it did.
    let who = paths::plugin_route(&args.call.name, request.path.as_str())
        .escape_debug()
        .to_string();
    let answer = connect(&args.nurl)?
        .call_plugin_route(&args.call.name, request)
        .await?;
    print_answer(&who, &answer, output)
}

/// `gbs client --node DIR client-route NAME PATH`: a client plugin's local resource,
/// answered as `route` answers.
pub(super) async fn client_route(
    args: &ClientRouteArgs,
    plugins: &[ClientPluginHandle],
    output: Output,
) -> anyhow::Result<()> {
    let name = &args.call.name;
    let Some(plugin) = plugins.iter().find(|p| p.name() == name) else {
        anyhow::bail!(
            "no client plugin {} (client plugins come from --node DIR's tahoe.cfg)",
            name.escape_debug()
        );
    };
    let answer = plugin.route(args.call.request()?).await?;
    let who = format!("client plugin {}", name.escape_debug());
    print_answer(&who, &answer, output)
}

impl RouteCall {
    fn request(&self) -> anyhow::Result<RouteRequest> {
        let body = match &self.body {
            None => Vec::new(),
            Some(path) if path.as_os_str() == "-" => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .context("cannot read stdin")?;
                bytes
            }
            Some(path) => {
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?
            }
        };
        let (path, query) = self.path.split_once('?').unwrap_or((&self.path, ""));
        let mut request = RouteRequest::new(&self.method, path, body);
        request.query = query.into();
        if let Some(content_type) = &self.content_type {
            request.content_type = content_type.as_str().into();
        }
        Ok(request)
    }
}

/// Prints `answer`, which `who` gave.
fn print_answer(who: &str, answer: &RouteResponse, output: Output) -> anyhow::Result<()> {
    if output.json {
        let body = match std::str::from_utf8(&answer.body) {
            Ok(text) => json!({ "body": text }),
            Err(_) => json!({
                "body_base64": base64::engine::general_purpose::STANDARD.encode(&answer.body),
            }),
        };
        let mut value = json!({
            "status": answer.status,
            "content_type": answer.content_type.as_str(),
        });
        super::merge_into(&mut value, body);
        println!("{value}");
    } else {
        use std::io::Write as _;
        let mut stdout = std::io::stdout();
        stdout.write_all(&answer.body)?;
        stdout.flush()?;
    }
    if answer.status >= 400 {
        anyhow::bail!("{who} answered status {}", answer.status);
    }
    Ok(())
}

/// What a refusing plugin said beyond the error line: with `--json`, the whole rejection is
/// printed as one object on stdout; else its details, if any, are returned as a line to
/// print after the error.
pub(super) fn show_rejection(rejection: &PluginRejection, output: Output) -> Option<String> {
    let details = if rejection.details.is_empty() {
        serde_json::Value::Null
    } else {
        match ciborium::from_reader::<ciborium::Value, _>(rejection.details.as_slice()) {
            Ok(value) => cbor_json(&value),
            Err(_) => serde_json::Value::Null,
        }
    };
    if output.json {
        println!(
            "{}",
            json!({
                "error": "refused by a server plugin",
                "rejection": {
                    "plugin": rejection.plugin,
                    "status": rejection.status,
                    "code": rejection.code,
                    "message": rejection.message,
                    "details": details,
                },
            })
        );
        None
    } else {
        (!details.is_null()).then(|| format!("details: {details}"))
    }
}

/// A CBOR value as JSON: byte strings as `{"bytes": HEX}`, tags as their content, map keys
/// that are not text as their JSON text.
pub(super) fn cbor_json(value: &ciborium::Value) -> serde_json::Value {
    use ciborium::Value as C;
    match value {
        C::Null => serde_json::Value::Null,
        C::Bool(b) => json!(b),
        C::Integer(i) => {
            let i = i128::from(*i);
            i64::try_from(i)
                .map(|n| json!(n))
                .or_else(|_| u64::try_from(i).map(|n| json!(n)))
                .unwrap_or_else(|_| json!(i.to_string()))
        }
        C::Float(f) => json!(f),
        C::Text(t) => json!(t),
        C::Bytes(b) => {
            json!({ "bytes": b.iter().map(|x| format!("{x:02x}")).collect::<String>() })
        }
        C::Array(items) => serde_json::Value::Array(items.iter().map(cbor_json).collect()),
        C::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        C::Text(t) => t.clone(),
                        other => cbor_json(other).to_string(),
                    };
                    (key, cbor_json(v))
                })
                .collect(),
        ),
        C::Tag(_, inner) => cbor_json(inner),
        _ => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::Value as C;

    #[test]
    fn cbor_becomes_json_without_losing_bytes_or_keys() {
        let value = C::Map(vec![
            (C::Text("n".into()), C::Integer(7.into())),
            (C::Integer(1.into()), C::Bytes(vec![0, 255])),
            (
                C::Text("list".into()),
                C::Array(vec![C::Bool(true), C::Null]),
            ),
        ]);
        assert_eq!(
            cbor_json(&value),
            json!({"n": 7, "1": {"bytes": "00ff"}, "list": [true, null]})
        );
    }
}
