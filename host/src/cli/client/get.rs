//! `gbs client get` and `gbs client mutable read`: stream a share to a file or stdout.

use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::{connect, GetArgs, Output, ShareArgs};
use crate::client::Client;
use crate::protocol::{ReadRange, ShareKind, ShareNumber, StorageIndex};

/// Downloads a share of either kind to a file or stdout.
pub(super) async fn get(args: &GetArgs, kind: ShareKind, output: Output) -> anyhow::Result<()> {
    let ShareArgs { nurl, si, shnum } = &args.share;
    let client = connect(nurl)?;
    let range = args.range.map(|r| r.0);
    let to_stdout = args.out.as_os_str() == "-";
    let written = if to_stdout {
        let mut stdout = tokio::io::stdout();
        client
            .read_share(kind, si, *shnum, range, &mut stdout)
            .await?
    } else {
        download_to_file(&client, kind, si, *shnum, range, &args.out).await?
    };
    let text = format!(
        "wrote {written} bytes of {} share {shnum} of {si} to {}",
        kind.as_str(),
        args.out.display()
    );
    let value = json!({
        "storage_index": si.to_string(),
        "share_number": shnum.0,
        "kind": kind.as_str(),
        "bytes": written,
        "output": args.out.display().to_string(),
    });
    if to_stdout {
        // Stdout carries the data; the summary goes to stderr.
        eprintln!("{}", if output.json { value.to_string() } else { text });
    } else {
        output.print(&text, value);
    }
    Ok(())
}

/// Downloads into `path`. A regular file is synced, and removed again if the download fails;
/// anything else (`/dev/null`, a FIFO, a terminal) is only written to: it cannot be synced,
/// and it is not ours to remove.
async fn download_to_file(
    client: &Client,
    kind: ShareKind,
    si: &StorageIndex,
    shnum: ShareNumber,
    range: Option<ReadRange>,
    path: &Path,
) -> anyhow::Result<u64> {
    let mut file = tokio::fs::File::create(path)
        .await
        .with_context(|| format!("cannot create {}", path.display()))?;
    let regular = file
        .metadata()
        .await
        .with_context(|| format!("cannot inspect {}", path.display()))?
        .is_file();
    let mut result = client
        .read_share(kind, si, shnum, range, &mut file)
        .await
        .map_err(anyhow::Error::from);
    if let Ok(written) = result {
        let finished = if regular {
            file.sync_all().await
        } else {
            tokio::io::AsyncWriteExt::flush(&mut file).await
        };
        result = finished.map(|()| written).map_err(anyhow::Error::from);
    }
    if result.is_err() && regular {
        drop(file);
        let _ = tokio::fs::remove_file(path).await;
    }
    result.with_context(|| format!("downloading to {}", path.display()))
}
