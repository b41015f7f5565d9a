//! `gbs client put`: allocate, then upload a file in chunks, resuming with a known secret.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde_json::json;

use super::{
    connect, lease_json, lease_secrets, merge, secret_or_random, Output, PutArgs, ShareArgs,
};
use crate::client::{ClientError, ImmutableUpload, UploadReport};
use crate::protocol::{base32_encode, ShareNumber, UploadSecret};

/// Allocates the share, then uploads the file unless the server already has the share.
pub(super) async fn put(args: &PutArgs, output: Output) -> anyhow::Result<()> {
    let ShareArgs { nurl, si, shnum } = &args.share;
    let (file, size) = open_input(&args.file).await?;
    let client = connect(nurl)?;
    let lease = lease_secrets(&args.lease);
    let resuming = args.upload_secret.is_some();
    let secret_bytes = secret_or_random(args.upload_secret.as_ref(), "upload secret");
    let secret = UploadSecret::new(secret_bytes.to_vec()).context("empty upload secret")?;
    let upload = client
        .allocate(*si, BTreeSet::from([*shnum]), size, &lease, secret.clone())
        .await?;
    let mut result = merge(
        json!({
            "storage_index": si.to_string(),
            "share_number": shnum.0,
            "size": size,
            "upload_secret": base32_encode(&secret_bytes),
        }),
        lease_json(&lease),
    );
    if upload.already_have().contains(shnum) {
        result = merge(
            result,
            json!({"status": "already-stored", "bytes_sent": 0, "bytes_skipped": size}),
        );
        output.print(
            &format!("share {shnum} of {si} is already stored; its lease was added or renewed"),
            result,
        );
        return Ok(());
    }
    let upload = if upload.allocated().contains(shnum) {
        upload
    } else if resuming {
        ImmutableUpload::resume(&client, *si, size, secret)
    } else {
        // The server allocated nothing: for want of room (a full or read-only server), or
        // because the share is being uploaded already. Its version says which.
        let room = client
            .version()
            .await
            .ok()
            .map(|v| v.maximum_immutable_share_size);
        if let Some(room) = room.filter(|room| *room < size) {
            bail!(
                "the server has no room for share {shnum} of {si}: {size} bytes, and it takes \
                 shares of at most {room} (a full or read-only server)"
            );
        }
        bail!(
            "share {shnum} of {si} is already being uploaded (by someone else, or by an earlier run: \
             give its --upload-secret to resume)"
        );
    };
    let report = send(&upload, *shnum, file, output, &secret_bytes).await?;
    result = merge(
        result,
        json!({"status": "uploaded", "bytes_sent": report.bytes_sent, "bytes_skipped": report.bytes_skipped}),
    );
    let resumed = if report.bytes_skipped > 0 {
        format!(" ({} bytes were already there)", report.bytes_skipped)
    } else {
        String::new()
    };
    output.print(
        &format!("uploaded share {shnum} of {si}: {size} bytes{resumed}"),
        result,
    );
    Ok(())
}

/// Opens the file to upload and returns it with its size, which becomes the share's.
async fn open_input(path: &Path) -> anyhow::Result<(tokio::fs::File, u64)> {
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let size = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size == 0 {
        bail!(
            "{} is empty, and a 0-byte share can never be completed over GBS",
            path.display()
        );
    }
    Ok((file, size))
}

/// Uploads the share with a progress bar. On a conflict the share is aborted, as stock
/// clients do; on any other failure the operator is told how to resume.
async fn send(
    upload: &ImmutableUpload,
    shnum: ShareNumber,
    file: tokio::fs::File,
    output: Output,
    secret: &[u8],
) -> anyhow::Result<UploadReport> {
    let bar = progress_bar(upload.allocated_size(), output);
    let outcome = upload
        .upload_share_with_progress(shnum, file, |done| bar.set_position(done))
        .await;
    bar.finish_and_clear();
    match outcome {
        Ok(report) => Ok(report),
        Err(ClientError::Conflict) => {
            let _ = upload.abort(shnum).await;
            bail!("{}; the upload was aborted", ClientError::Conflict);
        }
        Err(error) => {
            eprintln!(
                "the upload can be resumed within 30 minutes with --upload-secret {}",
                base32_encode(secret)
            );
            Err(error.into())
        }
    }
}

/// A progress bar on stderr when it is a terminal (and no JSON was asked for); hidden
/// otherwise.
fn progress_bar(len: u64, output: Output) -> indicatif::ProgressBar {
    if output.json || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}
