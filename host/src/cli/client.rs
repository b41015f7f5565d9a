//! `gbs client`: every GBS operation from the command line, for operators and scripts.
//!
//! Storage indexes are Tahoe's 26 lowercase base32 characters. Secrets (lease renew and
//! cancel secrets, upload secrets, write enablers) are 32 bytes, written as 52 base32
//! characters or 64 hex digits; any not given is generated at random and printed (on stderr
//! as it is made, and in the `--json` result), so that it can be given again later to renew
//! a lease, resume an upload or rewrite a mutable share. Output is text for people by
//! default; `--json` prints one JSON object on stdout instead.

mod get;
mod plugins;
mod put;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use serde_json::json;

use crate::client::{Client, ClientBuilder, ClientError, ImmutableUpload};
use crate::plugins::ClientPluginHandle;
use crate::protocol::{
    base32_decode, base32_encode, LeaseCancelSecret, LeaseRenewSecret, LeaseSecrets, Nurl,
    ReadRange, ReadTestWriteRequest, ShareKind, ShareNumber, StorageIndex, TestWriteVectors,
    UploadSecret, WriteEnabler, WriteVector,
};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "SI is a storage index: 26 lowercase base32 characters, as Tahoe writes them.\n\
SECRET is 32 bytes as 52 base32 characters or 64 hex digits; omitted secrets are generated at\n\
random and printed, so that they can be given again (to renew a lease, resume an upload, or\n\
write the same mutable share)."
)]
pub(super) struct ClientArgs {
    /// Print one JSON object on stdout instead of text
    #[arg(long, global = true)]
    json: bool,
    /// Use the client plugins ([client] storage.plugins) of this node directory's tahoe.cfg
    #[arg(long, global = true, value_name = "DIR")]
    node: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Show a server's version and free space
    Version {
        /// The server's NURL (pb://<key hash>@<host>:<port>/<swissnum>#v=1)
        nurl: Nurl,
    },
    /// Upload FILE as immutable share SHNUM of SI (allocate, then upload in chunks)
    Put(PutArgs),
    /// Download immutable share SHNUM of SI to OUT ("-" for stdout)
    Get(GetArgs),
    /// List the completed immutable shares of SI
    Ls(ListArgs),
    /// Add a lease to every share of SI, or renew the lease with this renew secret
    Lease(LeaseCommandArgs),
    /// Abort an immutable upload in progress, so that the share can be allocated again
    Abort(AbortArgs),
    /// Tell the server's operator that a share looks corrupt
    Corrupt(CorruptArgs),
    /// Mutable shares: read, write, list
    #[command(subcommand)]
    Mutable(MutableCommand),
    /// List the storage plugins a server announces (GET /storage/v1/plugins)
    Plugins {
        /// The server's NURL
        nurl: Nurl,
    },
    /// Call a server plugin's own route, /storage/v1/plugin/NAME/PATH; prints the body
    PluginRoute(plugins::RouteArgs),
    /// Call a client plugin's local resource (a wallet, a price calculator; needs --node);
    /// prints the body
    ClientRoute(plugins::ClientRouteArgs),
}

#[derive(Debug, Subcommand)]
enum MutableCommand {
    /// Download mutable share SHNUM of SI to OUT ("-" for stdout)
    Read(GetArgs),
    /// Write FILE into mutable share SHNUM of SI at --offset (creating the share if needed)
    Write(MutableWriteArgs),
    /// List the mutable shares of SI
    Ls(ListArgs),
}

#[derive(Debug, clap::Args)]
struct ShareArgs {
    /// The server's NURL
    nurl: Nurl,
    /// Storage index: 26 lowercase base32 characters
    si: StorageIndex,
    /// Share number
    shnum: ShareNumber,
}

#[derive(Debug, clap::Args)]
struct LeaseArgs {
    /// Lease renew secret (52 base32 characters or 64 hex digits) [default: random, printed]
    #[arg(long, value_name = "SECRET")]
    renew_secret: Option<Secret>,
    /// Lease cancel secret (52 base32 characters or 64 hex digits) [default: random, printed]
    #[arg(long, value_name = "SECRET")]
    cancel_secret: Option<Secret>,
}

#[derive(Debug, clap::Args)]
struct PutArgs {
    #[command(flatten)]
    share: ShareArgs,
    /// The data; the share's size is the file's size
    file: PathBuf,
    #[command(flatten)]
    lease: LeaseArgs,
    /// Upload secret; give an earlier run's to resume its upload (52 base32 characters or 64 hex digits) [default: random, printed]
    #[arg(long, value_name = "SECRET")]
    upload_secret: Option<Secret>,
}

#[derive(Debug, clap::Args)]
struct GetArgs {
    #[command(flatten)]
    share: ShareArgs,
    /// Only bytes A to B, both included (the server returns less past the share's end)
    #[arg(long, value_name = "A-B")]
    range: Option<ByteRange>,
    /// Where to write the data; "-" for stdout
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// The server's NURL
    nurl: Nurl,
    /// Storage index: 26 lowercase base32 characters
    si: StorageIndex,
}

#[derive(Debug, clap::Args)]
struct LeaseCommandArgs {
    #[command(flatten)]
    target: ListArgs,
    #[command(flatten)]
    lease: LeaseArgs,
}

#[derive(Debug, clap::Args)]
struct AbortArgs {
    #[command(flatten)]
    share: ShareArgs,
    /// The upload secret the share was allocated with (52 base32 characters or 64 hex digits)
    #[arg(long, value_name = "SECRET")]
    upload_secret: Secret,
}

#[derive(Debug, clap::Args)]
struct CorruptArgs {
    #[command(flatten)]
    share: ShareArgs,
    /// What looks wrong
    reason: String,
    /// The share is mutable (default: immutable)
    #[arg(long)]
    mutable: bool,
}

#[derive(Debug, clap::Args)]
struct MutableWriteArgs {
    #[command(flatten)]
    share: ShareArgs,
    /// The data to write (sent in one request, so read into memory)
    file: PathBuf,
    /// Where in the share the data goes; a gap before it reads as zeros
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Then truncate the share to this length (0 deletes it; a larger length is ignored)
    #[arg(long, value_name = "BYTES")]
    new_length: Option<u64>,
    /// Write enabler guarding the share (52 base32 characters or 64 hex digits) [default: random, printed]
    #[arg(long, value_name = "SECRET")]
    write_enabler: Option<Secret>,
    #[command(flatten)]
    lease: LeaseArgs,
}

/// 32 secret bytes as typed on the command line.
#[derive(Clone)]
struct Secret([u8; 32]);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = match text.len() {
            52 => base32_decode(text),
            64 => decode_hex(text),
            _ => None,
        };
        bytes
            .and_then(|b| b.try_into().ok())
            .map(Secret)
            .ok_or_else(|| {
                "a secret is 32 bytes: 52 lowercase base32 characters or 64 hex digits".to_owned()
            })
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Option<Vec<u8>> = text
        .chars()
        .map(|c| c.to_digit(16).and_then(|d| u8::try_from(d).ok()))
        .collect();
    Some(
        digits?
            .chunks(2)
            .map(|pair| pair.iter().fold(0, |acc, d| acc * 16 + d))
            .collect(),
    )
}

/// `A-B`, both ends included.
#[derive(Debug, Clone, Copy)]
struct ByteRange(ReadRange);

impl FromStr for ByteRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let (first, last) = text.split_once('-')?;
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            ReadRange::new(first, last.checked_sub(first)?.checked_add(1)?)
        };
        parse()
            .map(ByteRange)
            .ok_or_else(|| "expected A-B with A <= B, e.g. 0-1023".to_owned())
    }
}

/// Where results go: text on stdout, or one JSON object with `--json`.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
}

impl Output {
    fn print(self, text: &str, value: serde_json::Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }
}

/// A secret from the command line, or a fresh random one announced on stderr.
fn secret_or_random(given: Option<&Secret>, what: &str) -> [u8; 32] {
    match given {
        Some(secret) => secret.0,
        None => {
            let bytes = rand::random::<[u8; 32]>();
            eprintln!("generated {what}: {}", base32_encode(&bytes));
            bytes
        }
    }
}

fn lease_secrets(args: &LeaseArgs) -> LeaseSecrets {
    LeaseSecrets {
        renew: LeaseRenewSecret::new(secret_or_random(
            args.renew_secret.as_ref(),
            "lease renew secret",
        )),
        cancel: LeaseCancelSecret::new(secret_or_random(
            args.cancel_secret.as_ref(),
            "lease cancel secret",
        )),
    }
}

fn lease_json(lease: &LeaseSecrets) -> serde_json::Value {
    json!({
        "lease_renew_secret": base32_encode(lease.renew.expose()),
        "lease_cancel_secret": base32_encode(lease.cancel.expose()),
    })
}

fn merge(mut value: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    merge_into(&mut value, extra);
    value
}

fn merge_into(value: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(target), serde_json::Value::Object(extra)) = (value.as_object_mut(), extra) {
        target.extend(extra);
    }
}

/// The client plugins of `--node`, loaded once per command before any connection. A
/// command runs once per process, so a process-wide slot is all the state needed.
static CLIENT_PLUGINS: std::sync::OnceLock<Vec<ClientPluginHandle>> = std::sync::OnceLock::new();

fn connect(nurl: &Nurl) -> anyhow::Result<Client> {
    let plugins = CLIENT_PLUGINS.get().into_iter().flatten().cloned();
    Ok(plugins
        .fold(ClientBuilder::new(nurl.clone()), ClientBuilder::plugin)
        .build()?)
}

/// Runs a `gbs client` command.
pub(super) fn run(args: ClientArgs) -> anyhow::Result<()> {
    if let Some(dir) = &args.node {
        let config = crate::config::NodeConfig::load(dir)?;
        let _ = CLIENT_PLUGINS.set(ClientPluginHandle::load_all(&config)?);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let output = Output { json: args.json };
    let result = runtime.block_on(async move {
        match args.command {
            ClientCommand::Version { nurl } => version(&nurl, output).await,
            ClientCommand::Put(args) => put::put(&args, output).await,
            ClientCommand::Get(args) => get::get(&args, ShareKind::Immutable, output).await,
            ClientCommand::Ls(args) => list(&args, ShareKind::Immutable, output).await,
            ClientCommand::Lease(args) => lease(&args, output).await,
            ClientCommand::Abort(args) => abort(&args, output).await,
            ClientCommand::Corrupt(args) => corrupt(&args, output).await,
            ClientCommand::Mutable(MutableCommand::Read(args)) => {
                get::get(&args, ShareKind::Mutable, output).await
            }
            ClientCommand::Mutable(MutableCommand::Write(args)) => {
                mutable_write(&args, output).await
            }
            ClientCommand::Mutable(MutableCommand::Ls(args)) => {
                list(&args, ShareKind::Mutable, output).await
            }
            ClientCommand::Plugins { nurl } => plugins::list(&nurl, output).await,
            ClientCommand::PluginRoute(args) => plugins::route(&args, output).await,
            ClientCommand::ClientRoute(args) => {
                let loaded = CLIENT_PLUGINS.get().map_or(&[][..], Vec::as_slice);
                plugins::client_route(&args, loaded, output).await
            }
        }
    });
    crate::plugins::remote::stop_all_processes();
    result.map_err(|error| {
        let details = match error.downcast_ref::<ClientError>() {
            Some(ClientError::PluginRejected(rejection)) => {
                plugins::show_rejection(rejection, output)
            }
            _ => None,
        };
        match details {
            // On the line after the error's.
            Some(details) => anyhow::anyhow!("{error:#}\n{details}"),
            None => error,
        }
    })
}

async fn version(nurl: &Nurl, output: Output) -> anyhow::Result<()> {
    let info = connect(nurl)?.version().await?;
    let application = String::from_utf8_lossy(&info.application_version);
    output.print(
        &format!(
            "application version:          {application}\n\
             available space:              {} bytes\n\
             maximum immutable share size: {} bytes\n\
             maximum mutable share size:   {} bytes",
            info.available_space,
            info.maximum_immutable_share_size,
            info.maximum_mutable_share_size
        ),
        json!({
            "application_version": application,
            "available_space": info.available_space,
            "maximum_immutable_share_size": info.maximum_immutable_share_size,
            "maximum_mutable_share_size": info.maximum_mutable_share_size,
        }),
    );
    Ok(())
}

async fn list(args: &ListArgs, kind: ShareKind, output: Output) -> anyhow::Result<()> {
    let shares = connect(&args.nurl)?.list_shares(kind, &args.si).await?;
    let numbers: Vec<u16> = shares.iter().map(|s| s.0).collect();
    let text = if numbers.is_empty() {
        format!("no {} shares of {}", kind.as_str(), args.si)
    } else {
        numbers
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    output.print(
        &text,
        json!({"storage_index": args.si.to_string(), "kind": kind.as_str(), "shares": numbers}),
    );
    Ok(())
}

async fn lease(args: &LeaseCommandArgs, output: Output) -> anyhow::Result<()> {
    let si = &args.target.si;
    let lease = lease_secrets(&args.lease);
    match connect(&args.target.nurl)?
        .add_or_renew_lease(si, &lease)
        .await
    {
        Ok(()) => {}
        Err(ClientError::NotFound) => bail!("the server holds no shares of {si}"),
        Err(error) => return Err(error.into()),
    }
    output.print(
        &format!("lease added or renewed on every share of {si} (expires in 31 days)"),
        merge(json!({"storage_index": si.to_string()}), lease_json(&lease)),
    );
    Ok(())
}

async fn abort(args: &AbortArgs, output: Output) -> anyhow::Result<()> {
    let ShareArgs { nurl, si, shnum } = &args.share;
    let client = connect(nurl)?;
    let secret = UploadSecret::new(args.upload_secret.0.to_vec()).context("empty upload secret")?;
    // The allocated size does not matter to abort.
    ImmutableUpload::resume(&client, *si, 0, secret)
        .abort(*shnum)
        .await?;
    output.print(
        &format!("aborted the upload of share {shnum} of {si}"),
        json!({"storage_index": si.to_string(), "share_number": shnum.0, "status": "aborted"}),
    );
    Ok(())
}

async fn corrupt(args: &CorruptArgs, output: Output) -> anyhow::Result<()> {
    let ShareArgs { nurl, si, shnum } = &args.share;
    let kind = if args.mutable {
        ShareKind::Mutable
    } else {
        ShareKind::Immutable
    };
    connect(nurl)?
        .advise_corrupt(kind, si, *shnum, &args.reason)
        .await?;
    output.print(
        &format!("reported {} share {shnum} of {si} as corrupt", kind.as_str()),
        json!({"storage_index": si.to_string(), "share_number": shnum.0, "kind": kind.as_str(), "status": "reported"}),
    );
    Ok(())
}

async fn mutable_write(args: &MutableWriteArgs, output: Output) -> anyhow::Result<()> {
    let ShareArgs { nurl, si, shnum } = &args.share;
    let data = tokio::fs::read(&args.file)
        .await
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let client = connect(nurl)?;
    let enabler_bytes = secret_or_random(args.write_enabler.as_ref(), "write enabler");
    let enabler = WriteEnabler::new(enabler_bytes.to_vec()).context("empty write enabler")?;
    let lease = lease_secrets(&args.lease);
    let len = data.len();
    let vectors = TestWriteVectors {
        test: Vec::new(),
        write: vec![WriteVector {
            offset: args.offset,
            data,
        }],
        new_length: args.new_length,
    };
    let request = ReadTestWriteRequest {
        test_write_vectors: BTreeMap::from([(*shnum, vectors)]),
        read_vector: Vec::new(),
    };
    let answer = client
        .read_test_write(si, &enabler, &lease, &request)
        .await?;
    if !answer.success {
        bail!("the server reported the write as not applied");
    }
    output.print(
        &format!(
            "wrote {len} bytes at offset {} of mutable share {shnum} of {si}",
            args.offset
        ),
        merge(
            json!({
                "storage_index": si.to_string(),
                "share_number": shnum.0,
                "offset": args.offset,
                "bytes": len,
                "write_enabler": base32_encode(&enabler_bytes),
            }),
            lease_json(&lease),
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_from_base32_or_hex() {
        let bytes: [u8; 32] = std::array::from_fn(|i| i as u8);
        let b32 = base32_encode(&bytes);
        assert_eq!(b32.len(), 52);
        assert_eq!(b32.parse::<Secret>().unwrap().0, bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.parse::<Secret>().unwrap().0, bytes);
        for bad in [
            "",
            "abc",
            &hex[..63],
            &format!("{}g", &hex[..63]),
            &b32.to_uppercase(),
        ] {
            assert!(bad.parse::<Secret>().is_err(), "{bad}");
        }
        assert!(!format!("{:?}", b32.parse::<Secret>().unwrap()).contains(&b32));
    }

    #[test]
    fn byte_ranges_are_inclusive() {
        let range = "10-19".parse::<ByteRange>().unwrap().0;
        assert_eq!(range.to_string(), "bytes=10-19");
        assert_eq!(
            "0-0".parse::<ByteRange>().unwrap().0.to_string(),
            "bytes=0-0"
        );
        for bad in ["5-4", "-4", "4-", "a-b", "1-2-3"] {
            assert!(bad.parse::<ByteRange>().is_err(), "{bad}");
        }
    }
}
